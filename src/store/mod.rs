//! The store: where batches of records become rows in the five tables (docs/what-a-click-writes.md).
//!
//! `Store` is the interface the applier (and the appender with `--ack store`) uses. What a
//! batch *means* (which counters move by how much, which summaries change, which clicks are
//! rejected) is decided once, in `plan`; how it is written (the steps, their lock order, the
//! tag merge) once, in `batch`; each backend's file holds its connection settings and the SQL
//! of each step (`BatchTx`). Statements that differ only in their text are run once, here.

mod backfill;
mod batch;
mod chunks;
pub mod classify;
pub mod erase;
mod mysql;
mod mysql_schema;
pub mod plan;
mod purge;
pub mod rollup;
mod sqlite;

use std::collections::BTreeSet;
use std::fmt;

use time::OffsetDateTime;

use crate::domain::{Record, RejectReason};
use crate::telemetry::metrics;

pub use backfill::{BackfillStep, RollupState};
pub use mysql::MysqlStore;
pub use purge::Purged;
pub use sqlite::SqliteStore;

/// What happened to one record of a written batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the five tables.
    Recorded,
    /// Written to `track_rejects` with this reason.
    Rejected(RejectReason),
    /// Its `click_id` was already in the store (a replay): nothing changed.
    AlreadyRecorded,
    /// Its member was erased after it was made (`store/erase.rs`): not written, on purpose.
    Erased,
}

/// Whether a batch's records may already be in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Fresh clicks on their first attempt: their new uuid v7 ids cannot be stored yet.
    Never,
    /// A retry, a bisected part or a replay: look the ids up and skip what is there.
    Maybe,
}

/// How the caller should react to a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Lock contention or a busy database: retry the whole batch.
    Transient,
    /// The database refused a row (constraint, range, type): bisect to find it.
    Refused,
    /// The database cannot be reached or written (I/O, disk full, gone): retry, then give up.
    Unavailable,
    /// No answer in time (a hung connection, a stalled server): retry, then give up. The
    /// abandoned attempt may still commit, so whatever follows must look its ids up.
    TimedOut,
    /// Anything else: a bug or a misconfiguration; not retried.
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::TimedOut => "timeout",
            ErrorKind::Other => "other",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{operation}: {source}")]
pub struct StoreError {
    pub kind: ErrorKind,
    /// The backend's error code, when it gave one (metric label for retries).
    pub code: Option<String>,
    /// What the store was doing.
    pub operation: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// `operation` failed with `source`: a `StoreError` of the kind `classify` says.
pub(crate) fn sqlx_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| {
        let (kind, code) = classify::classify(&source);
        StoreError {
            kind,
            code,
            operation,
            source: Box::new(source),
        }
    }
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Transient | ErrorKind::Unavailable | ErrorKind::TimedOut
        )
    }

    /// The store at `place` (a file, or host:port/database) could not be opened: sqlx's own
    /// message names neither, and an operator's first question is "which one, and why".
    pub fn cannot_open(place: impl fmt::Display, cause: impl fmt::Display) -> StoreError {
        StoreError {
            kind: ErrorKind::Unavailable,
            code: None,
            operation: "open database",
            source: format!("{place}: {cause}").into(),
        }
    }

    /// `operation` had no time left for another attempt: earlier ones used all of `given`.
    pub fn budget_spent(operation: &'static str, given: std::time::Duration) -> StoreError {
        StoreError {
            kind: ErrorKind::TimedOut,
            code: None,
            operation,
            source: format!(
                "no time left for another attempt: the earlier ones used all {} ms it had",
                given.as_millis()
            )
            .into(),
        }
    }

    /// `operation` did not finish within `limit`.
    pub fn timed_out(operation: &'static str, limit: std::time::Duration) -> StoreError {
        StoreError {
            kind: ErrorKind::TimedOut,
            code: None,
            operation,
            source: format!("no answer within {} ms", limit.as_millis()).into(),
        }
    }
}

