//! The command line: every flag also an environment variable, validated into `Settings`.
//!
//! Clap rejects malformed values itself (exit code 2, naming the flag); what clap cannot check
//! (host rules, database URLs) is checked here and reported as a `ConfigError` naming the flag,
//! which `main` also turns into exit code 2.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::dedup::{DedupSettings, RedisSettings};
use crate::domain::RedirectPolicy;
use crate::domain::signature::{Keyring, SigningKey};
use crate::domain::user_agent::UserAgentDetail;
use crate::journal::NatsSettings;
use crate::pipeline::{AckMode, BatchSettings, PipelineSettings};
use crate::store::{ConnectOptions, DatabaseUrl};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "clicktrack",
    version,
    about = "Click-tracking redirects for LINE campaign links"
)]
pub struct Cli {
    /// Log output: json, pretty, or auto (json unless stderr is a terminal).
    #[arg(
        long,
        env = "CLICKTRACK_LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start and then taken apart: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the service (migrates the schema first).
    Serve(ServeArgs),
    /// Create or upgrade the schema, then exit.
    Migrate(DbArgs),
    /// Manage campaigns (production campaigns come from the marketing app).
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Inspect or apply the journal (`spool`: its name in earlier releases), for operators.
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// Print a signed tracking link (the same as POST /api/links on the admin listener).
    Link(LinkArgs),
    /// Print campaign results: every campaign, or one campaign's stats with --campaign.
    Stats(StatsArgs),
    /// Delete raw log rows, their tags and rejects older than --before; the campaign
    /// statistics keep their counts (rollups).
    Purge(PurgeArgs),
    /// Members' personal data: `member erase --uid U` removes one person (docs/privacy.md).
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Remove one person from every table clicktrack writes or reads, from the journal and
    /// from Redis; campaign counters and statistics keep their counts. Safe while `serve`
    /// runs (the same as DELETE /api/members/{uid} on the admin listener).
    Erase(MemberEraseArgs),
}

/// The Redis shared by the instances for de-duplication (`serve`, and `member erase`, which
/// deletes a member's keys there).
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis shared by all instances for de-duplication across them, e.g.
    /// redis://127.0.0.1:6379. Without it each instance de-duplicates on its own.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of clicktrack's Redis keys.
    #[arg(
        long,
        env = "CLICKTRACK_REDIS_KEY_PREFIX",
        default_value = DEFAULT_REDIS_PREFIX
    )]
    pub redis_key_prefix: String,
}

impl RedisArgs {
    /// The Redis settings, if a URL was given, checked now so that a typo fails the command
    /// instead of every click's lookup.
    pub fn settings(&self, timeout: Duration) -> Result<Option<RedisSettings>, ConfigError> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        redis::Client::open(url.as_str()).map_err(|e| {
            ConfigError::new(
                "--redis-url",
                format!("{e}; expected redis://HOST[:PORT][/DB] (rediss:// for TLS)"),
            )
        })?;
        Ok(Some(RedisSettings {
            url: url.clone(),
            key_prefix: self.redis_key_prefix.clone(),
            timeout,
        }))
    }
}

/// `clicktrack member erase --uid U [--dry-run]`.
#[derive(Debug, Args)]
pub struct MemberEraseArgs {
    /// The member's LINE uid, as in the links (`uid=`).
    #[arg(long)]
    pub uid: String,
    /// Only count what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    // The instances' Redis, to delete the member's de-duplication keys there too.
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub spool: SpoolPathArg,
}

/// `clicktrack purge --before DATE [--dry-run]`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Delete what is older than this: a date (2026-01-01, midnight UTC) or an RFC 3339 time.
    #[arg(long)]
    pub before: String,
    /// Only count what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `clicktrack stats`: the numbers of the admin API and dashboard, read from --database-url.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// One campaign's stats over --since (without it: every campaign, all time).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub campaign: Option<i64>,
    /// The window of --campaign: the last 90s, 30m, 12h, 7d, 2w (hour buckets up to 2 days).
    #[arg(long, default_value = "7d", value_parser = parse_span)]
    pub since: Duration,
    /// table (aligned text), json (the API's JSON) or csv (with --campaign: every click of
    /// the window, as GET /api/campaigns/{id}/clicks.csv).
    #[arg(long, value_enum, default_value = "table")]
    pub format: StatsFormat,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    Table,
    Json,
    Csv,
}

