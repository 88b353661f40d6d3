//! The command line: every flag also an environment variable, validated into `Settings`.
//!
//! Clap rejects malformed values itself (exit code 2, naming the flag); what clap cannot check
//! (host rules, database URLs) is checked here and reported as a `ConfigError` naming the flag,
//! which `main` also turns into exit code 2.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::RedirectPolicy;
use crate::pipeline::BatchSettings;
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
pub enum Command {
    /// Run the service (migrates the schema first).
    Serve(ServeArgs),
    /// Create or upgrade the schema, then exit.
    Migrate(DbArgs),
    /// Manage campaigns (production campaigns come from the marketing app).
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Inspect or drain the spool (for operators, after an incident).
    #[command(subcommand)]
    Spool(SpoolCommand),
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Print how many clicks wait in the spool and how old the oldest is.
    Status(SpoolArgs),
    /// Replay the spool into --database-url until it is empty, then exit.
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
    /// The spool file (SQLite) for clicks the database cannot take right now; default: next to
    /// an SQLite database (`clicktrack.spool.db`), else `clicktrack.spool.db` in the working
    /// directory. Give every instance its own.
    #[arg(long, env = "CLICKTRACK_SPOOL_PATH")]
    pub spool_path: Option<std::path::PathBuf>,
}

impl SpoolPathArg {
    pub fn path(&self, database: &DatabaseUrl) -> std::path::PathBuf {
        self.spool_path
            .clone()
            .unwrap_or_else(|| crate::spool::default_path(database))
    }
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign.
    Add(CampaignAddArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH (file created if missing) or mysql://USER[:PASS]@HOST/DB.
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
    #[arg(long, env = "CLICKTRACK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin address (/metrics, /healthz, /readyz); keep it off the public network.
    #[arg(
        long,
        env = "CLICKTRACK_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub spool: SpoolPathArg,

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

    /// Most records written in one transaction.
    #[arg(long, env = "CLICKTRACK_BATCH_MAX_ROWS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max_rows: u32,

    /// Longest wait for more records before a batch is written, in milliseconds.
    #[arg(long, env = "CLICKTRACK_BATCH_MAX_DELAY_MS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_max_delay_ms: u64,

    /// Records the in-memory queue holds before requests wait for room.
    #[arg(long, env = "CLICKTRACK_QUEUE_CAPACITY", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub queue_capacity: u32,

    /// Longest a request waits for its click to be durable before redirecting anyway
    /// (counted as track_errors_total{operation="ack",error_type="timeout"}), in milliseconds.
    #[arg(long, env = "CLICKTRACK_ACK_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub ack_timeout_ms: u64,

    /// Longest a batch keeps retrying the database before it goes to the spool (and its
    /// requests are answered), in milliseconds. Keep it well under --ack-timeout-ms.
    #[arg(long, env = "CLICKTRACK_SPILL_AFTER_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub spill_after_ms: u64,
}

/// A flag whose value clap accepted but clicktrack cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(flag: &'static str, error: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            flag,
            message: error.to_string(),
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
    pub spool_path: std::path::PathBuf,
    pub policy: RedirectPolicy,
    pub batch: BatchSettings,
}

impl ServeArgs {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let policy = RedirectPolicy::new(&self.allow_hosts, self.allow_any_target)
            .map_err(|e| ConfigError::new("--allow-host", e))?;
        let database = self.db.database()?;
        if self.spill_after_ms >= self.ack_timeout_ms {
            return Err(ConfigError::new(
                "--spill-after-ms",
                format!(
                    "{} ms is not below --ack-timeout-ms ({} ms): requests would stop waiting \
                     before their clicks reach the spool",
                    self.spill_after_ms, self.ack_timeout_ms
                ),
            ));
        }
        Ok(Settings {
            listen: self.listen,
            admin_listen: self.admin_listen,
            spool_path: self.spool.path(&database),
            database,
            connect: self.db.connect_options(),
            policy,
            batch: BatchSettings {
                max_rows: self.batch_max_rows as usize,
                max_delay: Duration::from_millis(self.batch_max_delay_ms),
                queue_capacity: self.queue_capacity as usize,
                ack_timeout: Duration::from_millis(self.ack_timeout_ms),
                spill_after: Duration::from_millis(self.spill_after_ms),
            },
        })
    }
}

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
        assert!(s.batch.max_rows >= 100);
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
