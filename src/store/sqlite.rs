//! The embedded default store: one SQLite file, one writer connection.
//!
//! WAL with `synchronous=FULL`: a committed batch survives power loss, and with hundreds of
//! clicks per commit the fsync costs little. Every batch runs in `BEGIN IMMEDIATE`, which takes
//! the write lock up front, so the read-merge-write of tags is exact even with several
//! processes on one file (a deferred transaction could not upgrade its lock and would fail).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::members::{Member, MemberCache, Members};
use super::plan::{self, BatchPlan};
use super::{
    BatchResult, ErrorKind, Seen, StoreError, db_time, message_content, sqlx_error as err,
};
use crate::domain::tags::{LAST_CLICK_TAG_MAX_BYTES, merge_tags};
use crate::domain::{Click, Record, Reject};

/// How long a statement waits for another process's write lock before failing as transient.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Tx = Transaction<'static, Sqlite>;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    members: MemberCache,
}

/// See `Store::check_readable`.
pub(super) fn check_exists(url: &str) -> Result<(), StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(err("parse database url"))?;
    let file = options.get_filename();
    if file.is_file() {
        Ok(())
    } else {
        Err(StoreError::cannot_open(
            file.display(),
            "no such database file (check --database-url)",
        ))
    }
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(err("parse database url"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Multi-row upserts keep a statement journal; on a temp file it cost a pwrite per
            // page and halved throughput (profiled). In memory it is only RAM.
            .pragma("temp_store", "memory")
            // 8 MiB of page cache per connection: the hot index pages (members, summaries, the
            // right edge of the logs) stay in memory, the rest comes from the OS page cache.
            // 64 MiB made no difference to the apply rate and put the RSS over 100 MiB.
            .pragma("cache_size", "-8192")
            // sqlx's slow-statement warning is a multi-line dump of SQL, once per statement of
            // a stalled batch; the stall shows in track_batch_commit_seconds and the batch's
            // failure is logged once, on one line, where it is handled.
            .disable_statement_logging();
        let file = options.get_filename().to_owned();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::cannot_open(
                file.display(),
                format_args!("the directory {} does not exist", dir.display()),
            ));
        }
        // One connection per pool: its user (the applier, or the appender with --ack store)
        // writes one batch at a time, and SQLite has one writer anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // A local file cannot hang up: no ping round trip before every batch.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::cannot_open(file.display(), e))?;
        Ok(SqliteStore {
            pool,
            members: MemberCache::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|source| StoreError {
                kind: ErrorKind::Other,
                code: None,
                operation: "migrate",
                source: Box::new(source),
            })
    }

    /// See `Store::schema_objects`.
    pub async fn schema_objects(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT m.type || ' ' || m.name FROM sqlite_master m \
             WHERE m.type IN ('table', 'index') AND m.name NOT LIKE 'sqlite_%' \
               AND m.name NOT LIKE '_sqlx%' \
             UNION ALL \
             SELECT 'column ' || m.name || '.' || c.name \
             FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err("read schema"))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn probe(&self) -> Result<(), StoreError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err("probe"))?;
        tx.rollback().await.map_err(err("probe"))
    }

    /// The store's id (`track_store_identity`), created on first use.
    pub async fn identity(&self) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO track_store_identity (id, store_id, created_at) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(db_time(OffsetDateTime::now_utc()))
        .execute(&self.pool)
        .await
        .map_err(err("store identity"))?;
        sqlx::query_scalar("SELECT store_id FROM track_store_identity WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(err("store identity"))
    }

    pub async fn add_campaign(&self, id: i64, name: &str) -> Result<bool, StoreError> {
        let now = db_time(OffsetDateTime::now_utc());
        let done = sqlx::query(
            "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at) \
             VALUES (?, ?, 0, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(err("add campaign"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn write_batch(
        &self,
        records: &[Record],
        seen: Seen,
    ) -> Result<BatchResult, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err("begin"))?;
        let already = match seen {
            Seen::Never => HashSet::new(),
            Seen::Maybe => recorded_click_ids(&mut tx, records).await?,
        };
        let known = existing_campaigns(&mut tx, records).await?;
        let plan = BatchPlan::new(records, &already, &known);
        let now = db_time(OffsetDateTime::now_utc());

        let (mut members, unknown) = self.members.split(&plan.member_uids);
        members.extend(ensure_members(&mut tx, &unknown, &now).await?);
        bump_campaigns(&mut tx, &plan.campaign_increments, &now).await?;
        insert_messages(&mut tx, &plan.clicks, &members).await?;
        let tags_dropped = upsert_summaries(&mut tx, &plan, &members, &now).await?;
        insert_interaction_logs(&mut tx, &plan.clicks).await?;
        insert_click_tags(&mut tx, &plan.clicks).await?;
        insert_rejects(&mut tx, plan.rejects.iter().map(|r| r.as_ref())).await?;

        tx.commit().await.map_err(err("commit"))?;
        self.members.remember(&members);
        Ok(BatchResult {
            outcomes: plan.outcomes,
            tags_dropped,
        })
    }
}

