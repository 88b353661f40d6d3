//! Rolling up log rows that were not written through clicktrack's batches: the history that
//! predates the rollups (`clicktrack migrate` builds it) and rows another program adds to the
//! log later (the old endpoint during a cut-over, an import), which `serve` picks up.
//!
//! One step is one short transaction: it takes the state row first (so steps of several
//! processes take turns and none counts a row twice), reads at most `chunk` log rows, adds them
//! to the rollups and records how far it got, all committed together: an interrupted backfill
//! resumes where its last committed step ended. On MySQL the campaign rows are locked next, in
//! ascending order, as every batch does first, so a step never deadlocks with the applier.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::rollup::{self, RollupClick, RollupDelta, RollupTx};
use super::{StoreError, db_time};

/// A log row as a backfill step reads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct LogRow {
    pub id: i64,
    pub campaign_id: i64,
    pub line_id: String,
    pub interaction_type: String,
    pub target: Option<String>,
    pub triggered_at: String,
    pub click_id: Option<String>,
}

/// `track_rollup_state`: log rows `start_id..=end_id` predate the rollups; `next_id` is the
/// first of them not rolled up yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct RollupState {
    pub backfill_start_id: i64,
    pub backfill_end_id: i64,
    pub backfill_next_id: i64,
}

impl RollupState {
    /// True once every log row older than the rollups is in them.
    pub fn history_complete(&self) -> bool {
        self.backfill_next_id > self.backfill_end_id
    }

    /// Log ids still to roll up (an upper bound on rows: ids may have gaps).
    pub fn ids_left(&self) -> i64 {
        (self.backfill_end_id - self.backfill_next_id + 1).max(0)
    }

    /// Log ids the backfill covers in all.
    pub fn ids_total(&self) -> i64 {
        (self.backfill_end_id - self.backfill_start_id + 1).max(0)
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillStep {
    /// Rows of the history rolled up.
    pub history_rows: u64,
    /// Rows another program added since, rolled up.
    pub foreign_rows: u64,
    /// The state after the step.
    pub state: RollupState,
}

impl BackfillStep {
    /// Nothing was left to do.
    pub fn idle(&self) -> bool {
        self.history_rows == 0 && self.foreign_rows == 0
    }
}

/// One dialect's SQL for a backfill step, inside one transaction.
pub(super) trait BackfillTx: RollupTx {
    /// Lock the state row (waiting for any other step) and read it.
    async fn lock_rollup_state(&mut self) -> Result<RollupState, StoreError>;
    /// Log rows with `from_id <= id <= to_id`, by id, at most `limit`.
    async fn log_rows_between(
        &mut self,
        from_id: i64,
        to_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError>;
    /// Log rows after `after_id` without a click id that are not rolled up yet, by id.
    async fn foreign_log_rows(
        &mut self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError>;
    /// (click_id, tag) of these clicks.
    async fn tags_of_clicks(
        &mut self,
        click_ids: &[&str],
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Lock these campaigns' rows, ascending (MySQL; SQLite holds the write lock already).
    async fn lock_campaigns(&mut self, ids: &[i64]) -> Result<(), StoreError>;
    async fn set_backfill_next(&mut self, next_id: i64, now: &str) -> Result<(), StoreError>;
    /// Remember these foreign rows as rolled up.
    async fn mark_foreign(&mut self, ids: &[i64]) -> Result<(), StoreError>;
}

/// Roll up at most `chunk` rows: the history first, then foreign rows. Commits when it did
/// anything.
pub(super) async fn step<T: BackfillTx>(mut tx: T, chunk: i64) -> Result<BackfillStep, StoreError> {
    let mut state = tx.lock_rollup_state().await?;
    if !state.history_complete() {
        let rows = tx
            .log_rows_between(state.backfill_next_id, state.backfill_end_id, chunk)
            .await?;
        let next = match rows.last() {
            Some(last) if rows.len() as i64 >= chunk => last.id + 1,
            // Fewer than asked for: nothing is left up to end_id.
            _ => state.backfill_end_id + 1,
        };
        roll_up(&mut tx, &rows).await?;
        tx.set_backfill_next(next, &db_time(OffsetDateTime::now_utc()))
            .await?;
        tx.commit().await?;
        state.backfill_next_id = next;
        return Ok(BackfillStep {
            history_rows: rows.len() as u64,
            foreign_rows: 0,
            state,
        });
    }
    let rows = tx.foreign_log_rows(state.backfill_end_id, chunk).await?;
    if !rows.is_empty() {
        roll_up(&mut tx, &rows).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        tx.mark_foreign(&ids).await?;
        tx.commit().await?;
    }
    // Nothing to do: dropping the transaction rolls it back.
    Ok(BackfillStep {
        history_rows: 0,
        foreign_rows: rows.len() as u64,
        state,
    })
}

/// Add `rows` (with their per-click tags) to the rollups.
async fn roll_up<T: BackfillTx>(tx: &mut T, rows: &[LogRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut campaigns: Vec<i64> = rows.iter().map(|r| r.campaign_id).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    tx.lock_campaigns(&campaigns).await?;

    let click_ids: Vec<&str> = rows.iter().filter_map(|r| r.click_id.as_deref()).collect();
    let tags = if click_ids.is_empty() {
        Vec::new()
    } else {
        tx.tags_of_clicks(&click_ids).await?
    };
    let mut tags_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (click_id, tag) in &tags {
        tags_of.entry(click_id).or_default().push(tag);
    }
    let mut delta = RollupDelta::default();
    for row in rows {
        let click = RollupClick {
            campaign_id: row.campaign_id,
            at: &row.triggered_at,
            interaction_type: &row.interaction_type,
            target: row.target.as_deref(),
            uid: &row.line_id,
        };
        let tags = row
            .click_id
            .as_deref()
            .and_then(|id| tags_of.get(id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        delta.add(click, tags.iter().copied());
    }
    rollup::write(tx, &delta).await
}
