//! The one task that writes: batches in, transactions out, acknowledgements back.
//!
//! Transient failures (busy, lock contention, a dropped connection) retry the whole batch with
//! jittered exponential backoff; that is safe because a store write is idempotent by
//! `click_id`. A batch the database refuses is bisected until the refused click is alone, and
//! that click is set aside in `track_rejects` with the database's reason: one bad row never
//! takes the others down. Anything else fails the batch, loudly (log line + metric).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::batcher::{BatchSettings, next_batch};
use super::{Ack, Job, StoreHealth};
use crate::domain::{Record, RejectReason};
use crate::store::{BatchResult, ErrorKind, Seen, Store, StoreError};
use crate::telemetry::metrics;

/// Retries of one batch before it is given up.
const MAX_RETRIES: u32 = 8;
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// With nothing to write for this long, probe the store so `/readyz` stays truthful.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

pub struct Writer {
    store: Store,
    rx: mpsc::Receiver<Job>,
    settings: BatchSettings,
    health: Arc<StoreHealth>,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        rx: mpsc::Receiver<Job>,
        settings: BatchSettings,
        health: Arc<StoreHealth>,
    ) -> Writer {
        Writer {
            store,
            rx,
            settings,
            health,
        }
    }

    /// Write until every queue handle is dropped and the queue is empty, then close the store.
    pub async fn run(mut self) {
        loop {
            match next_batch(&mut self.rx, &self.settings, PROBE_INTERVAL).await {
                None => self.probe().await,
                Some(batch) if batch.is_empty() => break,
                Some(batch) => {
                    metrics::queue_depth(self.rx.len());
                    self.write(batch).await;
                }
            }
        }
        metrics::queue_depth(0);
        self.store.close().await;
        tracing::info!("writer stopped: queue drained");
    }

    async fn probe(&self) {
        match self.store.probe().await {
            Ok(()) => self.health.set(true),
            Err(e) => {
                if self.health.is_ready() {
                    tracing::error!(operation = "probe", error = %e, kind = e.kind.as_str(), "store probe failed");
                }
                metrics::error("probe", e.kind.as_str());
                self.health.set(false);
            }
        }
    }

    async fn write(&self, jobs: Vec<Job>) {
        metrics::batch_size(jobs.len());
        let (records, waiters): (Vec<Record>, Vec<_>) =
            jobs.into_iter().map(|j| (j.record, j.ack)).unzip();
        let acks = self.write_isolating(records).await;
        for (waiter, ack) in waiters.into_iter().zip(acks) {
            // An Err means the request went away (client disconnected): nobody to tell.
            if waiter.send(ack).is_err() {
                metrics::ack_undelivered();
            }
        }
    }

    /// Write `records`, bisecting around refused rows. One acknowledgement per record.
    async fn write_isolating(&self, mut records: Vec<Record>) -> Vec<Ack> {
        let mut acks = vec![Ack::Failed; records.len()];
        // Ranges still to write; a refused range is split in two and pushed back.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..records.len());
        // Only the whole batch's first attempt is known never to have been written.
        let mut seen = Seen::Never;
        while let Some(range) = pending.pop() {
            let result = self.write_with_retry(&records[range.clone()], seen).await;
            seen = Seen::Maybe;
            match result {
                Ok(result) => {
                    self.health.set(true);
                    metrics::batch_written(&result);
                    for (i, outcome) in range.zip(result.outcomes) {
                        acks[i] = Ack::Stored(outcome);
                    }
                }
                Err(e) if e.kind == ErrorKind::Refused && range.len() > 1 => {
                    metrics::bisection();
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(e) if e.kind == ErrorKind::Refused => {
                    // One record left, and the database refuses it.
                    metrics::error("write_batch", e.kind.as_str());
                    let i = range.start;
                    match &records[i] {
                        Record::Click(c) => {
                            tracing::warn!(
                                click_id = %c.click_id,
                                campaign_id = c.campaign_id,
                                uid = %crate::telemetry::short_uid(c.uid.as_deref()),
                                error = %e,
                                "click refused by the database: set aside in track_rejects"
                            );
                            let reject = records[i]
                                .clone()
                                .into_reject(RejectReason::RefusedByDatabase, Some(e.to_string()));
                            records[i] = Record::Reject(reject);
                            pending.push(i..i + 1);
                        }
                        Record::Reject(r) => {
                            // Not even its reject row fits: this one record is lost, loudly.
                            tracing::error!(
                                operation = "write_batch",
                                click_id = %r.click_id,
                                reason = r.reason.as_str(),
                                error = %e,
                                "reject refused by the database: not recorded"
                            );
                            metrics::clicks_not_written(1);
                        }
                    }
                }
                Err(e) => {
                    // Unrecoverable for now: fail this range and everything still pending.
                    let lost = range.len() + pending.iter().map(|r| r.len()).sum::<usize>();
                    tracing::error!(
                        operation = "write_batch",
                        error = %e,
                        kind = e.kind.as_str(),
                        code = e.code.as_deref().unwrap_or(""),
                        clicks = lost,
                        "batch not written after retries"
                    );
                    metrics::error("write_batch", e.kind.as_str());
                    metrics::clicks_not_written(lost);
                    self.health.set(false);
                    break;
                }
            }
        }
        acks
    }

    async fn write_with_retry(
        &self,
        records: &[Record],
        mut seen: Seen,
    ) -> Result<BatchResult, StoreError> {
        let mut retries = 0;
        loop {
            let started = Instant::now();
            match self.store.write_batch(records, seen).await {
                Ok(result) => {
                    metrics::batch_commit_duration(started.elapsed());
                    return Ok(result);
                }
                Err(e) if e.is_retryable() && retries < MAX_RETRIES => {
                    // Not ready from the first failed attempt, not only once retries run out.
                    self.health.set(false);
                    metrics::error("write_batch", e.kind.as_str());
                    retries += 1;
                    // The failed attempt may have committed (e.g. connection lost in COMMIT).
                    seen = Seen::Maybe;
                    metrics::batch_retry(e.code.as_deref().unwrap_or(e.kind.as_str()));
                    tracing::debug!(error = %e, retries, rows = records.len(), "retrying batch");
                    tokio::time::sleep(backoff(retries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Exponential backoff with "equal jitter": half fixed, half random, capped.
fn backoff(retry: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1 << retry.min(16))
        .min(BACKOFF_CAP);
    let half = exp / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_is_capped() {
        for retry in 1..=MAX_RETRIES {
            let d = backoff(retry);
            let exp = BACKOFF_BASE.saturating_mul(1 << retry).min(BACKOFF_CAP);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }
}
