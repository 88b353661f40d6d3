//! The spool: a durable local FIFO for records the store cannot take right now.
//!
//! When the database is down, or a batch still fails after its retries, or the in-memory
//! queue is full, records are appended here (a separate SQLite file, `synchronous=FULL`) and
//! their requests are answered as soon as the append commits: a 302 always means the click is
//! on disk somewhere. While the store is healthy the writer replays the spool oldest first;
//! a replayed batch is written with its `click_id`s looked up, so a batch that was committed
//! but not yet removed from the spool (a crash in between) is never counted twice.
//!
//! The file is opened lazily and reopened after a failure, so an operator who fixes a
//! permission or frees disk space gets the spool back without a restart.

mod format;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

pub use format::DecodeError;

use crate::domain::Record;
use crate::store::db_time;
use crate::telemetry::metrics;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spooled_records (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: replay order is append order
    click_id   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    spooled_at TEXT NOT NULL,
    record     TEXT NOT NULL                      -- JSON, see spool/format.rs
);
CREATE TABLE IF NOT EXISTS unreadable_records (
    seq        INTEGER PRIMARY KEY,
    reason     TEXT NOT NULL,
    spooled_at TEXT NOT NULL,
    record     TEXT NOT NULL,
    error      TEXT NOT NULL,
    moved_at   TEXT NOT NULL
);
";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why records went to the spool (`track_spooled_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolReason {
    /// The store failed or was known to be down.
    StoreUnavailable,
    /// The in-memory queue was full.
    Overflow,
}

impl SpoolReason {
    pub const ALL: [SpoolReason; 2] = [SpoolReason::StoreUnavailable, SpoolReason::Overflow];

    pub fn as_str(self) -> &'static str {
        match self {
            SpoolReason::StoreUnavailable => "store_unavailable",
            SpoolReason::Overflow => "overflow",
        }
    }
}

/// A record read back from the spool, with its position.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub seq: i64,
    pub record: Record,
}

/// What `clicktrack spool status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolStatus {
    pub depth: u64,
    /// When the oldest record was spooled (store time format, UTC).
    pub oldest_spooled_at: Option<String>,
    /// When the oldest record's click arrived.
    pub oldest_received_at: Option<OffsetDateTime>,
    /// Rows that could not be decoded and were set aside in `unreadable_records`.
    pub unreadable: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("spool {operation} ({path}): {source}")]
pub struct SpoolError {
    pub operation: &'static str,
    pub path: String,
    #[source]
    pub source: sqlx::Error,
}

impl SpoolError {
    /// `error_type` label of `track_errors_total{operation="spool"}`.
    pub fn kind(&self) -> &'static str {
        match &self.source {
            sqlx::Error::Database(db) => {
                match db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff)
                {
                    Some(13) => "disk_full",
                    Some(5 | 6) => "busy",
                    _ => "unavailable",
                }
            }
            _ => "unavailable",
        }
    }
}

#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    pool: OnceCell<SqlitePool>,
    /// Rows this process knows to be in the spool; refreshed from the file by `refresh_depth`.
    depth: AtomicU64,
}

