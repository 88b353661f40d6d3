//! Where clicks go when the in-memory queue is full: straight into the journal.
//!
//! A burst larger than the queue must neither drop clicks nor make requests wait without
//! bound. Requests that find the queue full hand their record to this task instead; it
//! group-commits them into the journal (the same batching as the appender) and answers them
//! once they are on disk. The applier writes them into the store like any other record. If the
//! journal cannot be written, the records go back to waiting for room in the queue, each
//! request bounded by its own ack timeout: slower, but still nothing dropped.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Job;
use super::appender::{Shared, deliver};
use super::batcher::{BatchSettings, next_batch};
use crate::journal::AppendReason;

/// Nothing to do while no overflow arrives; the wait only ends early when the queue closes.
const IDLE: Duration = Duration::from_secs(3600);

pub struct Overflow {
    rx: mpsc::Receiver<Job>,
    queue: mpsc::Sender<Job>,
    settings: BatchSettings,
    shared: Shared,
}

impl Overflow {
    pub(super) fn new(
        rx: mpsc::Receiver<Job>,
        queue: mpsc::Sender<Job>,
        settings: BatchSettings,
        shared: Shared,
    ) -> Overflow {
        Overflow {
            rx,
            queue,
            settings,
            shared,
        }
    }

    /// Append overflowing records until every queue handle is dropped; then the appender's
    /// queue handle held here is dropped too, and the appender can finish.
    pub async fn run(mut self) {
        loop {
            match next_batch(&mut self.rx, &self.settings, IDLE).await {
                None => {}
                Some(jobs) if jobs.is_empty() => break,
                Some(jobs) => self.append_or_requeue(jobs).await,
            }
        }
    }

    async fn append_or_requeue(&self, jobs: Vec<Job>) {
        let records = jobs.iter().map(|j| &j.record);
        if self
            .shared
            .append(records, AppendReason::Overflow)
            .await
            .is_ok()
        {
            let ack = self.shared.journal_ack();
            for job in jobs {
                deliver(job.ack, ack);
            }
            return;
        }
        tracing::warn!(
            operation = "spool",
            clicks = jobs.len(),
            "queue full and journal not writable: clicks wait for room in the queue"
        );
        for job in jobs {
            if self.queue.send(job).await.is_err() {
                // The appender is gone: the job's request is told by its dropped ack.
                break;
            }
        }
    }
}
