//! The task that makes accepted clicks durable and answers their requests.
//!
//! It takes groups of records from the queue (`batcher`) and commits each group at once:
//! - `--ack journal`: one append to the journal, one fsync for the whole group, then every
//!   request of the group is answered and the applier is woken. If the journal cannot be
//!   written (disk full, a permission, `--journal-max-bytes`), the group goes to the store
//!   directly, as `--ack store` would; only if that fails too is a 302 sent without a durable
//!   click, logged and counted as `not_durable`.
//! - `--ack store`: the group is committed to the store (retries within `--spill-after-ms`);
//!   what the store cannot take in time is appended to the journal and answered from there.
//!   After such a failure the store counts as down: groups go straight to the journal, with a
//!   quick probe at most every half second (`probe.rs`), so a dead database costs one spill
//!   delay, not one per group.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::batcher::{BatchSettings, next_batch};
use super::commit::{Budget, Committer, Fate};
use super::probe::StoreWatch;
use super::{Ack, AckMode, ApplyLag, Health, Job};
use crate::domain::Record;
use crate::journal::{AppendReason, Journal, JournalFailed};
use crate::store::Seen;
use crate::telemetry::{Event, metrics};

/// With nothing to do for this long, check what is broken so `/readyz` stays truthful.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// While the journal cannot be written (`--ack journal`), how often a group tries it again.
const JOURNAL_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// What the appender and the overflow task share.
#[derive(Clone)]
pub struct Shared {
    pub journal: Arc<Journal>,
    pub health: Arc<Health>,
    pub lag: Arc<ApplyLag>,
    /// Wakes the applier when there is something to apply.
    pub wake: Arc<Notify>,
    pub mode: AckMode,
}

impl Shared {
    /// Append `records` and tell the applier. `Err` is already logged (once per outage) and
    /// counted; the journal is then marked not writable.
    pub async fn append<'a, I>(&self, records: I, reason: AppendReason) -> Result<(), ()>
    where
        I: IntoIterator<Item = &'a Record> + Clone,
    {
        match self.journal.append(records.clone(), reason).await {
            Ok(()) => {
                self.health.set_journal(true);
                self.lag.appended(records);
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                let first = records.clone().into_iter().next().map(Record::click_id);
                JournalFailed {
                    error: &e,
                    what: "journal append failed",
                    already_logged: !self.health.journal_ok(),
                    appending: Some((records.into_iter().count(), first.unwrap_or_default())),
                }
                .emit();
                self.health.set_journal(false);
                Err(())
            }
        }
    }

    /// The answer for records the journal took.
    pub fn journal_ack(&self) -> Ack {
        match self.mode {
            AckMode::Journal => Ack::Journaled,
            AckMode::Store => Ack::Spooled,
        }
    }
}

pub struct Appender {
    rx: mpsc::Receiver<Job>,
    committer: Committer,
    settings: BatchSettings,
    shared: Shared,
    /// While the store is down (`--ack store`): when to try it again.
    store: StoreWatch,
    /// While the journal cannot be written (`--ack journal`): when to try it again.
    journal_retry_at: Instant,
}

impl Appender {
    pub(super) fn new(
        rx: mpsc::Receiver<Job>,
        committer: Committer,
        settings: BatchSettings,
        shared: Shared,
    ) -> Appender {
        Appender {
            rx,
            committer,
            settings,
            shared,
            store: StoreWatch::new(),
            journal_retry_at: Instant::now(),
        }
    }

    fn health(&self) -> &Health {
        &self.shared.health
    }

    /// Answer groups until every queue handle is dropped and the queue is empty.
    pub async fn run(mut self) {
        loop {
            match next_batch(&mut self.rx, &self.settings, PROBE_INTERVAL).await {
                None => self.idle().await,
                Some(batch) if batch.is_empty() => break,
                Some(batch) => {
                    metrics::queue_depth(self.rx.len());
                    metrics::batch_size(batch.len());
                    let (records, waiters): (Vec<Record>, Vec<_>) =
                        batch.into_iter().map(|j| (j.record, j.ack)).unzip();
                    let acks = match self.shared.mode {
                        AckMode::Journal => self.journal_first(&records).await,
                        AckMode::Store => self.store_first(records).await,
                    };
                    for (waiter, ack) in waiters.into_iter().zip(acks) {
                        deliver(waiter, ack);
                    }
                }
            }
        }
        metrics::queue_depth(0);
        tracing::info!("appender stopped: queue drained");
    }

    /// Nothing queued: reopen a journal that failed; with `--ack store`, probe the store.
    async fn idle(&mut self) {
        if !self.health().journal_ok() {
            match self.shared.journal.reopen().await {
                Ok(()) => self.health().set_journal(true),
                // Logged when it failed first.
                Err(e) => JournalFailed {
                    error: &e,
                    what: "cannot reopen the journal",
                    already_logged: true,
                    appending: None,
                }
                .emit(),
            }
        }
        if self.shared.mode == AckMode::Store {
            let Shared {
                health, journal, ..
            } = &self.shared;
            let nothing_waits = || journal.depth() == 0;
            self.store
                .probe(
                    &self.committer,
                    health,
                    self.settings.spill_after,
                    nothing_waits,
                )
                .await;
        }
    }

