//! The request side of the pipeline: submit a record, wait until it is durable.
//!
//! The queue is bounded, so memory stays flat under any load: when it is full the record goes
//! to the overflow task, which appends it to the journal (counted as `track_queue_full_total`);
//! only if that path is full too does the request wait for room. Every wait is bounded by the ack timeout;
//! a request that times out still redirects, and the outcome is counted, never hidden.
//! Queueing never waits on the common path (`try_submit`), so a request hands its record over
//! and waits for the answer on its own task: no task or thread hop per click.

use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;
use tokio::time::Instant;

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

/// Why `try_submit` did not queue a record.
#[derive(Debug)]
pub enum Refused {
    /// The queue and the overflow path are full: the record, to queue with `submit_when_room`.
    Full(Box<Record>),
    /// The appender is gone (shutting down).
    Closed,
}

/// A queued record's acknowledgement, not yet come.
#[derive(Debug)]
pub struct AckWait {
    ack: oneshot::Receiver<Ack>,
    deadline: Instant,
}

impl AckWait {
    /// Wait for the acknowledgement until the ack timeout. Cancel-safe: a wait dropped before
    /// the answer can be started again (by another task) and still gets it.
    pub async fn outcome(&mut self) -> Submission {
        match tokio::time::timeout_at(self.deadline, &mut self.ack).await {
            Err(_) => Submission::TimedOut,
            Ok(Ok(Ack::Stored(outcome))) => Submission::Durable(outcome),
            Ok(Ok(Ack::Journaled)) => Submission::Journaled,
            Ok(Ok(Ack::Spooled)) => Submission::Spooled,
            Ok(Ok(Ack::Failed)) => Submission::Failed,
            Ok(Err(_)) => Submission::Closed,
        }
    }
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

    /// Queue `record` without waiting for room, and return the acknowledgement to wait for.
    /// When the queue and the overflow path are both full, the record comes back
    /// (`submit_when_room` then waits for room).
    pub fn try_submit(&self, record: Record) -> Result<AckWait, Refused> {
        let deadline = Instant::now() + self.ack_timeout;
        let (ack_tx, ack_rx) = oneshot::channel();
        let job = Job {
            record,
            ack: ack_tx,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                metrics::queue_full();
                match self.overflow.try_send(job) {
                    Ok(()) => {}
                    Err(TrySendError::Full(job) | TrySendError::Closed(job)) => {
                        return Err(Refused::Full(Box::new(job.record)));
                    }
                }
            }
            Err(TrySendError::Closed(_)) => return Err(Refused::Closed),
        }
        Ok(AckWait {
            ack: ack_rx,
            deadline,
        })
    }

    /// Queue a record `try_submit` gave back (the queue and the overflow path were full),
    /// waiting for room in the queue, and wait until it is durable (or the ack timeout
    /// passes). Not tried again from the start: the full queue is already counted.
    pub async fn submit_when_room(&self, record: Record) -> Submission {
        let deadline = Instant::now() + self.ack_timeout;
        let (ack_tx, ack_rx) = oneshot::channel();
        let job = Job {
            record,
            ack: ack_tx,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(job)).await {
            Err(_) => return Submission::TimedOut,
            Ok(Err(_)) => return Submission::Closed,
            Ok(Ok(())) => {}
        }
        AckWait {
            ack: ack_rx,
            deadline,
        }
        .outcome()
        .await
    }

    /// Records waiting for the appender.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