/// An open transaction of one of clicktrack's writers (a batch, a backfill step, a purge
/// step), whose steps are each dialect's SQL (`BatchTx`, `RollupTx`, `BackfillTx`, `PurgeTx`).
pub(crate) trait StoreTx: Send {
    async fn commit(self) -> Result<(), StoreError>;
}

/// A written batch: one outcome per record, in order, and what else the caller should count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    pub outcomes: Vec<Outcome>,
    /// New tags left out of `last_click_tag` because the column was full.
    pub tags_dropped: usize,
}

/// The database behind `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    /// MySQL 8 or MariaDB (`mysql://` or `mariadb://`).
    Mysql(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("unsupported scheme in {0:?} (supported: sqlite://PATH, mysql://USER@HOST/DB)")]
    UnsupportedScheme(String),
    #[error("{0:?} names no database file")]
    MissingPath(String),
    #[error("{0:?} names no database (expected mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE)")]
    MissingDatabase(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
        match url.split_once(':') {
            Some(("sqlite", rest)) => {
                let path = rest.trim_start_matches("//");
                if path.is_empty() || path.starts_with(":memory:") || rest.starts_with(":memory:") {
                    // An in-memory database would vanish with its connection.
                    return Err(DatabaseUrlError::MissingPath(url.to_owned()));
                }
                Ok(DatabaseUrl::Sqlite(url.to_owned()))
            }
            Some(("mysql" | "mariadb", rest)) => {
                let parsed = url::Url::parse(url)
                    .map_err(|_| DatabaseUrlError::MissingDatabase(redact(url)))?;
                if parsed.path().trim_start_matches('/').is_empty() {
                    return Err(DatabaseUrlError::MissingDatabase(redact(url)));
                }
                Ok(DatabaseUrl::Mysql(format!("mysql:{rest}")))
            }
            _ => Err(DatabaseUrlError::UnsupportedScheme(redact(url))),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(url) => f.write_str(url),
            DatabaseUrl::Mysql(url) => f.write_str(&redact(url)),
        }
    }
}

/// A URL with any password removed, for messages and logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ignored = parsed.set_password(Some("***"));
            parsed.into()
        }
        _ => url.to_owned(),
    }
}

/// A connection pool to the store (the applier and the appender each hold one).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Mysql(MysqlStore),
}

/// Statements whose text differs between the stores and whose Rust does not: each store's
/// text here, the code that runs them once, in `Store` (through `on_pool!`).
struct Sql {
    /// Create the identity row unless it exists. Binds (store_id, created_at).
    create_identity: &'static str,
    /// Create a campaign (a duplicate id is an error the caller reads). Binds (id, name,
    /// created_at, updated_at).
    add_campaign: &'static str,
    /// Every `table T`, `column T.C` and `index T.I` (clicktrack's bookkeeping left out).
    schema_objects: &'static str,
    /// `track_rollup_state` as a `RollupState`.
    rollup_state: &'static str,
}

const SQLITE: Sql = Sql {
    create_identity: "INSERT INTO track_store_identity (id, store_id, created_at) \
        VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING",
    add_campaign: "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at) \
        VALUES (?, ?, 0, ?, ?)",
    schema_objects: "SELECT m.type || ' ' || m.name FROM sqlite_master m \
        WHERE m.type IN ('table', 'index') AND m.name NOT LIKE 'sqlite_%' \
          AND m.name NOT LIKE '_sqlx%' \
        UNION ALL \
        SELECT 'column ' || m.name || '.' || c.name \
        FROM sqlite_master m, pragma_table_info(m.name) c \
        WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    rollup_state: "SELECT backfill_start_id, backfill_end_id, backfill_next_id \
        FROM track_rollup_state WHERE id = 1",
};