    /// `--ack journal`: the journal, or the store if the journal cannot take the group.
    async fn journal_first(&mut self, records: &[Record]) -> Vec<Ack> {
        let try_journal = self.health().journal_ok() || Instant::now() >= self.journal_retry_at;
        if try_journal {
            if self
                .shared
                .append(records, AppendReason::Journal)
                .await
                .is_ok()
            {
                return vec![Ack::Journaled; records.len()];
            }
            self.journal_retry_at = Instant::now() + JOURNAL_RETRY_INTERVAL;
        }
        // The ids are looked up (`Seen::Maybe`): an append that reported failure may still
        // have reached the disk, and then the applier may write these clicks first.
        let committed = self
            .committer
            .commit(records.to_vec(), Seen::Maybe, Budget::retries_only())
            .await;
        let mut unwritten = 0;
        let acks = committed
            .fates
            .into_iter()
            .map(|fate| match fate {
                Fate::Stored(outcome) => Ack::Stored(outcome),
                Fate::Unwritten => {
                    unwritten += 1;
                    Ack::Failed
                }
                Fate::Lost => Ack::Failed,
            })
            .collect();
        if unwritten > 0 {
            ClicksNotRecorded {
                clicks: unwritten,
                first_click_id: None,
                why: "journal not writable and store failing: clicks not recorded",
            }
            .emit();
            self.health().set_store(false);
        } else {
            self.health().set_store(true);
        }
        acks
    }

    /// `--ack store`: the store within `--spill-after-ms`, else the journal.
    async fn store_first(&mut self, records: Vec<Record>) -> Vec<Ack> {
        let health = self.shared.health.clone();
        // With the journal broken there is nowhere better to go: keep trying the store.
        if !health.store_ok()
            && health.journal_ok()
            && !self
                .store
                .is_back(&self.committer, &health, self.settings.spill_after)
                .await
        {
            let ack = self.spill(&records).await;
            return vec![ack; records.len()];
        }
        let budget = if health.journal_ok() {
            Budget::until(self.settings.spill_after)
        } else {
            Budget::retries_only()
        };
        let committed = self.committer.commit(records, Seen::Never, budget).await;
        let fates = committed.fates;
        let unwritten: Vec<Record> = committed
            .records
            .into_iter()
            .zip(&fates)
            .filter(|(_, fate)| **fate == Fate::Unwritten)
            .map(|(record, _)| record)
            .collect();
        // Unwritten records exist exactly when the store failed. Appended before the store is
        // marked down, so a probe passing meanwhile sees them waiting (see `StoreWatch::probe`).
        let spilled = if unwritten.is_empty() {
            health.set_store(true);
            Ack::Failed
        } else {
            let ack = self.spill(&unwritten).await;
            self.store_down();
            ack
        };
        fates
            .into_iter()
            .map(|fate| match fate {
                Fate::Stored(outcome) => Ack::Stored(outcome),
                Fate::Unwritten => spilled,
                Fate::Lost => Ack::Failed,
            })
            .collect()
    }

    fn store_down(&mut self) {
        self.store.down(&self.shared.health);
    }

    /// Put records the store could not take into the journal. `Ack::Spooled` when they are on
    /// disk; `Ack::Failed` when the journal cannot be written either: the one way clicks are
    /// lost (logged and counted).
    async fn spill(&self, records: &[Record]) -> Ack {
        if records.is_empty() {
            return Ack::Spooled;
        }
        match self
            .shared
            .append(records, AppendReason::StoreUnavailable)
            .await
        {
            Ok(()) => Ack::Spooled,
            Err(()) => {
                ClicksNotRecorded {
                    clicks: records.len(),
                    first_click_id: Some(records[0].click_id()),
                    why: "store down and journal not writable: clicks not recorded",
                }
                .emit();
                Ack::Failed
            }
        }
    }
}

pub(super) fn deliver(waiter: tokio::sync::oneshot::Sender<Ack>, ack: Ack) {
    // An Err means the request stopped waiting (ack timeout): nobody to tell.
    if waiter.send(ack).is_err() {
        metrics::ack_undelivered();
    }
}

/// Clicks that neither the journal nor the store took: the one loss clicktrack admits (their
/// requests got their 302 all the same, counted `not_durable`), logged and counted in
/// `track_clicks_not_written_total`.
struct ClicksNotRecorded {
    clicks: usize,
    first_click_id: Option<uuid::Uuid>,
    why: &'static str,
}

impl Event for ClicksNotRecorded {
    fn emit(self) {
        tracing::error!(
            operation = "spool",
            clicks = self.clicks,
            first_click_id = self.first_click_id.map(tracing::field::display),
            "{}",
            self.why
        );
        metrics::clicks_not_written(self.clicks);
    }
}
