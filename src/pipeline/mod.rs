//! The path from an accepted request to a durable row: bounded queue → batcher → one writer.
//!
//! Request handlers never touch the database. They hand a record to the `ClickQueue` and wait
//! for its acknowledgement; the single `Writer` task collects records into batches, writes each
//! batch in one transaction, and acknowledges every record once its batch is committed. This is
//! group commit: the database sees a few large transactions instead of thousands of small ones.

mod batcher;
mod health;
mod queue;
mod writer;

pub use batcher::BatchSettings;
pub use health::StoreHealth;
pub use queue::{ClickQueue, Submission};
pub use writer::Writer;

use tokio::sync::{mpsc, oneshot};

use crate::domain::Record;
use crate::store::Outcome;

/// What the writer tells a waiting request about its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Committed to the store.
    Stored(Outcome),
    /// Not written: the store failed after its retries (logged and counted by the writer).
    Failed,
}

/// A record and the way back to the request that waits for it.
#[derive(Debug)]
pub struct Job {
    pub record: Record,
    pub ack: oneshot::Sender<Ack>,
}

/// Create the queue handle and its writer over `store`.
pub fn channel(
    store: crate::store::Store,
    settings: BatchSettings,
    health: std::sync::Arc<StoreHealth>,
) -> (ClickQueue, Writer) {
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    (
        ClickQueue::new(tx, settings.ack_timeout),
        Writer::new(store, rx, settings, health),
    )
}