/// `--signing-key`, shared by `serve` (verify) and `link` (sign).
#[derive(Debug, Clone, Args)]
pub struct SigningArgs {
    /// Link signing key KID:SECRET (secret at least 16 bytes). Repeatable: the first signs,
    /// all verify, so a new key goes first and an old one stays until its links are no longer
    /// in use. The environment variable is comma-separated.
    #[arg(
        long = "signing-key",
        env = "CLICKTRACK_SIGNING_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub signing_keys: Vec<String>,
}

impl SigningArgs {
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        let keys = self
            .signing_keys
            .iter()
            .map(|k| k.trim().parse())
            .collect::<Result<Vec<SigningKey>, _>>()
            .map_err(|e| ConfigError::new("--signing-key", e))?;
        Keyring::new(keys).map_err(|e| ConfigError::new("--signing-key", e))
    }
}

#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    /// Where clicktrack's public listener is reached, e.g. https://t.example.com.
    #[arg(long)]
    pub base_url: String,
    /// The target URL.
    #[arg(long)]
    pub to: String,
    /// Campaign id.
    #[arg(long)]
    pub cid: i64,
    /// LINE user id (omit for a link shared by everyone).
    #[arg(long)]
    pub uid: Option<String>,
    /// Source campaign id.
    #[arg(long)]
    pub src: Option<i64>,
    /// Interaction type (image_click, button_url, ...).
    #[arg(long = "type")]
    pub interaction_type: Option<String>,
    /// Comma-separated tags.
    #[arg(long)]
    pub tag: Option<String>,
    /// The link stops redirecting after this long: 90s, 30m, 12h, 30d or 2w.
    #[arg(long, value_parser = parse_span)]
    pub expires_in: Option<Duration>,
    #[command(flatten)]
    pub signing: SigningArgs,
}

/// `30d`-style durations: a positive whole number and one of s, m, h, d, w.
pub fn parse_span(value: &str) -> Result<Duration, String> {
    let unit_at = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{value:?}: give a unit, e.g. 30d"))?;
    let (number, unit) = value.split_at(unit_at);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?}: expected a number then s, m, h, d or w"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{value:?}: the unit is one of s, m, h, d, w")),
    };
    match n.checked_mul(seconds) {
        Some(s) if s > 0 && s <= 100 * 365 * 86_400 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{value:?}: between 1 second and 100 years")),
    }
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Print how many clicks wait in the journal, how old the oldest is, and its store.
    Status(SpoolArgs),
    /// Apply the journal to --database-url until it is empty, then exit (not while a
    /// `serve` holds it).
    Replay(SpoolArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub spool: SpoolPathArg,
}

#[derive(Debug, Clone, Args)]
pub struct SpoolPathArg {
    /// The journal file (SQLite) where clicks are made durable before the store has them;
    /// default: next to an SQLite database (`clicktrack.spool.db`), else
    /// `clicktrack-mysql-HOST-PORT-DB.spool.db` in the working directory. One process per
    /// journal (it is locked), on a local disk.
    #[arg(long, visible_alias = "journal-path", env = "CLICKTRACK_SPOOL_PATH")]
    pub spool_path: Option<std::path::PathBuf>,
}

