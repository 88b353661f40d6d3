//! The local journal: an SQLite file on the instance's own disk (`--spool-path`).
//!
//! Appends are group commits: one transaction per batch of records, `synchronous=FULL`, so
//! when `append` returns the batch survives power loss (an fsync costs ~0.1 ms here, shared by
//! the whole batch). Removal after apply is synced too, but nothing depends on it: a removal
//! lost in a crash only makes the applier find those click ids already recorded.
//!
//! The file says which store it belongs to (`journal_meta`), and refuses to be applied into
//! another one. It is opened lazily and reopened after a failure, so an operator who fixes a
//! permission or frees disk space gets it back without a restart. The table keeps its old name
//! (`spooled_records`): a spool written by the previous release is applied by this one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::format;
use super::{
    AppendReason, DecodeError, JournalError, JournalLock, Journaled, RecordUnreadable,
    StoreIdentity,
};
use crate::db::{SQLITE_BUSY_TIMEOUT as BUSY_TIMEOUT, db_time, sqlite_reader, sqlite_writer};
use crate::domain::Record;
use crate::telemetry::{Event, metrics};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spooled_records (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: apply order is append order
    click_id   TEXT NOT NULL,
    reason     TEXT NOT NULL,                     -- AppendReason
    spooled_at TEXT NOT NULL,
    record     TEXT NOT NULL                      -- JSON, see journal/format.rs
);
CREATE TABLE IF NOT EXISTS unreadable_records (
    seq        INTEGER PRIMARY KEY,
    reason     TEXT NOT NULL,
    spooled_at TEXT NOT NULL,
    record     TEXT NOT NULL,
    error      TEXT NOT NULL,
    moved_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Records removed per statement (see `remove`).
const REMOVE_CHUNK: usize = 512;
/// How often the file's size is measured against `--journal-max-bytes` while appending.
const SIZE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What `clicktrack spool status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    pub depth: u64,
    /// When the oldest record was appended (store time format, UTC).
    pub oldest_spooled_at: Option<String>,
    /// When the oldest record's click arrived.
    pub oldest_received_at: Option<OffsetDateTime>,
    /// Rows that could not be decoded and were set aside in `unreadable_records`.
    pub unreadable: u64,
    /// The store this journal belongs to, if it has been bound to one.
    pub store: Option<String>,
}

#[derive(Debug)]
pub struct LocalJournal {
    path: PathBuf,
    pool: OnceCell<SqlitePool>,
    /// A second connection for the applier's reads: in WAL mode it reads the last committed
    /// state without waiting for an append, so reading a batch of thousands never delays a
    /// redirect.
    reader: OnceCell<SqlitePool>,
    /// The store this process applies the journal to: set for `serve` and `spool replay`,
    /// which lock the file and bind it to their store when they open it; `None` for readers.
    owner: Option<StoreIdentity>,
    lock: std::sync::Mutex<Option<JournalLock>>,
    /// Rows this process knows to be in the journal; refreshed from the file by `refresh_depth`.
    depth: AtomicU64,
    /// `--journal-max-bytes` (0: no limit).
    max_bytes: u64,
    /// Bytes in use at the last measurement, and when that was (ms since `UNIX_EPOCH`).
    bytes: AtomicU64,
    bytes_measured_ms: AtomicU64,
}

impl LocalJournal {
    /// A journal at `path`, opened without taking it over (status, tests); nothing is opened
    /// until it is first used (or `open` is called).
    pub fn new(path: impl Into<PathBuf>) -> LocalJournal {
        LocalJournal::build(path.into(), None, 0)
    }

    /// The journal of a process that applies it to `store`: opening it takes its lock (one
    /// process per journal) and binds it to `store` (refusing a journal of another store). It
    /// refuses appends once it holds `max_bytes` (0: no limit).
    pub fn owned(path: impl Into<PathBuf>, store: StoreIdentity, max_bytes: u64) -> LocalJournal {
        LocalJournal::build(path.into(), Some(store), max_bytes)
    }

    fn build(path: PathBuf, owner: Option<StoreIdentity>, max_bytes: u64) -> LocalJournal {
        LocalJournal {
            path,
            pool: OnceCell::new(),
            reader: OnceCell::new(),
            owner,
            lock: std::sync::Mutex::new(None),
            depth: AtomicU64::new(0),
            max_bytes,
            bytes: AtomicU64::new(0),
            bytes_measured_ms: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file (creating it and its tables if needed) and count what it holds.
    pub async fn open(&self) -> Result<(), JournalError> {
        self.pool().await?;
        self.refresh_depth().await.map(|_| ())
    }

    async fn pool(&self) -> Result<&SqlitePool, JournalError> {
        // A failed open leaves the cell empty: the next use tries again.
        self.pool
            .get_or_try_init(|| async {
                self.take_lock()?;
                let options = sqlite_writer(SqliteConnectOptions::new().filename(&self.path));
                // One connection: appends and removals take turns on it without ever waiting
                // for a file lock; each turn is one statement over a whole batch.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    // A local file cannot hang up; the ping sqlx makes by default on every
                    // acquire is one more round trip to its worker thread per append. Nor
                    // does it need recycling: reopening after an idle spell would cost the
                    // next click the open.
                    .test_before_acquire(false)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(BUSY_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(self.err("open"))?;
                sqlx::raw_sql(SCHEMA)
                    .execute(&pool)
                    .await
                    .map_err(self.err("create tables"))?;
                if let Some(store) = &self.owner
                    && let Err(e) = self.bind(&pool, store).await
                {
                    pool.close().await;
                    return Err(e);
                }
                Ok(pool)
            })
            .await
    }

    /// The read connection (opened after the writer, which creates the file and tables).
    async fn reader(&self) -> Result<&SqlitePool, JournalError> {
        self.pool().await?;
        self.reader
            .get_or_try_init(|| async {
                let options = sqlite_reader(SqliteConnectOptions::new().filename(&self.path));
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(BUSY_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(self.err("open for reading"))
            })
            .await
    }

    fn err(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> JournalError + '_ {
        move |source| JournalError::Sqlite {
            operation,
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Hold the journal's lock (kept until the process exits).
    fn take_lock(&self) -> Result<(), JournalError> {
        if self.owner.is_none() {
            return Ok(());
        }
        let mut held = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.is_none() {
            *held = Some(JournalLock::acquire(&self.path)?);
        }
        Ok(())
    }

    /// Make sure this journal belongs to `store`: claim it if it belongs to none (a new file,
    /// or one written by a release that did not record its store) or holds nothing; refuse
    /// it if it holds records for another store.
    async fn bind(&self, pool: &SqlitePool, store: &StoreIdentity) -> Result<(), JournalError> {
        let mut tx = pool.begin().await.map_err(self.err("bind"))?;
        let bound: Option<(String, String)> = sqlx::query_as(
            "SELECT (SELECT value FROM journal_meta WHERE key = 'store_id'), \
                    COALESCE((SELECT value FROM journal_meta WHERE key = 'store'), '?') \
             WHERE EXISTS (SELECT 1 FROM journal_meta WHERE key = 'store_id')",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.err("bind"))?;
        let (depth,): (i64,) = sqlx::query_as("SELECT count(*) FROM spooled_records")
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("bind"))?;
        let depth = u64::try_from(depth).unwrap_or(0);
        match bound {
            Some((id, _)) if id == store.id => return Ok(()),
            Some((id, display)) if depth > 0 => {
                return Err(JournalError::OtherStore {
                    path: self.path.display().to_string(),
                    depth,
                    journal_store: StoreIdentity { id, display }.to_string(),
                    this_store: store.to_string(),
                });
            }
            Some((_, previous)) => {
                tracing::info!(
                    path = %self.path.display(),
                    previous_store = %previous,
                    store = %store,
                    "empty journal now belongs to this store"
                );
            }
            None => {}
        }
        for (key, value) in [("store_id", &store.id), ("store", &store.display)] {
            sqlx::query("INSERT OR REPLACE INTO journal_meta (key, value) VALUES (?, ?)")
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(self.err("bind"))?;
        }
        tx.commit().await.map_err(self.err("bind"))
    }

    /// Records in the journal, as this process last knew.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    fn set_depth(&self, depth: u64) {
        self.depth.store(depth, Ordering::Relaxed);
        metrics::journal_depth(depth);
    }

    /// Count the rows again.
    pub async fn refresh_depth(&self) -> Result<u64, JournalError> {
        let pool = self.pool().await?;
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM spooled_records")
            .fetch_one(pool)
            .await
            .map_err(self.err("count"))?;
        let n = u64::try_from(n).unwrap_or(0);
        self.set_depth(n);
        Ok(n)
    }

    /// Bytes the file's pages hold (free pages left by removals are reused, so not counted).
    pub async fn bytes_used(&self) -> Result<u64, JournalError> {
        let pool = self.pool().await?;
        let (pages, free, size): (i64, i64, i64) = sqlx::query_as(
            "SELECT p.page_count, f.freelist_count, s.page_size \
             FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
        )
        .fetch_one(pool)
        .await
        .map_err(self.err("measure"))?;
        let used = u64::try_from(pages.saturating_sub(free).saturating_mul(size)).unwrap_or(0);
        self.bytes.store(used, Ordering::Relaxed);
        metrics::journal_bytes(used);
        Ok(used)
    }

    /// Refuse an append while the journal is over `--journal-max-bytes`, measuring the file at
    /// most once per `SIZE_CHECK_INTERVAL` (so the limit can be passed by about a second's
    /// worth of clicks, never by more).
    async fn check_room(&self) -> Result<(), JournalError> {
        if self.max_bytes == 0 {
            return Ok(());
        }
        let now_ms = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(0);
        let measured = self.bytes_measured_ms.load(Ordering::Relaxed);
        let used = if now_ms.saturating_sub(measured) >= SIZE_CHECK_INTERVAL.as_millis() as u64 {
            self.bytes_measured_ms.store(now_ms, Ordering::Relaxed);
            self.bytes_used().await?
        } else {
            self.bytes.load(Ordering::Relaxed)
        };
        if used >= self.max_bytes {
            return Err(JournalError::Full {
                path: self.path.display().to_string(),
                used,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Append `records` in one synced transaction. When this returns `Ok`, they are on disk.
    /// (`Journal::append` counts and times it.)
    pub async fn append(
        &self,
        records: &[&Record],
        reason: AppendReason,
    ) -> Result<(), JournalError> {
        self.check_room().await?;
        let pool = self.pool().await?;
        let rows = format::encode_all(records.iter().copied());
        let done = sqlx::query(
            "INSERT INTO spooled_records (click_id, reason, spooled_at, record) \
             SELECT value ->> '$.click_id', ?, ?, value FROM json_each(?)",
        )
        .bind(reason.as_str())
        .bind(db_time(OffsetDateTime::now_utc()))
        .bind(rows)
        .execute(pool)
        .await
        .map_err(self.err("append"))?;
        self.depth
            .fetch_add(done.rows_affected(), Ordering::Relaxed);
        Ok(())
    }

    /// Up to `limit` of the oldest records. A row that cannot be decoded (a corrupted file, a
    /// newer format) is moved to `unreadable_records`, logged and counted, so it can neither
    /// block the FIFO nor vanish.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<Journaled>, JournalError> {
        let pool = self.reader().await?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, record FROM spooled_records ORDER BY seq LIMIT ?")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(self.err("read"))?;
        let mut records = Vec::with_capacity(rows.len());
        for (seq, json) in rows {
            match format::decode(&json) {
                Ok(record) => records.push(Journaled { seq, record }),
                Err(e) => self.set_aside(seq, &e).await?,
            }
        }
        Ok(records)
    }

    /// When the oldest record's click arrived.
    pub async fn oldest_received_at(&self) -> Result<Option<OffsetDateTime>, JournalError> {
        let pool = self.reader().await?;
        let oldest: Option<(String,)> =
            sqlx::query_as("SELECT record FROM spooled_records ORDER BY seq LIMIT 1")
                .fetch_optional(pool)
                .await
                .map_err(self.err("read"))?;
        Ok(oldest.and_then(|(json,)| format::decode(&json).ok().map(|r| r.received_at())))
    }

    async fn set_aside(&self, seq: i64, error: &DecodeError) -> Result<(), JournalError> {
        RecordUnreadable {
            error,
            at: format_args!("record {seq} of {}", self.path.display()),
            fate: "moved to unreadable_records",
        }
        .emit();
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

    /// Remove applied records (after their store transaction committed).
    /// Remove applied records (after their store transaction committed), in pieces of
    /// `REMOVE_CHUNK`: each piece is a short transaction of its own, so an append waiting for
    /// the connection waits for one piece, not for the removal of a whole batch of thousands.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), JournalError> {
        let pool = self.pool().await?;
        for chunk in seqs.chunks(REMOVE_CHUNK) {
            let mut conn = pool.acquire().await.map_err(self.err("remove"))?;
            self.delete(&mut conn, chunk).await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        conn: &mut sqlx::SqliteConnection,
        seqs: &[i64],
    ) -> Result<(), JournalError> {
        let first = seqs.iter().min().copied().unwrap_or(0);
        let last = seqs.iter().max().copied().unwrap_or(0);
        // An applied batch is nearly always a run of consecutive rows: a range delete walks the
        // table once instead of looking up every seq.
        let contiguous = usize::try_from(last - first + 1).is_ok_and(|n| n == seqs.len());
        let done = if contiguous {
            sqlx::query("DELETE FROM spooled_records WHERE seq BETWEEN ? AND ?")
                .bind(first)
                .bind(last)
                .execute(conn)
                .await
        } else {
            sqlx::query("DELETE FROM spooled_records WHERE seq IN (SELECT value FROM json_each(?))")
                .bind(serde_json::Value::from(seqs).to_string())
                .execute(conn)
                .await
        }
        .map_err(self.err("remove"))?;
        let left = self.depth().saturating_sub(done.rows_affected());
        self.set_depth(left);
        Ok(())
    }

    /// Remove every waiting record that names `uid` (a click of that member, a reject whose
    /// query names it): part of an erasure (`store/erase.rs`). With `dry_run`, only count.
    /// Records that cannot be decoded (`unreadable_records`) are not searched.
    pub async fn erase(&self, uid: &str, dry_run: bool) -> Result<u64, JournalError> {
        let pool = self.pool().await?;
        // A uid of letters and digits is written as is in the JSON: search for it; any other
        // spelling may be escaped, so every record is decoded.
        let needle = if uid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            uid
        } else {
            ""
        };
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, record FROM spooled_records WHERE instr(record, ?) > 0")
                .bind(needle)
                .fetch_all(pool)
                .await
                .map_err(self.err("erase"))?;
        let seqs: Vec<i64> = rows
            .into_iter()
            .filter(|(_, json)| {
                format::decode(json).is_ok_and(|r| r.member_uids().iter().any(|u| u == uid))
            })
            .map(|(seq, _)| seq)
            .collect();
        if !dry_run {
            let mut conn = pool.acquire().await.map_err(self.err("erase"))?;
            for chunk in seqs.chunks(REMOVE_CHUNK) {
                self.delete(&mut conn, chunk).await?;
            }
        }
        Ok(seqs.len() as u64)
    }

    pub async fn status(&self) -> Result<JournalStatus, JournalError> {
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
        let store: Option<String> =
            sqlx::query_scalar("SELECT value FROM journal_meta WHERE key = 'store'")
                .fetch_optional(pool)
                .await
                .map_err(self.err("status"))?;
        let (oldest_spooled_at, oldest_received_at) = match oldest {
            Some((at, json)) => {
                let received = format::decode(&json).ok().map(|r| r.received_at());
                (Some(at), received)
            }
            None => (None, None),
        };
        Ok(JournalStatus {
            depth,
            oldest_spooled_at,
            oldest_received_at,
            unreadable: u64::try_from(unreadable).unwrap_or(0),
            store,
        })
    }

    pub async fn close(&self) {
        if let Some(reader) = self.reader.get() {
            reader.close().await;
        }
        if let Some(pool) = self.pool.get() {
            pool.close().await;
        }
    }
}

/// The journal file used when `--spool-path` is not given. Next to an SQLite database
/// (`data/clicktrack.db` → `data/clicktrack.spool.db`, the name earlier releases used); for
/// MySQL and PostgreSQL in the working directory, named after the dialect, server and database
/// (`clicktrack-mysql-127.0.0.1-3306-shop.spool.db`), so instances of different stores
/// started from one folder never share a journal.
pub fn default_path(database: &crate::db::DatabaseUrl) -> PathBuf {
    match database {
        crate::db::DatabaseUrl::Sqlite(url) => {
            let file = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default();
            if file.is_empty() {
                return PathBuf::from("clicktrack.spool.db");
            }
            Path::new(file).with_extension("spool.db")
        }
        crate::db::DatabaseUrl::Mysql(url) => server_journal("mysql", url, 3306),
        crate::db::DatabaseUrl::Postgres(url) => server_journal("postgres", url, 5432),
    }
}

/// The default journal of a store on a server: in the working directory, named after the
/// dialect, host, port and database, so two stores never share one.
fn server_journal(dialect: &str, url: &str, default_port: u16) -> PathBuf {
    let parsed = url::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let port = parsed
        .as_ref()
        .and_then(|u| u.port())
        .unwrap_or(default_port);
    let db = parsed
        .as_ref()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    PathBuf::from(format!(
        "clicktrack-{dialect}-{}-{port}-{}.spool.db",
        safe(&host),
        safe(&db)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DatabaseUrl;

    #[test]
    fn the_default_journal_sits_next_to_the_data_and_differs_per_store() {
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
            default_path(&url("mysql://root:pw@localhost/shop")),
            Path::new("clicktrack-mysql-localhost-3306-shop.spool.db")
        );
        assert_eq!(
            default_path(&url("postgres://postgres@db.internal/shop")),
            Path::new("clicktrack-postgres-db.internal-5432-shop.spool.db")
        );
        assert_ne!(
            default_path(&url("sqlite://clicktrack.db")),
            default_path(&url("mysql://root@127.0.0.1:3306/test")),
        );
    }
}
