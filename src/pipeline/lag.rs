//! How far the store is behind the journal: now minus the arrival of the oldest click that
//! is durable in the journal but not yet in the store (`track_journal_apply_lag_seconds`).
//!
//! Kept as one atomic so `/metrics` can compute it at scrape time: the gauge grows by itself
//! while the applier is stuck, which is exactly when somebody needs to see it.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

use crate::domain::Record;

/// No unapplied click.
const NONE: i64 = i64::MIN;

#[derive(Debug)]
pub struct ApplyLag {
    /// Arrival of the oldest unapplied click, Unix nanoseconds (or `NONE`).
    oldest_ns: AtomicI64,
}

impl Default for ApplyLag {
    fn default() -> ApplyLag {
        ApplyLag {
            oldest_ns: AtomicI64::new(NONE),
        }
    }
}

fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl ApplyLag {
    /// Records were appended: if nothing was waiting, the oldest of them is now the oldest.
    pub fn appended<'a>(&self, records: impl IntoIterator<Item = &'a Record>) {
        if let Some(oldest) = records.into_iter().map(|r| nanos(r.received_at())).min() {
            // Only moves from "none": when it fails, an older waiting click stays the oldest.
            let _older_click_waits =
                self.oldest_ns
                    .compare_exchange(NONE, oldest, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The applier's view after a step: the oldest click still waiting, if any.
    pub fn set_oldest(&self, oldest: Option<OffsetDateTime>) {
        self.oldest_ns
            .store(oldest.map_or(NONE, nanos), Ordering::Relaxed);
    }

    /// Seconds between the oldest unapplied click's arrival and `now` (0 when none waits).
    pub fn seconds(&self, now: OffsetDateTime) -> f64 {
        match self.oldest_ns.load(Ordering::Relaxed) {
            NONE => 0.0,
            oldest => ((nanos(now) - oldest) as f64 / 1e9).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_follows_the_oldest_waiting_click() {
        let lag = ApplyLag::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000).expect("time");
        let later = |s| t0 + time::Duration::seconds(s);
        assert_eq!(lag.seconds(later(5)), 0.0);
        lag.set_oldest(Some(t0));
        assert_eq!(lag.seconds(later(5)), 5.0);
        lag.set_oldest(Some(later(3)));
        assert_eq!(lag.seconds(later(5)), 2.0);
        lag.set_oldest(None);
        assert_eq!(lag.seconds(later(5)), 0.0);
    }
}
