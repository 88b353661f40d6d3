//! What one batch changes, decided once for every backend (docs/design.md, "Large batches are the cheap ones").
//!
//! Given the batch's records, the click ids the store already holds and the campaigns that
//! exist, the plan says: which clicks are written, which are set aside and why, how much each
//! campaign counter moves, which members must exist, and the per-(uid, src) summary deltas.
//! Keys are kept in ascending order so every writer locks rows in the same order.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use time::OffsetDateTime;
use uuid::Uuid;

use super::Outcome;
use super::erase::{ErasureList, erased_before};
use crate::domain::{CampaignId, Click, Record, Reject, RejectReason};

/// The change to one `ryan_click_demo` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryDelta<'r> {
    pub clicks: i64,
    pub last_clicked_at: OffsetDateTime,
    /// The batch's tags for this row: first-seen order, each once.
    pub tags: Vec<&'r str>,
}

#[derive(Debug)]
pub struct BatchPlan<'r> {
    /// One per input record, in input order.
    pub outcomes: Vec<Outcome>,
    /// Clicks to write to the five tables, in arrival order.
    pub clicks: Vec<&'r Click>,
    /// Records to write to `track_rejects`.
    pub rejects: Vec<Cow<'r, Reject>>,
    /// Campaign id → clicks to add, ascending by id.
    pub campaign_increments: BTreeMap<CampaignId, i64>,
    /// Distinct uids of the clicks, ascending.
    pub member_uids: Vec<&'r str>,
    /// (uid, src) → change, ascending by key.
    pub summaries: BTreeMap<(&'r str, i64), SummaryDelta<'r>>,
}

/// Whether `record` names a member erased after it arrived (a click's uid, or any uid in a
/// reject's raw query): it must not be written (`store/erase.rs`).
fn made_before_an_erasure(record: &Record, erased: &ErasureList) -> bool {
    let at = record.received_at();
    record
        .member_uids()
        .iter()
        .any(|uid| erased_before(erased, uid, at))
}

/// The distinct campaign ids the batch's clicks name (to look up which exist).
pub fn campaign_ids(records: &[Record]) -> BTreeSet<CampaignId> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Click(c) => Some(c.campaign_id),
            Record::Reject(_) => None,
        })
        .collect()
}

impl<'r> BatchPlan<'r> {
    pub fn new(
        records: &'r [Record],
        already_recorded: &HashSet<Uuid>,
        known_campaigns: &HashSet<CampaignId>,
        erased: &ErasureList,
    ) -> BatchPlan<'r> {
        let mut plan = BatchPlan {
            outcomes: Vec::with_capacity(records.len()),
            clicks: Vec::with_capacity(records.len()),
            rejects: Vec::new(),
            campaign_increments: BTreeMap::new(),
            member_uids: Vec::new(),
            summaries: BTreeMap::new(),
        };
        let mut seen: HashSet<Uuid> = HashSet::with_capacity(records.len());
        let mut uids: BTreeSet<&'r str> = BTreeSet::new();
        for record in records {
            let id = record.click_id();
            if already_recorded.contains(&id) || !seen.insert(id) {
                plan.outcomes.push(Outcome::AlreadyRecorded);
                continue;
            }
            if !erased.is_empty() && made_before_an_erasure(record, erased) {
                plan.outcomes.push(Outcome::Erased);
                continue;
            }
            match record {
                Record::Reject(r) => {
                    plan.outcomes.push(Outcome::Rejected(r.reason));
                    plan.rejects.push(Cow::Borrowed(r));
                }
                Record::Click(c) if !known_campaigns.contains(&c.campaign_id) => {
                    plan.outcomes
                        .push(Outcome::Rejected(RejectReason::UnknownCampaign));
                    plan.rejects.push(Cow::Owned(
                        record
                            .clone()
                            .into_reject(RejectReason::UnknownCampaign, None),
                    ));
                }
                Record::Click(c) => {
                    plan.outcomes.push(Outcome::Recorded);
                    plan.clicks.push(c);
                    *plan.campaign_increments.entry(c.campaign_id).or_insert(0) += 1;
                    if let Some(uid) = c.uid.as_deref() {
                        uids.insert(uid);
                        plan.add_to_summary(uid, c);
                    }
                }
            }
        }
        plan.member_uids = uids.into_iter().collect();
        plan
    }

    fn add_to_summary(&mut self, uid: &'r str, click: &'r Click) {
        let delta = self
            .summaries
            .entry((uid, click.source_campaign_id))
            .or_insert_with(|| SummaryDelta {
                clicks: 0,
                last_clicked_at: click.received_at,
                tags: Vec::new(),
            });
        delta.clicks += 1;
        delta.last_clicked_at = delta.last_clicked_at.max(click.received_at);
        for tag in &click.tags {
            if !delta.tags.contains(&tag.as_str()) {
                delta.tags.push(tag);
            }
        }
    }
}

