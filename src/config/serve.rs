//! `clicktrack serve`'s flags, in the groups `--help` shows them in, each group checking its
//! own values; then put together into `Settings`. A flag set away from its default that the
//! chosen mode ignores is named in a warning at start (not an error: a configuration that
//! worked before keeps starting).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{
    ConfigError, DEFAULT_REDIS_PREFIX, DbArgs, RedisArgs, SigningArgs, SpoolPathArg, parse_lag,
    parse_span,
};
use crate::dedup::DedupSettings;
use crate::domain::RedirectPolicy;
use crate::domain::signature::Keyring;
use crate::domain::user_agent::UserAgentDetail;
use crate::journal::NatsSettings;
use crate::pipeline::{AckMode, BatchSettings, PipelineSettings};
use crate::store::{ConnectOptions, DatabaseUrl};

/// Shortest accepted --admin-token.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// `clicktrack serve`: its flags in groups, each group its own struct that checks itself
/// (`--help` shows them under these headings).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listeners: ListenerArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub redirects: RedirectArgs,
    #[command(flatten)]
    pub journal: JournalArgs,
    #[command(flatten)]
    pub applier: ApplierArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub dedup: DedupArgs,
}

/// The two listeners and who may use the admin one.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listeners")]
pub struct ListenerArgs {
    /// Public address (/__track, /healthz, /readyz).
    #[arg(long, env = "CLICKTRACK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin address: /metrics, /healthz, /readyz, the admin API and /dashboard (`/` lists
    /// them); keep it private (Prometheus scrapes it).
    #[arg(
        long,
        env = "CLICKTRACK_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    /// Bearer token for the admin API (/api/...) on the admin listener; without it the API is
    /// off. At least 16 characters.
    #[arg(long, env = "CLICKTRACK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// A proxy or load balancer in front of clicktrack (CIDR, e.g. 10.0.0.0/8): from these
    /// peers X-Forwarded-For gives the client address. Repeatable; env comma-separated.
    #[arg(
        long = "trusted-proxy",
        env = "CLICKTRACK_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The database, and what is kept in it for how long.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Keep raw log rows, their per-click tags and rejects this long (90d, 26w, ...), then
    /// delete them (hourly, in small steps); the campaign statistics keep their counts.
    /// Default: keep everything. At least 1h.
    #[arg(long, env = "CLICKTRACK_LOG_RETENTION", value_parser = parse_span)]
    pub log_retention: Option<Duration>,

    /// How much of each click's User-Agent is stored: full (the whole header, the seed's
    /// behaviour), family (browser family and OS only, e.g. "LINE / iOS") or none.
    #[arg(
        long,
        env = "CLICKTRACK_USER_AGENT_DETAIL",
        value_enum,
        default_value = "full"
    )]
    pub user_agent_detail: UserAgentDetail,
}

/// Where links may send a browser, and how signed links are checked.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Redirects and signed links")]
pub struct RedirectArgs {
    /// Target host allowed for unsigned links: `example.com` exactly, `*.example.com` its
    /// subdomains. Repeatable; the environment variable is comma-separated.
    #[arg(
        long = "allow-host",
        env = "CLICKTRACK_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,

    /// Redirect to any http(s) target. Development only: an open redirect.
    #[arg(long, env = "CLICKTRACK_ALLOW_ANY_TARGET")]
    pub allow_any_target: bool,

    #[command(flatten)]
    pub signing: SigningArgs,

    /// Refuse (403) links without a valid signature, whatever their target.
    #[arg(long, env = "CLICKTRACK_REQUIRE_SIGNATURE")]
    pub require_signature: bool,
}

/// When a click is answered, and the journal that makes it durable first.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Acknowledgement and journal")]
pub struct JournalArgs {
    /// When a click is answered: `journal` once it is in the journal on disk (the store has
    /// it moments later), or `store` once the store has committed it.
    #[arg(long, env = "CLICKTRACK_ACK", value_enum, default_value = "journal")]
    pub ack: AckMode,

    /// Longest a request waits for its click to be durable before redirecting anyway
    /// (counted as track_errors_total{operation="ack",error_type="timeout"}), in milliseconds.
    #[arg(long, env = "CLICKTRACK_ACK_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub ack_timeout_ms: u64,

    #[command(flatten)]
    pub spool: SpoolPathArg,

    /// Largest the journal may grow, in bytes (0: no limit). A full journal is not written:
    /// clicks go to the store directly until the applier makes room.
    #[arg(long, env = "CLICKTRACK_JOURNAL_MAX_BYTES", default_value_t = 1 << 30)]
    pub journal_max_bytes: u64,

