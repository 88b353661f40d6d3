//! Watching a store that failed: when to try it again, and the quick probe that decides.
//!
//! The appender (`--ack store`) and the applier both stop sending batches to a store that
//! failed, and probe it at most every `RETRY_INTERVAL` instead: a dead database then costs
//! one probe per interval, not a timed-out transaction per batch. The probe is short, so a
//! store that is still down costs whoever asks little more than `RETRY_PROBE`.

use std::time::Duration;

use tokio::time::Instant;

use super::Health;
use super::commit::Committer;
use crate::store::StoreError;
use crate::telemetry::{Event, metrics};

/// While the store is down, how often it is probed again.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long such a probe may take.
const RETRY_PROBE: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct StoreWatch {
    retry_at: Instant,
}

impl StoreWatch {
    pub fn new() -> StoreWatch {
        StoreWatch {
            retry_at: Instant::now(),
        }
    }

    pub fn retry_interval() -> Duration {
        RETRY_INTERVAL
    }

    /// The store failed: mark it down and wait `RETRY_INTERVAL` before the next probe.
    pub fn down(&mut self, health: &Health) {
        health.set_store(false);
        self.retry_at = Instant::now() + RETRY_INTERVAL;
    }

    /// While the store is down: a quick probe, at most every `RETRY_INTERVAL`. `true` means
    /// "worth a try", not "up": a probe can pass while the rows a batch needs are still
    /// locked, so only a committed batch marks the store up again (no flapping readiness).
    pub async fn is_back(
        &mut self,
        committer: &Committer,
        health: &Health,
        limit: Duration,
    ) -> bool {
        if Instant::now() < self.retry_at {
            return false;
        }
        match committer.probe(RETRY_PROBE.min(limit)).await {
            Ok(()) => {
                self.retry_at = Instant::now() + RETRY_INTERVAL;
                true
            }
            Err(error) => {
                // Logged when the store went down.
                ProbeFailed {
                    error: &error,
                    already_logged: true,
                }
                .emit();
                self.down(health);
                false
            }
        }
    }

    /// With nothing else to do: check the store so `/readyz` and `track_store_ready` stay
    /// truthful (the first failure is logged; every one is counted). A passing probe marks
    /// the store up only when `nothing_waits`: with records in the journal, the applier's next
    /// batch is the real test (on MySQL a probe passes while a row lock still blocks writes).
    pub async fn probe(
        &mut self,
        committer: &Committer,
        health: &Health,
        limit: Duration,
        nothing_waits: impl Fn() -> bool,
    ) {
        match committer.probe(limit).await {
            // Asked after the probe: a batch may have failed and gone to the journal meanwhile.
            Ok(()) if nothing_waits() => health.set_store(true),
            Ok(()) => {}
            Err(error) => {
                ProbeFailed {
                    error: &error,
                    already_logged: !health.store_ok(),
                }
                .emit();
                self.down(health);
            }
        }
    }
}

/// A store probe failed: counted every time, logged unless the store was already down.
struct ProbeFailed<'a> {
    error: &'a StoreError,
    already_logged: bool,
}

impl Event for ProbeFailed<'_> {
    fn emit(self) {
        let kind = self.error.kind.as_str();
        if !self.already_logged {
            tracing::error!(operation = "probe", error = %self.error, kind, "store probe failed");
        }
        metrics::error("probe", kind);
    }
}