const MYSQL: Sql = Sql {
    // Not INSERT IGNORE, which would also turn a value too long for its column into a warning
    // and store it cut: only the duplicate key is a no-op here.
    create_identity: "INSERT INTO track_store_identity (id, store_id, created_at) \
        VALUES (1, ?, ?) ON DUPLICATE KEY UPDATE id = id",
    add_campaign: "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at) \
        VALUES (?, ?, 0, ?, ?)",
    schema_objects: "SELECT CONCAT('table ', table_name) FROM information_schema.tables \
        WHERE table_schema = DATABASE() \
        UNION ALL \
        SELECT CONCAT('column ', table_name, '.', column_name) FROM information_schema.columns \
        WHERE table_schema = DATABASE() \
        UNION \
        SELECT CONCAT('index ', table_name, '.', index_name) FROM information_schema.statistics \
        WHERE table_schema = DATABASE() AND index_name <> 'PRIMARY'",
    rollup_state: "SELECT CAST(backfill_start_id AS SIGNED) AS backfill_start_id, \
            CAST(backfill_end_id AS SIGNED) AS backfill_end_id, \
            CAST(backfill_next_id AS SIGNED) AS backfill_next_id \
        FROM track_rollup_state WHERE id = 1",
};

/// Run `$body` with `$pool` bound to the store's pool and `$sql` to its `Sql`; each arm is
/// compiled on its own, so one body serves both drivers without generic bounds (as
/// `stats::on_pool!` does for the reports).
macro_rules! on_pool {
    ($store:expr, $pool:ident, $sql:ident => $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let ($pool, $sql) = (s.pool(), &SQLITE);
                $body
            }
            Store::Mysql(s) => {
                let ($pool, $sql) = (s.pool(), &MYSQL);
                $body
            }
        }
    };
}

/// Connection settings that are not part of the URL.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Most connections a MySQL pool opens (`--db-max-connections`); SQLite always uses one.
    pub max_connections: u32,
}

