//! `clicktrack serve`: build everything, run until a signal, drain, stop.
//!
//! Shutdown order is what makes "every redirected click is recorded" hold on SIGTERM: stop
//! accepting connections, let in-flight requests finish (each waits for its click to be
//! durable), drop the last queue handle, let the overflow task and then the appender drain
//! their queues into the journal, then give the applier `--drain-timeout-ms` to write the
//! journal into the store. What is left stays in the journal for the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConfigError, Settings};
use crate::dedup::Dedup;
use crate::http::api::{ApiState, ErasureParts};
use crate::http::{self, AppState, LinkChecks, server};
use crate::journal::{Journal, StoreIdentity};
use crate::pipeline::{self, AckMode, ApplyLag, Health, applier_thread};
use crate::stats::StatsReader;
use crate::store::{ConnectOptions, Store, StoreError};
use crate::telemetry::{Exporter, metrics};

mod shutdown;
mod startup;

use shutdown::{shutdown_signal, stopped, task_error};
use startup::{
    ReadyLine, bind, journal_for, local_addr, open_journal, samplers, spawn_metrics_upkeep,
    warn_about_policy,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "migrate on {database} failed: {source}\nchanged before the failure: {done}\nwhat to \
         do: {hint}"
    )]
    MigrateFailed {
        database: String,
        done: String,
        hint: &'static str,
        source: Box<StoreError>,
    },
    #[error("campaign {0} already exists")]
    CampaignExists(i64),
    #[error("no journal at {0} (check --spool-path)")]
    NoJournal(std::path::PathBuf),
    #[error(transparent)]
    Erasure(#[from] crate::pipeline::erasure::ErasureError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("stats: {0}")]
    Stats(#[from] crate::stats::StatsError),
    #[error(transparent)]
    ApplierThread(#[from] applier_thread::ApplierThreadError),
    #[error(transparent)]
    LoweredStore(#[from] crate::pipeline::priority::LoweredStoreError),
    #[error("metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The store a journal is bound to: the store's own id and how to name it. Decided here,
/// where a journal and a store are put together (`serve`, `spool replay`, `member erase`), so
/// that neither module depends on the other.
pub async fn journal_identity(
    store: &Store,
    database: &crate::db::DatabaseUrl,
) -> Result<StoreIdentity, StoreError> {
    Ok(StoreIdentity {
        id: store.identity().await?,
        display: database.to_string(),
    })
}

/// `clicktrack serve`: build, then serve until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> Result<(), AppError> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(async {
        let signal = shutdown_signal().await;
        tracing::info!(
            signal,
            "shutting down: no new connections, draining accepted clicks"
        );
    })
    .await
}

/// A built clicktrack: store migrated, journal open, pipeline running, both listeners bound
/// (so their addresses are known, port 0 included), nothing served yet.
pub struct Application {
    public: TcpListener,
    admin: TcpListener,
    public_app: axum::Router,
    admin_app: axum::Router,
    background: Background,
    ready: ReadyLine,
}

/// The tasks that outlive the servers, in the order they stop.
struct Background {
    overflow: tokio::task::JoinHandle<()>,
    appender: tokio::task::JoinHandle<()>,
    /// Tells the applier when to stop draining the journal.
    drain: watch::Sender<Option<tokio::time::Instant>>,
    drain_timeout: Duration,
    applier: applier_thread::Running,
    journal: Arc<Journal>,
    store: Store,
    upkeep: tokio::task::JoinHandle<()>,
    /// Rolls up log rows the applier did not write (`pipeline/backfill.rs`), on a store
    /// connection of its own.
    backfill: tokio::task::JoinHandle<()>,
    /// Packs closed hours' members (`pipeline/member_packs.rs`), on the same connection.
    member_packs: tokio::task::JoinHandle<()>,
    /// `--log-retention`: purges the raw log every hour, on the same connection.
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, AppError> {
        let metrics_handle = metrics::install(settings.pipeline.batch.queue_capacity)?;
        // Label sets owned by the journal, registered by it: every series exists from start-up.
        crate::journal::register_metrics();
        let upkeep = spawn_metrics_upkeep(metrics_handle.clone());

        let store = Store::connect(&settings.database, settings.connect).await?;
        store.migrate().await?;
        let identity = journal_identity(&store, &settings.database).await?;
        let journal = Arc::new(journal_for(&settings, identity).await?);
        let journal_ok = open_journal(&journal).await?;
        let mode = settings.pipeline.mode;
        let health = Arc::new(Health::new(mode, true, journal_ok));
        let lag = Arc::new(ApplyLag::default());
        // Backfill, packing, retention and erasures may wait: at the applier's priority.
        let backfill_store = crate::pipeline::priority::connect_lowered(
            &settings.database,
            ConnectOptions { max_connections: 1 },
            settings.apply_nice,
            "upkeep",
        )
        .await?;
        let (applier_store, applier_thread) = applier_thread::start(
            settings.database.clone(),
            settings.connect,
            settings.apply_nice,
        )
        .await?;
        // The pool that carries the clicks: the applier's with --ack journal, else the
        // appender's.
        let busy_pool = match mode {
            AckMode::Journal => applier_store.clone(),
            AckMode::Store => store.clone(),
        };
        let exporter = Exporter::new(metrics_handle, samplers(&busy_pool, &lag));
        let pipeline = pipeline::build(
            pipeline::Parts {
                store: store.clone(),
                applier_store,
                journal: journal.clone(),
                health: health.clone(),
                lag,
            },
            settings.pipeline.clone(),
        );
        let (erasure_store, erasure_journal) = (backfill_store.clone(), journal.clone());
        let background = Background {
            appender: tokio::spawn(pipeline.appender.run()),
            overflow: tokio::spawn(pipeline.overflow.run()),
            applier: applier_thread.run(pipeline.applier),
            drain: pipeline.drain,
            drain_timeout: settings.drain_timeout,
            journal,
            store,
            upkeep,
            backfill: pipeline::backfill::spawn(backfill_store.clone()),
            member_packs: pipeline::member_packs::spawn(backfill_store.clone()),
            retention: settings
                .log_retention
                .map(|retention| pipeline::retention::spawn(backfill_store, retention)),
        };

        let public = bind("--listen", settings.listen).await?;
        let admin = bind("--admin-listen", settings.admin_listen).await?;
        let ready = ReadyLine::of(
            &settings,
            &background.journal,
            local_addr("--listen", &public, settings.listen)?,
            local_addr("--admin-listen", &admin, settings.admin_listen)?,
        );
        warn_about_policy(&settings);
        let dedup = Dedup::start(&settings.dedup).await.map(Arc::new);
        let keys = Arc::new(settings.keyring);
        let api = ApiState {
            admin_token: settings.admin_token.as_deref().map(Arc::from),
            keys: keys.clone(),
            stats: StatsReader::connect(&settings.database)?,
            auth_failures: Arc::default(),
            erasure: Arc::new(ErasureParts {
                store: erasure_store,
                journal: erasure_journal,
                dedup: dedup.clone(),
            }),
        };
        let state = AppState {
            queue: pipeline.queue,
            policy: Arc::new(settings.policy),
            links: Arc::new(LinkChecks {
                keys,
                require_signature: settings.require_signature,
            }),
            dedup,
            trusted_proxies: settings.trusted_proxies.into(),
            user_agent_detail: settings.user_agent_detail,
            health: health.clone(),
        };
        Ok(Application {
            public,
            admin,
            public_app: http::public_router(state),
            admin_app: http::admin_router(health, exporter, api),
            background,
            ready,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.ready.public_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.ready.admin_addr
    }

    /// Serve until `stop` resolves, then drain (the module comment says in which order).
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            // Receivers live as long as the servers; if they are gone there is nothing to stop.
            if stop_tx.send(true).is_err() {
                tracing::debug!("servers already stopped");
            }
        });
        // The peer address (ConnectInfo) is the client's for de-duplicating anonymous clicks,
        // and names who sent a refused admin token.
        let public_server = server::serve(
            self.public,
            self.public_app,
            server::Listener::Public,
            stopped(stop_rx.clone()),
        );
        let admin_server = server::serve(
            self.admin,
            self.admin_app,
            server::Listener::Admin,
            stopped(stop_rx),
        );
        self.ready.log();

        tokio::join!(public_server, admin_server);
        // The public server owned the last queue handles: the overflow task, then the
        // appender, drain and stop; then the applier writes what the journal holds, within the
        // drain time.
        let bg = self.background;
        // A step cut short rolls back; the next start continues from the last committed one.
        bg.backfill.abort();
        bg.member_packs.abort();
        if let Some(retention) = &bg.retention {
            retention.abort();
        }
        let overflow_result = bg.overflow.await;
        let appender_result = bg.appender.await;
        let drain_deadline = tokio::time::Instant::now() + bg.drain_timeout;
        if bg.drain.send(Some(drain_deadline)).is_err() {
            tracing::debug!("applier already stopped");
        }
        let applier_result = bg.applier.await;
        bg.journal.close().await;
        bg.store.close().await;
        bg.upkeep.abort();
        overflow_result.map_err(|e| task_error("overflow", e))?;
        appender_result.map_err(|e| task_error("appender", e))?;
        applier_result.map_err(|e| task_error("applier", e))?;
        tracing::info!("clicktrack stopped");
        Ok(())
    }
}
