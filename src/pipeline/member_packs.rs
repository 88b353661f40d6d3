//! The member packer: keeps every closed campaign-hour's members packed (docs/rollups.md
//! "Member packs"), so unique and top members of a window read packs, not rows.
//!
//! It sweeps the rollups' hours from the oldest to the last closed one, a day at a time, and
//! packs each campaign-hour whose pack is missing or stale (`store/member_packs.rs`): new
//! hours as they close, hours the backfill filled, hours a late click changed. A pack is only
//! ever a shortcut, so how soon it is written changes how fast a report is, never what it says.
//! `clicktrack migrate` sweeps once after the backfill (`run_to_end`); `serve` sweeps in the
//! background (`spawn`), at the upkeep connection's lowered priority, and rests between
//! sweeps that found nothing.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::backfill::{StepFailed, with_retries};
use super::priority;
use crate::db::{db_time, parse_db_time};
use crate::store::{PackStep, Store, StoreError};
use crate::telemetry::{Event, metrics};

/// An hour is packed once it ended this long ago: clicks of the hour still waiting in a
/// journal would make its pack stale at once.
const CLOSED_AFTER: Duration = Duration::from_secs(5 * 60);
/// Hours swept per step (across all campaigns).
const RANGE: time::Duration = time::Duration::DAY;
/// Campaign-hours packed per step.
const STEP_HOURS: i64 = 32;
/// `serve` between steps that packed something: the applier's batches go first.
const SERVE_PAUSE: Duration = Duration::from_millis(20);
/// `serve` after each step, a pause this many times as long as the step took: a sweep of a
/// long history reads every hour's sums, a day per step (on MariaDB at 10,000,000 clicks,
/// 60-110 ms each, 90 of them back to back at start and every hour), and should take at most
/// a quarter of the database's time from the applier and the reports.
const SERVE_IDLE_FACTOR: u32 = 3;
/// `serve` between two sweeps (or after a failed one).
const SERVE_REST: Duration = Duration::from_secs(60);
/// `serve`'s sweeps look at the last two days of hours (where a journal's late clicks land),
/// and every `FULL_SWEEP_EVERY`th at all of them (the backfill and other programs' rows can
/// reach any hour): a sweep reads every hour's sums it looks at, so a whole history each
/// minute would cost more than the packs save.
const RECENT: time::Duration = time::Duration::days(2);
const FULL_SWEEP_EVERY: u32 = 60;

/// What a sweep packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    pub hours: u64,
    pub members: u64,
}

impl Packed {
    fn add(&mut self, step: &PackStep) {
        self.hours += step.hours;
        self.members += step.members;
    }
}

/// Where a sweep is: the next range to look at, and the end of the closed hours.
struct Sweep {
    next: OffsetDateTime,
    end: OffsetDateTime,
}

impl Sweep {
    /// A sweep of every closed hour from the rollups' oldest (`recent_only`: of the last
    /// `RECENT`); `None` if there is none.
    async fn start(store: &Store, recent_only: bool) -> Result<Option<Sweep>, StoreError> {
        let end = last_closed_hour_end(OffsetDateTime::now_utc());
        let first = store.first_rollup_hour().await?;
        Ok(first
            .as_deref()
            .and_then(parse_db_time)
            .map(|first| {
                if recent_only {
                    first.max(end - RECENT)
                } else {
                    first
                }
            })
            .filter(|first| *first < end)
            .map(|next| Sweep { next, end }))
    }

    /// One step, and where the sweep goes on after it; `None` once the sweep is over.
    async fn step(&self, store: &Store) -> Result<Option<(PackStep, OffsetDateTime)>, StoreError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let to = (self.next + RANGE).min(self.end);
        let step = store
            .pack_member_hours(&db_time(self.next), &db_time(to), STEP_HOURS)
            .await?;
        metrics::member_hours_packed(step.hours);
        // A range with more to pack than one step takes is looked at again.
        let next = if step.range_done { to } else { self.next };
        Ok(Some((step, next)))
    }
}

/// The end of the last hour that closed `CLOSED_AFTER` before `now`: hours before it are packed.
fn last_closed_hour_end(now: OffsetDateTime) -> OffsetDateTime {
    let t = now - CLOSED_AFTER;
    t.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(t)
}

/// One sweep to the end, retrying transient failures (`clicktrack migrate`).
pub async fn run_to_end(store: &Store) -> Result<Packed, StoreError> {
    let mut packed = Packed::default();
    let Some(mut sweep) = with_retries("pack", || Sweep::start(store, false)).await? else {
        return Ok(packed);
    };
    while let Some((step, next)) = with_retries("pack", || sweep.step(store)).await? {
        packed.add(&step);
        sweep.next = next;
    }
    Ok(packed)
}

/// `serve`'s packer, until the task is aborted (a step cut short leaves at most a stale pack).
pub fn spawn(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (mut failing, mut sweeps) = (false, 0u32);
        loop {
            let recent_only = sweeps % FULL_SWEEP_EVERY != 0;
            sweeps = sweeps.wrapping_add(1);
            match sweep_paced(&store, recent_only).await {
                Ok(_) if failing => {
                    tracing::info!(operation = "pack", "member packing works again");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) => {
                    StepFailed {
                        operation: "pack",
                        error: &error,
                        logged: failing,
                    }
                    .emit();
                    failing = true;
                }
            }
            tokio::time::sleep(SERVE_REST).await;
        }
    })
}

/// One sweep (`recent_only`: of the last `RECENT`), pausing after each step; a failure ends it (the next
/// sweep starts over from the oldest hour, skipping what is packed already).
async fn sweep_paced(store: &Store, recent_only: bool) -> Result<Packed, StoreError> {
    let mut packed = Packed::default();
    let Some(mut sweep) = Sweep::start(store, recent_only).await? else {
        return Ok(packed);
    };
    loop {
        let started = tokio::time::Instant::now();
        let Some((step, next)) = sweep.step(store).await? else {
            return Ok(packed);
        };
        packed.add(&step);
        sweep.next = next;
        let at_least = if step.hours > 0 {
            SERVE_PAUSE
        } else {
            Duration::ZERO
        };
        priority::rest_after(started, SERVE_IDLE_FACTOR, at_least).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_closed_five_minutes_after_it_ends() {
        let at = |t| last_closed_hour_end(t);
        assert_eq!(
            at(time::macros::datetime!(2026-12-05 10:04:59 UTC)),
            time::macros::datetime!(2026-12-05 09:00 UTC)
        );
        assert_eq!(
            at(time::macros::datetime!(2026-12-05 10:05:00.5 UTC)),
            time::macros::datetime!(2026-12-05 10:00 UTC)
        );
    }
}