// Rows travel as ONE JSON array parameter, unpacked by `json_each`: one statement per table per
// batch whatever its size, and one prepared statement per kind. Every statement is a round
// trip to sqlx's SQLite worker thread; with multi-row VALUES chunks a batch of 50 clicks took
// ~40 of them and each cost 150 µs or more on a busy 2-core machine (measured).

/// Serialize rows (tuples become JSON arrays) for `json_each`.
fn json_rows<T: serde::Serialize>(rows: &T, operation: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|source| StoreError {
        kind: ErrorKind::Other,
        code: None,
        operation,
        source: Box::new(source),
    })
}

/// Run `sql`, whose one parameter is `rows` as a JSON array; nothing to do for no rows.
async fn execute_with_rows<T: serde::Serialize>(
    tx: &mut Tx,
    sql: &'static str,
    rows: &[T],
    operation: &'static str,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(sql)
        .bind(json_rows(&rows, operation)?)
        .execute(&mut **tx)
        .await
        .map_err(err(operation))?;
    Ok(())
}

async fn recorded_click_ids(tx: &mut Tx, records: &[Record]) -> Result<HashSet<Uuid>, StoreError> {
    const OP: &str = "find recorded clicks";
    let ids: Vec<String> = records.iter().map(|r| r.click_id().to_string()).collect();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT click_id FROM component_interaction_logs \
             WHERE click_id IN (SELECT value FROM json_each(?1)) \
         UNION ALL \
         SELECT click_id FROM track_rejects WHERE click_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(json_rows(&ids, OP)?)
    .fetch_all(&mut **tx)
    .await
    .map_err(err(OP))?;
    Ok(rows
        .iter()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect())
}

async fn existing_campaigns(tx: &mut Tx, records: &[Record]) -> Result<HashSet<i64>, StoreError> {
    const OP: &str = "find campaigns";
    let ids: Vec<i64> = plan::campaign_ids(records).into_iter().collect();
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE id IN (SELECT value FROM json_each(?))")
            .bind(json_rows(&ids, OP)?)
            .fetch_all(&mut **tx)
            .await
            .map_err(err(OP))?;
    Ok(rows.into_iter().collect())
}

async fn ensure_members(tx: &mut Tx, uids: &[&str], now: &str) -> Result<Members, StoreError> {
    const OP: &str = "create members";
    if uids.is_empty() {
        return Ok(Members::new());
    }
    let uids = json_rows(&uids, OP)?;
    // `WHERE true` lets SQLite parse ON CONFLICT after a SELECT.
    sqlx::query(
        "INSERT INTO members (line_uid, line_display_name, created_at, updated_at) \
         SELECT value, NULL, ?2, ?2 FROM json_each(?1) WHERE true \
         ON CONFLICT (line_uid) DO NOTHING",
    )
    .bind(&uids)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(err(OP))?;
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, line_uid, line_display_name FROM members \
         WHERE line_uid IN (SELECT value FROM json_each(?))",
    )
    .bind(&uids)
    .fetch_all(&mut **tx)
    .await
    .map_err(err("read members"))?;
    Ok(rows
        .into_iter()
        .map(|(id, uid, display_name)| (uid, Member { id, display_name }))
        .collect())
}

async fn bump_campaigns(
    tx: &mut Tx,
    increments: &BTreeMap<i64, i64>,
    now: &str,
) -> Result<(), StoreError> {
    const OP: &str = "count campaign clicks";
    if increments.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, i64)> = increments.iter().map(|(id, n)| (*id, *n)).collect();
    // COALESCE: the old schema's clicked_count is nullable.
    sqlx::query(
        "UPDATE campaigns SET clicked_count = COALESCE(campaigns.clicked_count, 0) + d.n, \
             updated_at = ?2 \
         FROM (SELECT value ->> 0 AS id, value ->> 1 AS n FROM json_each(?1)) AS d \
         WHERE campaigns.id = d.id",
    )
    .bind(json_rows(&rows, OP)?)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(err(OP))?;
    Ok(())
}

async fn insert_messages(
    tx: &mut Tx,
    clicks: &[&Click],
    members: &Members,
) -> Result<(), StoreError> {
    const OP: &str = "insert messages";
    let rows: Vec<(i64, String, i64, String)> = clicks
        .iter()
        .filter_map(|c| {
            let member_id = &members.get(c.uid.as_deref()?)?.id;
            Some((
                *member_id,
                message_content(c),
                c.campaign_id,
                db_time(c.received_at),
            ))
        })
        .collect();
    execute_with_rows(
        tx,
        "INSERT INTO messages (member_id, direction, message_type, content, campaign_id, created_at) \
         SELECT value ->> 0, 'incoming', 'text', value ->> 1, value ->> 2, value ->> 3 \
         FROM json_each(?)",
        &rows,
        OP,
    )
    .await
}