    /// Most records made durable in one group commit (journal append, or store transaction
    /// with --ack store).
    #[arg(long, env = "CLICKTRACK_BATCH_MAX_ROWS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max_rows: u32,

    /// With --ack store, longest wait for more records before a transaction is written, in
    /// milliseconds (journal appends never wait: a group is whatever arrived during the
    /// previous append).
    #[arg(long, env = "CLICKTRACK_BATCH_MAX_DELAY_MS", default_value_t = DEFAULT_BATCH_MAX_DELAY_MS, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_max_delay_ms: u64,

    /// Records the in-memory queue holds; when it is full, clicks overflow into the journal
    /// through a second appender (track_queue_full_total).
    #[arg(long, env = "CLICKTRACK_QUEUE_CAPACITY", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub queue_capacity: u32,

    /// With --ack store, longest a batch keeps retrying the database before it goes to the
    /// journal (and its requests are answered), in milliseconds, well under --ack-timeout-ms.
    /// Also the applier's time limit when --apply-timeout-ms is not given (as in earlier
    /// releases).
    #[arg(long, env = "CLICKTRACK_SPILL_AFTER_MS", default_value_t = DEFAULT_SPILL_AFTER_MS, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub spill_after_ms: u64,
}

/// How the journal is written into the store.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Applier (journal to store)")]
pub struct ApplierArgs {
    /// Most journal records the applier writes to the store in one transaction.
    #[arg(long, env = "CLICKTRACK_APPLY_BATCH_MAX_ROWS", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub apply_batch_max_rows: u32,

    /// Under load, longest the applier waits for a full batch before writing what the journal
    /// holds, in milliseconds (an idle applier writes a new click at once).
    #[arg(long, env = "CLICKTRACK_APPLY_MAX_DELAY_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub apply_max_delay_ms: u64,

    /// How much lower than the redirects the applier runs (a nice value, 0-19): during a burst
    /// the redirects get the cores and the journal grows; between bursts the applier has them
    /// (Linux; 0 = the same priority). The backfill, --log-retention and erasures run at it
    /// too.
    #[arg(long, env = "CLICKTRACK_APPLY_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub apply_nice: i32,

    /// How long one applier transaction may try before the database counts as down (its
    /// clicks stay in the journal and are tried again), in milliseconds. Default: the value
    /// of --spill-after-ms.
    #[arg(long, env = "CLICKTRACK_APPLY_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub apply_timeout_ms: Option<u64>,

    /// While the CPU is saturated (Linux CPU pressure), the applier steps aside for the
    /// redirects and the journal holds the clicks, until the oldest waiting click is this old
    /// (e.g. 30s, 2m); then it applies whatever the load. 0 or off: never step aside.
    #[arg(long, env = "CLICKTRACK_MAX_APPLY_LAG", default_value = "30s", value_parser = parse_lag)]
    pub max_apply_lag: Duration,

    /// Where the CPU pressure is read (tests point it at a file of their own).
    #[arg(long, env = "CLICKTRACK_CPU_PRESSURE_PATH", default_value = crate::pipeline::PSI_CPU, hide = true)]
    pub cpu_pressure_path: std::path::PathBuf,

    /// On SIGTERM, how long the applier may keep writing the journal into the store before
    /// the process exits (what is left is applied at the next start), in milliseconds.
    #[arg(long, env = "CLICKTRACK_DRAIN_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub drain_timeout_ms: u64,
}

/// The JetStream stream that replaces the local journal (`--nats-url`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "NATS journal (with --nats-url)")]
pub struct NatsArgs {
    /// NATS server URL(s) (repeat the flag or separate with commas for a cluster): the journal
    /// is then a JetStream stream shared by every instance instead of the local file. User and
    /// password or token go in the URL (nats://USER:PASS@HOST:4222) and are never printed.
    #[arg(long = "nats-url", env = "CLICKTRACK_NATS_URL", value_delimiter = ',')]
    pub nats_urls: Vec<String>,

    /// The JetStream stream of the journal (created if missing, checked if present).
    #[arg(long, env = "CLICKTRACK_NATS_STREAM", default_value = DEFAULT_NATS_STREAM)]
    pub nats_stream: String,

