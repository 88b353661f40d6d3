//! The one road from the journal into the store: oldest first, in large batches, exactly once.
//!
//! A step reads up to `--apply-batch-max-rows` of the oldest records, commits them in one
//! store transaction with their `click_id`s looked up (`Seen::Maybe`), and only then removes
//! them from the journal. A crash between the commit and the removal leaves them in the
//! journal; the next step finds their ids in the store and changes nothing (`AlreadyRecorded`).
//! The unique index on `click_id` is the arbiter. Records the store cannot hold yet (appended
//! by this process and read for the first time, `Journaled::fresh`) skip the lookup: a
//! duplicate would still be refused by the index, and the batch retried with the lookup.
//!
//! Under load the steps grow by themselves: while one batch commits, the next accumulates.
//! When the store fails, the records stay where they are (durable) and the applier probes the
//! store every half second (`probe.rs`); a step that timed out halves the next step's size, so
//! a slow store still drains in smaller steps. On shutdown (`drain`), it applies what it can
//! until the journal is empty or the deadline passes; the rest waits for the next start.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::commit::{Budget, Committer, Fate};
use super::give_way::{GiveWay, Turn};
use super::probe::StoreWatch;
use super::{ApplyLag, Health};
use crate::journal::{Journal, JournalError, JournalFailed};
use crate::store::{ErrorKind, Outcome, Seen, StoreError};
use crate::telemetry::{Event, metrics};

/// With nothing to apply for this long, probe the store so `/readyz` and
/// `track_store_ready` stay truthful.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// After a journal read fails, how long to wait before reading again.
const JOURNAL_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// What one apply step did.
#[derive(Debug, Default)]
pub struct ApplyStep {
    /// Records read from the journal (0: it is empty).
    pub read: usize,
    pub recorded: usize,
    pub already_recorded: usize,
    pub rejected: usize,
    /// Records the database refused outright (removed, logged and counted as not written).
    pub lost: usize,
    /// The store failed: the records not written stay in the journal.
    pub store_failure: Option<StoreError>,
}

impl ApplyStep {
    pub fn removed(&self) -> usize {
        self.recorded + self.already_recorded + self.rejected + self.lost
    }

    /// Add another step's counts (for `clicktrack spool replay`'s summary).
    pub fn add(&mut self, other: &ApplyStep) {
        self.read += other.read;
        self.recorded += other.recorded;
        self.already_recorded += other.already_recorded;
        self.rejected += other.rejected;
        self.lost += other.lost;
    }
}

/// Apply up to `limit` of the oldest journal records. Errors are the journal's own; a store
/// failure is part of the step (`store_failure`), since the records are safe where they are.
pub async fn apply_step(
    committer: &Committer,
    journal: &Journal,
    limit: usize,
    budget: Budget,
) -> Result<ApplyStep, JournalError> {
    let _step = journal.hold_step().await;
    let journaled = journal.oldest(limit).await?;
    let mut step = ApplyStep {
        read: journaled.len(),
        ..ApplyStep::default()
    };
    if journaled.is_empty() {
        return Ok(step);
    }
    metrics::apply_batch_size(journaled.len());
    // Only a batch of clicks the store cannot hold yet skips the id lookup (a third of a
    // batch's time on MariaDB); one record that may be there already looks them all up.
    let seen = if journaled.iter().all(|j| j.fresh) {
        Seen::Never
    } else {
        Seen::Maybe
    };
    let (seqs, records): (Vec<i64>, Vec<_>) =
        journaled.into_iter().map(|j| (j.seq, j.record)).unzip();
    let committed = committer.commit(records, seen, budget).await;
    let mut done = Vec::with_capacity(seqs.len());
    let mut outcomes = Vec::with_capacity(seqs.len());
    for (seq, fate) in seqs.into_iter().zip(committed.fates) {
        match fate {
            Fate::Stored(outcome) => {
                match outcome {
                    Outcome::Recorded => step.recorded += 1,
                    Outcome::AlreadyRecorded | Outcome::Erased => step.already_recorded += 1,
                    Outcome::Rejected(_) => step.rejected += 1,
                }
                outcomes.push(Some(outcome));
                done.push(seq);
            }
            Fate::Lost => {
                step.lost += 1;
                outcomes.push(None);
                done.push(seq);
            }
            Fate::Unwritten => {}
        }
    }
    // Counted before the removal: if the removal fails, these are in the store already and a
    // later step will find them there (already_recorded).
    for outcome in &outcomes {
        metrics::applied(
            outcome
                .as_ref()
                .map_or(metrics::outcome::REFUSED, Outcome::label),
        );
    }
    journal.remove(&done).await?;
    step.store_failure = committed.failure;
    Ok(step)
}

