//! Moving spooled records into the store, oldest first, exactly once.
//!
//! One step reads the oldest records, commits them with their `click_id`s looked up
//! (`Seen::Maybe`), and only then removes them from the spool. A crash between the commit and
//! the removal leaves them spooled; the next step finds their ids in the store and changes
//! nothing (`AlreadyRecorded`). The unique index on `click_id` is the arbiter, even when two
//! processes replay one spool at the same time.

use super::commit::{Budget, Committer, Fate};
use crate::spool::{Spool, SpoolError};
use crate::store::{Outcome, Seen, StoreError};
use crate::telemetry::metrics;

/// What one replay step did.
#[derive(Debug, Default)]
pub struct ReplayStep {
    /// Records read from the spool (0: it is empty).
    pub read: usize,
    pub recorded: usize,
    pub already_recorded: usize,
    pub rejected: usize,
    /// Records the database refused outright (removed, logged and counted as not written).
    pub lost: usize,
    /// The store failed: the records not written stay spooled.
    pub store_failure: Option<StoreError>,
}

impl ReplayStep {
    pub fn removed(&self) -> usize {
        self.recorded + self.already_recorded + self.rejected + self.lost
    }
}

/// Replay up to `limit` of the oldest spooled records. Errors are the spool's own; a store
/// failure is part of the step (`store_failure`), since the records are safe where they are.
pub async fn replay_step(
    committer: &Committer,
    spool: &Spool,
    limit: usize,
    budget: Budget,
) -> Result<ReplayStep, SpoolError> {
    let spooled = spool.oldest(limit).await?;
    let mut step = ReplayStep {
        read: spooled.len(),
        ..ReplayStep::default()
    };
    if spooled.is_empty() {
        return Ok(step);
    }
    let (seqs, records): (Vec<i64>, Vec<_>) =
        spooled.into_iter().map(|s| (s.seq, s.record)).unzip();
    let committed = committer.commit(records, Seen::Maybe, budget).await;
    let mut done = Vec::with_capacity(seqs.len());
    let mut outcomes = Vec::with_capacity(seqs.len());
    for (seq, fate) in seqs.into_iter().zip(committed.fates) {
        match fate {
            Fate::Stored(outcome) => {
                match outcome {
                    Outcome::Recorded => step.recorded += 1,
                    Outcome::AlreadyRecorded => step.already_recorded += 1,
                    Outcome::Rejected(_) => step.rejected += 1,
                }
                outcomes.push(outcome);
                done.push(seq);
            }
            Fate::Lost => {
                step.lost += 1;
                done.push(seq);
            }
            Fate::Unwritten => {}
        }
    }
    // Counted before the removal: if the removal fails, these are in the store already and a
    // later step will find them there (already_recorded).
    metrics::replayed(&outcomes);
    spool.remove(&done).await?;
    step.store_failure = committed.failure;
    Ok(step)
}