    /// The subject clicks are published on (the stream's only subject).
    #[arg(
        long,
        env = "CLICKTRACK_NATS_SUBJECT",
        default_value = DEFAULT_NATS_SUBJECT
    )]
    pub nats_subject: String,

    /// Replicas of a stream clicktrack creates (1 on one server; 3 in a production cluster).
    #[arg(long, env = "CLICKTRACK_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,

    /// How long a fetched click may wait unacked before the stream gives it to another
    /// instance (one that died while applying it), in milliseconds.
    #[arg(long, env = "CLICKTRACK_NATS_ACK_WAIT_MS", default_value_t = DEFAULT_NATS_ACK_WAIT_MS, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub nats_ack_wait_ms: u64,

    /// The NATS servers sync every write to disk before they acknowledge it
    /// (`sync_interval: always`); clicktrack cannot check this itself and warns at start
    /// until told so.
    #[arg(long, env = "CLICKTRACK_NATS_SERVER_SYNCS")]
    pub nats_server_syncs: bool,
}

/// Repeats of a click within a window: recorded once.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "De-duplication")]
pub struct DedupArgs {
    /// A repeat of the same click within this many milliseconds of the first is redirected
    /// but not recorded; 0 turns de-duplication off.
    #[arg(long, env = "CLICKTRACK_DEDUP_WINDOW_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub dedup_window_ms: u64,

    /// Most click keys the in-memory de-duplication cache holds (about 100 bytes each).
    #[arg(long, env = "CLICKTRACK_DEDUP_CACHE_ENTRIES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub dedup_cache_entries: u64,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Longest wait for Redis per click before the local cache decides alone, in ms.
    #[arg(long, env = "CLICKTRACK_REDIS_TIMEOUT_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
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
    /// Every group checked, then put together: what `serve` runs with.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (listen, admin_listen, admin_token) = self.listeners.checked()?;
        let database = self.store.db.database()?;
        let (policy, keyring) = self.redirects.checked()?;
        let batch = self.journal.checked()?;
        let log_retention = self.store.checked_retention()?;
        let nats = self.nats.checked(self.journal.journal_max_bytes)?;
        let dedup = self.dedup.checked()?;
        Ok(Settings {
            listen,
            admin_listen,
            journal_path: self.journal.spool.path(&database),
            journal_max_bytes: self.journal.journal_max_bytes,
            nats,
            nats_server_syncs: self.nats.nats_server_syncs,
            apply_nice: self.applier.apply_nice,
            drain_timeout: Duration::from_millis(self.applier.drain_timeout_ms),
            log_retention,
            connect: self.store.db.connect_options(),
            database,
            policy,
            pipeline: PipelineSettings {
                mode: self.journal.ack,
                batch,
                apply_max_rows: self.applier.apply_batch_max_rows as usize,
                apply_max_delay: Duration::from_millis(self.applier.apply_max_delay_ms),
                apply_timeout: Duration::from_millis(
                    self.applier
                        .apply_timeout_ms
                        .unwrap_or(self.journal.spill_after_ms),
                ),
                max_apply_lag: self.applier.max_apply_lag,
                cpu_pressure: self.applier.cpu_pressure_path.clone(),
            },
            keyring,
            require_signature: self.redirects.require_signature,
            admin_token,
            trusted_proxies: self.listeners.trusted_proxies.clone(),
            user_agent_detail: self.store.user_agent_detail,
            dedup,
            no_effect: [
                self.journal
                    .ignored(self.applier.apply_timeout_ms.is_some()),
                self.nats.ignored(),
                self.dedup.ignored(),
            ]
            .concat(),
        })
    }
}

impl ListenerArgs {
    fn checked(&self) -> Result<(SocketAddr, SocketAddr, Option<String>), ConfigError> {
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
        if let Some(token) = &self.admin_token
            && token.chars().count() < MIN_ADMIN_TOKEN_CHARS
        {
            return Err(ConfigError::new(
                "--admin-token",
                format!("at least {MIN_ADMIN_TOKEN_CHARS} characters"),
            ));
        }
        Ok((public, admin, self.admin_token.clone()))
    }
}

impl StoreArgs {
    fn checked_retention(&self) -> Result<Option<Duration>, ConfigError> {
        if self
            .log_retention
            .is_some_and(|r| r < Duration::from_secs(3_600))
        {
            return Err(ConfigError::new(
                "--log-retention",
                "at least 1h: the statistics read the current hour from the raw log",
            ));
        }
        Ok(self.log_retention)
    }
}

