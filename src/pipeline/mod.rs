//! The path from an accepted request to a durable row: bounded queue → batcher → one writer.
//!
//! Request handlers never touch the database. They hand a record to the `ClickQueue` and wait
//! for its acknowledgement; the single `Writer` task collects records into batches, writes each
//! batch in one transaction, and acknowledges every record once its batch is committed. This is
//! group commit: the database sees a few large transactions instead of thousands of small ones.

mod batcher;
mod commit;
mod health;
mod overflow;
mod queue;
pub mod replay;
mod writer;

pub use batcher::BatchSettings;
pub use commit::{Budget, Committer};
pub use health::Health;
pub use overflow::Overflow;
pub use queue::{ClickQueue, Submission};
pub use writer::Writer;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::Record;
use crate::spool::Spool;
use crate::store::Outcome;

/// What the pipeline tells a waiting request about its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Committed to the store.
    Stored(Outcome),
    /// On disk in the spool; replayed into the store later.
    Spooled,
    /// Neither the store nor the spool took it (logged and counted where it failed).
    Failed,
}

/// A record and the way back to the request that waits for it.
#[derive(Debug)]
pub struct Job {
    pub record: Record,
    pub ack: oneshot::Sender<Ack>,
}

/// The pipeline's parts: the handle requests use, and the two tasks to run.
pub struct Pipeline {
    pub queue: ClickQueue,
    pub writer: Writer,
    pub overflow: Overflow,
}

/// Create the queue handle, its writer over `store`, and the overflow path into `spool`.
pub fn build(
    store: crate::store::Store,
    spool: Arc<Spool>,
    settings: BatchSettings,
    health: Arc<Health>,
) -> Pipeline {
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let (overflow_tx, overflow_rx) = mpsc::channel(settings.queue_capacity);
    Pipeline {
        queue: ClickQueue::new(tx.clone(), overflow_tx, settings.ack_timeout),
        writer: Writer::new(store, spool.clone(), rx, settings, health.clone()),
        overflow: Overflow::new(overflow_rx, tx, spool, settings, health),
    }
}
