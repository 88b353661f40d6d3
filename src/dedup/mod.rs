//! De-duplication (docs/guarantees.md): a repeat of the same click within `--dedup-window-ms` of the
//! first (a double tap, a client retry, the same tap reaching two instances) is redirected but
//! not recorded, and counted (`track_duplicates_total`).
//!
//! The window starts at the first click: an entry lives `window` from its insertion, with no
//! fixed time buckets, so two taps 10 ms apart are one click whenever they happen. Each
//! process keeps the keys it saw in a bounded in-memory TTL cache (moka); with `--redis-url`,
//! the first claim of a key across all instances wins (`SET key NX PX window`). Redis slow or
//! down never fails a redirect and never drops a click: the local cache decides alone, and the
//! fallback is logged (once per outage) and counted.

mod key;
mod redis;

use std::net::IpAddr;
use std::time::Duration;

use moka::sync::Cache;

pub use self::key::DedupKey;
pub use self::redis::{RedisDedup, RedisSettings};
use crate::domain::Click;
use crate::telemetry::metrics;

#[derive(Debug, Clone)]
pub struct DedupSettings {
    /// 0 disables de-duplication.
    pub window: Duration,
    /// Most keys the local cache holds (memory bound; oldest go first).
    pub cache_entries: u64,
    pub redis: Option<RedisSettings>,
}

/// Redis could not delete a member's keys (they expire within the window anyway).
#[derive(Debug, thiserror::Error)]
#[error("cannot remove the member's de-duplication keys: {0}")]
pub struct DedupEraseError(pub String);

/// Whether a click is the first of its kind within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    First,
    Duplicate,
}

pub struct Dedup {
    window: Duration,
    local: Cache<DedupKey, ()>,
    shared: Option<RedisDedup>,
}

impl Dedup {
    /// `None` when the window is 0 (de-duplication off).
    pub async fn start(settings: &DedupSettings) -> Option<Dedup> {
        if settings.window.is_zero() {
            return None;
        }
        let shared = match &settings.redis {
            Some(redis) => Some(RedisDedup::connect(redis).await),
            None => None,
        };
        Some(Dedup {
            window: settings.window,
            local: Cache::builder()
                .max_capacity(settings.cache_entries)
                .time_to_live(settings.window)
                // `erase_member` removes a member's keys.
                .support_invalidation_closures()
                .build(),
            shared,
        })
    }

    /// Forget `uid`'s keys here and in Redis (an erasure). Returns the Redis keys deleted, or
    /// `None` without Redis. The local keys are invalidated; they would expire within the
    /// window anyway.
    pub async fn erase_member(&self, uid: &str) -> Result<Option<u64>, DedupEraseError> {
        let owner = key::owner_of_member(uid);
        self.local
            .invalidate_entries_if(move |key, _| key.owner() == owner)
            .map_err(|e| DedupEraseError(e.to_string()))?;
        match &self.shared {
            None => Ok(None),
            Some(shared) => shared.erase_member(uid).await.map(Some),
        }
    }

    /// Decide, and remember, whether `click` from `client` is the first within the window.
    pub async fn check(&self, click: &Click, client: IpAddr) -> Verdict {
        let key = DedupKey::of(click, client);
        // `or_insert_with`, not `or_insert`: only it is atomic (of concurrent callers on a
        // missing key, exactly one initialises it and sees it fresh). `or_insert` is a get
        // then an insert, and let two copies of one tap through (seen in the burst test).
        let fresh = self.local.entry(key).or_insert_with(|| ()).is_fresh();
        if !fresh {
            return Verdict::Duplicate;
        }
        match &self.shared {
            None => Verdict::First,
            Some(shared) => match shared.claim(&key, self.window).await {
                Some(true) => Verdict::First,
                Some(false) => Verdict::Duplicate,
                // Redis did not answer: the local cache said first, so it is.
                None => {
                    metrics::dedup_fallback();
                    Verdict::First
                }
            },
        }
    }
}
