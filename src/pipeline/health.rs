//! Whether the store accepts writes, as the writer last saw it (`/readyz`).
//!
//! The writer is the only component that talks to the store, so it is the one that knows:
//! every batch and every idle probe updates this flag, and readiness checks only read it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::telemetry::metrics;

#[derive(Debug)]
pub struct StoreHealth {
    ready: AtomicBool,
}

impl StoreHealth {
    pub fn new(ready: bool) -> StoreHealth {
        metrics::store_ready(ready);
        StoreHealth {
            ready: AtomicBool::new(ready),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set(&self, ready: bool) {
        if self.ready.swap(ready, Ordering::Relaxed) != ready {
            if ready {
                tracing::info!("store accepts writes again");
            } else {
                tracing::warn!("store does not accept writes: not ready");
            }
            metrics::store_ready(ready);
        }
    }
}
