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

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::domain::Record;
use crate::store::Outcome;

/// How long an unclaimed entry is kept.
const KEEP: Duration = Duration::from_secs(600);

static LATE: LazyLock<Mutex<HashMap<Uuid, (Outcome, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

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