/// What the applier is built from.
pub struct Parts {
    pub journal: Arc<Journal>,
    pub committer: Committer,
    pub health: Arc<Health>,
    pub lag: Arc<ApplyLag>,
    /// Woken by every append.
    pub wake: Arc<Notify>,
    /// `Some(deadline)`: drain the journal by then and stop.
    pub drain: watch::Receiver<Option<Instant>>,
}

pub struct Applier {
    parts: Parts,
    max_rows: usize,
    /// Under load, how long a step may wait for the journal to hold a full batch.
    fill_wait: Duration,
    /// When the last step that applied something ended.
    last_step: Option<Instant>,
    /// Records per step: halved when a step cannot commit in time, doubled back up to
    /// `max_rows` when it can.
    rows: usize,
    /// How long one step may try the store before the records wait for the next probe.
    patience: Duration,
    store: StoreWatch,
    /// The last journal read failed: the next failure is counted, not logged again (a NATS
    /// outage would otherwise write a line every half second).
    read_failing: bool,
    /// Whether to step aside for the redirects before a step (`--max-apply-lag`).
    give_way: GiveWay,
}

impl Applier {
    pub(super) fn new(
        parts: Parts,
        max_rows: usize,
        fill_wait: Duration,
        patience: Duration,
        give_way: GiveWay,
    ) -> Applier {
        Applier {
            parts,
            max_rows,
            fill_wait,
            last_step: None,
            rows: max_rows,
            patience,
            store: StoreWatch::new(),
            read_failing: false,
            give_way,
        }
    }

    fn health(&self) -> &Health {
        &self.parts.health
    }

    fn journal(&self) -> &Journal {
        &self.parts.journal
    }

    /// Apply until told to drain, then until the journal is empty or the deadline passes.
    pub async fn run(mut self) {
        self.track_lag().await;
        loop {
            let deadline = *self.parts.drain.borrow();
            if let Some(deadline) = deadline
                && (self.journal().depth() == 0
                    || self.journal().is_shared()
                    || Instant::now() >= deadline)
            {
                break;
            }
            if !self.health().journal_ok() && self.journal().depth() == 0 {
                // Nothing to read until the appender gets the journal back.
                self.wait(JOURNAL_RETRY_INTERVAL).await;
            } else if !self.health().store_ok()
                && !self
                    .store
                    .is_back(&self.parts.committer, &self.parts.health, self.patience)
                    .await
            {
                self.wait(StoreWatch::retry_interval()).await;
            } else if self.journal().depth() == 0 {
                self.last_step = None;
                if !self.wait(PROBE_INTERVAL).await {
                    let Parts {
                        committer, health, ..
                    } = &self.parts;
                    let journal = &self.parts.journal;
                    self.store
                        .probe(committer, health, self.patience, || journal.depth() == 0)
                        .await;
                }
            } else if self.steps_aside() {
                // Woken early only by the drain signal, which ends the stepping aside.
                self.wait_for_drain(GiveWay::window()).await;
            } else {
                self.fill().await;
                self.step().await;
            }
        }
        let left = self.journal().depth();
        if self.journal().is_shared() {
            tracing::info!(
                left,
                stream = %self.journal().path().display(),
                "applier stopped: the stream keeps what is left for the other instances"
            );
        } else if left > 0 {
            tracing::warn!(
                left,
                path = %self.journal().path().display(),
                "stopped with clicks in the journal: they are applied at the next start \
                 (or by `clicktrack spool replay`)"
            );
        } else {
            tracing::info!("applier stopped: journal empty");
        }
    }

