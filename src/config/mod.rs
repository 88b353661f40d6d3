//! The command line: every flag also an environment variable, validated into `Settings`.
//!
//! Clap rejects malformed values itself (exit code 2, naming the flag); what clap cannot check
//! (host rules, database URLs) is checked here and reported as a `ConfigError` naming the flag,
//! which `main` also turns into exit code 2.

mod serve;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use serve::{
    ApplierArgs, DedupArgs, JournalArgs, ListenerArgs, NatsArgs, RedirectArgs, ServeArgs, Settings,
    StoreArgs,
};

use crate::dedup::RedisSettings;
use crate::domain::signature::{Keyring, SigningKey};
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

/// Prefix of clicktrack's Redis keys unless --redis-key-prefix says otherwise.
const DEFAULT_REDIS_PREFIX: &str = "clicktrack:dedup:";

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
    /// How much lower than the redirects of a `serve` on the same machine the purge runs, as
    /// a Linux nice value 0-19 (`0`: normal priority).
    #[arg(long, env = "CLICKTRACK_PURGE_NICE", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub nice: i32,
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

/// `--max-apply-lag`: a span (`parse_span`), or 0 / off for none.
pub fn parse_lag(value: &str) -> Result<Duration, String> {
    match value {
        "0" | "off" => Ok(Duration::ZERO),
        span => parse_span(span),
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
    /// The journal (a directory of segment files) where clicks are made durable before the
    /// store has them (an earlier release's SQLite journal file here is converted);
    /// default: next to an SQLite database (`clicktrack.spool.db`), else
    /// `clicktrack-{mysql,postgres}-HOST-PORT-DB.spool.db` in the working directory. One process per
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
    /// Database URL: sqlite://PATH, mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (MySQL 8,
    /// MariaDB 10.6+) or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (PostgreSQL 13+).
    /// `serve` and `migrate` create a missing SQLite file; the other commands
    /// refuse one (a wrong folder or a typo would otherwise start an empty database).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://clicktrack.db")]
    pub database_url: String,

    /// Most connections to a MySQL/MariaDB or PostgreSQL database (the writer needs one;
    /// SQLite uses one).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_take_a_unit() {
        assert_eq!(parse_span("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_span("90s"), Ok(Duration::from_secs(90)));
        for bad in ["30", "d", "0d", "3x", "-1d", "1.5h", "99999999999w"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
