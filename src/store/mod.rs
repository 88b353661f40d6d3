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
pub mod erase;
mod member_packs;
mod mysql;
mod mysql_schema;
pub mod plan;
mod postgres;
mod postgres_schema;
mod purge;
pub mod rollup;
mod sqlite;

use std::collections::BTreeSet;
use std::fmt;

use time::OffsetDateTime;

pub use crate::db::{DatabaseUrl, DatabaseUrlError, ErrorKind, db_time};
use crate::domain::tags::LAST_CLICK_TAG_MAX_BYTES;
use crate::domain::{Record, RejectReason};
use crate::telemetry::metrics;

pub use backfill::{BackfillStep, RollupState};
pub use member_packs::{PACK_MIN_MEMBER_CLICKS, PackStep};
pub use mysql::MysqlStore;
pub use postgres::PostgresStore;
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
        let (kind, code) = crate::db::classify(&source);
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

/// How long opening a server's store waits for its first answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One connection to a database server (`place`: how the operator knows it) before its pool is
/// built, so that an unreachable or refusing server fails at once with its address and the
/// cause (a pool would retry for its whole acquire timeout, then say only "pool timed out").
async fn check_reachable<O>(options: &O, place: String) -> Result<(), StoreError>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    use sqlx::Connection;
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            // Closing politely is a courtesy; the server copes if it fails.
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the reachability check's connection");
            }
            Ok(())
        }
        Ok(Err(e)) => Err(StoreError::cannot_open(place, e)),
        Err(_) => Err(StoreError::cannot_open(
            place,
            format_args!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

/// A written batch: one outcome per record, in order, and what else the caller should count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    pub outcomes: Vec<Outcome>,
    /// New tags left out of `last_click_tag` because the column was full.
    pub tags_dropped: usize,
}

/// A connection pool to the store (the applier and the appender each hold one).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Mysql(MysqlStore),
    Postgres(PostgresStore),
}

/// Statements whose text differs between the stores and whose Rust does not: each store's
/// text here, the code that runs them once, in `Store` (through `on_pool!`).
struct Sql {
    /// Create the identity row unless it exists. Binds (store_id, created_at).
    create_identity: &'static str,
    /// Create a campaign (a duplicate id is an error the caller reads). Binds (id, name,
    /// created_at, updated_at).
    add_campaign: &'static str,
    /// Every `table T`, `column T.C` and `index T.I(C1,C2)` with its columns in order
    /// (SQLite: `index I(...)`; clicktrack's bookkeeping left out).
    schema_objects: &'static str,
    /// `track_rollup_state` as a `RollupState`.
    rollup_state: &'static str,
    /// Move the purge horizon forward. Binds (before, before).
    set_purge_horizon: &'static str,
    /// Rows older than `before` in the log, the click tags and the rejects (one bind each).
    purge_counts: [&'static str; 3],
}

/// `Sql::purge_counts` where a text time compares with the column as it is (SQLite, MySQL).
const PURGE_COUNTS: [&str; 3] = [
    "SELECT COUNT(*) FROM component_interaction_logs WHERE triggered_at < ?",
    "SELECT COUNT(*) FROM track_click_tags WHERE triggered_at < ?",
    "SELECT COUNT(*) FROM track_rejects WHERE received_at < ?",
];
const SET_PURGE_HORIZON: &str = "UPDATE track_rollup_state SET purged_before = ? \
    WHERE id = 1 AND (purged_before IS NULL OR purged_before < ?)";

const SQLITE: Sql = Sql {
    create_identity: "INSERT INTO track_store_identity (id, store_id, created_at) \
        VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING",
    add_campaign: "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at) \
        VALUES (?, ?, 0, ?, ?)",
    schema_objects: "SELECT 'table ' || m.name FROM sqlite_master m \
        WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' \
        UNION ALL \
        SELECT 'index ' || m.name || '(' || (SELECT group_concat(name, ',') FROM \
            (SELECT i.name FROM pragma_index_info(m.name) i ORDER BY i.seqno)) || ')' \
        FROM sqlite_master m WHERE m.type = 'index' AND m.name NOT LIKE 'sqlite_%' \
        UNION ALL \
        SELECT 'column ' || m.name || '.' || c.name \
        FROM sqlite_master m, pragma_table_info(m.name) c \
        WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    rollup_state: "SELECT backfill_start_id, backfill_end_id, backfill_next_id \
        FROM track_rollup_state WHERE id = 1",
    set_purge_horizon: SET_PURGE_HORIZON,
    purge_counts: PURGE_COUNTS,
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
        SELECT CONCAT('index ', table_name, '.', index_name, \
            '(', GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR ','), ')') \
        FROM information_schema.statistics \
        WHERE table_schema = DATABASE() AND index_name <> 'PRIMARY' \
        GROUP BY table_name, index_name",
    rollup_state: "SELECT CAST(backfill_start_id AS SIGNED) AS backfill_start_id, \
            CAST(backfill_end_id AS SIGNED) AS backfill_end_id, \
            CAST(backfill_next_id AS SIGNED) AS backfill_next_id \
        FROM track_rollup_state WHERE id = 1",
    set_purge_horizon: SET_PURGE_HORIZON,
    purge_counts: PURGE_COUNTS,
};

