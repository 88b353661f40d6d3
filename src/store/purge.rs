//! Retention: deleting raw rows older than a limit (`clicktrack purge`, `--log-retention`).
//!
//! The rollups keep every count of a purged period (docs/rollups.md), so only the single
//! clicks go: interaction log rows, their per-click tags, and rejects (with their raw query
//! strings). Each step is one short transaction over at most `chunk` rows of each table, found
//! through a time index, so no statement holds many locks or runs long; the caller paces the
//! steps. Before the first step the purge horizon is recorded (`track_rollup_state`): from then
//! on the statistics read nothing older than it from the raw log.

use super::{StoreError, StoreTx};

/// Rows one purge step (or a whole purge) deleted, or a dry run would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub logs: u64,
    pub tags: u64,
    pub rejects: u64,
}

impl Purged {
    pub fn add(&mut self, other: Purged) {
        self.logs += other.logs;
        self.tags += other.tags;
        self.rejects += other.rejects;
    }

    pub fn is_empty(&self) -> bool {
        *self == Purged::default()
    }
}

/// The condition `PurgeTx::old_log_rows` adds to its dialect's query, the same in all of them:
/// a log row is in the rollups when a batch wrote it (it has a click id), when it is history
/// the backfill has passed, or when it is a foreign row the backfill has rolled up.
macro_rules! rolled_up_only {
    () => {
        "AND (click_id IS NOT NULL \
         OR id < (SELECT backfill_next_id FROM track_rollup_state WHERE id = 1) \
         OR EXISTS (SELECT 1 FROM track_rollup_foreign f \
                    WHERE f.log_id = component_interaction_logs.id))"
    };
}
pub(super) use rolled_up_only;

/// One dialect's SQL for a purge step, inside one transaction.
pub(super) trait PurgeTx: StoreTx {
    /// (id, click_id) of the oldest log rows before `before` that are in the rollups, at most
    /// `limit`: written by a batch (a click id), history the backfill has passed, or foreign
    /// rows it has rolled up. A row another program inserts after the purge's backfill (an old
    /// click replayed by the Flask route, an import) waits for the next purge instead of
    /// leaving the statistics uncounted.
    async fn old_log_rows(
        &mut self,
        before: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError>;
    async fn delete_click_tags(&mut self, click_ids: &[&str]) -> Result<u64, StoreError>;
    /// The log rows and their marks in `track_rollup_foreign`.
    async fn delete_log_rows(&mut self, ids: &[i64]) -> Result<u64, StoreError>;
    /// The oldest rejects received before `before`, at most `limit`.
    async fn delete_old_rejects(&mut self, before: &str, limit: i64) -> Result<u64, StoreError>;
}

/// Delete at most `chunk` rows of each table older than `before` (`db_time`), and commit.
pub(super) async fn step<T: PurgeTx>(
    mut tx: T,
    before: &str,
    chunk: i64,
) -> Result<Purged, StoreError> {
    let rows = tx.old_log_rows(before, chunk).await?;
    let click_ids: Vec<&str> = rows.iter().filter_map(|(_, c)| c.as_deref()).collect();
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    let mut purged = Purged::default();
    if !click_ids.is_empty() {
        purged.tags = tx.delete_click_tags(&click_ids).await?;
    }
    if !ids.is_empty() {
        purged.logs = tx.delete_log_rows(&ids).await?;
    }
    purged.rejects = tx.delete_old_rejects(before, chunk).await?;
    tx.commit().await?;
    Ok(purged)
}
