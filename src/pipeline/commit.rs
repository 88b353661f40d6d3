//! Getting one batch into the store: retry what is transient, isolate what is refused.
//!
//! Transient failures (busy, lock contention, a dropped connection, no answer) retry the whole
//! batch with jittered exponential backoff; that is safe because a store write is idempotent
//! by `click_id`. A batch the database refuses is bisected until the refused click is alone,
//! and that click is set aside in `track_rejects` with the database's reason: one bad row never
//! takes the others down. Used by the applier and, with `--ack store`, for live groups alike.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::late_commits;
use crate::domain::{Record, RejectReason};
use crate::store::{BatchResult, ErrorKind, Outcome, Seen, Store, StoreError};
use crate::telemetry::{Event, metrics};

/// Retries of one batch before it is given up.
const MAX_RETRIES: u32 = 8;
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// Longest one attempt may take, so a hung connection can never hold the applier forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// "Cannot reach the database" this many times in a row, with a journal to fall back on: stop
/// retrying. One such error is often a stale pooled connection (the retry gets a fresh one);
/// two in a row is an outage, and every further retry only delays the redirects.
const UNREACHABLE_LIMIT: u32 = 2;

/// What became of one record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Committed (or found already committed).
    Stored(Outcome),
    /// Not written because the store failed: the caller spools it (or keeps it spooled).
    Unwritten,
    /// The database refuses even its reject row: nothing more can be done (logged, counted).
    Lost,
}

/// A batch after `Committer::commit`.
#[derive(Debug)]
pub struct Committed {
    /// The records, in order; a click the database refused is now its reject.
    pub records: Vec<Record>,
    pub fates: Vec<Fate>,
    /// Why some records are `Unwritten`, if any are.
    pub failure: Option<StoreError>,
}

/// How long a batch may keep trying before the caller falls back to the journal.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Option<Instant>,
    /// What it was given, for the message when it runs out.
    given: Duration,
}

impl Budget {
    /// Retry until `limit` has passed (then the journal keeps the batch).
    pub fn until(limit: Duration) -> Budget {
        Budget {
            deadline: Some(Instant::now() + limit),
            given: limit,
        }
    }

    /// Only the retry count limits the attempts (nowhere else to put the batch).
    pub fn retries_only() -> Budget {
        Budget {
            deadline: None,
            given: Duration::MAX,
        }
    }

    fn attempt_limit(&self) -> Option<Duration> {
        let remaining = match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => ATTEMPT_TIMEOUT,
        };
        (!remaining.is_zero()).then(|| remaining.min(ATTEMPT_TIMEOUT))
    }
}

