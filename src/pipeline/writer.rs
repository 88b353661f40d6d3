//! The one task that writes: batches in, transactions out, acknowledgements back.
//!
//! Each batch goes to the store (see `commit`). What the store cannot take within
//! `--spill-after-ms` goes to the spool, and its requests are acknowledged once the spool has
//! it. After such a failure the store is treated as down: batches go straight to the spool,
//! with a probe at most every `STORE_RETRY_INTERVAL`, so a dead database costs one spill delay,
//! not one per batch. While the store is up and the spool holds records, the writer replays
//! one spool batch after each live batch (and continuously when idle): live clicks are never
//! starved, and the backlog drains at the store's speed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::batcher::{BatchSettings, next_batch};
use super::commit::{Budget, Committer, Fate};
use super::replay::replay_step;
use super::{Ack, Health, Job};
use crate::domain::Record;
use crate::spool::{Spool, SpoolReason};
use crate::store::{ErrorKind, Seen, Store};
use crate::telemetry::metrics;

/// With nothing to write for this long, probe the store so `/readyz` stays truthful.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// While the store is down, how often a live batch tries it again.
const STORE_RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long that try may take: a quick probe, so a store that is still down costs the batch
/// that asks little more than this before it is spooled.
const STORE_RETRY_PROBE: Duration = Duration::from_millis(250);