/// Upsert every summary of the batch; returns the number of tags left out for lack of room.
async fn upsert_summaries(
    tx: &mut Tx,
    plan: &BatchPlan<'_>,
    members: &Members,
    now: &str,
) -> Result<usize, StoreError> {
    const OP: &str = "upsert summaries";
    if plan.summaries.is_empty() {
        return Ok(0);
    }
    // The write lock is ours (BEGIN IMMEDIATE): the tags read here cannot change before commit.
    let stored: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT line_id, source_campaign_id, last_click_tag FROM ryan_click_demo \
         WHERE line_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_rows(&plan.member_uids, OP)?)
    .fetch_all(&mut **tx)
    .await
    .map_err(err("read summaries"))?;
    let stored: HashMap<(&str, i64), Option<&str>> = stored
        .iter()
        .map(|(uid, src, tags)| ((uid.as_str(), *src), tags.as_deref()))
        .collect();

    let mut dropped = 0;
    let rows: Vec<SummaryRow<'_>> = plan
        .summaries
        .iter()
        .map(|(&(uid, src), delta)| {
            let existing = stored.get(&(uid, src)).copied().flatten();
            let merged = merge_tags(
                existing,
                delta.tags.iter().copied(),
                LAST_CLICK_TAG_MAX_BYTES,
            );
            dropped += merged.dropped;
            SummaryRow(
                uid,
                src,
                members.get(uid).and_then(|m| m.display_name.as_deref()),
                delta.clicks,
                db_time(delta.last_clicked_at),
                merged.value,
            )
        })
        .collect();

    sqlx::query(
        "INSERT INTO ryan_click_demo (line_id, source_campaign_id, line_display_name, \
             total_clicks, last_clicked_at, last_click_tag, created_at, updated_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?2, ?2 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (line_id, source_campaign_id) DO UPDATE SET \
             total_clicks = ryan_click_demo.total_clicks + excluded.total_clicks, \
             line_display_name = COALESCE(excluded.line_display_name, ryan_click_demo.line_display_name), \
             last_clicked_at = CASE WHEN ryan_click_demo.last_clicked_at IS NULL \
                 OR excluded.last_clicked_at > ryan_click_demo.last_clicked_at \
                 THEN excluded.last_clicked_at ELSE ryan_click_demo.last_clicked_at END, \
             last_click_tag = excluded.last_click_tag, \
             updated_at = excluded.updated_at",
    )
    .bind(json_rows(&rows, OP)?)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(err(OP))?;
    Ok(dropped)
}

/// (line_id, source_campaign_id, line_display_name, clicks, last_clicked_at, last_click_tag)
#[derive(serde::Serialize)]
struct SummaryRow<'a>(&'a str, i64, Option<&'a str>, i64, String, Option<String>);

async fn insert_interaction_logs(tx: &mut Tx, clicks: &[&Click]) -> Result<(), StoreError> {
    const OP: &str = "insert interaction logs";
    let rows: Vec<_> = clicks
        .iter()
        .map(|c| {
            (
                c.uid.as_deref().unwrap_or(""),
                c.campaign_id,
                c.interaction_type.as_str(),
                c.target.as_str(),
                db_time(c.received_at),
                c.user_agent.as_deref(),
                c.click_id.to_string(),
            )
        })
        .collect();
    execute_with_rows(
        tx,
        "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, \
             interaction_value, triggered_at, user_agent, click_id) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
         FROM json_each(?)",
        &rows,
        OP,
    )
    .await
}

async fn insert_click_tags(tx: &mut Tx, clicks: &[&Click]) -> Result<(), StoreError> {
    const OP: &str = "insert click tags";
    let rows: Vec<_> = plan::click_tags(clicks)
        .map(|(c, tag)| {
            (
                c.click_id.to_string(),
                c.campaign_id,
                tag,
                db_time(c.received_at),
            )
        })
        .collect();
    execute_with_rows(
        tx,
        "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
        &rows,
        OP,
    )
    .await
}

async fn insert_rejects<'r>(
    tx: &mut Tx,
    rejects: impl Iterator<Item = &'r Reject>,
) -> Result<(), StoreError> {
    const OP: &str = "insert rejects";
    let rows: Vec<_> = rejects
        .map(|r| {
            (
                r.click_id.to_string(),
                db_time(r.received_at),
                r.reason.as_str(),
                r.detail.as_deref(),
                r.query.as_str(),
                r.user_agent.as_deref(),
            )
        })
        .collect();
    execute_with_rows(
        tx,
        "INSERT INTO track_rejects (click_id, received_at, reason, detail, query_string, user_agent) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
         FROM json_each(?) WHERE true \
         ON CONFLICT (click_id) DO NOTHING",
        &rows,
        OP,
    )
    .await
}
