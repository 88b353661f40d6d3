//! The request side of the pipeline: submit a record, wait until it is durable.
//!
//! The queue is bounded, so memory stays flat under any load: when it is full the record goes
//! to the overflow task, which appends it to the journal (counted as `track_queue_full_total`);
//! only if that path is full too does the request wait for room. Every wait is bounded by the ack timeout;
//! a request that times out still redirects, and the outcome is counted, never hidden.

use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use super::{Ack, Job};
use crate::domain::Record;
use crate::store::Outcome;
use crate::telemetry::metrics;

/// What became of a submitted record, from the request's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submission {
    /// Committed to the store; the outcome says how.
    Durable(Outcome),
    /// On disk in the journal (`--ack journal`); the applier writes it into the store.
    Journaled,
    /// On disk in the journal because the store could not take it in time (`--ack store`).
    Spooled,
    /// Neither the journal nor the store took it (already logged and counted there).
    Failed,
    /// No acknowledgement within the ack timeout; the record may still be written.
    TimedOut,
    /// The appender is gone (shutting down).
    Closed,
}

#[derive(Debug, Clone)]
pub struct ClickQueue {
    tx: mpsc::Sender<Job>,
    overflow: mpsc::Sender<Job>,
    ack_timeout: Duration,
}

impl ClickQueue {
    pub(super) fn new(
        tx: mpsc::Sender<Job>,
        overflow: mpsc::Sender<Job>,
        ack_timeout: Duration,
    ) -> ClickQueue {
        ClickQueue {
            tx,
            overflow,
            ack_timeout,
        }
    }

    /// Queue `record` and wait until it is durable (or the ack timeout passes).
    pub async fn submit(&self, record: Record) -> Submission {
        let (ack_tx, ack_rx) = oneshot::channel();
        let job = Job {
            record,
            ack: ack_tx,
        };
        let wait = async {
            match self.tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    metrics::queue_full();
                    match self.overflow.try_send(job) {
                        Ok(()) => {}
                        Err(TrySendError::Full(job) | TrySendError::Closed(job)) => {
                            if self.tx.send(job).await.is_err() {
                                return Submission::Closed;
                            }
                        }
                    }
                }
                Err(TrySendError::Closed(_)) => return Submission::Closed,
            }
            match ack_rx.await {
                Ok(Ack::Stored(outcome)) => Submission::Durable(outcome),
                Ok(Ack::Journaled) => Submission::Journaled,
                Ok(Ack::Spooled) => Submission::Spooled,
                Ok(Ack::Failed) => Submission::Failed,
                Err(_) => Submission::Closed,
            }
        };
        tokio::time::timeout(self.ack_timeout, wait)
            .await
            .unwrap_or(Submission::TimedOut)
    }

    /// Records waiting for the appender.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