pub struct Writer {
    committer: Committer,
    spool: Arc<Spool>,
    rx: mpsc::Receiver<Job>,
    settings: BatchSettings,
    health: Arc<Health>,
    /// While the store is down: when to try it again.
    store_retry_at: Instant,
    /// Records per replay step: halved when a step cannot commit in time, doubled back up to
    /// `max_rows` when it can, so a slow store still drains the spool in smaller steps.
    replay_rows: usize,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        spool: Arc<Spool>,
        rx: mpsc::Receiver<Job>,
        settings: BatchSettings,
        health: Arc<Health>,
    ) -> Writer {
        Writer {
            committer: Committer::new(store),
            spool,
            rx,
            settings,
            health,
            store_retry_at: Instant::now(),
            replay_rows: settings.max_rows,
        }
    }

    /// Write until every queue handle is dropped and the queue is empty, then close the store.
    pub async fn run(mut self) {
        loop {
            let idle = if self.replay_due() {
                Duration::ZERO
            } else {
                PROBE_INTERVAL
            };
            match next_batch(&mut self.rx, &self.settings, idle).await {
                None => self.idle().await,
                Some(batch) if batch.is_empty() => break,
                Some(batch) => {
                    metrics::queue_depth(self.rx.len());
                    self.write(batch).await;
                    if self.replay_due() {
                        self.replay().await;
                    }
                }
            }
        }
        metrics::queue_depth(0);
        self.committer.store().close().await;
        let left = self.spool.depth();
        if left > 0 {
            tracing::warn!(
                spooled = left,
                path = %self.spool.path().display(),
                "writer stopped with clicks in the spool: they are replayed at the next start \
                 (or by `clicktrack spool replay`)"
            );
        }
        self.spool.close().await;
        tracing::info!("writer stopped: queue drained");
    }

    fn replay_due(&self) -> bool {
        self.health.store_ok() && self.health.spool_ok() && self.spool.depth() > 0
    }

    /// Nothing queued: reopen a failed spool, replay a backlog, or probe the store.
    async fn idle(&mut self) {
        if !self.health.spool_ok() {
            self.check_spool().await;
        }
        if self.replay_due() {
            self.replay().await;
        } else {
            self.probe().await;
            if self.health.spool_ok() && self.health.store_ok() {
                // Another process sharing the spool file may have added to it.
                self.check_spool().await;
            }
        }
    }

    /// Open the spool if needed and count what it holds.
    async fn check_spool(&self) {
        match self.spool.open().await {
            Ok(()) => self.health.set_spool(true),
            Err(e) => {
                if self.health.spool_ok() {
                    tracing::error!(operation = "spool", error = %e, kind = e.kind(), "cannot open the spool");
                }
                metrics::error("spool", e.kind());
                self.health.set_spool(false);
            }
        }
    }

    async fn probe(&mut self) {
        match self.committer.probe(self.spill_after()).await {
            Ok(()) => self.health.set_store(true),
            Err(e) => {
                if self.health.store_ok() {
                    tracing::error!(operation = "probe", error = %e, kind = e.kind.as_str(), "store probe failed");
                }
                metrics::error("probe", e.kind.as_str());
                self.store_down();
            }
        }
    }

    /// While the store is down: a quick probe, at most every `STORE_RETRY_INTERVAL`.
    async fn store_is_back(&mut self) -> bool {
        if Instant::now() < self.store_retry_at {
            return false;
        }
        match self
            .committer
            .probe(STORE_RETRY_PROBE.min(self.spill_after()))
            .await
        {
            Ok(()) => {
                self.health.set_store(true);
                true
            }
            Err(e) => {
                metrics::error("probe", e.kind.as_str());
                self.store_down();
                false
            }
        }
    }

    fn store_down(&mut self) {
        self.health.set_store(false);
        self.store_retry_at = Instant::now() + STORE_RETRY_INTERVAL;
    }

    fn spill_after(&self) -> Duration {
        self.settings.spill_after
    }

    /// How long a batch may try the store: until the spill delay while the spool works,
    /// otherwise as long as the retries last (the spool would not help).
    fn budget(&self) -> Budget {
        if self.health.spool_ok() {
            Budget::until(self.spill_after())
        } else {
            Budget::retries_only()
        }
    }

    async fn write(&mut self, jobs: Vec<Job>) {
        metrics::batch_size(jobs.len());
        let (records, waiters): (Vec<Record>, Vec<_>) =
            jobs.into_iter().map(|j| (j.record, j.ack)).unzip();
        // With the spool broken there is nowhere better to go: keep trying the store instead.
        if !self.health.store_ok() && self.health.spool_ok() && !self.store_is_back().await {
            let ack = self.spill(&records).await;
            for waiter in waiters {
                deliver(waiter, ack);
            }
            return;
        }
        let committed = self
            .committer
            .commit(records, Seen::Never, self.budget())
            .await;
        let unwritten: Vec<Record> = committed
            .fates
            .iter()
            .zip(committed.records)
            .filter(|(fate, _)| **fate == Fate::Unwritten)
            .map(|(_, record)| record)
            .collect();
        // Unwritten records exist exactly when the store failed.
        let spilled = if unwritten.is_empty() {
            self.health.set_store(true);
            Ack::Failed
        } else {
            self.store_down();
            self.spill(&unwritten).await
        };
        for (waiter, fate) in waiters.into_iter().zip(committed.fates) {
            let ack = match fate {
                Fate::Stored(outcome) => Ack::Stored(outcome),
                Fate::Unwritten => spilled,
                Fate::Lost => Ack::Failed,
            };
            deliver(waiter, ack);
        }
    }

    /// Put records the store could not take into the spool. `Ack::Spooled` when they are on
    /// disk; `Ack::Failed` when the spool cannot be written either: the one way clicks are lost.
    async fn spill(&self, records: &[Record]) -> Ack {
        if records.is_empty() {
            return Ack::Spooled;
        }
        match self
            .spool
            .append(records.iter(), SpoolReason::StoreUnavailable)
            .await
        {
            Ok(()) => {
                self.health.set_spool(true);
                Ack::Spooled
            }
            Err(e) => {
                tracing::error!(
                    operation = "spool",
                    error = %e,
                    kind = e.kind(),
                    clicks = records.len(),
                    first_click_id = %records[0].click_id(),
                    "store down and spool not writable: clicks not recorded"
                );
                metrics::error("spool", e.kind());
                metrics::clicks_not_written(records.len());
                self.health.set_spool(false);
                Ack::Failed
            }
        }
    }

    async fn replay(&mut self) {
        let step = replay_step(
            &self.committer,
            &self.spool,
            self.replay_rows,
            Budget::until(self.spill_after()),
        )
        .await;
        match step {
            Ok(step) => {
                if let Some(e) = &step.store_failure {
                    if e.kind == ErrorKind::TimedOut {
                        self.replay_rows = (self.replay_rows / 2).max(1);
                    }
                    self.store_down();
                } else if step.read > 0 {
                    self.replay_rows = (self.replay_rows * 2).min(self.settings.max_rows);
                    self.health.set_store(true);
                    tracing::debug!(
                        replayed = step.removed(),
                        left = self.spool.depth(),
                        "spool batch replayed"
                    );
                    if self.spool.depth() == 0 {
                        tracing::info!("spool drained");
                    }
                }
            }
            Err(e) => {
                tracing::error!(operation = "spool", error = %e, kind = e.kind(), "spool replay failed");
                metrics::error("spool", e.kind());
                self.health.set_spool(false);
            }
        }
    }
}

fn deliver(waiter: tokio::sync::oneshot::Sender<Ack>, ack: Ack) {
    // An Err means the request stopped waiting (ack timeout): nobody to tell.
    if waiter.send(ack).is_err() {
        metrics::ack_undelivered();
    }
}