#[derive(Debug, Clone)]
pub struct Committer {
    store: Store,
    /// Attempts that ran out of time and are left to finish, each until it has counted what
    /// it committed (`attempt`).
    unsettled: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Committer {
    pub fn new(store: Store) -> Committer {
        Committer {
            store,
            unsettled: Arc::default(),
        }
    }

    /// Wait (until `deadline`) for the attempts left to finish to commit or fail and count
    /// what they did. A retry of their records must not start before: it would find them
    /// already recorded before the late commit had said what it recorded, and count them a
    /// second time (as replays) while the late commit's own count came after the journal was
    /// empty. It would wait for their row locks anyway. `false`: one is still running.
    async fn settle(&self, deadline: Instant) -> bool {
        let mut pending = std::mem::take(
            &mut *self
                .unsettled
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut settled = true;
        for handle in &mut pending {
            if tokio::time::timeout_at(deadline, &mut *handle)
                .await
                .is_err()
            {
                settled = false;
                break;
            }
        }
        pending.retain(|h| !h.is_finished());
        self.unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(pending);
        settled
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Write `records`, bisecting around refused rows. `seen` says whether they may already
    /// be stored (a replay) or are fresh.
    pub async fn commit(&self, mut records: Vec<Record>, seen: Seen, budget: Budget) -> Committed {
        let mut fates = vec![Fate::Unwritten; records.len()];
        let mut failure = None;
        // Ranges still to write; a refused range is split in two and pushed back.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..records.len());
        // Only the whole batch's first attempt can rely on `seen`; parts are looked up.
        let mut seen = seen;
        // Records refused alone once and tried again (see below).
        let mut tried_again = vec![false; records.len()];
        while let Some(range) = pending.pop() {
            let result = self
                .write_with_retry(&records[range.clone()], seen, budget)
                .await;
            seen = Seen::Maybe;
            match result {
                Ok(mut result) => {
                    let counted =
                        late_commits::claim(&records[range.clone()], &mut result.outcomes);
                    result.count_except(&counted);
                    for (i, outcome) in range.zip(result.outcomes) {
                        fates[i] = Fate::Stored(outcome);
                    }
                }
                Err(e) if e.kind == ErrorKind::Refused && range.len() > 1 => {
                    metrics::bisection();
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(e) if e.kind == ErrorKind::Refused && !tried_again[range.start] => {
                    // One record left. Its attempt may have looked its id up before waiting
                    // for a lock (MySQL) while a timed-out attempt of the same record
                    // committed it: the refusal is then its own duplicate id. One more
                    // attempt looks it up again and finds it recorded.
                    tried_again[range.start] = true;
                    pending.push(range);
                }
                Err(e) if e.kind == ErrorKind::Refused => {
                    // One record left, and the database refuses it again.
                    let i = range.start;
                    RecordRefused {
                        record: &records[i],
                        error: &e,
                    }
                    .emit();
                    if set_aside(&mut records[i], &e) {
                        tried_again[i] = false;
                        pending.push(i..i + 1);
                    } else {
                        fates[i] = Fate::Lost;
                    }
                }
                Err(e) => {
                    // The store is failing: this range and everything still pending stay
                    // unwritten, for the caller to keep in (or append to) the journal.
                    let unwritten = range.len() + pending.iter().map(|r| r.len()).sum::<usize>();
                    BatchNotWritten {
                        error: &e,
                        clicks: unwritten,
                        first: &records[range.start],
                    }
                    .emit();
                    failure = Some(e);
                    break;
                }
            }
        }
        Committed {
            records,
            fates,
            failure,
        }
    }

    async fn write_with_retry(
        &self,
        records: &[Record],
        mut seen: Seen,
        budget: Budget,
    ) -> Result<BatchResult, StoreError> {
        let mut retries = 0;
        let mut unreachable = 0;
        loop {
            let Some(limit) = budget.attempt_limit() else {
                // Said as what it was: the batch's whole budget, spent by earlier attempts
                // (not "no answer within 0 ms"). Each of those was counted when it failed.
                return Err(StoreError::budget_spent("write_batch", budget.given));
            };
            let started = std::time::Instant::now();
            let error = match self.attempt(records, seen, limit).await {
                Ok(result) => {
                    metrics::batch_commit_duration(started.elapsed());
                    return Ok(result);
                }
                Err(e) => e,
            };
            if !error.is_retryable() || retries >= MAX_RETRIES {
                return Err(error);
            }
            if error.kind == ErrorKind::Unavailable {
                unreachable += 1;
                if unreachable >= UNREACHABLE_LIMIT && budget.deadline.is_some() {
                    return Err(error);
                }
            } else {
                unreachable = 0;
            }
            retries += 1;
            let pause = backoff(retries);
            if budget.deadline.is_some_and(|d| Instant::now() + pause >= d) {
                // No time left for another attempt: hand the batch back now. The caller
                // counts this failure (`BatchNotWritten`), so it is not counted as a retry
                // too: one failed attempt, one error.
                return Err(error);
            }
            // The failed attempt may have committed (e.g. connection lost in COMMIT).
            seen = Seen::Maybe;
            BatchRetried {
                error: &error,
                retries,
                rows: records.len(),
            }
            .emit();
            tokio::time::sleep(pause).await;
        }
    }

    /// One transaction, waited for at most `limit`. An attempt that runs out of time is not
    /// cancelled: it runs to its end in the background. Cancelling would leave a transaction
    /// holding its row locks on the server until the server noticed the dropped connection,
    /// and every following batch would queue behind those locks and time out in turn. Letting
    /// it finish costs nothing: if it commits, whoever writes these records next finds their
    /// ids (`Seen::Maybe`) and writes nothing twice. What it wrote is counted when it commits
    /// (recorded, rejects), since the retry finds those records already recorded; the next
    /// attempt starts only once that is done (`settle`).
    async fn attempt(
        &self,
        records: &[Record],
        seen: Seen,
        limit: Duration,
    ) -> Result<BatchResult, StoreError> {
        if !self.settle(Instant::now() + limit).await {
            return Err(StoreError::timed_out("write_batch", limit));
        }
        let store = self.store.clone();
        let owned = records.to_vec();
        let mut task = tokio::spawn(async move {
            let result = store.write_batch(&owned, seen).await;
            (owned, result)
        });
        match tokio::time::timeout(limit, &mut task).await {
            Ok(Ok((_, result))) => result,
            // A panic inside the write (a bug, or a driver's): retried like a lost
            // connection, since the attempt may have committed before it; a cancelled task
            // (the runtime shutting down) is not.
            Ok(Err(join)) => Err(StoreError {
                kind: if join.is_panic() {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Other
                },
                code: join.is_panic().then(|| "panic".to_owned()),
                operation: "write_batch",
                source: Box::new(join),
            }),
            Err(_) => {
                let in_flight = late_commits::InFlight::begin();
                let late = tokio::spawn(async move {
                    let _in_flight = in_flight;
                    if let Ok((records, Ok(late))) = task.await {
                        late.count_except(&[]);
                        late_commits::remember(&records, &late.outcomes);
                        tracing::debug!(
                            rows = late.outcomes.len(),
                            "a timed-out batch committed late; its records are found by id"
                        );
                    }
                });
                self.unsettled
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(late);
                Err(StoreError::timed_out("write_batch", limit))
            }
        }
    }

    /// Succeeds when the store would accept a write now (bounded by `limit`).
    pub async fn probe(&self, limit: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(limit, self.store.probe()).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::timed_out("probe", limit)),
        }
    }
}

/// Exponential backoff with "equal jitter": half fixed, half random, capped.
fn backoff(retry: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1 << retry.min(16))
        .min(BACKOFF_CAP);
    let half = exp / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Turn a refused click into its reject, to be written again. `false` when the refused record
/// already is a reject: then it cannot be recorded at all.
fn set_aside(record: &mut Record, e: &StoreError) -> bool {
    match record {
        Record::Click(_) => {
            let reject = record
                .clone()
                .into_reject(RejectReason::RefusedByDatabase, Some(e.to_string()));
            *record = Record::Reject(reject);
            true
        }
        Record::Reject(_) => false,
    }
}

/// The database refused one record on its own: a click is set aside in `track_rejects` (a
/// warning), a reject cannot be recorded at all (an error, and a click not written).
struct RecordRefused<'a> {
    record: &'a Record,
    error: &'a StoreError,
}

impl Event for RecordRefused<'_> {
    fn emit(self) {
        let e = self.error;
        metrics::error("write_batch", e.kind.as_str());
        match self.record {
            Record::Click(c) => tracing::warn!(
                operation = "write_batch",
                click_id = %c.click_id,
                campaign_id = c.campaign_id.get(),
                uid = %crate::telemetry::short_uid(c.uid.as_deref()),
                error = %e,
                "click refused by the database: set aside in track_rejects"
            ),
            Record::Reject(r) => {
                tracing::error!(
                    operation = "write_batch",
                    click_id = %r.click_id,
                    reason = r.reason.as_str(),
                    error = %e,
                    "reject refused by the database: not recorded"
                );
                metrics::clicks_not_written(1);
            }
        }
    }
}

