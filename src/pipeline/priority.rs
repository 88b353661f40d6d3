//! Work that may wait runs at a lower CPU priority than the redirects.
//!
//! On two busy cores every millisecond a background job takes is a millisecond a waiting
//! redirect does not get. The applier (`applier_thread.rs`), serve's upkeep connection
//! (backfill, `--log-retention`, erasures) and `clicktrack purge` run with a higher Linux
//! nice value: the scheduler gives them the cores the redirects leave idle, full speed on a
//! quiet machine, little during a burst. A nice value is per thread and inherited by the
//! threads a thread starts, so a store connection opened from a lowered thread (on SQLite,
//! sqlx's worker thread, where the SQL runs) is lowered too; SQLite connections are never
//! recycled (`store/sqlite.rs`), so they keep it. On MySQL and PostgreSQL the database server
//! does most of the work at its own priority.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::store::{ConnectOptions, DatabaseUrl, Store, StoreError};

/// After a step of background work that began at `started`, rest `factor` times as long as
/// it took: the work then takes at most 1 / (1 + factor) of the time of the database it runs
/// in, which a nice value on our side does not lower (MySQL and PostgreSQL run it at their
/// own priority). Never less than `at_least`.
pub async fn rest_after(started: Instant, factor: u32, at_least: Duration) {
    tokio::time::sleep((started.elapsed() * factor).max(at_least)).await;
}

/// Raise the calling thread's nice value by `nice` (0: leave it); `what` names the work in
/// the warning when it cannot be done.
pub fn lower_this_thread(nice: i32, what: &str) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if result != 0 {
            tracing::warn!(
                nice,
                error = %std::io::Error::last_os_error(),
                "cannot lower the priority of {what}: it competes with the redirects"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::debug!(nice, "a lower priority for {what} is only applied on Linux");
}

/// Why a store could not be opened at a lower priority.
#[derive(Debug, thiserror::Error)]
pub enum LoweredStoreError {
    #[error("cannot start a thread to open the {what} connection: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("database ({what} connection): {source}")]
    Store {
        what: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the thread opening the {what} connection stopped before it answered")]
    Gone { what: &'static str },
}

/// Open a store from a short-lived thread at `nice`, on the current runtime: its connection
/// (on SQLite, its worker thread) runs at that priority, its tasks on this runtime.
pub async fn connect_lowered(
    database: &DatabaseUrl,
    options: ConnectOptions,
    nice: i32,
    what: &'static str,
) -> Result<Store, LoweredStoreError> {
    let runtime = Handle::current();
    let database = database.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("clicktrack-open-{what}"))
        .spawn(move || {
            lower_this_thread(nice, what);
            let store = runtime.block_on(Store::connect(&database, options));
            // Nobody waits any more only if start-up was abandoned.
            let _abandoned = tx.send(store);
        })
        .map_err(|source| LoweredStoreError::Spawn { what, source })?;
    rx.await
        .map_err(|_| LoweredStoreError::Gone { what })?
        .map_err(|source| LoweredStoreError::Store { what, source })
}