impl Store {
    /// Open the store (creating an SQLite file if missing). Does not migrate.
    pub async fn connect(url: &DatabaseUrl, options: ConnectOptions) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite(url) => SqliteStore::connect(url).await.map(Store::Sqlite),
            DatabaseUrl::Mysql(url) => MysqlStore::connect(url, options.max_connections)
                .await
                .map(Store::Mysql),
        }
    }

    /// For readers that open no pool of their own first (`clicktrack stats`): fail at once,
    /// naming the file or server and the cause, when the store is not there to read.
    pub async fn check_readable(url: &DatabaseUrl) -> Result<(), StoreError> {
        match url {
            DatabaseUrl::Sqlite(url) => sqlite::check_exists(url),
            DatabaseUrl::Mysql(url) => mysql::check_reachable_url(url).await,
        }
    }

    /// Create or upgrade the schema.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
            Store::Mysql(s) => s.migrate().await,
        }
    }

    /// Write one batch in one transaction. With `Seen::Maybe`, records whose `click_id` the
    /// store already holds change nothing, so a batch whose commit outcome is unknown can be
    /// retried; `Seen::Never` skips that lookup for records that cannot have been written.
    pub async fn write_batch(
        &self,
        records: &[Record],
        seen: Seen,
    ) -> Result<BatchResult, StoreError> {
        match self {
            Store::Sqlite(s) => s.write_batch(records, seen).await,
            Store::Mysql(s) => s.write_batch(records, seen).await,
        }
    }

    /// Roll up at most `chunk` log rows the rollups do not hold yet (`backfill.rs`): the
    /// history first, then rows another program added. Idle once there are none.
    pub async fn backfill_step(&self, chunk: i64) -> Result<BackfillStep, StoreError> {
        match self {
            Store::Sqlite(s) => s.backfill_step(chunk).await,
            Store::Mysql(s) => s.backfill_step(chunk).await,
        }
    }

    /// Record that raw rows older than `before` (`db_time`) are about to be purged: from now
    /// on the statistics read nothing older from the raw log. Only ever moves forward.
    pub async fn set_purge_horizon(&self, before: &str) -> Result<(), StoreError> {
        on_pool!(self, pool, _sql => {
            sqlx::query(
                "UPDATE track_rollup_state SET purged_before = ? \
                 WHERE id = 1 AND (purged_before IS NULL OR purged_before < ?)",
            )
            .bind(before)
            .bind(before)
            .execute(pool)
            .await
            .map_err(sqlx_error("record the purge horizon"))?;
            Ok(())
        })
    }

    /// Erase one member from every table (`erase.rs`); with `dry_run`, only count.
    pub async fn erase(&self, uid: &str, dry_run: bool) -> Result<erase::Erased, StoreError> {
        match self {
            Store::Sqlite(s) => s.erase(uid, dry_run).await,
            Store::Mysql(s) => s.erase(uid, dry_run).await,
        }
    }

    /// Delete at most `chunk` raw rows of each kind older than `before` (`purge.rs`).
    pub async fn purge_step(&self, before: &str, chunk: i64) -> Result<Purged, StoreError> {
        match self {
            Store::Sqlite(s) => s.purge_step(before, chunk).await,
            Store::Mysql(s) => s.purge_step(before, chunk).await,
        }
    }

    /// What a purge before `before` would delete (`--dry-run`).
    pub async fn purge_counts(&self, before: &str) -> Result<Purged, StoreError> {
        let count = async |sql: &'static str| -> Result<u64, StoreError> {
            let n: i64 = on_pool!(self, pool, _sql => {
                sqlx::query_scalar(sql)
                    .bind(before)
                    .fetch_one(pool)
                    .await
                    .map_err(sqlx_error("count rows to purge"))?
            });
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Purged {
            logs: count("SELECT COUNT(*) FROM component_interaction_logs WHERE triggered_at < ?")
                .await?,
            tags: count("SELECT COUNT(*) FROM track_click_tags WHERE triggered_at < ?").await?,
            rejects: count("SELECT COUNT(*) FROM track_rejects WHERE received_at < ?").await?,
        })
    }

    /// For a bulk job on this connection (`migrate`'s backfill): SQLite keeps `mib` MiB of
    /// pages cached; MySQL's cache is the server's buffer pool, so nothing changes there.
    pub async fn set_bulk_cache_mib(&self, mib: u32) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_cache_mib(mib).await,
            Store::Mysql(_) => Ok(()),
        }
    }

    /// How far the backfill of the history is (read without waiting for a running step).
    pub async fn rollup_state(&self) -> Result<RollupState, StoreError> {
        on_pool!(self, pool, sql => {
            sqlx::query_as(sql.rollup_state)
                .fetch_one(pool)
                .await
                .map_err(sqlx_error("read rollup state"))
        })
    }

    /// Every table, column and index of the schema, as `table T`, `column T.C`, `index T.I`
    /// (clicktrack's migration bookkeeping left out): `migrate` compares them before and after
    /// to say what it changed.
    pub async fn schema_objects(&self) -> Result<BTreeSet<String>, StoreError> {
        let names: Vec<String> = on_pool!(self, pool, sql => {
            sqlx::query_scalar(sql.schema_objects)
                .fetch_all(pool)
                .await
                .map_err(sqlx_error("read schema"))?
        });
        Ok(names.into_iter().collect())
    }

    /// Succeeds when the store would accept a write now.
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.probe().await,
            Store::Mysql(s) => s.probe().await,
        }
    }

    /// The store's own id, kept in the store (`track_store_identity`): the same database
    /// reached by another URL has the same id, another database a different one.
    /// Created by whichever process asks first.
    pub async fn identity(&self) -> Result<String, StoreError> {
        on_pool!(self, pool, sql => {
            sqlx::query(sql.create_identity)
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(db_time(OffsetDateTime::now_utc()))
                .execute(pool)
                .await
                .map_err(sqlx_error("store identity"))?;
            sqlx::query_scalar("SELECT store_id FROM track_store_identity WHERE id = 1")
                .fetch_one(pool)
                .await
                .map_err(sqlx_error("store identity"))
        })
    }

    /// Create a campaign (for trying clicktrack out; production campaigns come from the
    /// marketing app). `Ok(false)` if the id exists already.
    pub async fn add_campaign(&self, id: i64, name: &str) -> Result<bool, StoreError> {
        let now = db_time(OffsetDateTime::now_utc());
        let done = on_pool!(self, pool, sql => {
            sqlx::query(sql.add_campaign)
                .bind(id)
                .bind(name)
                .bind(&now)
                .bind(&now)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match done {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sqlx_error("add campaign")(e)),
        }
    }

    /// Connections of the store's pool right now, for `db_pool_connections{state}`.
    pub fn pool_stats(&self) -> PoolStats {
        on_pool!(self, pool, _sql => PoolStats::of(pool))
    }

    pub async fn close(&self) {
        on_pool!(self, pool, _sql => pool.close().await)
    }
}

