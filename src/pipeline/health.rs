//! Whether the store and the journal accept writes, as the pipeline last saw them (`/readyz`).
//!
//! The appender, the applier and the overflow task are the only components that write, so
//! they are the ones that know: every batch, append and idle probe updates these flags, and
//! readiness checks only read them.
//!
//! Ready means "a click arriving now will be made durable". With `--ack journal` that is the
//! journal, or the store when the journal cannot be written (the appender falls back to it).
//! With `--ack store` it is the journal, which takes every click the store cannot: a store
//! outage alone does not make an instance unready, since every instance shares the database
//! and taking them all out of the load balancer would turn a recorded outage into lost
//! redirects. The store's state shows in `/readyz`'s body and in `track_store_ready`.

use std::sync::atomic::{AtomicBool, Ordering};

use super::AckMode;
use crate::telemetry::{Event, metrics};

#[derive(Debug)]
pub struct Health {
    mode: AckMode,
    store: AtomicBool,
    journal: AtomicBool,
}

impl Health {
    pub fn new(mode: AckMode, store: bool, journal: bool) -> Health {
        metrics::store_ready(store);
        metrics::journal_ready(journal);
        Health {
            mode,
            store: AtomicBool::new(store),
            journal: AtomicBool::new(journal),
        }
    }

    pub fn mode(&self) -> AckMode {
        self.mode
    }

    /// A click arriving now would be made durable.
    pub fn is_ready(&self) -> bool {
        match self.mode {
            AckMode::Journal => self.journal_ok() || self.store_ok(),
            AckMode::Store => self.journal_ok(),
        }
    }

    pub fn store_ok(&self) -> bool {
        self.store.load(Ordering::Relaxed)
    }

    pub fn journal_ok(&self) -> bool {
        self.journal.load(Ordering::Relaxed)
    }

    pub fn set_store(&self, ok: bool) {
        if self.store.swap(ok, Ordering::Relaxed) != ok {
            StoreReadiness { ok }.emit();
        }
    }

    pub fn set_journal(&self, ok: bool) {
        if self.journal.swap(ok, Ordering::Relaxed) != ok {
            JournalReadiness {
                ok,
                store_ok: self.store_ok(),
            }
            .emit();
        }
    }
}

/// The store began or stopped accepting writes: one line per change, and the gauge.
struct StoreReadiness {
    ok: bool,
}

impl Event for StoreReadiness {
    fn emit(self) {
        if self.ok {
            tracing::info!("store accepts writes again");
        } else {
            tracing::warn!("store does not accept writes: clicks wait in the journal");
        }
        metrics::store_ready(self.ok);
    }
}

/// The journal began or stopped accepting writes: one line per change, and the gauge.
struct JournalReadiness {
    ok: bool,
    store_ok: bool,
}

impl Event for JournalReadiness {
    fn emit(self) {
        if self.ok {
            tracing::info!("journal accepts writes again");
        } else {
            tracing::error!(
                store_ok = self.store_ok,
                "journal cannot be written: clicks go to the store directly"
            );
        }
        metrics::journal_ready(self.ok);
    }
}