impl SpoolPathArg {
    pub fn path(&self, database: &DatabaseUrl) -> std::path::PathBuf {
        crate::journal::path_for(self.spool_path.as_deref(), database)
    }
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign.
    Add(CampaignAddArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH or mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (MySQL 8,
    /// MariaDB 10.6+). `serve` and `migrate` create a missing SQLite file; the other commands
    /// refuse one (a wrong folder or a typo would otherwise start an empty database).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://clicktrack.db")]
    pub database_url: String,

    /// Most connections to a MySQL/MariaDB database (the writer needs one; SQLite uses one).
    #[arg(long, env = "CLICKTRACK_DB_MAX_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub db_max_connections: u32,
}

impl DbArgs {
    pub fn database(&self) -> Result<DatabaseUrl, ConfigError> {
        DatabaseUrl::parse(&self.database_url).map_err(|e| ConfigError::new("--database-url", e))
    }

    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            max_connections: self.db_max_connections,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CampaignAddArgs {
    /// Campaign id (`cid` in links).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
    /// Campaign name.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Public address (/__track, /healthz, /readyz).
    #[arg(help_heading = "Listeners")]
    #[arg(long, env = "CLICKTRACK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin address: /metrics, /healthz, /readyz, the admin API and /dashboard (`/` lists
    /// them); keep it private (Prometheus scrapes it).
    #[arg(help_heading = "Listeners")]
    #[arg(
        long,
        env = "CLICKTRACK_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    /// Bearer token for the admin API (/api/...) on the admin listener; without it the API is
    /// off. At least 16 characters.
    #[arg(help_heading = "Listeners")]
    #[arg(long, env = "CLICKTRACK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// A proxy or load balancer in front of clicktrack (CIDR, e.g. 10.0.0.0/8): from these
    /// peers X-Forwarded-For gives the client address. Repeatable; env comma-separated.
    #[arg(help_heading = "Listeners")]
    #[arg(
        long = "trusted-proxy",
        env = "CLICKTRACK_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    #[command(flatten, next_help_heading = "Store")]
    pub db: DbArgs,

    /// Keep raw log rows, their per-click tags and rejects this long (90d, 26w, ...), then
    /// delete them (hourly, in small steps); the campaign statistics keep their counts.
    /// Default: keep everything. At least 1h.
    #[arg(help_heading = "Store")]
    #[arg(long, env = "CLICKTRACK_LOG_RETENTION", value_parser = parse_span)]
    pub log_retention: Option<Duration>,

    /// How much of each click's User-Agent is stored: full (the whole header, the seed's
    /// behaviour), family (browser family and OS only, e.g. "LINE / iOS") or none.
    #[arg(help_heading = "Store")]
    #[arg(
        long,
        env = "CLICKTRACK_USER_AGENT_DETAIL",
        value_enum,
        default_value = "full"
    )]
    pub user_agent_detail: UserAgentDetail,

    /// Target host allowed for unsigned links: `example.com` exactly, `*.example.com` its
    /// subdomains. Repeatable; the environment variable is comma-separated.
    #[arg(help_heading = "Redirects and signed links")]
    #[arg(
        long = "allow-host",
        env = "CLICKTRACK_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,

    /// Redirect to any http(s) target. Development only: an open redirect.
    #[arg(help_heading = "Redirects and signed links")]
    #[arg(long, env = "CLICKTRACK_ALLOW_ANY_TARGET")]
    pub allow_any_target: bool,

    #[command(flatten, next_help_heading = "Redirects and signed links")]
    pub signing: SigningArgs,

    /// Refuse (403) links without a valid signature, whatever their target.
    #[arg(help_heading = "Redirects and signed links")]
    #[arg(long, env = "CLICKTRACK_REQUIRE_SIGNATURE")]
    pub require_signature: bool,

    /// When a click is answered: `journal` once it is in the journal on disk (the store has
    /// it moments later), or `store` once the store has committed it.
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_ACK", value_enum, default_value = "journal")]
    pub ack: AckMode,

    /// Longest a request waits for its click to be durable before redirecting anyway
    /// (counted as track_errors_total{operation="ack",error_type="timeout"}), in milliseconds.
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_ACK_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub ack_timeout_ms: u64,

    #[command(flatten, next_help_heading = "Acknowledgement and journal")]
    pub spool: SpoolPathArg,

    /// Largest the journal may grow, in bytes (0: no limit). A full journal is not written:
    /// clicks go to the store directly until the applier makes room.
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_JOURNAL_MAX_BYTES", default_value_t = 1 << 30)]
    pub journal_max_bytes: u64,

    /// Most records made durable in one group commit (journal append, or store transaction
    /// with --ack store).
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_BATCH_MAX_ROWS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max_rows: u32,

    /// With --ack store, longest wait for more records before a transaction is written, in
    /// milliseconds (journal appends never wait: a group is whatever arrived during the
    /// previous append).
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_BATCH_MAX_DELAY_MS", default_value_t = DEFAULT_BATCH_MAX_DELAY_MS, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_max_delay_ms: u64,

    /// Records the in-memory queue holds; when it is full, clicks overflow into the journal
    /// through a second appender (track_queue_full_total).
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_QUEUE_CAPACITY", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub queue_capacity: u32,

    /// With --ack store, longest a batch keeps retrying the database before it goes to the
    /// journal (and its requests are answered), in milliseconds, well under --ack-timeout-ms.
    /// Also the applier's time limit when --apply-timeout-ms is not given (as in earlier
    /// releases).
    #[arg(help_heading = "Acknowledgement and journal")]
    #[arg(long, env = "CLICKTRACK_SPILL_AFTER_MS", default_value_t = DEFAULT_SPILL_AFTER_MS, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub spill_after_ms: u64,

    /// Most journal records the applier writes to the store in one transaction.
    #[arg(help_heading = "Applier (journal to store)")]
    #[arg(long, env = "CLICKTRACK_APPLY_BATCH_MAX_ROWS", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub apply_batch_max_rows: u32,

    /// Under load, longest the applier waits for a full batch before writing what the journal
    /// holds, in milliseconds (an idle applier writes a new click at once).
    #[arg(help_heading = "Applier (journal to store)")]
    #[arg(long, env = "CLICKTRACK_APPLY_MAX_DELAY_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub apply_max_delay_ms: u64,

    /// How much lower than the redirects the applier runs (a nice value, 0-19): during a burst
    /// the redirects get the cores and the journal grows; between bursts the applier has them
    /// (Linux; 0 = the same priority).
    #[arg(help_heading = "Applier (journal to store)")]
    #[arg(long, env = "CLICKTRACK_APPLY_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub apply_nice: i32,

    /// On SIGTERM, how long the applier may keep writing the journal into the store before
    /// the process exits (what is left is applied at the next start), in milliseconds.
    /// How long one applier transaction may try before the database counts as down (its
    /// clicks stay in the journal and are tried again), in milliseconds. Default: the value
    /// of --spill-after-ms.
    #[arg(help_heading = "Applier (journal to store)")]
    #[arg(long, env = "CLICKTRACK_APPLY_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub apply_timeout_ms: Option<u64>,

    #[arg(help_heading = "Applier (journal to store)")]
    #[arg(long, env = "CLICKTRACK_DRAIN_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub drain_timeout_ms: u64,

    /// NATS server URL(s) (repeat the flag or separate with commas for a cluster): the journal
    /// is then a JetStream stream shared by every instance instead of the local file. User and
    /// password or token go in the URL (nats://USER:PASS@HOST:4222) and are never printed.
    #[arg(help_heading = "NATS journal (with --nats-url)")]
    #[arg(long = "nats-url", env = "CLICKTRACK_NATS_URL", value_delimiter = ',')]
    pub nats_urls: Vec<String>,

    /// The JetStream stream of the journal (created if missing, checked if present).
    #[arg(help_heading = "NATS journal (with --nats-url)")]
    #[arg(long, env = "CLICKTRACK_NATS_STREAM", default_value = DEFAULT_NATS_STREAM)]
    pub nats_stream: String,

    /// The subject clicks are published on (the stream's only subject).
    #[arg(help_heading = "NATS journal (with --nats-url)")]
    #[arg(
        long,
        env = "CLICKTRACK_NATS_SUBJECT",
        default_value = DEFAULT_NATS_SUBJECT
    )]
    pub nats_subject: String,

    /// Replicas of a stream clicktrack creates (1 on one server; 3 in a production cluster).
    #[arg(help_heading = "NATS journal (with --nats-url)")]
    #[arg(long, env = "CLICKTRACK_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,

    /// How long a fetched click may wait unacked before the stream gives it to another
    /// instance (one that died while applying it), in milliseconds.
    #[arg(help_heading = "NATS journal (with --nats-url)")]
    #[arg(long, env = "CLICKTRACK_NATS_ACK_WAIT_MS", default_value_t = DEFAULT_NATS_ACK_WAIT_MS, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub nats_ack_wait_ms: u64,

    /// The NATS servers sync every write to disk before they acknowledge it
    /// (`sync_interval: always`); clicktrack cannot check this itself and warns at start
    /// until told so.
    #[arg(help_heading = "NATS journal (with --nats-url)")]
    #[arg(long, env = "CLICKTRACK_NATS_SERVER_SYNCS")]
    pub nats_server_syncs: bool,

    /// A repeat of the same click within this many milliseconds of the first is redirected
    /// but not recorded; 0 turns de-duplication off.
    #[arg(help_heading = "De-duplication")]
    #[arg(long, env = "CLICKTRACK_DEDUP_WINDOW_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub dedup_window_ms: u64,

    /// Most click keys the in-memory de-duplication cache holds (about 100 bytes each).
    #[arg(help_heading = "De-duplication")]
    #[arg(long, env = "CLICKTRACK_DEDUP_CACHE_ENTRIES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub dedup_cache_entries: u64,

    #[command(flatten, next_help_heading = "De-duplication")]
    pub redis: RedisArgs,

    /// Longest wait for Redis per click before the local cache decides alone, in ms.
    #[arg(help_heading = "De-duplication")]
    #[arg(long, env = "CLICKTRACK_REDIS_TIMEOUT_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
}

