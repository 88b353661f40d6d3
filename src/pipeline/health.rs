//! Whether the store and the spool accept writes, as the pipeline last saw them (`/readyz`).
//!
//! The writer and the overflow task are the only components that write, so they are the ones
//! that know: every batch, spool append and idle probe updates these flags, and readiness
//! checks only read them.
//!
//! Ready means "a click arriving now will be made durable": the spool can be written (it
//! takes every click the store cannot). A store outage alone does not make an instance
//! unready: every instance shares the database, and taking them all out of the load
//! balancer would turn a recorded outage into lost redirects. It shows in `/readyz`'s body
//! and in `track_store_ready`.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::telemetry::metrics;

#[derive(Debug)]
pub struct Health {
    store: AtomicBool,
    spool: AtomicBool,
}

impl Health {
    pub fn new(store: bool, spool: bool) -> Health {
        metrics::store_ready(store);
        metrics::spool_ready(spool);
        Health {
            store: AtomicBool::new(store),
            spool: AtomicBool::new(spool),
        }
    }

    /// A click arriving now would be made durable.
    pub fn is_ready(&self) -> bool {
        self.spool_ok()
    }

    pub fn store_ok(&self) -> bool {
        self.store.load(Ordering::Relaxed)
    }

    pub fn spool_ok(&self) -> bool {
        self.spool.load(Ordering::Relaxed)
    }

    pub fn set_store(&self, ok: bool) {
        if self.store.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("store accepts writes again");
            } else {
                tracing::warn!("store does not accept writes: clicks go to the spool");
            }
            metrics::store_ready(ok);
        }
    }

    pub fn set_spool(&self, ok: bool) {
        if self.spool.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("spool accepts writes again: ready");
            } else {
                tracing::error!("spool cannot be written: not ready");
            }
            metrics::spool_ready(ok);
        }
    }
}
