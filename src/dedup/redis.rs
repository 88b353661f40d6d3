//! The cross-instance half of de-duplication: one Redis key per click key, claimed with
//! `SET key 1 NX PX window`; whoever sets it first has the click.
//!
//! Redis is an optimisation of exactness, not a dependency of the redirect: every call has a
//! short timeout (`--redis-timeout-ms`), and after a failure Redis is left alone for a second
//! (the local cache decides meanwhile) so an outage does not add a timeout to every click.
//! The connection manager reconnects by itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::key::owner_hex;
use super::{DedupEraseError, DedupKey};
use crate::telemetry::{Event, metrics};

/// How long Redis is skipped after it failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prepended to every key (`--redis-key-prefix`), so instances of other deployments (and
    /// tests) sharing a Redis do not see each other's clicks.
    pub key_prefix: String,
    pub timeout: Duration,
}

pub struct RedisDedup {
    conn: Option<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked.
    skip_until_ms: AtomicU64,
    up: AtomicBool,
}

impl RedisDedup {
    /// Set up the connection (lazily: Redis being down at start-up is not fatal) and say
    /// whether it answers.
    pub async fn connect(settings: &RedisSettings) -> RedisDedup {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1);
        let conn = redis::Client::open(settings.url.as_str())
            .and_then(|client| ConnectionManager::new_lazy_with_config(client, config));
        let conn = match conn {
            Ok(conn) => Some(conn),
            Err(e) => {
                // The URL was checked at start-up; this is a bug or an unsupported option.
                RedisDown {
                    kind: "unavailable",
                    error: &e.to_string(),
                    first: true,
                    what: "cannot set up the Redis client: de-duplication is per instance",
                }
                .emit();
                None
            }
        };
        let dedup = RedisDedup {
            conn,
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            started: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            up: AtomicBool::new(true),
        };
        dedup.ping().await;
        dedup
    }

    async fn ping(&self) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(CONNECT_TIMEOUT, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => self.mark_up(),
            Ok(Err(e)) => self.mark_down("unavailable", &e.to_string()),
            Err(_) => self.mark_down("timeout", "no answer to PING"),
        }
    }

    /// `Some(true)`: this call claimed the key first; `Some(false)`: it was claimed within
    /// the window; `None`: Redis could not say.
    pub async fn claim(&self, key: &DedupKey, window: Duration) -> Option<bool> {
        let mut conn = self.conn.clone()?;
        if self.elapsed_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let mut set = redis::cmd("SET");
        set.arg(format!("{}{}", self.prefix, key.hex()))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis() as u64);
        match tokio::time::timeout(self.timeout, set.query_async::<Option<String>>(&mut conn)).await
        {
            Ok(Ok(reply)) => {
                self.mark_up();
                Some(reply.is_some())
            }
            Ok(Err(e)) => {
                self.mark_down("unavailable", &e.to_string());
                None
            }
            Err(_) => {
                self.mark_down("timeout", "no answer within --redis-timeout-ms");
                None
            }
        }
    }

    /// Delete every key of `uid` (`SCAN` over the member's prefix, then `DEL`): an erasure.
    pub async fn erase_member(&self, uid: &str) -> Result<u64, DedupEraseError> {
        let Some(mut conn) = self.conn.clone() else {
            return Ok(0);
        };
        let pattern = format!("{}{}:*", self.prefix, owner_hex(uid));
        let fail = |e: redis::RedisError| DedupEraseError(e.to_string());
        let mut deleted = 0u64;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            if !keys.is_empty() {
                deleted += redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(fail)?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn mark_up(&self) {
        RedisUp {
            was_down: !self.up.swap(true, Ordering::Relaxed),
        }
        .emit();
    }

    fn mark_down(&self, kind: &'static str, error: &str) {
        self.skip_until_ms.store(
            self.elapsed_ms() + RETRY_AFTER.as_millis() as u64,
            Ordering::Relaxed,
        );
        RedisDown {
            kind,
            error,
            // One line per outage, not per click.
            first: self.up.swap(false, Ordering::Relaxed),
            what: "Redis unavailable: de-duplication falls back to this instance's cache",
        }
        .emit();
    }
}

/// Redis answered: the gauge, and a line if it had been down.
struct RedisUp {
    was_down: bool,
}

impl Event for RedisUp {
    fn emit(self) {
        if self.was_down {
            tracing::info!("Redis answers again: de-duplication is shared across instances");
        }
        metrics::dedup_redis_ready(true);
    }
}

/// Redis could not be used for a click: counted every time, logged once per outage.
struct RedisDown<'a> {
    kind: &'static str,
    error: &'a str,
    first: bool,
    what: &'static str,
}

impl Event for RedisDown<'_> {
    fn emit(self) {
        metrics::error("dedup", self.kind);
        metrics::dedup_redis_ready(false);
        if self.first {
            tracing::error!(
                operation = "dedup",
                error_type = self.kind,
                error = self.error,
                "{}",
                self.what
            );
        }
    }
}
