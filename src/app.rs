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

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConfigError, Settings};
use crate::dedup::Dedup;
use crate::http::api::ApiState;
use crate::http::{self, AppState, LinkChecks};
use crate::journal::{Journal, JournalFailed, LocalJournal, NatsJournal, StoreIdentity};
use crate::pipeline::{self, AckMode, ApplyLag, Health, applier_thread};
use crate::stats::StatsReader;
use crate::store::{Store, StoreError};
use crate::telemetry::{Event, Exporter, Sampler, metrics};

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
    #[error("campaign {0} already exists")]
    CampaignExists(i64),
    #[error("no journal at {0} (check --spool-path)")]
    NoJournal(std::path::PathBuf),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("stats: {0}")]
    Stats(#[from] crate::stats::StatsError),
    #[error(transparent)]
    ApplierThread(#[from] applier_thread::ApplierThreadError),
    #[error("metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How often histogram buffers are folded into the exported buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

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
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, AppError> {
        let metrics_handle = metrics::install(settings.pipeline.batch.queue_capacity)?;
        // Label sets owned by the journal, registered by it: every series exists from start-up.
        crate::journal::register_metrics();
        let upkeep = spawn_metrics_upkeep(metrics_handle.clone());

        let store = Store::connect(&settings.database, settings.connect).await?;
        store.migrate().await?;
        let identity = StoreIdentity::of(&store, &settings.database).await?;
        let journal = Arc::new(journal_for(&settings, identity).await?);
        let journal_ok = open_journal(&journal).await?;
        let mode = settings.pipeline.mode;
        let health = Arc::new(Health::new(mode, true, journal_ok));
        let lag = Arc::new(ApplyLag::default());
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
            settings.pipeline,
        );
        let background = Background {
            appender: tokio::spawn(pipeline.appender.run()),
            overflow: tokio::spawn(pipeline.overflow.run()),
            applier: applier_thread.run(pipeline.applier),
            drain: pipeline.drain,
            drain_timeout: settings.drain_timeout,
            journal,
            store,
            upkeep,
        };

        let public = bind("--listen", settings.listen).await?;
        let admin = bind("--admin-listen", settings.admin_listen).await?;
        let ready = ReadyLine {
            public_addr: local_addr("--listen", &public, settings.listen)?,
            admin_addr: local_addr("--admin-listen", &admin, settings.admin_listen)?,
            ..ReadyLine::of(&settings, &background.journal)
        };
        warn_about_policy(&settings);
        let dedup = Dedup::start(&settings.dedup).await.map(Arc::new);
        let keys = Arc::new(settings.keyring);
        let api = ApiState {
            admin_token: settings.admin_token.as_deref().map(Arc::from),
            keys: keys.clone(),
            stats: StatsReader::connect(&settings.database)?,
            auth_failures: Arc::default(),
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
        // The peer address is the client's for de-duplicating anonymous clicks, and names who
        // sent a refused admin token.
        let public_app = self
            .public_app
            .into_make_service_with_connect_info::<SocketAddr>();
        let public_server =
            axum::serve(self.public, public_app).with_graceful_shutdown(stopped(stop_rx.clone()));
        let admin_app = self
            .admin_app
            .into_make_service_with_connect_info::<SocketAddr>();
        let admin_server =
            axum::serve(self.admin, admin_app).with_graceful_shutdown(stopped(stop_rx));
        self.ready.log();

        let (public_result, admin_result) = tokio::join!(public_server, admin_server);
        // The public server owned the last queue handles: the overflow task, then the
        // appender, drain and stop; then the applier writes what the journal holds, within the
        // drain time.
        let bg = self.background;
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
        public_result.map_err(|e| task_error("public server", e))?;
        admin_result.map_err(|e| task_error("admin server", e))?;
        overflow_result.map_err(|e| task_error("overflow", e))?;
        appender_result.map_err(|e| task_error("appender", e))?;
        applier_result.map_err(|e| task_error("applier", e))?;
        tracing::info!("clicktrack stopped");
        Ok(())
    }
}

fn spawn_metrics_upkeep(
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
async fn journal_for(settings: &Settings, identity: StoreIdentity) -> Result<Journal, AppError> {
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

fn warn_about_policy(settings: &Settings) {
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
struct ReadyLine {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
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
    fn of(settings: &Settings, journal: &Journal) -> ReadyLine {
        let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
        ReadyLine {
            public_addr: unbound,
            admin_addr: unbound,
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

    fn log(&self) {
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
fn samplers(store: &Store, lag: &Arc<ApplyLag>) -> Vec<Sampler> {
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
async fn open_journal(journal: &Journal) -> Result<bool, AppError> {
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

fn task_error(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> AppError {
    AppError::Task {
        what,
        source: Box::new(e),
    }
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { flag, addr, source })
}

fn local_addr(
    flag: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, AppError> {
    listener
        .local_addr()
        .map_err(|source| AppError::Bind { flag, addr, source })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // Err: the sender is gone, which only happens after it sent.
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            SignalUnavailable {
                signal: "SIGINT",
                error,
            }
            .emit();
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                SignalUnavailable {
                    signal: "SIGTERM",
                    error,
                }
                .emit();
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    }
}

/// A shutdown signal that cannot be listened for: the process then stops only by SIGKILL.
struct SignalUnavailable {
    signal: &'static str,
    error: std::io::Error,
}

impl Event for SignalUnavailable {
    fn emit(self) {
        tracing::error!(operation = "signal", error = %self.error, "cannot listen for {}", self.signal);
        metrics::error("signal", "unavailable");
    }
}