/// Shortest accepted --admin-token.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// A flag whose value clap accepted but clicktrack cannot use.
#[derive(Debug)]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
    /// The flag was needed and not given (rather than given a bad value).
    pub missing: bool,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missing {
            write!(f, "{} is needed: {}", named(self.flag), self.message)
        } else {
            write!(
                f,
                "invalid value for {}: {}",
                named(self.flag),
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// A flag as a message names it: with its environment variable, since a value set there
/// (`CLICKTRACK_ADMIN_TOKEN=short`) was never typed as the flag.
fn named(flag: &str) -> String {
    fn env_of(command: &clap::Command, long: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .or_else(|| command.get_subcommands().find_map(|c| env_of(c, long)))
    }
    match flag
        .strip_prefix("--")
        .and_then(|long| env_of(&<Cli as clap::CommandFactory>::command(), long))
    {
        Some(env) => format!("{flag} ({env})"),
        None => flag.to_owned(),
    }
}

impl ConfigError {
    pub fn new(flag: &'static str, error: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            flag,
            message: error.to_string(),
            missing: false,
        }
    }

    /// `flag` was not given and this command cannot do without it.
    pub fn missing(flag: &'static str, why: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            missing: true,
            ..ConfigError::new(flag, why)
        }
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub database: DatabaseUrl,
    pub connect: ConnectOptions,
    pub journal_path: std::path::PathBuf,
    pub journal_max_bytes: u64,
    /// `Some`: the journal is this JetStream stream, not the local file.
    pub nats: Option<NatsSettings>,
    pub nats_server_syncs: bool,
    pub drain_timeout: Duration,
    /// `--log-retention`: `None` keeps everything.
    pub log_retention: Option<Duration>,
    pub apply_nice: i32,
    pub policy: RedirectPolicy,
    pub pipeline: PipelineSettings,
    pub keyring: Keyring,
    pub require_signature: bool,
    pub admin_token: Option<String>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub dedup: DedupSettings,
    pub user_agent_detail: UserAgentDetail,
    /// Flags given that do nothing in the chosen mode: logged at start as warnings.
    pub no_effect: Vec<String>,
}

impl ServeArgs {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let policy = RedirectPolicy::new(&self.allow_hosts, self.allow_any_target)
            .map_err(|e| ConfigError::new("--allow-host", e))?;
        let (public, admin) = (self.listen, self.admin_listen);
        if public.port() != 0
            && public.port() == admin.port()
            && (public.ip() == admin.ip()
                || public.ip().is_unspecified()
                || admin.ip().is_unspecified())
        {
            return Err(ConfigError::new(
                "--admin-listen",
                format!(
                    "{admin} overlaps --listen {public}: the public and the admin listener \
                     need ports of their own (e.g. 8080 and 9090)"
                ),
            ));
        }
        let database = self.db.database()?;
        if self.spill_after_ms >= self.ack_timeout_ms {
            return Err(ConfigError::new(
                "--spill-after-ms",
                format!(
                    "{} ms is not below --ack-timeout-ms ({} ms): requests would stop waiting \
                     before their clicks reach the journal",
                    self.spill_after_ms, self.ack_timeout_ms
                ),
            ));
        }
        if self
            .log_retention
            .is_some_and(|r| r < Duration::from_secs(3_600))
        {
            return Err(ConfigError::new(
                "--log-retention",
                "at least 1h: the statistics read the current hour from the raw log",
            ));
        }
        let keyring = self.signing.keyring()?;
        if self.require_signature && keyring.is_empty() {
            return Err(ConfigError::new(
                "--require-signature",
                "no --signing-key is configured: every link would be refused",
            ));
        }
        if let Some(token) = &self.admin_token
            && token.chars().count() < MIN_ADMIN_TOKEN_CHARS
        {
            return Err(ConfigError::new(
                "--admin-token",
                format!("at least {MIN_ADMIN_TOKEN_CHARS} characters"),
            ));
        }
        let redis = self
            .redis
            .settings(Duration::from_millis(self.redis_timeout_ms))?;
        let nats = if self.nats_urls.is_empty() {
            None
        } else {
            for url in &self.nats_urls {
                let parsed = url::Url::parse(url).map_err(|e| {
                    ConfigError::new(
                        "--nats-url",
                        format!("not a URL ({e}); e.g. nats://127.0.0.1:4222"),
                    )
                })?;
                if !matches!(parsed.scheme(), "nats" | "tls") || parsed.host_str().is_none() {
                    return Err(ConfigError::new(
                        "--nats-url",
                        "must be nats://HOST[:PORT] or tls://HOST[:PORT]",
                    ));
                }
            }
            Some(NatsSettings {
                urls: self.nats_urls.clone(),
                stream: self.nats_stream.clone(),
                subject: self.nats_subject.clone(),
                replicas: usize::from(self.nats_replicas),
                ack_wait: Duration::from_millis(self.nats_ack_wait_ms),
                max_bytes: self.journal_max_bytes,
            })
        };
        Ok(Settings {
            listen: self.listen,
            admin_listen: self.admin_listen,
            journal_path: self.spool.path(&database),
            journal_max_bytes: self.journal_max_bytes,
            nats,
            nats_server_syncs: self.nats_server_syncs,
            apply_nice: self.apply_nice,
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            log_retention: self.log_retention,
            database,
            connect: self.db.connect_options(),
            policy,
            pipeline: PipelineSettings {
                mode: self.ack,
                batch: BatchSettings {
                    max_rows: self.batch_max_rows as usize,
                    max_delay: Duration::from_millis(self.batch_max_delay_ms),
                    queue_capacity: self.queue_capacity as usize,
                    ack_timeout: Duration::from_millis(self.ack_timeout_ms),
                    spill_after: Duration::from_millis(self.spill_after_ms),
                },
                apply_max_rows: self.apply_batch_max_rows as usize,
                apply_max_delay: Duration::from_millis(self.apply_max_delay_ms),
                apply_timeout: Duration::from_millis(
                    self.apply_timeout_ms.unwrap_or(self.spill_after_ms),
                ),
            },
            keyring,
            require_signature: self.require_signature,
            admin_token: self.admin_token.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            user_agent_detail: self.user_agent_detail,
            dedup: DedupSettings {
                window: Duration::from_millis(self.dedup_window_ms),
                cache_entries: self.dedup_cache_entries,
                redis,
            },
            no_effect: self.flags_without_effect(),
        })
    }

    /// Flags set away from their defaults that the chosen mode ignores: a warning each at
    /// start (not an error: a configuration that worked before keeps starting).
    fn flags_without_effect(&self) -> Vec<String> {
        let mut ignored = Vec::new();
        if self.ack == AckMode::Journal {
            if self.batch_max_delay_ms != DEFAULT_BATCH_MAX_DELAY_MS {
                ignored.push(
                    "--batch-max-delay-ms has no effect with --ack journal (a journal append \
                     never waits for more clicks)"
                        .to_owned(),
                );
            }
            if self.spill_after_ms != DEFAULT_SPILL_AFTER_MS {
                ignored.push(match self.apply_timeout_ms {
                    Some(_) => "--spill-after-ms has no effect with --ack journal and \
                                --apply-timeout-ms"
                        .to_owned(),
                    None => "--spill-after-ms sets only the applier's time limit with --ack \
                             journal: use --apply-timeout-ms for that"
                        .to_owned(),
                });
            }
        }
        if self.nats_urls.is_empty() {
            let nats_flags = [
                ("--nats-stream", self.nats_stream != DEFAULT_NATS_STREAM),
                ("--nats-subject", self.nats_subject != DEFAULT_NATS_SUBJECT),
                ("--nats-replicas", self.nats_replicas != 1),
                (
                    "--nats-ack-wait-ms",
                    self.nats_ack_wait_ms != DEFAULT_NATS_ACK_WAIT_MS,
                ),
                ("--nats-server-syncs", self.nats_server_syncs),
            ];
            for (flag, set) in nats_flags {
                if set {
                    ignored.push(format!(
                        "{flag} has no effect without --nats-url (the journal is the local file)"
                    ));
                }
            }
        }
        if self.redis.redis_url.is_none() && self.redis.redis_key_prefix != DEFAULT_REDIS_PREFIX {
            ignored.push("--redis-key-prefix has no effect without --redis-url".to_owned());
        }
        ignored
    }
}

