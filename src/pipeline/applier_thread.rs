//! The applier's own thread, at a lower CPU priority than the redirects.
//!
//! During a burst the redirects and the applier compete for the same cores, and every
//! millisecond the applier takes is a millisecond a waiting redirect does not get. The journal
//! exists so that the database can lag behind a burst: the applier runs on a thread of its
//! own with a higher nice value (`--apply-nice`), and so does its store connection (on SQLite
//! the store's worker thread is started from this thread and inherits its priority). The
//! scheduler then gives the applier the cores the redirects leave idle: full speed between
//! bursts, little during one (the journal grows and `track_journal_apply_lag_seconds` shows
//! it). On MySQL the database server does most of the applier's work and keeps its own
//! priority.

use std::future::Future;

use tokio::sync::oneshot;

use super::Applier;
use crate::store::{ConnectOptions, DatabaseUrl, Store, StoreError};

/// The thread, waiting for its applier.
pub struct ApplierThread {
    applier: oneshot::Sender<Applier>,
    done: oneshot::Receiver<()>,
}

/// Why the applier's thread could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum ApplierThreadError {
    #[error("cannot start the applier's thread: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("database (applier's connection): {0}")]
    Store(#[from] StoreError),
    #[error("the applier's thread stopped before it finished (see the log line before)")]
    Gone,
}

/// Start the thread at `nice` and open the applier's store from it.
pub async fn start(
    database: DatabaseUrl,
    options: ConnectOptions,
    nice: i32,
) -> Result<(Store, ApplierThread), ApplierThreadError> {
    let (store_tx, store_rx) = oneshot::channel::<Result<Store, StoreError>>();
    let (applier_tx, applier_rx) = oneshot::channel::<Applier>();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("clicktrack-applier".into())
        .spawn(move || {
            super::priority::lower_this_thread(nice, "the applier");
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(operation = "applier", error = %e, "cannot start the applier's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let store = match Store::connect(&database, options).await {
                    Ok(store) => store,
                    Err(e) => {
                        // The starting side reports it (`start` returns it); if it is gone,
                        // the process is stopping anyway.
                        if store_tx.send(Err(e)).is_err() {
                            tracing::debug!("applier's store failed after start-up was abandoned");
                        }
                        return;
                    }
                };
                if store_tx.send(Ok(store.clone())).is_err() {
                    return;
                }
                if let Ok(applier) = applier_rx.await {
                    applier.run().await;
                }
                // Closed here: its connections belong to this thread's runtime.
                store.close().await;
                if done_tx.send(()).is_err() {
                    tracing::debug!("applier stopped after its owner stopped waiting");
                }
            });
        })?;
    let store = store_rx.await.map_err(|_| ApplierThreadError::Gone)??;
    Ok((
        store,
        ApplierThread {
            applier: applier_tx,
            done: done_rx,
        },
    ))
}

impl ApplierThread {
    /// Run `applier` on the thread; resolves when it has stopped (after its drain).
    pub fn run(self, applier: Applier) -> Running {
        let sent = self.applier.send(applier).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(ApplierThreadError::Gone);
            }
            self.done.await.map_err(|_| ApplierThreadError::Gone)
        })
    }
}

/// The applier at work on its thread: resolves when it has stopped.
pub type Running = std::pin::Pin<Box<dyn Future<Output = Result<(), ApplierThreadError>> + Send>>;
