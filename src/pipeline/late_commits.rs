//! Batches that committed after their attempt gave up on them, so that the counters say what
//! happened once.
//!
//! An attempt that outlives its time limit is left to finish (`commit.rs`): its records are
//! written again later, looked up by id, and found already recorded. What the late commit
//! wrote is counted when it commits (recorded, rejected); without this list the retry would
//! count the same clicks a second time, as `already_recorded` (replays), and
//! `track_journal_applied_total` would show them as replays instead of recorded. The list
//! maps each click id of a late commit to what it did; the retry that finds the click
//! already recorded takes that outcome instead and leaves it uncounted. Entries are dropped
//! once claimed, and after `KEEP` if no retry ever comes (a journal removed by hand). It is
//! process-wide, like the counters it corrects: a late commit of the appender (`--ack store`)
//! is found by the applier.
//!
//! An erasure reads it too (`erasure.rs`): a late commit's records are still in the journal
//! (the step that gave up on them did not remove them) and in the store, where the store's
//! erasure has already counted them. So an erasure waits for the late commits in flight
//! (`settled`) and counts only the journal records no late commit wrote (`written_late`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::Record;
use crate::store::Outcome;

/// How long an unclaimed entry is kept.
const KEEP: Duration = Duration::from_secs(600);

static LATE: LazyLock<Mutex<HashMap<Uuid, (Outcome, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Timed-out attempts still running, and a wake-up each time one ends.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static SETTLED: Notify = Notify::const_new();

/// Held by a timed-out attempt's task until its outcomes are remembered (or it failed).
pub struct InFlight(());

impl InFlight {
    pub fn begin() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        SETTLED.notify_waiters();
    }
}

/// Wait until no timed-out attempt is running, at most `limit`; false if one still is.
pub async fn settled(limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = SETTLED.notified();
        tokio::pin!(notified);
        // Registered before the check, so an attempt ending in between still wakes us.
        notified.as_mut().enable();
        if IN_FLIGHT.load(Ordering::Acquire) == 0 {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return IN_FLIGHT.load(Ordering::Acquire) == 0;
        }
    }
}

/// Of the records an erasure took out of the journal (`ids`), how many a late commit wrote
/// to the store: the store's erasure counted those already. With `forget`, their entries go
/// (no retry will come for records the journal no longer holds).
pub fn written_late(ids: &[Uuid], forget: bool) -> u64 {
    let Ok(mut late) = LATE.lock() else { return 0 };
    let mut written = 0;
    for id in ids {
        let wrote = match late.get(id) {
            Some((outcome, _)) => *outcome != Outcome::Erased,
            None => continue,
        };
        written += u64::from(wrote);
        if forget {
            late.remove(id);
        }
    }
    written
}

/// A late commit wrote `records` with these `outcomes` (and has counted them).
pub fn remember(records: &[Record], outcomes: &[Outcome]) {
    let now = Instant::now();
    let Ok(mut late) = LATE.lock() else { return };
    late.retain(|_, (_, at)| now.duration_since(*at) < KEEP);
    for (record, outcome) in records.iter().zip(outcomes) {
        if *outcome != Outcome::AlreadyRecorded {
            late.insert(record.click_id(), (*outcome, now));
        }
    }
}

/// For each record found `AlreadyRecorded` because a late commit wrote it, put back what
/// that commit did; the returned mask marks those outcomes, already counted (empty when
/// there were none).
pub fn claim(records: &[Record], outcomes: &mut [Outcome]) -> Vec<bool> {
    let Ok(mut late) = LATE.lock() else {
        return Vec::new();
    };
    if late.is_empty() {
        return Vec::new();
    }
    let mut counted = vec![false; outcomes.len()];
    for (i, (record, outcome)) in records.iter().zip(outcomes.iter_mut()).enumerate() {
        if *outcome == Outcome::AlreadyRecorded
            && let Some((then, _)) = late.remove(&record.click_id())
        {
            *outcome = then;
            counted[i] = true;
        }
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_the_attempts_in_flight() {
        let attempt = InFlight::begin();
        assert!(!settled(Duration::from_millis(20)).await, "one is running");
        let waiting = tokio::spawn(settled(Duration::from_secs(10)));
        tokio::task::yield_now().await;
        drop(attempt);
        assert!(waiting.await.expect("task"), "woken when it ends");
    }

    #[test]
    fn an_erasure_finds_what_late_commits_wrote_and_not_what_they_dropped() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let record = |id: Uuid| {
            crate::domain::Record::Reject(crate::domain::Reject {
                query: "cid=1".into(),
                click_id: id,
                received_at: time::OffsetDateTime::now_utc(),
                reason: crate::domain::RejectReason::UnknownCampaign,
                detail: None,
                user_agent: None,
            })
        };
        let records: Vec<Record> = ids.iter().map(|&id| record(id)).collect();
        remember(&records[..2], &[Outcome::Recorded, Outcome::Erased]);
        assert_eq!(written_late(&ids, false), 1, "a dry run");
        assert_eq!(written_late(&ids, true), 1);
        assert_eq!(written_late(&ids, true), 0, "forgotten");
    }
}