/// Defaults that `flags_without_effect` compares with (and the help shows).
const DEFAULT_BATCH_MAX_DELAY_MS: u64 = 2;
const DEFAULT_SPILL_AFTER_MS: u64 = 1_000;
const DEFAULT_NATS_STREAM: &str = "clicktrack";
const DEFAULT_NATS_SUBJECT: &str = "clicktrack.clicks";
const DEFAULT_NATS_ACK_WAIT_MS: u64 = 30_000;
const DEFAULT_REDIS_PREFIX: &str = "clicktrack:dedup:";

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["clicktrack", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(s) => Ok(s),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_sensible() {
        let s = serve(&[])
            .expect("defaults parse")
            .settings()
            .expect("defaults are valid");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.policy.refuses_everything());
        assert!(s.pipeline.batch.max_rows >= 100);
        assert_eq!(s.pipeline.mode, AckMode::Journal);
        assert!(s.pipeline.apply_max_rows >= 1_000);
        let store = serve(&["--ack", "store", "--journal-path", "j.db"])
            .expect("parses")
            .settings()
            .expect("valid");
        assert_eq!(store.pipeline.mode, AckMode::Store);
        assert_eq!(store.journal_path, std::path::Path::new("j.db"));
        assert!(serve(&["--ack", "never"]).is_err());
    }

    #[test]
    fn repeatable_hosts_and_boolean_flag() {
        let s = serve(&[
            "--allow-host",
            "a.com",
            "--allow-host",
            "*.b.com,c.com",
            "--allow-any-target",
        ])
        .expect("parses");
        assert_eq!(s.allow_hosts, ["a.com", "*.b.com", "c.com"]);
        assert!(s.allow_any_target);
    }

    #[test]
    fn spans_take_a_unit() {
        assert_eq!(parse_span("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_span("90s"), Ok(Duration::from_secs(90)));
        for bad in ["30", "d", "0d", "3x", "-1d", "1.5h", "99999999999w"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_that_do_nothing_in_the_chosen_mode_are_named() {
        let quiet = serve(&[]).expect("parse").settings().expect("valid");
        assert!(quiet.no_effect.is_empty(), "{:?}", quiet.no_effect);
        let s = serve(&[
            "--batch-max-delay-ms",
            "50",
            "--spill-after-ms",
            "300",
            "--nats-stream",
            "other",
            "--nats-server-syncs",
            "--redis-key-prefix",
            "x:",
        ])
        .expect("parse")
        .settings()
        .expect("valid");
        let said = s.no_effect.join("\n");
        for flag in [
            "--batch-max-delay-ms",
            "--spill-after-ms sets only the applier's time limit",
            "--nats-stream",
            "--nats-server-syncs",
            "--redis-key-prefix",
        ] {
            assert!(said.contains(flag), "{flag}: {said}");
        }
        // As in earlier releases, --spill-after-ms is the applier's limit unless it has its own.
        assert_eq!(s.pipeline.apply_timeout, Duration::from_millis(300));
        let own = serve(&["--spill-after-ms", "300", "--apply-timeout-ms", "2500"])
            .expect("parse")
            .settings()
            .expect("valid");
        assert_eq!(own.pipeline.apply_timeout, Duration::from_millis(2500));
        // With --ack store both matter.
        let store = serve(&[
            "--ack",
            "store",
            "--batch-max-delay-ms",
            "50",
            "--spill-after-ms",
            "300",
        ])
        .expect("parse")
        .settings()
        .expect("valid");
        assert!(store.no_effect.is_empty(), "{:?}", store.no_effect);
    }

    #[test]
    fn signing_flags_are_checked_without_echoing_secrets() {
        let e = serve(&["--signing-key", "k1:tooshort"])
            .expect("parses")
            .settings()
            .expect_err("short secret");
        assert_eq!(e.flag, "--signing-key");
        assert!(!e.to_string().contains("tooshort"), "{e}");
        let e = serve(&["--require-signature"])
            .expect("parses")
            .settings()
            .expect_err("nothing to verify with");
        assert_eq!(e.flag, "--require-signature");
        let e = serve(&["--admin-token", "short"])
            .expect("parses")
            .settings()
            .expect_err("weak token");
        assert_eq!(e.flag, "--admin-token");
        let e = serve(&["--redis-url", "http://x"])
            .expect("parses")
            .settings()
            .expect_err("not redis");
        assert_eq!(e.flag, "--redis-url");
        let ok = serve(&[
            "--signing-key",
            "new:0123456789abcdef",
            "--signing-key",
            "old:fedcba9876543210",
            "--require-signature",
            "--trusted-proxy",
            "10.0.0.0/8,fd00::/8",
        ])
        .expect("parses")
        .settings()
        .expect("valid");
        assert_eq!(ok.keyring.signing_key().map(|k| k.id()), Some("new"));
        assert_eq!(ok.trusted_proxies.len(), 2);
        assert!(serve(&["--trusted-proxy", "10.0.0.0/33"]).is_err());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = serve(&["--batch-max-rows", "0"]).expect_err("0 rows");
        assert!(e.to_string().contains("--batch-max-rows"), "{e}");
        let e = serve(&["--allow-host", "http://x/"])
            .expect("parses")
            .settings()
            .expect_err("bad host");
        assert_eq!(e.flag, "--allow-host");
        let e = serve(&["--database-url", "oracle://x"])
            .expect("parses")
            .settings()
            .expect_err("bad url");
        assert_eq!(e.flag, "--database-url");
    }
}
