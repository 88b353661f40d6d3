//! One batch, written the same way on every store.
//!
//! The steps of a batch, their order (which is the lock order on MySQL, docs/design.md
//! "Exact across instances"), the plan, the erasure list, the members read and the tag merge
//! live here, once. A backend supplies only its SQL, as a `BatchTx`: an open transaction that can run each step
//! over rows built here. Adding a store means implementing `BatchTx` (ARCHITECTURE.md,
//! "Adding a store").
//!
//! Every `BatchTx` method is called only with rows to write: empty steps are skipped here.

use std::collections::{BTreeSet, HashMap, HashSet};

use time::OffsetDateTime;
use uuid::Uuid;

use super::erase::{ErasureList, list_time};
use super::plan::{self, BatchPlan};
use super::rollup::{self, RollupClick, RollupDelta, RollupTx};
use super::{BatchResult, Seen, StoreError, db_time, message_content};
use crate::domain::tags::merge_tags;
use crate::domain::{CampaignId, Click, Record, Reject};

/// One dialect's SQL for each step of a batch, run inside one open transaction. Rows arrive in
/// the order they must be locked in: ascending key, the same on every instance. The rollup
/// steps (and `commit`) come from `RollupTx`.
pub(super) trait BatchTx: RollupTx {
    /// The erasure list's entries made after `since` (`erase::list_time`). First in every
    /// batch: on MySQL it takes the list's lock row shared (`erase.rs`).
    async fn erasures_after(&mut self, since: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Which of `click_ids` the interaction log or the rejects already hold.
    async fn recorded_click_ids(&mut self, click_ids: &[String])
    -> Result<Vec<String>, StoreError>;
    /// Which of `ids` name a campaign.
    async fn existing_campaigns(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError>;
    /// `clicked_count += clicks` for each campaign.
    async fn bump_campaigns(
        &mut self,
        increments: &[CampaignIncrement],
        now: &str,
    ) -> Result<(), StoreError>;
    /// The members of `uids` that exist. On MySQL the rows are locked shared until commit, so
    /// the marketing app cannot delete one under the batch's `messages` rows.
    async fn read_members(&mut self, uids: &[&str]) -> Result<Vec<MemberRow>, StoreError>;
    /// Create members for `uids` (ascending), a uid that exists by now being no error.
    async fn create_members(&mut self, uids: &[&str], now: &str) -> Result<(), StoreError>;
    async fn insert_messages(&mut self, rows: &[MessageRow]) -> Result<(), StoreError>;
    /// Add the clicks to each summary row, creating it, tags untouched: afterwards the
    /// transaction holds every summary row of the batch.
    async fn upsert_summary_counts(
        &mut self,
        rows: &[SummaryCountRow<'_>],
        now: &str,
    ) -> Result<(), StoreError>;
    /// Every summary row of `uids` with its stored tags (read after the rows are ours).
    async fn summary_tags(&mut self, uids: &[&str]) -> Result<Vec<StoredTags>, StoreError>;
    /// Replace the tags of existing summary rows.
    async fn write_summary_tags(
        &mut self,
        rows: &[SummaryTagRow<'_>],
        now: &str,
    ) -> Result<(), StoreError>;
    async fn insert_interaction_logs(
        &mut self,
        rows: &[InteractionLogRow<'_>],
    ) -> Result<(), StoreError>;
    async fn insert_click_tags(&mut self, rows: &[ClickTagRow<'_>]) -> Result<(), StoreError>;
    /// Rejects whose click id is stored already are skipped, not an error.
    async fn insert_rejects(&mut self, rows: &[RejectRow<'_>]) -> Result<(), StoreError>;
}

#[derive(Debug)]
pub(super) struct CampaignIncrement {
    pub id: i64,
    pub clicks: i64,
}

/// A row of `members` as a batch reads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct MemberRow {
    pub id: i64,
    pub line_uid: String,
    pub line_display_name: Option<String>,
}

/// A row of `messages` (direction 'incoming', type 'text').
#[derive(Debug)]
pub(super) struct MessageRow {
    pub member_id: i64,
    pub content: String,
    pub campaign_id: i64,
    pub created_at: String,
}

/// The counting half of a `ryan_click_demo` upsert.
#[derive(Debug)]
pub(super) struct SummaryCountRow<'a> {
    pub line_id: &'a str,
    pub source_campaign_id: i64,
    pub line_display_name: Option<&'a str>,
    pub total_clicks: i64,
    pub last_clicked_at: String,
}

/// A summary row's tags as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct StoredTags {
    pub line_id: String,
    pub source_campaign_id: i64,
    pub last_click_tag: Option<String>,
}

/// A summary row whose merged tags differ from the stored ones.
#[derive(Debug)]
pub(super) struct SummaryTagRow<'a> {
    pub line_id: &'a str,
    pub source_campaign_id: i64,
    pub last_click_tag: String,
}

/// A row of `component_interaction_logs`.
#[derive(Debug)]
pub(super) struct InteractionLogRow<'a> {
    /// '' for an anonymous click: the old table's column is NOT NULL.
    pub line_id: &'a str,
    pub campaign_id: i64,
    pub interaction_type: &'static str,
    pub interaction_value: &'a str,
    pub triggered_at: String,
    pub user_agent: Option<&'a str>,
    pub click_id: String,
}

/// A row of `track_click_tags`.
#[derive(Debug)]
pub(super) struct ClickTagRow<'a> {
    pub click_id: String,
    pub campaign_id: i64,
    pub tag: &'a str,
    pub triggered_at: String,
}

/// A row of `track_rejects`.
#[derive(Debug)]
pub(super) struct RejectRow<'a> {
    pub click_id: String,
    pub received_at: String,
    pub reason: &'static str,
    pub detail: Option<&'a str>,
    pub query_string: &'a str,
    pub user_agent: Option<&'a str>,
}

/// A member as a batch needs it.
struct Member {
    id: i64,
    display_name: Option<String>,
}

/// A batch's members, by uid.
type Members = HashMap<String, Member>;

/// Write `records` through `tx` and commit. `tag_capacity`: bytes `last_click_tag` holds.
pub(super) async fn write<T: BatchTx>(
    mut tx: T,
    records: &[Record],
    seen: Seen,
    tag_capacity: usize,
) -> Result<BatchResult, StoreError> {
    let held = what_the_store_holds(&mut tx, records, seen).await?;
    let plan = BatchPlan::new(records, &held.recorded, &held.campaigns, &held.erased);
    let now = db_time(OffsetDateTime::now_utc());

    let increments: Vec<CampaignIncrement> = plan
        .campaign_increments
        .iter()
        .map(|(&id, &clicks)| CampaignIncrement {
            id: id.get(),
            clicks,
        })
        .collect();
    if !increments.is_empty() {
        tx.bump_campaigns(&increments, &now).await?;
    }
    let members = members_of(&mut tx, &plan.member_uids, &now).await?;
    let messages = message_rows(&plan.clicks, &members);
    if !messages.is_empty() {
        tx.insert_messages(&messages).await?;
    }
    let tags_dropped = write_summaries(&mut tx, &plan, &members, tag_capacity, &now).await?;
    let logs: Vec<InteractionLogRow<'_>> = plan.clicks.iter().map(|c| log_row(c)).collect();
    if !logs.is_empty() {
        tx.insert_interaction_logs(&logs).await?;
    }
    let tags: Vec<ClickTagRow<'_>> = plan::click_tags(&plan.clicks)
        .map(|(c, tag)| ClickTagRow {
            click_id: c.click_id.to_string(),
            campaign_id: c.campaign_id.get(),
            tag,
            triggered_at: db_time(c.received_at),
        })
        .collect();
    if !tags.is_empty() {
        tx.insert_click_tags(&tags).await?;
    }
    let rejects: Vec<RejectRow<'_>> = plan.rejects.iter().map(|r| reject_row(r)).collect();
    if !rejects.is_empty() {
        tx.insert_rejects(&rejects).await?;
    }
    // Last: the rollups sum exactly the log rows above, in the same transaction.
    let mut delta = RollupDelta::default();
    for (click, log) in plan.clicks.iter().zip(&logs) {
        let at = RollupClick {
            campaign_id: log.campaign_id,
            at: &log.triggered_at,
            interaction_type: log.interaction_type,
            target: Some(log.interaction_value),
            uid: log.line_id,
        };
        delta.add(at, click.tags.iter().map(String::as_str));
    }
    rollup::write(&mut tx, &delta).await?;

    tx.commit().await?;
    Ok(BatchResult {
        outcomes: plan.outcomes,
        tags_dropped,
    })
}

/// What the plan needs from the store.
struct Held {
    /// Which of the records' click ids it holds (looked up only when `seen` says they may be
    /// there).
    recorded: HashSet<Uuid>,
    /// Which of their campaigns exist.
    campaigns: HashSet<CampaignId>,
    /// Erasures that may concern them (made after the oldest record arrived).
    erased: ErasureList,
}

async fn what_the_store_holds<T: BatchTx>(
    tx: &mut T,
    records: &[Record],
    seen: Seen,
) -> Result<Held, StoreError> {
    let oldest = records.iter().map(Record::received_at).min();
    let mut erased = ErasureList::new();
    if let Some(oldest) = oldest {
        erased.extend(tx.erasures_after(&list_time(oldest)).await?);
    }
    let mut recorded = HashSet::new();
    if seen == Seen::Maybe {
        let ids: Vec<String> = records.iter().map(|r| r.click_id().to_string()).collect();
        let found = tx.recorded_click_ids(&ids).await?;
        recorded.extend(found.iter().filter_map(|id| Uuid::parse_str(id).ok()));
    }
    let campaign_ids: Vec<i64> = plan::campaign_ids(records)
        .into_iter()
        .map(CampaignId::get)
        .collect();
    let mut campaigns = HashSet::new();
    if !campaign_ids.is_empty() {
        let found = tx.existing_campaigns(&campaign_ids).await?;
        campaigns.extend(found.into_iter().filter_map(CampaignId::new));
    }
    Ok(Held {
        recorded,
        campaigns,
        erased,
    })
}

/// The members of `uids` (ascending), read from the store in this transaction: never from a
/// cache, because the marketing app may delete a member (an erasure) or rename one at any
/// time. Those that do not exist are created and read back.
async fn members_of<T: BatchTx>(
    tx: &mut T,
    uids: &[&str],
    now: &str,
) -> Result<Members, StoreError> {
    let mut members = Members::with_capacity(uids.len());
    if uids.is_empty() {
        return Ok(members);
    }
    let add = |rows: Vec<MemberRow>, members: &mut Members| {
        for m in rows {
            let member = Member {
                id: m.id,
                display_name: m.line_display_name,
            };
            members.insert(m.line_uid, member);
        }
    };
    add(tx.read_members(uids).await?, &mut members);
    let missing: Vec<&str> = uids
        .iter()
        .copied()
        .filter(|uid| !members.contains_key(*uid))
        .collect();
    if !missing.is_empty() {
        tx.create_members(&missing, now).await?;
        add(tx.read_members(&missing).await?, &mut members);
    }
    Ok(members)
}

/// Count the clicks into every summary row (which locks them), then merge the batch's tags into
/// the stored ones and write back the rows whose tags changed. Returns the tags left out for
/// lack of room.
async fn write_summaries<T: BatchTx>(
    tx: &mut T,
    plan: &BatchPlan<'_>,
    members: &Members,
    tag_capacity: usize,
    now: &str,
) -> Result<usize, StoreError> {
    if plan.summaries.is_empty() {
        return Ok(0);
    }
    let counts: Vec<SummaryCountRow<'_>> = plan
        .summaries
        .iter()
        .map(|(&(uid, src), delta)| SummaryCountRow {
            line_id: uid,
            source_campaign_id: src,
            line_display_name: members.get(uid).and_then(|m| m.display_name.as_deref()),
            total_clicks: delta.clicks,
            last_clicked_at: db_time(delta.last_clicked_at),
        })
        .collect();
    tx.upsert_summary_counts(&counts, now).await?;

    let tagged: BTreeSet<&str> = plan
        .summaries
        .iter()
        .filter(|(_, delta)| !delta.tags.is_empty())
        .map(|(&(uid, _), _)| uid)
        .collect();
    if tagged.is_empty() {
        return Ok(0);
    }
    // The rows are ours since the upsert above (BEGIN IMMEDIATE on SQLite, row locks on
    // MySQL): the tags read here cannot change before commit.
    let uids: Vec<&str> = tagged.into_iter().collect();
    let stored = tx.summary_tags(&uids).await?;
    let stored: HashMap<(&str, i64), Option<&str>> = stored
        .iter()
        .map(|s| {
            let key = (s.line_id.as_str(), s.source_campaign_id);
            (key, s.last_click_tag.as_deref())
        })
        .collect();
    let mut dropped = 0;
    let mut changed = Vec::new();
    for (&(uid, src), delta) in plan.summaries.iter().filter(|(_, d)| !d.tags.is_empty()) {
        let existing = stored.get(&(uid, src)).copied().flatten();
        let merged = merge_tags(existing, delta.tags.iter().copied(), tag_capacity);
        dropped += merged.dropped;
        if let Some(value) = merged.value.filter(|v| Some(v.as_str()) != existing) {
            changed.push(SummaryTagRow {
                line_id: uid,
                source_campaign_id: src,
                last_click_tag: value,
            });
        }
    }
    if !changed.is_empty() {
        tx.write_summary_tags(&changed, now).await?;
    }
    Ok(dropped)
}

/// One `messages` row per click of a member (anonymous clicks have none).
fn message_rows(clicks: &[&Click], members: &Members) -> Vec<MessageRow> {
    clicks
        .iter()
        .filter_map(|c| {
            let member = members.get(c.uid.as_deref()?)?;
            Some(MessageRow {
                member_id: member.id,
                content: message_content(c),
                campaign_id: c.campaign_id.get(),
                created_at: db_time(c.received_at),
            })
        })
        .collect()
}

fn log_row<'a>(c: &'a Click) -> InteractionLogRow<'a> {
    InteractionLogRow {
        line_id: c.uid.as_deref().unwrap_or(""),
        campaign_id: c.campaign_id.get(),
        interaction_type: c.interaction_type.as_str(),
        interaction_value: &c.target,
        triggered_at: db_time(c.received_at),
        user_agent: c.user_agent.as_deref(),
        click_id: c.click_id.to_string(),
    }
}

fn reject_row(r: &Reject) -> RejectRow<'_> {
    RejectRow {
        click_id: r.click_id.to_string(),
        received_at: db_time(r.received_at),
        reason: r.reason.as_str(),
        detail: r.detail.as_deref(),
        query_string: &r.query,
        user_agent: r.user_agent.as_deref(),
    }
}
