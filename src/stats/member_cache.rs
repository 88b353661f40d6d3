//! Counted members of settled hours, kept between requests: a dashboard shows the same
//! window again and again, and the members of its 90 days are millions of member-hours to
//! read and count each time (docs/rollups.md "Member packs"), for an answer that changed
//! only in its last hours.
//!
//! A kept tally is never trusted blindly, like a pack: it carries the member clicks it
//! counted, and a request uses it only while that still equals the hours' member clicks in
//! the rollups (`Dialect::member_clicks_of_hours`, a few hundred day rows). Rollups only grow
//! (every write is `clicks = clicks + n`), so an equal sum means the same member rows, whatever
//! happened in between; a late click or a backfilled row makes it unequal, and the hours are
//! counted again. An erasure renames uids, not numbers, and a kept tally holds numbers only
//! (`Tally::to_keep`). The hours a window's answer changes in most (the last `SETTLE`) are
//! always read, never kept.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::members::Tally;
use super::window::Window;
use crate::telemetry::metrics;

/// Hours that ended less than this ago are read on every request: a journal's late clicks
/// land there.
const SETTLE: Duration = Duration::hours(2);
/// A window whose settled hours are shorter than this is counted afresh each time (a day of
/// packs is a few milliseconds).
const AT_LEAST: Duration = Duration::DAY;
/// Memory for kept tallies, all windows together (a tally is 4 bytes per member number up to
/// the largest counted: 300,000 members, 1.2 MB).
const CAPACITY_BYTES: u64 = 64 << 20;
/// A window's settled hours end an hour later every hour: a count kept for them up to this
/// many hours earlier is extended by the hours since, not counted again.
const EXTEND_HOURS: i64 = 6;
/// A window nobody asked for this long is dropped.
const IDLE: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Which hours a tally counts: a campaign and its settled hours (store text form).
type Key = (i64, String, String);

/// Counted settled hours of recently shown windows.
#[derive(Clone)]
pub struct MemberCache {
    kept: moka::sync::Cache<Key, Arc<Tally>>,
}

impl std::fmt::Debug for MemberCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCache")
            .field("windows", &self.kept.entry_count())
            .finish()
    }
}

impl Default for MemberCache {
    fn default() -> MemberCache {
        MemberCache {
            kept: moka::sync::Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|_, tally: &Arc<Tally>| u32::try_from(tally.bytes()).unwrap_or(u32::MAX))
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

/// The settled hours of a window, where a kept tally may stand in for reading them.
pub struct Settled {
    pub hours: Window,
    key: Key,
}

impl MemberCache {
    /// The settled hours of `window` (campaign `id`) at `now`, if long enough to keep.
    pub fn settled(id: i64, window: &Window, now: OffsetDateTime) -> Option<Settled> {
        let hours = window.settled_hours(now, SETTLE, AT_LEAST)?;
        let (from, to) = hours.bounds();
        Some(Settled {
            hours,
            key: (id, from, to),
        })
    }

    /// The tally kept for these hours, if any (it may be stale: check `clicks`).
    pub fn get(&self, settled: &Settled) -> Option<Arc<Tally>> {
        self.kept.get(&settled.key)
    }

    /// A tally kept for the same hours but the last few (`EXTEND_HOURS` at most): what a
    /// window that ends now was counted as an hour ago. The hours it counted, and it.
    pub fn earlier(&self, settled: &Settled) -> Option<(Window, Arc<Tally>)> {
        let (id, from, _) = &settled.key;
        (1..=EXTEND_HOURS).find_map(|h| {
            let hours = Window {
                to: settled.hours.to - Duration::hours(h),
                ..settled.hours
            };
            let (_, to) = hours.bounds();
            let kept = self.kept.get(&(*id, from.clone(), to))?;
            Some((hours, kept))
        })
    }

    /// Keep `tally` of these hours, if it can be kept (`Tally::to_keep`).
    pub fn keep(&self, settled: &Settled, tally: &Tally) {
        if let Some(kept) = tally.to_keep() {
            self.kept.insert(settled.key.clone(), Arc::new(kept));
        }
    }
}

/// What a request found for its settled hours (`track_stats_member_cache_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A kept tally whose clicks are still the hours' clicks: used.
    Current,
    /// A kept tally the hours have outgrown: counted again.
    Stale,
    /// None for these hours, but one for the same hours up to a few hours shorter, still
    /// current: used, and the hours after it counted.
    Extended,
    /// Nothing kept: counted.
    Nothing,
}

impl Found {
    pub fn count(self) {
        metrics::member_cache(match self {
            Found::Current => "hit",
            Found::Stale => "stale",
            Found::Extended => "extended",
            Found::Nothing => "miss",
        });
    }
}