impl RedirectArgs {
    fn checked(&self) -> Result<(RedirectPolicy, Keyring), ConfigError> {
        let policy = RedirectPolicy::new(&self.allow_hosts, self.allow_any_target)
            .map_err(|e| ConfigError::new("--allow-host", e))?;
        let keyring = self.signing.keyring()?;
        if self.require_signature && keyring.is_empty() {
            return Err(ConfigError::new(
                "--require-signature",
                "no --signing-key is configured: every link would be refused",
            ));
        }
        Ok((policy, keyring))
    }
}

impl JournalArgs {
    fn checked(&self) -> Result<BatchSettings, ConfigError> {
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
        Ok(BatchSettings {
            max_rows: self.batch_max_rows as usize,
            max_delay: Duration::from_millis(self.batch_max_delay_ms),
            queue_capacity: self.queue_capacity as usize,
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            spill_after: Duration::from_millis(self.spill_after_ms),
        })
    }

    /// What `--ack journal` ignores. `apply_timeout_given`: --spill-after-ms then sets nothing.
    fn ignored(&self, apply_timeout_given: bool) -> Vec<String> {
        let mut ignored = Vec::new();
        if self.ack != AckMode::Journal {
            return ignored;
        }
        if self.batch_max_delay_ms != DEFAULT_BATCH_MAX_DELAY_MS {
            ignored.push(
                "--batch-max-delay-ms has no effect with --ack journal (a journal append never \
                 waits for more clicks)"
                    .to_owned(),
            );
        }
        if self.spill_after_ms != DEFAULT_SPILL_AFTER_MS {
            ignored.push(if apply_timeout_given {
                "--spill-after-ms has no effect with --ack journal and --apply-timeout-ms"
                    .to_owned()
            } else {
                "--spill-after-ms sets only the applier's time limit with --ack journal: use \
                 --apply-timeout-ms for that"
                    .to_owned()
            });
        }
        ignored
    }
}

impl NatsArgs {
    /// The stream's settings, or `None` for the local journal; `max_bytes` is
    /// --journal-max-bytes, which the stream takes as its size limit.
    fn checked(&self, max_bytes: u64) -> Result<Option<NatsSettings>, ConfigError> {
        if self.nats_urls.is_empty() {
            return Ok(None);
        }
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
        Ok(Some(NatsSettings {
            urls: self.nats_urls.clone(),
            stream: self.nats_stream.clone(),
            subject: self.nats_subject.clone(),
            replicas: usize::from(self.nats_replicas),
            ack_wait: Duration::from_millis(self.nats_ack_wait_ms),
            max_bytes,
        }))
    }

    /// Every `--nats-*` flag set without `--nats-url`.
    fn ignored(&self) -> Vec<String> {
        if !self.nats_urls.is_empty() {
            return Vec::new();
        }
        [
            ("--nats-stream", self.nats_stream != DEFAULT_NATS_STREAM),
            ("--nats-subject", self.nats_subject != DEFAULT_NATS_SUBJECT),
            ("--nats-replicas", self.nats_replicas != 1),
            (
                "--nats-ack-wait-ms",
                self.nats_ack_wait_ms != DEFAULT_NATS_ACK_WAIT_MS,
            ),
            ("--nats-server-syncs", self.nats_server_syncs),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(flag, _)| {
            format!("{flag} has no effect without --nats-url (the journal is the local file)")
        })
        .collect()
    }
}

impl DedupArgs {
    fn checked(&self) -> Result<DedupSettings, ConfigError> {
        Ok(DedupSettings {
            window: Duration::from_millis(self.dedup_window_ms),
            cache_entries: self.dedup_cache_entries,
            redis: self
                .redis
                .settings(Duration::from_millis(self.redis_timeout_ms))?,
        })
    }

    fn ignored(&self) -> Vec<String> {
        if self.redis.redis_url.is_none() && self.redis.redis_key_prefix != DEFAULT_REDIS_PREFIX {
            vec!["--redis-key-prefix has no effect without --redis-url".to_owned()]
        } else {
            Vec::new()
        }
    }
}

/// Defaults the `ignored` checks compare with (and the help shows).
const DEFAULT_BATCH_MAX_DELAY_MS: u64 = 2;
const DEFAULT_SPILL_AFTER_MS: u64 = 1_000;
const DEFAULT_NATS_STREAM: &str = "clicktrack";
const DEFAULT_NATS_SUBJECT: &str = "clicktrack.clicks";
const DEFAULT_NATS_ACK_WAIT_MS: u64 = 30_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

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
        assert_eq!(s.redirects.allow_hosts, ["a.com", "*.b.com", "c.com"]);
        assert!(s.redirects.allow_any_target);
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