/// A snapshot of a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

impl BatchResult {
    /// Count what this committed batch did (`track_clicks_recorded_total`, ...).
    pub fn count(&self) {
        let (mut recorded, mut already, mut erased) = (0u64, 0u64, 0u64);
        for outcome in &self.outcomes {
            match outcome {
                Outcome::Recorded => recorded += 1,
                Outcome::AlreadyRecorded => already += 1,
                Outcome::Rejected(reason) => metrics::reject(*reason),
                Outcome::Erased => erased += 1,
            }
        }
        metrics::batch_written(recorded, already, self.tags_dropped as u64);
        metrics::clicks_erased(erased);
    }
}

impl Outcome {
    /// `outcome` label of `track_journal_applied_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Recorded => metrics::outcome::RECORDED,
            Outcome::AlreadyRecorded => metrics::outcome::ALREADY_RECORDED,
            Outcome::Rejected(_) => metrics::outcome::REJECTED,
            Outcome::Erased => metrics::outcome::ERASED,
        }
    }
}

impl PoolStats {
    /// Report this snapshot as `db_pool_connections`.
    pub fn export(self) {
        metrics::db_pool(self.idle, self.in_use, self.max);
    }

    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolStats {
        let size = pool.size();
        // Read separately from `size`, so clamp: a connection may close in between.
        let idle = (pool.num_idle() as u32).min(size);
        PoolStats {
            idle,
            in_use: size - idle,
            max: pool.options().get_max_connections(),
        }
    }
}

/// `messages.content` of a click, in the old endpoint's key order:
/// `{"event":"campaign_click","campaign_id":123,"target":"https://..."}`.
pub fn message_content(click: &crate::domain::Click) -> String {
    #[derive(serde::Serialize)]
    struct Content<'a> {
        event: &'static str,
        campaign_id: i64,
        target: &'a str,
    }
    let content = Content {
        event: "campaign_click",
        campaign_id: click.campaign_id.get(),
        target: &click.target,
    };
    // Serializing a struct of plain strings and integers cannot fail.
    serde_json::to_string(&content).unwrap_or_default()
}

/// The stores' text form of a time: `YYYY-MM-DD HH:MM:SS` in UTC, as MySQL DATETIME prints it,
/// so it sorts as text and compares the same on every backend.
pub fn db_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert!(matches!(
            DatabaseUrl::parse("sqlite://clicktrack.db"),
            Ok(DatabaseUrl::Sqlite(_))
        ));
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(matches!(
            DatabaseUrl::parse("mariadb://root@127.0.0.1:3306/test"),
            Ok(DatabaseUrl::Mysql(u)) if u == "mysql://root@127.0.0.1:3306/test"
        ));
        assert!(DatabaseUrl::parse("mysql://root@127.0.0.1:3306").is_err());
        let shown = DatabaseUrl::parse("mysql://u:secret@h/db")
            .expect("valid")
            .to_string();
        assert!(!shown.contains("secret"), "{shown}");
        let err = DatabaseUrl::parse("postgres://u:secret@h/db").expect_err("unsupported");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn db_time_is_utc_and_fixed_width() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.678 +09:00);
        assert_eq!(db_time(t), "2026-01-01 18:04:05");
    }
}
