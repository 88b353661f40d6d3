//! The applier's sibling: rolls up the log rows the applier did not write (docs/rollups.md).
//!
//! `clicktrack migrate` runs steps back to back until the history is built (`run_to_end`);
//! `serve` runs them in the background (`spawn`), small and paced, so that it finishes a
//! history a migration left unfinished and picks up rows another program adds to the log. Each
//! step is one short transaction of `store/backfill.rs`; steps of several processes take turns.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::{BackfillStep, Store, StoreError};
use crate::telemetry::{Event, metrics};

/// Log rows per step in `clicktrack migrate`: each step holds its locks for a fraction of a
/// second.
pub const MIGRATE_CHUNK: i64 = 20_000;
/// Log rows per step in `serve`, where the applier waits for the same write lock.
const SERVE_CHUNK: i64 = 2_000;
/// `serve` between two steps that found work: the applier's batches go first.
const SERVE_PAUSE: Duration = Duration::from_millis(20);
/// `serve` after a step found nothing (or failed): how soon a foreign row is rolled up.
const SERVE_IDLE: Duration = Duration::from_secs(2);
/// Attempts of one step of `migrate` or `purge` before a transient error ends it.
const ATTEMPTS: u32 = 5;

/// What a run of steps rolled up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backfilled {
    pub history_rows: u64,
    pub foreign_rows: u64,
}

/// Run steps until none finds work, retrying transient failures; `on_step` sees every
/// committed step (for the progress display).
pub async fn run_to_end(
    store: &Store,
    chunk: i64,
    mut on_step: impl FnMut(&BackfillStep),
) -> Result<Backfilled, StoreError> {
    let mut total = Backfilled::default();
    loop {
        let step = step_with_retries(store, chunk).await?;
        metrics::backfilled(step.history_rows, step.foreign_rows, step.state.ids_left());
        if step.idle() {
            return Ok(total);
        }
        total.history_rows += step.history_rows;
        total.foreign_rows += step.foreign_rows;
        on_step(&step);
    }
}

async fn step_with_retries(store: &Store, chunk: i64) -> Result<BackfillStep, StoreError> {
    with_retries("backfill", || store.backfill_step(chunk)).await
}

/// `step()` again after a retryable failure (counted as `operation`), `ATTEMPTS` times at most.
pub(super) async fn with_retries<T, F: Future<Output = Result<T, StoreError>>>(
    operation: &'static str,
    mut step: impl FnMut() -> F,
) -> Result<T, StoreError> {
    let mut attempt = 1;
    loop {
        match step().await {
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                StepFailed {
                    operation,
                    error: &e,
                    logged: false,
                }
                .emit();
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// `serve`'s background backfill, until the task is aborted (a step cut short rolls back).
pub fn spawn(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        let mut announced = false;
        loop {
            let pause = match store.backfill_step(SERVE_CHUNK).await {
                Ok(step) => {
                    if failing {
                        tracing::info!(operation = "backfill", "rollup backfill works again");
                        failing = false;
                    }
                    metrics::backfilled(
                        step.history_rows,
                        step.foreign_rows,
                        step.state.ids_left(),
                    );
                    if step.history_ids > 0 && !announced {
                        announced = true;
                        tracing::info!(
                            left = step.state.ids_left(),
                            "building the rollups of the log's history in the background \
                             (`clicktrack migrate` does it faster); stats answer 503 until done"
                        );
                    }
                    if step.history_ids > 0 && step.state.history_complete() {
                        tracing::info!("rollups of the log's history complete");
                    }
                    if step.idle() { SERVE_IDLE } else { SERVE_PAUSE }
                }
                Err(error) => {
                    StepFailed {
                        operation: "backfill",
                        error: &error,
                        logged: failing,
                    }
                    .emit();
                    failing = true;
                    SERVE_IDLE
                }
            };
            tokio::time::sleep(pause).await;
        }
    })
}

/// A backfill or purge step that failed: logged once per run of failures, counted every time
/// in `track_errors_total{operation}` (`backfill`, `purge`).
pub(super) struct StepFailed<'a> {
    pub operation: &'static str,
    pub error: &'a StoreError,
    /// Already logged in this run of failures.
    pub logged: bool,
}

impl Event for StepFailed<'_> {
    fn emit(self) {
        let error_type = self.error.kind.as_str();
        if !self.logged {
            tracing::warn!(
                operation = self.operation,
                error_type,
                error = %self.error,
                "{} step failed; retrying",
                self.operation
            );
        }
        metrics::error(self.operation, error_type);
    }
}