/// A batch the store did not take within its retries: its records stay in (or go to) the
/// journal.
struct BatchNotWritten<'a> {
    error: &'a StoreError,
    clicks: usize,
    first: &'a Record,
}

impl Event for BatchNotWritten<'_> {
    fn emit(self) {
        let e = self.error;
        tracing::warn!(
            operation = "write_batch",
            error = %e,
            kind = e.kind.as_str(),
            code = e.code.as_deref().unwrap_or(""),
            clicks = self.clicks,
            first_click_id = %self.first.click_id(),
            "batch not written after retries"
        );
        metrics::error("write_batch", e.kind.as_str());
    }
}

/// A failed attempt about to be retried: counted by kind and by code, logged at debug only
/// (a deadlock now and then is normal on MySQL).
struct BatchRetried<'a> {
    error: &'a StoreError,
    retries: u32,
    rows: usize,
}

impl Event for BatchRetried<'_> {
    fn emit(self) {
        let e = self.error;
        metrics::error("write_batch", e.kind.as_str());
        metrics::batch_retry(e.code.as_deref().unwrap_or(e.kind.as_str()));
        tracing::debug!(error = %e, retries = self.retries, rows = self.rows, "retrying batch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_is_capped() {
        for retry in 1..=MAX_RETRIES {
            let d = backoff(retry);
            let exp = BACKOFF_BASE.saturating_mul(1 << retry).min(BACKOFF_CAP);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }

    #[tokio::test]
    async fn a_budget_ends_the_attempts() {
        let spent = Budget::until(Duration::ZERO);
        assert_eq!(spent.attempt_limit(), None);
        let open = Budget::retries_only();
        assert_eq!(open.attempt_limit(), Some(ATTEMPT_TIMEOUT));
        let short = Budget::until(Duration::from_millis(50));
        assert!(
            short
                .attempt_limit()
                .is_some_and(|l| l <= Duration::from_millis(50))
        );
    }
}
