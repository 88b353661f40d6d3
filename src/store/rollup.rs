//! Rollups: per-hour sums of the clicks, which the statistics read instead of the raw log,
//! and the same sums per day for long windows (docs/rollups.md).
//!
//! What a set of clicks adds to the rollups is decided here, once, for the applier's batches and
//! for the backfill of older log rows alike; `write` runs it through a `RollupTx` (each store's
//! SQL) inside the caller's transaction, so the rollups move exactly when the rows they sum are
//! committed, and never otherwise. Every statement adds (`clicks = clicks + n`), so the order
//! in which concurrent writers commit does not matter; keys arrive in ascending order, after
//! the campaign counters (the first lock of every writer on MySQL).

use std::collections::{BTreeMap, BTreeSet};

use super::{StoreError, StoreTx};

/// One click as the rollups see it, from a batch or from a stored log row.
#[derive(Debug, Clone, Copy)]
pub(super) struct RollupClick<'a> {
    pub campaign_id: i64,
    /// `db_time` of the click.
    pub at: &'a str,
    pub interaction_type: &'a str,
    /// `interaction_value`; `None` counts as the empty target.
    pub target: Option<&'a str>,
    /// '' for an anonymous click.
    pub uid: &'a str,
}

/// The hour a `db_time` falls in, as the rollups key it: `YYYY-MM-DD HH:00:00`.
pub fn hour_of(at: &str) -> String {
    let mut hour = at.get(..13).unwrap_or(at).to_owned();
    hour.push_str(":00:00");
    hour
}

/// The day an hour (or a `db_time`) falls in, as the day rollups key it: `YYYY-MM-DD 00:00:00`.
pub fn day_of(at: &str) -> String {
    let mut day = at.get(..10).unwrap_or(at).to_owned();
    day.push_str(" 00:00:00");
    day
}

/// A target as the statistics group it: its first 255 characters (the log's `target_key`).
pub fn target_key(target: &str) -> &str {
    match target.char_indices().nth(TARGET_KEY_CHARS) {
        Some((end, _)) => &target[..end],
        None => target,
    }
}

/// Characters of a target that the statistics tell apart (an index holds no more).
pub const TARGET_KEY_CHARS: usize = 255;

/// What a set of clicks adds to each rollup table, keys ascending.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RollupDelta<'a> {
    /// (campaign, hour, type) → clicks, member clicks, latest click.
    pub hours: BTreeMap<(i64, String, &'a str), HourCount>,
    /// (campaign, hour, target key) → clicks.
    pub targets: BTreeMap<(i64, String, &'a str), i64>,
    /// (campaign, hour, tag) → clicks.
    pub tags: BTreeMap<(i64, String, &'a str), i64>,
    /// (campaign, hour, uid) → clicks.
    pub members: BTreeMap<(i64, String, &'a str), i64>,
    /// (campaign, uid) of every member click.
    pub campaign_members: BTreeSet<(i64, &'a str)>,
    /// campaign → its latest click.
    pub last_click: BTreeMap<i64, &'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HourCount {
    pub clicks: i64,
    pub member_clicks: i64,
    pub last_click_at: String,
}

impl HourCount {
    /// `other`'s clicks added to these (the later of the two latest clicks kept).
    fn add(&mut self, other: &HourCount) {
        self.clicks += other.clicks;
        self.member_clicks += other.member_clicks;
        if other.last_click_at > self.last_click_at {
            self.last_click_at.clone_from(&other.last_click_at);
        }
    }
}

impl<'a> RollupDelta<'a> {
    /// Count one click with its tags.
    pub fn add(&mut self, click: RollupClick<'a>, tags: impl IntoIterator<Item = &'a str>) {
        let hour = hour_of(click.at);
        let cid = click.campaign_id;
        let member = !click.uid.is_empty();
        let count = self
            .hours
            .entry((cid, hour.clone(), click.interaction_type))
            .or_insert_with(|| HourCount {
                clicks: 0,
                member_clicks: 0,
                last_click_at: click.at.to_owned(),
            });
        count.clicks += 1;
        count.member_clicks += i64::from(member);
        if click.at > count.last_click_at.as_str() {
            click.at.clone_into(&mut count.last_click_at);
        }
        let target = target_key(click.target.unwrap_or(""));
        *self.targets.entry((cid, hour.clone(), target)).or_insert(0) += 1;
        for tag in tags {
            *self.tags.entry((cid, hour.clone(), tag)).or_insert(0) += 1;
        }
        if member {
            *self.members.entry((cid, hour, click.uid)).or_insert(0) += 1;
            self.campaign_members.insert((cid, click.uid));
        }
        let last = self.last_click.entry(cid).or_insert(click.at);
        *last = (*last).max(click.at);
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }
}

/// The two grains of the summed rollups: `track_rollup_hours`, `_targets` and `_tags` per
/// hour, `track_rollup_days`, `_day_targets` and `_day_tags` per day (the same sums: a long
/// window reads a row per day where it would read 24). Members are per hour only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grain {
    Hour,
    Day,
}

/// A row of `track_rollup_hours` (or `track_rollup_days`) to add.
#[derive(Debug)]
pub(super) struct HourRow<'a> {
    pub campaign_id: i64,
    pub hour: &'a str,
    pub interaction_type: &'a str,
    pub clicks: i64,
    pub member_clicks: i64,
    pub last_click_at: &'a str,
}

/// A row of `track_rollup_targets`, `_tags` or `_members` to add: `key` is the target key,
/// the tag or the uid.
#[derive(Debug)]
pub(super) struct KeyCountRow<'a> {
    pub campaign_id: i64,
    pub hour: &'a str,
    pub key: &'a str,
    pub clicks: i64,
}

/// The rollups keyed by (campaign, hour or day, name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyedRollup {
    Targets,
    Tags,
    Members,
    DayTargets,
    DayTags,
}

