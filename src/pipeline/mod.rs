//! The path from an accepted request to a row in the store: queue → appender → journal →
//! applier → store.
//!
//! Request handlers never touch the database. They hand a record to the `ClickQueue` and wait
//! for its acknowledgement. The `Appender` collects records into groups and makes each group
//! durable in one commit, then answers every request of the group:
//! - `--ack journal` (default): the group is appended to the journal (one fsync), the 302s go
//!   out, and the `Applier` writes the journal into the store in large batches, moments later;
//! - `--ack store`: the group is committed to the store first (the counter includes the click
//!   when the browser lands); the journal only takes what the store cannot take in time.
//!
//! Either way the applier is the one road from the journal into the store, and it is
//! idempotent by `click_id`: a record applied twice (a crash between commit and removal) is
//! counted once.

mod appender;
pub mod applier;
pub mod applier_thread;
pub mod backfill;
mod batcher;
mod commit;
pub mod erasure;
mod give_way;
mod health;
mod lag;
mod late_commits;
pub mod member_packs;
mod overflow;
pub mod priority;
mod probe;
mod queue;
pub mod retention;

pub use appender::Appender;
pub use applier::Applier;
pub use batcher::BatchSettings;
pub use commit::{Budget, Committer};
use give_way::GiveWay;
pub use give_way::PSI_CPU;
pub use health::Health;
pub use lag::ApplyLag;
pub use overflow::Overflow;
pub use queue::{AckWait, ClickQueue, Refused, Submission};

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::domain::Record;
use crate::journal::Journal;
use crate::store::{Outcome, Store};

/// When a request is answered (`--ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckMode {
    /// Once the click is in the journal on disk; the store has it moments later.
    Journal,
    /// Once the click is committed to the store (or, if the store cannot take it in time, to
    /// the journal).
    Store,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Journal => "journal",
            AckMode::Store => "store",
        }
    }
}

/// What the pipeline tells a waiting request about its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Committed to the store.
    Stored(Outcome),
    /// On disk in the journal, the normal path of `--ack journal`.
    Journaled,
    /// On disk in the journal because the store could not take it (`--ack store`).
    Spooled,
    /// Neither the store nor the journal took it (logged and counted where it failed).
    Failed,
}

/// A record and the way back to the request that waits for it.
#[derive(Debug)]
pub struct Job {
    pub record: Record,
    pub ack: oneshot::Sender<Ack>,
}

/// Tuning of the pipeline's two halves.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub mode: AckMode,
    pub batch: BatchSettings,
    /// Most records the applier writes in one store transaction.
    pub apply_max_rows: usize,
    /// Under load, how long the applier may wait for a full batch.
    pub apply_max_delay: std::time::Duration,
    /// How long one applier transaction may try (`--apply-timeout-ms`).
    pub apply_timeout: std::time::Duration,
    /// How old the oldest waiting click may get while the applier steps aside for the
    /// redirects on a saturated CPU (`--max-apply-lag`; zero: never steps aside).
    pub max_apply_lag: std::time::Duration,
    /// Where the CPU pressure is read (`/proc/pressure/cpu`; tests give a file of their own).
    pub cpu_pressure: std::path::PathBuf,
}

/// The pipeline's parts: the handle requests use, and the tasks to run.
pub struct Pipeline {
    pub queue: ClickQueue,
    pub appender: Appender,
    pub overflow: Overflow,
    pub applier: Applier,
    /// Tells the applier to drain the journal by the given deadline and stop.
    pub drain: watch::Sender<Option<Instant>>,
}

/// The shared state the pipeline's tasks are built from.
pub struct Parts {
    /// The store the appender writes to when it must (`--ack store`, or no journal).
    pub store: Store,
    /// The applier's own connection to the same store (opened on its thread).
    pub applier_store: Store,
    pub journal: Arc<Journal>,
    pub health: Arc<Health>,
    pub lag: Arc<ApplyLag>,
}

/// Create the queue handle, the appender and overflow tasks in front of the journal, and the
/// applier behind it.
pub fn build(parts: Parts, settings: PipelineSettings) -> Pipeline {
    let batch = settings.batch;
    let (tx, rx) = mpsc::channel(batch.queue_capacity);
    let (overflow_tx, overflow_rx) = mpsc::channel(batch.queue_capacity);
    let (drain, drain_rx) = watch::channel(None);
    let wake = Arc::new(Notify::new());
    let committer = Committer::new(parts.store);
    // A journal append costs one fsync whatever its size, so the appender never waits for a
    // group to fill: it syncs what has arrived, and what arrives meanwhile is the next group
    // (group commit by itself). Waiting `--batch-max-delay-ms` only pays off when each group
    // is a store transaction (`--ack store`).
    let append_batch = match settings.mode {
        AckMode::Journal => BatchSettings {
            max_delay: std::time::Duration::ZERO,
            ..batch
        },
        AckMode::Store => batch,
    };
    let shared = appender::Shared {
        journal: parts.journal.clone(),
        health: parts.health.clone(),
        lag: parts.lag.clone(),
        wake: wake.clone(),
        mode: settings.mode,
    };
    Pipeline {
        queue: ClickQueue::new(tx.clone(), overflow_tx, batch.ack_timeout),
        appender: Appender::new(rx, committer.clone(), append_batch, shared.clone()),
        overflow: Overflow::new(overflow_rx, tx, append_batch, shared),
        applier: Applier::new(
            applier::Parts {
                journal: parts.journal,
                committer: Committer::new(parts.applier_store),
                health: parts.health,
                lag: parts.lag,
                wake,
                drain: drain_rx,
            },
            settings.apply_max_rows,
            settings.apply_max_delay,
            settings.apply_timeout,
            GiveWay::new(settings.max_apply_lag, &settings.cpu_pressure),
        ),
        drain,
    }
}