impl Spool {
    /// A spool at `path`; nothing is opened until it is first used (or `open` is called).
    pub fn new(path: impl Into<PathBuf>) -> Spool {
        Spool {
            path: path.into(),
            pool: OnceCell::new(),
            depth: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file (creating it and its tables if needed) and count what it holds.
    pub async fn open(&self) -> Result<(), SpoolError> {
        self.pool().await?;
        self.refresh_depth().await.map(|_| ())
    }

    async fn pool(&self) -> Result<&SqlitePool, SpoolError> {
        // A failed open leaves the cell empty: the next use tries again.
        self.pool
            .get_or_try_init(|| async {
                let options = SqliteConnectOptions::new()
                    .filename(&self.path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(BUSY_TIMEOUT);
                // One connection: the writer and the overflow task take turns; appends are
                // whole batches, so the turns are short.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(BUSY_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(self.err("open"))?;
                sqlx::raw_sql(SCHEMA)
                    .execute(&pool)
                    .await
                    .map_err(self.err("create tables"))?;
                Ok(pool)
            })
            .await
    }

    fn err(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> SpoolError + '_ {
        move |source| SpoolError {
            operation,
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Records in the spool, as this process last knew.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    fn set_depth(&self, depth: u64) {
        self.depth.store(depth, Ordering::Relaxed);
        metrics::spool_depth(depth);
    }

    /// Count the rows again (another process may share the file).
    pub async fn refresh_depth(&self) -> Result<u64, SpoolError> {
        let pool = self.pool().await?;
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM spooled_records")
            .fetch_one(pool)
            .await
            .map_err(self.err("count"))?;
        let n = u64::try_from(n).unwrap_or(0);
        self.set_depth(n);
        Ok(n)
    }

    /// Append `records` in one synced transaction. When this returns `Ok`, they are on disk.
    pub async fn append<'a>(
        &self,
        records: impl IntoIterator<Item = &'a Record>,
        reason: SpoolReason,
    ) -> Result<(), SpoolError> {
        let rows: Vec<_> = records.into_iter().map(format::encode).collect();
        let count = rows.len();
        if count == 0 {
            return Ok(());
        }
        let pool = self.pool().await?;
        let rows = serde_json::Value::Array(rows);
        let done = sqlx::query(
            "INSERT INTO spooled_records (click_id, reason, spooled_at, record) \
             SELECT value ->> '$.click_id', ?, ?, value FROM json_each(?)",
        )
        .bind(reason.as_str())
        .bind(db_time(OffsetDateTime::now_utc()))
        .bind(rows.to_string())
        .execute(pool)
        .await
        .map_err(self.err("append"))?;
        self.depth
            .fetch_add(done.rows_affected(), Ordering::Relaxed);
        metrics::spool_depth(self.depth());
        metrics::spooled(reason, count);
        Ok(())
    }

    /// Up to `limit` of the oldest records. A row that cannot be decoded (a corrupted file, a
    /// newer format) is moved to `unreadable_records`, logged and counted, so it can neither
    /// block the FIFO nor vanish.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<Spooled>, SpoolError> {
        let pool = self.pool().await?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, record FROM spooled_records ORDER BY seq LIMIT ?")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(self.err("read"))?;
        let mut records = Vec::with_capacity(rows.len());
        for (seq, json) in rows {
            match format::decode(&json) {
                Ok(record) => records.push(Spooled { seq, record }),
                Err(e) => self.set_aside(seq, &e).await?,
            }
        }
        Ok(records)
    }

    async fn set_aside(&self, seq: i64, error: &DecodeError) -> Result<(), SpoolError> {
        tracing::error!(
            operation = "spool",
            seq,
            path = %self.path.display(),
            error = %error,
            "spooled record cannot be read: moved to unreadable_records"
        );
        metrics::error("spool", "undecodable");
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(self.err("set aside"))?;
        sqlx::query(
            "INSERT OR REPLACE INTO unreadable_records \
             SELECT seq, reason, spooled_at, record, ?, ? FROM spooled_records WHERE seq = ?",
        )
        .bind(error.to_string())
        .bind(db_time(OffsetDateTime::now_utc()))
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(self.err("set aside"))?;
        self.delete(&mut tx, &[seq]).await?;
        tx.commit().await.map_err(self.err("set aside"))
    }

    /// Remove replayed records (after their store transaction committed).
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), SpoolError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let pool = self.pool().await?;
        let mut conn = pool.acquire().await.map_err(self.err("remove"))?;
        self.delete(&mut conn, seqs).await
    }

    async fn delete(
        &self,
        conn: &mut sqlx::SqliteConnection,
        seqs: &[i64],
    ) -> Result<(), SpoolError> {
        let done = sqlx::query(
            "DELETE FROM spooled_records WHERE seq IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::Value::from(seqs).to_string())
        .execute(conn)
        .await
        .map_err(self.err("remove"))?;
        let left = self.depth().saturating_sub(done.rows_affected());
        self.set_depth(left);
        Ok(())
    }

    pub async fn status(&self) -> Result<SpoolStatus, SpoolError> {
        let depth = self.refresh_depth().await?;
        let pool = self.pool().await?;
        let oldest: Option<(String, String)> =
            sqlx::query_as("SELECT spooled_at, record FROM spooled_records ORDER BY seq LIMIT 1")
                .fetch_optional(pool)
                .await
                .map_err(self.err("status"))?;
        let (unreadable,): (i64,) = sqlx::query_as("SELECT count(*) FROM unreadable_records")
            .fetch_one(pool)
            .await
            .map_err(self.err("status"))?;
        let (oldest_spooled_at, oldest_received_at) = match oldest {
            Some((at, json)) => {
                let received = format::decode(&json).ok().map(|r| r.received_at());
                (Some(at), received)
            }
            None => (None, None),
        };
        Ok(SpoolStatus {
            depth,
            oldest_spooled_at,
            oldest_received_at,
            unreadable: u64::try_from(unreadable).unwrap_or(0),
        })
    }

    pub async fn close(&self) {
        if let Some(pool) = self.pool.get() {
            pool.close().await;
        }
    }
}

/// The spool file used when `--spool-path` is not given: next to an SQLite database
/// (`data/clicktrack.db` → `data/clicktrack.spool.db`), else in the working directory.
pub fn default_path(database: &crate::store::DatabaseUrl) -> PathBuf {
    if let crate::store::DatabaseUrl::Sqlite(url) = database {
        let file = url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or_default();
        if !file.is_empty() {
            return Path::new(file).with_extension("spool.db");
        }
    }
    PathBuf::from("clicktrack.spool.db")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseUrl;

    #[test]
    fn the_default_spool_sits_next_to_the_data() {
        let url = |s| DatabaseUrl::parse(s).expect("valid");
        assert_eq!(
            default_path(&url("sqlite://data/clicktrack.db?mode=rwc")),
            Path::new("data/clicktrack.spool.db")
        );
        assert_eq!(
            default_path(&url("sqlite:///var/lib/ct/clicks")),
            Path::new("/var/lib/ct/clicks.spool.db")
        );
        assert_eq!(
            default_path(&url("mysql://root@localhost/db")),
            Path::new("clicktrack.spool.db")
        );
    }
}
