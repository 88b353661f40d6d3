//! Rolling up log rows that were not written through clicktrack's batches: the history that
//! predates the rollups (`clicktrack migrate` builds it) and rows another program adds to the
//! log later (the old endpoint during a cut-over, an import), which `serve` picks up.
//!
//! One step is one short transaction: it takes the state row first (so steps of several
//! processes take turns and none counts a row twice), adds at most `chunk` log rows to the
//! rollups and records how far it got, all committed together: an interrupted backfill resumes
//! where its last committed step ended. The history is summed by the database itself, a range
//! of ids per statement (`roll_up_between`: millions of rows, none of which need travel);
//! foreign rows, a few at a time, are read and summed here like a batch's clicks. On MySQL the campaign rows are locked next, in
//! ascending order, as every batch does first, so a step never deadlocks with the applier.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::rollup::{self, CampaignRollupRow, RollupClick, RollupDelta, RollupTx};
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
    /// Log ids of the history this step covered (ids may have gaps: more than its rows).
    pub history_ids: i64,
    /// Rows another program added since, rolled up.
    pub foreign_rows: u64,
    /// The state after the step.
    pub state: RollupState,
}

impl BackfillStep {
    /// Nothing was left to do.
    pub fn idle(&self) -> bool {
        self.history_ids == 0 && self.foreign_rows == 0
    }
}

/// One dialect's SQL for a backfill step, inside one transaction.
pub(super) trait BackfillTx: RollupTx {
    /// Lock the state row (waiting for any other step) and read it.
    async fn lock_rollup_state(&mut self) -> Result<RollupState, StoreError>;
    /// Per campaign of the log rows with `from_id <= id <= to_id`: (campaign, rows, latest
    /// click), ascending.
    async fn campaigns_between(
        &mut self,
        from_id: i64,
        to_id: i64,
    ) -> Result<Vec<CampaignRows>, StoreError>;
    /// Add the log rows with `from_id <= id <= to_id` (of `campaigns`) to the hour, target,
    /// tag and member rollups, summed by the database itself (the history is millions of
    /// rows: nothing travels), and insert their (campaign, member) pairs; the campaign of
    /// each new pair.
    async fn roll_up_between(
        &mut self,
        from_id: i64,
        to_id: i64,
        campaigns: &[i64],
    ) -> Result<Vec<i64>, StoreError>;
    /// Log rows after `after_id` without a click id that are not rolled up yet, by id.
    async fn foreign_log_rows(
        &mut self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError>;
    /// Lock these campaigns' rows, ascending (MySQL; SQLite holds the write lock already).
    async fn lock_campaigns(&mut self, ids: &[i64]) -> Result<(), StoreError>;
    async fn set_backfill_next(&mut self, next_id: i64, now: &str) -> Result<(), StoreError>;
    /// Remember these foreign rows as rolled up.
    async fn mark_foreign(&mut self, ids: &[i64]) -> Result<(), StoreError>;
}

/// One campaign's share of a range of log rows.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct CampaignRows {
    pub campaign_id: i64,
    pub rows: i64,
    pub last_click_at: String,
}

/// Roll up at most `chunk` rows: the history first (ids `chunk` at a time), then foreign rows.
/// Commits when it did anything.
pub(super) async fn step<T: BackfillTx>(mut tx: T, chunk: i64) -> Result<BackfillStep, StoreError> {
    let mut state = tx.lock_rollup_state().await?;
    if !state.history_complete() {
        let from = state.backfill_next_id;
        let to = state.backfill_end_id.min(from.saturating_add(chunk - 1));
        let campaigns = tx.campaigns_between(from, to).await?;
        let ids: Vec<i64> = campaigns.iter().map(|c| c.campaign_id).collect();
        if !ids.is_empty() {
            tx.lock_campaigns(&ids).await?;
        }
        let new_pairs = tx.roll_up_between(from, to, &ids).await?;
        let mut new_members: HashMap<i64, i64> = HashMap::new();
        for cid in new_pairs {
            *new_members.entry(cid).or_insert(0) += 1;
        }
        let rows: Vec<CampaignRollupRow<'_>> = campaigns
            .iter()
            .map(|c| CampaignRollupRow {
                campaign_id: c.campaign_id,
                new_members: new_members.get(&c.campaign_id).copied().unwrap_or(0),
                last_click_at: &c.last_click_at,
            })
            .collect();
        if !rows.is_empty() {
            tx.add_rollup_campaigns(&rows).await?;
        }
        tx.set_backfill_next(to + 1, &db_time(OffsetDateTime::now_utc()))
            .await?;
        tx.commit().await?;
        state.backfill_next_id = to + 1;
        let rolled: i64 = campaigns.iter().map(|c| c.rows).sum();
        return Ok(BackfillStep {
            history_rows: u64::try_from(rolled).unwrap_or(0),
            history_ids: to + 1 - from,
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
        history_ids: 0,
        foreign_rows: rows.len() as u64,
        state,
    })
}

/// Add foreign `rows` to the rollups (they have no click id, so no per-click tags).
async fn roll_up<T: BackfillTx>(tx: &mut T, rows: &[LogRow]) -> Result<(), StoreError> {
    let mut campaigns: Vec<i64> = rows.iter().map(|r| r.campaign_id).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    tx.lock_campaigns(&campaigns).await?;
    let mut delta = RollupDelta::default();
    for row in rows {
        let click = RollupClick {
            campaign_id: row.campaign_id,
            at: &row.triggered_at,
            interaction_type: &row.interaction_type,
            target: row.target.as_deref(),
            uid: &row.line_id,
        };
        delta.add(click, []);
    }
    rollup::write(tx, &delta).await
}