// PostgreSQL: numbered parameters, text times cast to `timestamp`.
const POSTGRES: Sql = Sql {
    create_identity: "INSERT INTO track_store_identity (id, store_id, created_at) \
        VALUES (1, $1, $2::timestamp) ON CONFLICT (id) DO NOTHING",
    add_campaign: "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at) \
        VALUES ($1, $2, 0, $3::timestamp, $4::timestamp)",
    schema_objects: "SELECT 'table ' || table_name FROM information_schema.tables \
        WHERE table_schema = current_schema() \
        UNION ALL \
        SELECT 'column ' || table_name || '.' || column_name FROM information_schema.columns \
        WHERE table_schema = current_schema() \
        UNION ALL \
        SELECT 'index ' || tablename || '.' || indexname \
            || COALESCE(substring(indexdef from '\\([^)]*\\)'), '') FROM pg_indexes \
        WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey'",
    rollup_state: "SELECT backfill_start_id, backfill_end_id, backfill_next_id \
        FROM track_rollup_state WHERE id = 1",
    set_purge_horizon: "UPDATE track_rollup_state SET purged_before = $1::timestamp \
        WHERE id = 1 AND (purged_before IS NULL OR purged_before < $2::timestamp)",
    purge_counts: [
        "SELECT COUNT(*) FROM component_interaction_logs WHERE triggered_at < $1::timestamp",
        "SELECT COUNT(*) FROM track_click_tags WHERE triggered_at < $1::timestamp",
        "SELECT COUNT(*) FROM track_rejects WHERE received_at < $1::timestamp",
    ],
};

/// Run `$body` with `$pool` bound to the store's pool and `$sql` to its `Sql`; each arm is
/// compiled on its own, so one body serves both drivers without generic bounds (as
/// `stats::on_pool!` does for the reports).
macro_rules! on_pool {
    ($store:expr, $pool:ident, $sql:ident => $body:expr) => {
        crate::db::on_pool!($store.pools(), $pool, $sql in (&SQLITE, &MYSQL, &POSTGRES) => $body)
    };
}

/// Run `$body` with `$s` bound to the store in use (`SqliteStore`, `MysqlStore`, ...): each arm
/// is compiled on its own, so one body runs a generic step (`batch::write`, `backfill::step`)
/// on every store's transaction.
macro_rules! on_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            Store::Sqlite($s) => $body,
            Store::Mysql($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
}

/// `ryan_click_demo.last_click_tag`'s capacity on a server, read from its schema at migration:
/// the app's column may be narrower than the seed's.
#[derive(Debug, Clone, Default)]
struct TagCapacity(std::sync::Arc<std::sync::OnceLock<usize>>);

impl TagCapacity {
    /// The column holds `chars` characters (`None`: no limit). Characters, not bytes: using
    /// them as a byte limit can only leave room unused.
    fn learn(&self, chars: Option<i64>) {
        let capacity = chars.map_or(LAST_CLICK_TAG_MAX_BYTES, |c| c.clamp(1, 65_535) as usize);
        if self.0.set(capacity).is_err() {
            tracing::debug!("tag capacity already known");
        }
    }

    fn get(&self) -> usize {
        self.0.get().copied().unwrap_or(LAST_CLICK_TAG_MAX_BYTES)
    }
}

/// Connection settings that are not part of the URL.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Most connections a MySQL pool opens (`--db-max-connections`); SQLite always uses one.
    pub max_connections: u32,
}

