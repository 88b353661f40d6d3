//! Where clicks go when the in-memory queue is full: straight into the spool.
//!
//! A burst larger than the queue must neither drop clicks nor make requests wait without
//! bound. Requests that find the queue full hand their record to this task instead; it
//! group-commits them into the spool (the same batching as the writer) and acknowledges them
//! once they are on disk. The writer replays them when it catches up. If the spool cannot be
//! written, the records go back to waiting for room in the queue, each request bounded by its
//! own ack timeout: slower, but still nothing dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::batcher::{BatchSettings, next_batch};
use super::{Ack, Health, Job};
use crate::spool::{Spool, SpoolReason};
use crate::telemetry::metrics;

/// Nothing to do while no overflow arrives; the wait only ends early when the queue closes.
const IDLE: Duration = Duration::from_secs(3600);

pub struct Overflow {
    rx: mpsc::Receiver<Job>,
    queue: mpsc::Sender<Job>,
    spool: Arc<Spool>,
    settings: BatchSettings,
    health: Arc<Health>,
}

impl Overflow {
    pub(super) fn new(
        rx: mpsc::Receiver<Job>,
        queue: mpsc::Sender<Job>,
        spool: Arc<Spool>,
        settings: BatchSettings,
        health: Arc<Health>,
    ) -> Overflow {
        Overflow {
            rx,
            queue,
            spool,
            settings,
            health,
        }
    }

    /// Spool overflowing records until every queue handle is dropped; then the writer's
    /// queue handle held here is dropped too, and the writer can finish.
    pub async fn run(mut self) {
        loop {
            match next_batch(&mut self.rx, &self.settings, IDLE).await {
                None => {}
                Some(jobs) if jobs.is_empty() => break,
                Some(jobs) => self.spool_or_requeue(jobs).await,
            }
        }
    }

    async fn spool_or_requeue(&self, jobs: Vec<Job>) {
        let records = jobs.iter().map(|j| &j.record);
        match self.spool.append(records, SpoolReason::Overflow).await {
            Ok(()) => {
                self.health.set_spool(true);
                for job in jobs {
                    if job.ack.send(Ack::Spooled).is_err() {
                        metrics::ack_undelivered();
                    }
                }
            }
            Err(e) => {
                tracing::error!(
                    operation = "spool",
                    error = %e,
                    kind = e.kind(),
                    clicks = jobs.len(),
                    "queue full and spool not writable: clicks wait for room in the queue"
                );
                metrics::error("spool", e.kind());
                self.health.set_spool(false);
                for job in jobs {
                    if self.queue.send(job).await.is_err() {
                        // The writer is gone: the job's request is told by its dropped ack.
                        break;
                    }
                }
            }
        }
    }
}