/// Every (click, tag) pair of the written clicks, for `track_click_tags`. A click's tags are
/// already distinct (`normalize_tags`), so the pairs are too.
pub fn click_tags<'c>(clicks: &[&'c Click]) -> impl Iterator<Item = (&'c Click, &'c str)> {
    clicks
        .iter()
        .flat_map(|c| c.tags.iter().map(move |tag| (*c, tag.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InteractionType, LineUid};

    fn click(uid: Option<&str>, cid: i64, src: i64, tags: &[&str], at: i64) -> Record {
        Record::Click(Click {
            click_id: Uuid::now_v7(),
            received_at: OffsetDateTime::from_unix_timestamp(at).expect("valid time"),
            uid: uid.map(|u| LineUid::parse(u).expect("valid uid")),
            campaign_id: CampaignId::new(cid).expect("positive"),
            source_campaign_id: src,
            interaction_type: InteractionType::ImageClick,
            target: "https://example.com/".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            user_agent: None,
        })
    }

    #[test]
    fn aggregates_counters_members_and_summaries() {
        let records = vec![
            click(Some("U2"), 456, 0, &["B"], 20),
            click(Some("U1"), 123, 7, &["A", "B"], 10),
            click(Some("U1"), 123, 7, &["C", "A"], 30),
            click(None, 123, 0, &["Z"], 40),
            click(Some("U1"), 999, 7, &[], 50),
        ];
        let known: HashSet<CampaignId> = [
            CampaignId::new(123).expect("positive"),
            CampaignId::new(456).expect("positive"),
        ]
        .into();
        let plan = BatchPlan::new(&records, &HashSet::new(), &known, &ErasureList::new());
        assert_eq!(
            plan.outcomes,
            [
                Outcome::Recorded,
                Outcome::Recorded,
                Outcome::Recorded,
                Outcome::Recorded,
                Outcome::Rejected(RejectReason::UnknownCampaign)
            ]
        );
        assert_eq!(plan.clicks.len(), 4);
        assert_eq!(
            plan.campaign_increments.into_iter().collect::<Vec<_>>(),
            [
                (CampaignId::new(123).expect("positive"), 3),
                (CampaignId::new(456).expect("positive"), 1)
            ]
        );
        assert_eq!(plan.member_uids, ["U1", "U2"]);
        let keys: Vec<_> = plan.summaries.keys().copied().collect();
        assert_eq!(keys, [("U1", 7), ("U2", 0)]);
        let u1 = &plan.summaries[&("U1", 7)];
        assert_eq!(u1.clicks, 2);
        assert_eq!(u1.tags, ["A", "B", "C"]);
        assert_eq!(u1.last_clicked_at.unix_timestamp(), 30);
        assert_eq!(plan.rejects.len(), 1);
        assert!(
            plan.rejects[0].query.contains("cid=999"),
            "{}",
            plan.rejects[0].query
        );
    }

    #[test]
    fn replayed_and_repeated_click_ids_change_nothing() {
        let first = click(Some("U1"), 1, 0, &[], 1);
        let records = vec![
            first.clone(),
            first.clone(),
            click(Some("U1"), 1, 0, &[], 2),
        ];
        let already: HashSet<Uuid> = [records[2].click_id()].into();
        let plan = BatchPlan::new(
            &records,
            &already,
            &[CampaignId::new(1).expect("positive")].into(),
            &ErasureList::new(),
        );
        assert_eq!(
            plan.outcomes,
            [
                Outcome::Recorded,
                Outcome::AlreadyRecorded,
                Outcome::AlreadyRecorded
            ]
        );
        assert_eq!(
            plan.campaign_increments[&CampaignId::new(1).expect("positive")],
            1
        );
        assert_eq!(plan.summaries[&("U1", 0)].clicks, 1);
    }

    #[test]
    fn clicks_made_before_their_member_was_erased_are_dropped() {
        use crate::store::erase::{list_time, uid_hash};
        let records = vec![
            click(Some("UX"), 1, 0, &[], 10),
            click(Some("UY"), 1, 0, &[], 10),
            click(Some("UX"), 1, 0, &[], 30),
        ];
        let erased_at = OffsetDateTime::from_unix_timestamp(20).expect("valid time");
        let erased = ErasureList::from([(uid_hash("UX"), list_time(erased_at))]);
        let plan = BatchPlan::new(
            &records,
            &HashSet::new(),
            &[CampaignId::new(1).expect("positive")].into(),
            &erased,
        );
        assert_eq!(
            plan.outcomes,
            [Outcome::Erased, Outcome::Recorded, Outcome::Recorded]
        );
        assert_eq!(
            plan.campaign_increments[&CampaignId::new(1).expect("positive")],
            2
        );
        assert_eq!(plan.member_uids, ["UX", "UY"]);
    }
}