    /// Wait for an append, the drain signal, or `limit`. `true` when woken before the limit.
    async fn wait(&mut self, limit: Duration) -> bool {
        let Parts { wake, drain, .. } = &mut self.parts;
        if drain.borrow().is_some() {
            // Only the deadline matters now; do not spin while the store is down.
            tokio::time::sleep(limit.min(Duration::from_millis(100))).await;
            return true;
        }
        tokio::select! {
            () = wake.notified() => true,
            changed = drain.changed() => {
                if changed.is_err() {
                    // The pipeline's owner is gone without a drain: nothing will wake us.
                    tokio::time::sleep(limit).await;
                }
                true
            }
            () = tokio::time::sleep(limit) => false,
        }
    }

    /// The CPU is saturated and the oldest waiting click is younger than `--max-apply-lag`:
    /// leave the cores to the redirects for a while (`give_way.rs`). Never while draining.
    fn steps_aside(&mut self) -> bool {
        if self.parts.drain.borrow().is_some() {
            return false;
        }
        let lag = self.parts.lag.seconds(time::OffsetDateTime::now_utc());
        self.give_way.turn(Duration::from_secs_f64(lag)) == Turn::StepAside
    }

    /// Wait `limit`, or less if the drain signal comes.
    async fn wait_for_drain(&mut self, limit: Duration) {
        let drain = &mut self.parts.drain;
        tokio::select! {
            changed = drain.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(limit).await;
                }
            }
            () = tokio::time::sleep(limit) => {}
        }
    }

    /// Under load (the last step ended less than `fill_wait` ago), wait until the journal
    /// holds a full batch or `fill_wait` has passed since that step. A store transaction costs
    /// much less per click when it is large (the batch's clicks share their members, summary
    /// rows and campaign counters: on SQLite 20,000 clicks/s at 256 per batch, 55,000 at
    /// 4,096), and a busy applier competes with the redirects for the CPU. A click that
    /// arrives at an idle applier is applied at once.
    async fn fill(&mut self) {
        let Some(last) = self.last_step else {
            return;
        };
        let until = last + self.fill_wait;
        while self.journal().depth() < self.rows as u64 && Instant::now() < until {
            if self.parts.drain.borrow().is_some() {
                return;
            }
            let Parts { wake, .. } = &self.parts;
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn step(&mut self) {
        let budget = Budget::until(self.patience);
        let step = apply_step(&self.parts.committer, self.journal(), self.rows, budget).await;
        match step {
            Ok(step) => {
                if self.read_failing {
                    tracing::info!(operation = "spool", "journal read works again");
                    self.read_failing = false;
                }
                if let Some(e) = &step.store_failure {
                    if e.kind == ErrorKind::TimedOut {
                        self.rows = (self.rows / 2).max(1);
                    }
                    self.store_down();
                } else if step.read > 0 {
                    self.last_step = Some(Instant::now());
                    self.rows = (self.rows * 2).min(self.max_rows);
                    self.health().set_store(true);
                    tracing::debug!(
                        applied = step.removed(),
                        left = self.journal().depth(),
                        "journal batch applied"
                    );
                }
                self.track_lag().await;
            }
            Err(e) => {
                JournalFailed {
                    error: &e,
                    what: "journal read failed (retried every half second; logged again once \
                           it has worked)",
                    already_logged: self.read_failing,
                    appending: None,
                }
                .emit();
                self.read_failing = true;
                tokio::time::sleep(JOURNAL_RETRY_INTERVAL).await;
            }
        }
    }

    /// Tell `track_journal_apply_lag_seconds` when the oldest waiting click arrived.
    async fn track_lag(&self) {
        if self.journal().depth() == 0 {
            self.parts.lag.set_oldest(None);
            return;
        }
        match self.journal().oldest_received_at().await {
            Ok(oldest) => self.parts.lag.set_oldest(oldest),
            // Left as it was: the next step tries again; the read error is counted there.
            Err(e) => tracing::debug!(error = %e, "cannot read the oldest journal record"),
        }
    }

    fn store_down(&mut self) {
        self.store.down(&self.parts.health);
    }
}