impl Store {
    /// The pool in use, for `on_pool!`.
    fn pools(&self) -> crate::db::PoolRef<'_> {
        match self {
            Store::Sqlite(s) => crate::db::PoolRef::Sqlite(s.pool()),
            Store::Mysql(s) => crate::db::PoolRef::Mysql(s.pool()),
            Store::Postgres(s) => crate::db::PoolRef::Postgres(s.pool()),
        }
    }

    /// Open the store (creating an SQLite file if missing). Does not migrate.
    pub async fn connect(url: &DatabaseUrl, options: ConnectOptions) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite(url) => SqliteStore::connect(url).await.map(Store::Sqlite),
            DatabaseUrl::Mysql(url) => MysqlStore::connect(url, options.max_connections)
                .await
                .map(Store::Mysql),
            DatabaseUrl::Postgres(url) => PostgresStore::connect(url, options.max_connections)
                .await
                .map(Store::Postgres),
        }
    }

    /// For readers that open no pool of their own first (`clicktrack stats`): fail at once,
    /// naming the file or server and the cause, when the store is not there to read.
    pub async fn check_readable(url: &DatabaseUrl) -> Result<(), StoreError> {
        match url {
            DatabaseUrl::Sqlite(url) => sqlite::check_exists(url),
            DatabaseUrl::Mysql(url) => mysql::check_reachable_url(url).await,
            DatabaseUrl::Postgres(url) => postgres::check_reachable_url(url).await,
        }
    }

    /// Create or upgrade the schema.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        on_store!(self, s => s.migrate().await)
    }

    /// Write one batch in one transaction. With `Seen::Maybe`, records whose `click_id` the
    /// store already holds change nothing, so a batch whose commit outcome is unknown can be
    /// retried; `Seen::Never` skips that lookup for records that cannot have been written.
    pub async fn write_batch(
        &self,
        records: &[Record],
        seen: Seen,
    ) -> Result<BatchResult, StoreError> {
        on_store!(self, s => {
            batch::write(s.begin().await?, records, seen, s.tag_capacity()).await
        })
    }

    /// Roll up at most `chunk` log rows the rollups do not hold yet (`backfill.rs`): the
    /// history first, then rows another program added. Idle once there are none.
    pub async fn backfill_step(&self, chunk: i64) -> Result<BackfillStep, StoreError> {
        on_store!(self, s => backfill::step(s.begin().await?, chunk).await)
    }

    /// Record that raw rows older than `before` (`db_time`) are about to be purged: from now
    /// on the statistics read nothing older from the raw log. Only ever moves forward.
    pub async fn set_purge_horizon(&self, before: &str) -> Result<(), StoreError> {
        on_pool!(self, pool, sql => {
            sqlx::query(sql.set_purge_horizon)
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
        on_store!(self, s => {
            erase::run(s.begin().await?, uid, dry_run, OffsetDateTime::now_utc()).await
        })
    }

    /// Delete at most `chunk` raw rows of each kind older than `before` (`purge.rs`).
    pub async fn purge_step(&self, before: &str, chunk: i64) -> Result<Purged, StoreError> {
        on_store!(self, s => purge::step(s.begin().await?, before, chunk).await)
    }

    /// What a purge before `before` would delete (`--dry-run`).
    pub async fn purge_counts(&self, before: &str) -> Result<Purged, StoreError> {
        let count = async |table: usize| -> Result<u64, StoreError> {
            let n: i64 = on_pool!(self, pool, sql => {
                sqlx::query_scalar(sql.purge_counts[table])
                    .bind(before)
                    .fetch_one(pool)
                    .await
                    .map_err(sqlx_error("count rows to purge"))?
            });
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Purged {
            logs: count(0).await?,
            tags: count(1).await?,
            rejects: count(2).await?,
        })
    }

    /// For a bulk job on this connection (`migrate`'s backfill): SQLite keeps `mib` MiB of
    /// pages cached and checkpoints its WAL less often (`SqliteStore::set_bulk_mode`);
    /// MySQL's cache is the server's buffer pool, so nothing changes there.
    pub async fn set_bulk_mode(&self, mib: u32) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_bulk_mode(mib).await,
            Store::Mysql(_) | Store::Postgres(_) => Ok(()),
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
            // SQLite: the write lock, which another process may hold.
            Store::Sqlite(s) => s.probe().await,
            Store::Mysql(_) | Store::Postgres(_) => on_pool!(self, pool, _sql => {
                sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .map(|_| ())
                    .map_err(sqlx_error("probe"))
            }),
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
    /// Count what this committed batch did (`track_clicks_recorded_total`, ...), except the
    /// outcomes `counted` marks (a late commit counted them when it committed).
    pub fn count_except(&self, counted: &[bool]) {
        let (mut recorded, mut already, mut erased) = (0u64, 0u64, 0u64);
        let fresh = |i: &usize| counted.get(*i) != Some(&true);
        for (_, outcome) in self.outcomes.iter().enumerate().filter(|(i, _)| fresh(i)) {
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
