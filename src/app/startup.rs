//! Starting up: what `Application::build` does besides wiring, in the order it does it
//! (metrics upkeep, the journal, the listeners, the warnings about the redirect policy), and
//! the "clicktrack ready" line that ends a start.

use std::net::SocketAddr;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::net::TcpListener;

use super::AppError;
use crate::config::Settings;
use crate::journal::{Journal, JournalFailed, LocalJournal, NatsJournal, StoreIdentity};
use crate::pipeline::ApplyLag;
use crate::store::Store;
use crate::telemetry::{Event, Sampler, metrics};

/// How often histogram buffers are folded into the exported buckets.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn spawn_metrics_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// The journal `settings` name: the NATS stream, or the local file (not opened yet).
pub(super) async fn journal_for(
    settings: &Settings,
    identity: StoreIdentity,
) -> Result<Journal, AppError> {
    let Some(nats) = &settings.nats else {
        return Ok(Journal::Local(LocalJournal::owned(
            &settings.journal_path,
            identity,
            settings.journal_max_bytes,
        )));
    };
    if !settings.nats_server_syncs {
        tracing::warn!(
            nats = %nats.display(),
            "JetStream acknowledges a write once it is in the memory of the stream's \
             replicas, not on their disks, unless the servers run with \
             `sync_interval: always` (docs/scale-out.md): a click is then safe from an \
             instance's death but not from every NATS server losing power at once. \
             Start with --nats-server-syncs once they do"
        );
    }
    Ok(Journal::Nats(NatsJournal::connect(nats, &identity).await?))
}

pub(super) fn warn_about_policy(settings: &Settings) {
    for ignored in &settings.no_effect {
        tracing::warn!(operation = "config", "{ignored}");
    }
    if settings.policy.refuses_everything() {
        tracing::warn!(
            "no --allow-host and no --allow-any-target: every redirect will be refused with 400"
        );
    }
    if settings.policy.allows_any() {
        tracing::warn!(
            "--allow-any-target: clicktrack redirects to ANY http(s) host (an open redirect); \
             use it for development only"
        );
    }
}

/// The "clicktrack ready" line: the addresses (tests and operators read them here) and the
/// settings that matter when reading the logs afterwards.
pub(super) struct ReadyLine {
    pub(super) public_addr: SocketAddr,
    pub(super) admin_addr: SocketAddr,
    database: String,
    ack: &'static str,
    journal: String,
    journal_depth: u64,
    batch: crate::pipeline::BatchSettings,
    apply_batch_max_rows: usize,
    apply_nice: i32,
    signing_keys: usize,
    require_signature: bool,
    dedup_window_ms: u64,
    redis: bool,
    admin_api: bool,
}

impl ReadyLine {
    pub(super) fn of(
        settings: &Settings,
        journal: &Journal,
        public_addr: SocketAddr,
        admin_addr: SocketAddr,
    ) -> ReadyLine {
        ReadyLine {
            public_addr,
            admin_addr,
            database: settings.database.to_string(),
            ack: settings.pipeline.mode.as_str(),
            journal: journal.path().display().to_string(),
            journal_depth: journal.depth(),
            batch: settings.pipeline.batch,
            apply_batch_max_rows: settings.pipeline.apply_max_rows,
            apply_nice: settings.apply_nice,
            signing_keys: settings.keyring.len(),
            require_signature: settings.require_signature,
            dedup_window_ms: settings.dedup.window.as_millis() as u64,
            redis: settings.dedup.redis.is_some(),
            admin_api: settings.admin_token.is_some(),
        }
    }

    pub(super) fn log(&self) {
        tracing::info!(
            public_addr = %self.public_addr,
            admin_addr = %self.admin_addr,
            database = %self.database,
            ack = self.ack,
            journal = %self.journal,
            journal_depth = self.journal_depth,
            batch_max_rows = self.batch.max_rows,
            batch_max_delay_ms = self.batch.max_delay.as_millis() as u64,
            apply_batch_max_rows = self.apply_batch_max_rows,
            apply_nice = self.apply_nice,
            queue_capacity = self.batch.queue_capacity,
            signing_keys = self.signing_keys,
            require_signature = self.require_signature,
            dedup_window_ms = self.dedup_window_ms,
            redis = self.redis,
            admin_api = self.admin_api,
            "clicktrack ready"
        );
    }
}

/// What `/metrics` reads from live state at each scrape.
pub(super) fn samplers(store: &Store, lag: &Arc<ApplyLag>) -> Vec<Sampler> {
    let store = store.clone();
    let lag = lag.clone();
    vec![
        Box::new(move || store.pool_stats().export()),
        Box::new(move || metrics::apply_lag(lag.seconds(OffsetDateTime::now_utc()))),
    ]
}

/// Open the journal (take its lock, check its store) and report what it holds. A journal
/// that is locked by another process or belongs to another store stops the start (exit 2);
/// one that cannot be opened (a missing directory, a full disk) does not: it is logged,
/// counted, and clicks go to the store until the appender manages to open it.
pub(super) async fn open_journal(journal: &Journal) -> Result<bool, AppError> {
    match journal.reopen().await {
        Ok(()) => {
            if journal.depth() > 0 {
                tracing::info!(
                    journal_depth = journal.depth(),
                    path = %journal.path().display(),
                    "clicks in the journal from an earlier run: applying them"
                );
            }
            Ok(true)
        }
        Err(e) if e.is_misconfiguration() => Err(AppError::Journal(e)),
        Err(e) => {
            JournalFailed {
                error: &e,
                what: "cannot open the journal",
                already_logged: false,
                appending: None,
            }
            .emit();
            Ok(false)
        }
    }
}

pub(super) async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { flag, addr, source })
}

pub(super) fn local_addr(
    flag: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, AppError> {
    listener
        .local_addr()
        .map_err(|source| AppError::Bind { flag, addr, source })
}