/// A row of `track_rollup_campaign_members`.
#[derive(Debug)]
pub(super) struct CampaignMemberRow<'a> {
    pub campaign_id: i64,
    pub line_id: &'a str,
}

/// A row of `track_rollup_campaigns` to add.
#[derive(Debug)]
pub(super) struct CampaignRollupRow<'a> {
    pub campaign_id: i64,
    pub new_members: i64,
    pub last_click_at: &'a str,
}

/// One dialect's SQL for the rollup steps, run inside the caller's transaction.
pub(super) trait RollupTx: StoreTx {
    async fn add_rollup_hours(
        &mut self,
        grain: Grain,
        rows: &[HourRow<'_>],
    ) -> Result<(), StoreError>;
    async fn add_rollup_keyed(
        &mut self,
        table: KeyedRollup,
        rows: &[KeyCountRow<'_>],
    ) -> Result<(), StoreError>;
    /// Insert the pairs that are not there yet; the campaign id of each one inserted.
    /// Concurrent writers of one pair: exactly one of them inserts it.
    async fn add_campaign_members(
        &mut self,
        rows: &[CampaignMemberRow<'_>],
    ) -> Result<Vec<i64>, StoreError>;
    async fn add_rollup_campaigns(
        &mut self,
        rows: &[CampaignRollupRow<'_>],
    ) -> Result<(), StoreError>;
}

/// Add `delta` to the rollups through `tx` (which the caller commits).
pub(super) async fn write<T: RollupTx>(
    tx: &mut T,
    delta: &RollupDelta<'_>,
) -> Result<(), StoreError> {
    if delta.is_empty() {
        return Ok(());
    }
    let days = per_day(&delta.hours, HourCount::add);
    for (grain, counts) in [(Grain::Hour, &delta.hours), (Grain::Day, &days)] {
        let rows: Vec<HourRow<'_>> = counts
            .iter()
            .map(|((cid, hour, kind), count)| HourRow {
                campaign_id: *cid,
                hour,
                interaction_type: kind,
                clicks: count.clicks,
                member_clicks: count.member_clicks,
                last_click_at: &count.last_click_at,
            })
            .collect();
        tx.add_rollup_hours(grain, &rows).await?;
    }
    let add = |sum: &mut i64, clicks: &i64| *sum += clicks;
    let day_targets = per_day(&delta.targets, add);
    let day_tags = per_day(&delta.tags, add);
    for (table, counts) in [
        (KeyedRollup::Targets, &delta.targets),
        (KeyedRollup::Tags, &delta.tags),
        (KeyedRollup::Members, &delta.members),
        (KeyedRollup::DayTargets, &day_targets),
        (KeyedRollup::DayTags, &day_tags),
    ] {
        let rows: Vec<KeyCountRow<'_>> = counts
            .iter()
            .map(|((cid, hour, key), clicks)| KeyCountRow {
                campaign_id: *cid,
                hour,
                key,
                clicks: *clicks,
            })
            .collect();
        if !rows.is_empty() {
            tx.add_rollup_keyed(table, &rows).await?;
        }
    }
    let pairs: Vec<CampaignMemberRow<'_>> = delta
        .campaign_members
        .iter()
        .map(|(cid, uid)| CampaignMemberRow {
            campaign_id: *cid,
            line_id: uid,
        })
        .collect();
    let mut new_members: BTreeMap<i64, i64> = BTreeMap::new();
    if !pairs.is_empty() {
        for cid in tx.add_campaign_members(&pairs).await? {
            *new_members.entry(cid).or_insert(0) += 1;
        }
    }
    let campaigns: Vec<CampaignRollupRow<'_>> = delta
        .last_click
        .iter()
        .map(|(cid, last)| CampaignRollupRow {
            campaign_id: *cid,
            new_members: new_members.get(cid).copied().unwrap_or(0),
            last_click_at: last,
        })
        .collect();
    tx.add_rollup_campaigns(&campaigns).await
}

/// Per-hour sums added up per day (`day_of`), keys ascending.
fn per_day<'a, V: Clone>(
    hours: &BTreeMap<(i64, String, &'a str), V>,
    merge: impl Fn(&mut V, &V),
) -> BTreeMap<(i64, String, &'a str), V> {
    let mut days: BTreeMap<(i64, String, &'a str), V> = BTreeMap::new();
    for ((cid, hour, key), value) in hours {
        match days.entry((*cid, day_of(hour), key)) {
            std::collections::btree_map::Entry::Occupied(mut sum) => merge(sum.get_mut(), value),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value.clone());
            }
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click<'a>(cid: i64, at: &'a str, kind: &'a str, uid: &'a str) -> RollupClick<'a> {
        RollupClick {
            campaign_id: cid,
            at,
            interaction_type: kind,
            target: Some("https://example.com/a"),
            uid,
        }
    }

    #[test]
    fn sums_by_hour_type_target_tag_and_member() {
        let mut delta = RollupDelta::default();
        delta.add(
            click(1, "2026-01-02 03:59:59", "image_click", "U1"),
            ["A", "B"],
        );
        delta.add(click(1, "2026-01-02 03:00:00", "image_click", ""), ["A"]);
        delta.add(click(1, "2026-01-02 04:00:00", "image_click", "U1"), []);
        delta.add(click(2, "2026-01-01 00:00:00", "text_link", "U1"), []);

        let h3 = &delta.hours[&(1, "2026-01-02 03:00:00".to_owned(), "image_click")];
        assert_eq!((h3.clicks, h3.member_clicks), (2, 1));
        assert_eq!(h3.last_click_at, "2026-01-02 03:59:59");
        assert_eq!(delta.hours.len(), 3);
        assert_eq!(delta.tags[&(1, "2026-01-02 03:00:00".to_owned(), "A")], 2);
        assert_eq!(
            delta.members[&(1, "2026-01-02 03:00:00".to_owned(), "U1")],
            1
        );
        assert_eq!(
            delta.members[&(1, "2026-01-02 04:00:00".to_owned(), "U1")],
            1
        );
        assert_eq!(
            delta.campaign_members.iter().copied().collect::<Vec<_>>(),
            [(1, "U1"), (2, "U1")]
        );
        assert_eq!(delta.last_click[&1], "2026-01-02 04:00:00");
        assert_eq!(
            delta.targets[&(1, "2026-01-02 03:00:00".to_owned(), "https://example.com/a")],
            2
        );
    }

    #[test]
    fn target_key_is_the_first_255_characters() {
        let long: String = "é".repeat(300);
        assert_eq!(target_key(&long).chars().count(), 255);
        assert_eq!(target_key("short"), "short");
        assert_eq!(hour_of("2026-01-02 03:04:05"), "2026-01-02 03:00:00");
        assert_eq!(day_of("2026-01-02 03:00:00"), "2026-01-02 00:00:00");
    }

    #[test]
    fn day_sums_add_up_the_hours_of_each_day() {
        let mut delta = RollupDelta::default();
        delta.add(click(1, "2026-01-02 03:10:00", "image_click", "U1"), ["A"]);
        delta.add(click(1, "2026-01-02 23:59:59", "image_click", ""), ["A"]);
        delta.add(click(1, "2026-01-03 00:00:00", "image_click", "U1"), []);
        delta.add(click(2, "2026-01-02 05:00:00", "image_click", "U2"), []);
        let days = per_day(&delta.hours, HourCount::add);
        let day = |cid, d: &str| {
            let c = &days[&(cid, d.to_owned(), "image_click")];
            (c.clicks, c.member_clicks, c.last_click_at.as_str())
        };
        assert_eq!(days.len(), 3);
        assert_eq!(day(1, "2026-01-02 00:00:00"), (2, 1, "2026-01-02 23:59:59"));
        assert_eq!(day(1, "2026-01-03 00:00:00"), (1, 1, "2026-01-03 00:00:00"));
        assert_eq!(day(2, "2026-01-02 00:00:00"), (1, 1, "2026-01-02 05:00:00"));
        let tags = per_day(&delta.tags, |sum: &mut i64, n: &i64| *sum += n);
        assert_eq!(tags[&(1, "2026-01-02 00:00:00".to_owned(), "A")], 2);
    }
}
