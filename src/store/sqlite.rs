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
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::chunks::fixed_chunks;
use super::plan::{self, BatchPlan, SummaryDelta};
use super::{BatchResult, ErrorKind, StoreError, db_time, message_content};
use crate::domain::tags::{LAST_CLICK_TAG_MAX_BYTES, merge_tags};
use crate::domain::{Click, Record, Reject};

/// How long a statement waits for another process's write lock before failing as transient.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Tx = Transaction<'static, Sqlite>;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// Classify a sqlx error by SQLite's primary result code.
fn err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| {
        let (kind, code) = match &source {
            sqlx::Error::Database(db) => {
                let code = db.code().and_then(|c| c.parse::<i32>().ok());
                let kind = match code.map(|c| c & 0xff) {
                    // BUSY, LOCKED
                    Some(5 | 6) => ErrorKind::Transient,
                    // TOOBIG, CONSTRAINT, MISMATCH, RANGE
                    Some(18..=20 | 25) => ErrorKind::Refused,
                    // READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB
                    Some(8 | 10 | 11 | 13 | 14 | 26) => ErrorKind::Unavailable,
                    _ => ErrorKind::Other,
                };
                (kind, code.map(|c| c.to_string()))
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => (ErrorKind::Unavailable, None),
            _ => (ErrorKind::Other, None),
        };
        StoreError {
            kind,
            code,
            operation,
            source: Box::new(source),
        }
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
            .foreign_keys(true);
        // One connection: the writer is the only user, and SQLite has one writer anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(err("open database"))?;
        Ok(SqliteStore { pool })
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

    pub async fn probe(&self) -> Result<(), StoreError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err("probe"))?;
        tx.rollback().await.map_err(err("probe"))
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

    pub async fn write_batch(&self, records: &[Record]) -> Result<BatchResult, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err("begin"))?;
        let already = recorded_click_ids(&mut tx, records).await?;
        let known = existing_campaigns(&mut tx, records).await?;
        let plan = BatchPlan::new(records, &already, &known);
        let now = db_time(OffsetDateTime::now_utc());

        let members = ensure_members(&mut tx, &plan.member_uids, &now).await?;
        bump_campaigns(&mut tx, &plan.campaign_increments, &now).await?;
        insert_messages(&mut tx, &plan.clicks, &members).await?;
        let tags_dropped = upsert_summaries(&mut tx, &plan, &members, &now).await?;
        insert_interaction_logs(&mut tx, &plan.clicks).await?;
        insert_rejects(&mut tx, plan.rejects.iter().map(|r| r.as_ref())).await?;

        tx.commit().await.map_err(err("commit"))?;
        Ok(BatchResult {
            outcomes: plan.outcomes,
            tags_dropped,
        })
    }
}

/// A member's id and display name, by LINE uid.
type Members = HashMap<String, (i64, Option<String>)>;

fn push_in_list(q: &mut QueryBuilder<Sqlite>, items: &[impl AsRef<str>]) {
    let mut list = q.separated(", ");
    for item in items {
        list.push_bind(item.as_ref());
    }
}

async fn recorded_click_ids(tx: &mut Tx, records: &[Record]) -> Result<HashSet<Uuid>, StoreError> {
    let ids: Vec<String> = records.iter().map(|r| r.click_id().to_string()).collect();
    let mut found = HashSet::new();
    for chunk in fixed_chunks(&ids) {
        let mut q = QueryBuilder::new(
            "SELECT click_id FROM component_interaction_logs WHERE click_id IN (",
        );
        push_in_list(&mut q, chunk);
        q.push(") UNION ALL SELECT click_id FROM track_rejects WHERE click_id IN (");
        push_in_list(&mut q, chunk);
        q.push(")");
        let rows = q
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(err("find recorded clicks"))?;
        for row in rows {
            let id: String = row.try_get(0).map_err(err("find recorded clicks"))?;
            if let Ok(id) = Uuid::parse_str(&id) {
                found.insert(id);
            }
        }
    }
    Ok(found)
}

async fn existing_campaigns(tx: &mut Tx, records: &[Record]) -> Result<HashSet<i64>, StoreError> {
    let ids: Vec<i64> = plan::campaign_ids(records).into_iter().collect();
    let mut found = HashSet::new();
    for chunk in fixed_chunks(&ids) {
        let mut q = QueryBuilder::new("SELECT id FROM campaigns WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        let rows = q
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(err("find campaigns"))?;
        for row in rows {
            found.insert(row.try_get::<i64, _>(0).map_err(err("find campaigns"))?);
        }
    }
    Ok(found)
}

async fn ensure_members(tx: &mut Tx, uids: &[&str], now: &str) -> Result<Members, StoreError> {
    for chunk in fixed_chunks(uids) {
        let mut q = QueryBuilder::new(
            "INSERT INTO members (line_uid, line_display_name, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut row, uid| {
            row.push_bind(*uid)
                .push("NULL")
                .push_bind(now)
                .push_bind(now);
        });
        q.push(" ON CONFLICT (line_uid) DO NOTHING");
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(err("create members"))?;
    }
    let mut members = Members::with_capacity(uids.len());
    for chunk in fixed_chunks(uids) {
        let mut q = QueryBuilder::new(
            "SELECT id, line_uid, line_display_name FROM members WHERE line_uid IN (",
        );
        push_in_list(&mut q, chunk);
        q.push(")");
        let rows = q
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(err("read members"))?;
        for row in rows {
            let id: i64 = row.try_get(0).map_err(err("read members"))?;
            let uid: String = row.try_get(1).map_err(err("read members"))?;
            let name: Option<String> = row.try_get(2).map_err(err("read members"))?;
            members.insert(uid, (id, name));
        }
    }
    Ok(members)
}

async fn bump_campaigns(
    tx: &mut Tx,
    increments: &BTreeMap<i64, i64>,
    now: &str,
) -> Result<(), StoreError> {
    for (id, n) in increments {
        sqlx::query(
            "UPDATE campaigns SET clicked_count = COALESCE(clicked_count, 0) + ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(*n)
        .bind(now)
        .bind(*id)
        .execute(&mut **tx)
        .await
        .map_err(err("count campaign clicks"))?;
    }
    Ok(())
}

async fn insert_messages(
    tx: &mut Tx,
    clicks: &[&Click],
    members: &Members,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, String, i64, String)> = clicks
        .iter()
        .filter_map(|c| {
            let (member_id, _) = members.get(c.uid.as_deref()?)?;
            Some((
                *member_id,
                message_content(c),
                c.campaign_id,
                db_time(c.received_at),
            ))
        })
        .collect();
    for chunk in fixed_chunks(&rows) {
        let mut q = QueryBuilder::new(
            "INSERT INTO messages (member_id, direction, message_type, content, campaign_id, created_at) ",
        );
        q.push_values(chunk, |mut row, (member_id, content, campaign_id, at)| {
            row.push_bind(*member_id)
                .push("'incoming'")
                .push("'text'")
                .push_bind(content.as_str())
                .push_bind(*campaign_id)
                .push_bind(at.as_str());
        });
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(err("insert messages"))?;
    }
    Ok(())
}

/// Upsert every summary of the batch; returns the number of tags left out for lack of room.
async fn upsert_summaries(
    tx: &mut Tx,
    plan: &BatchPlan<'_>,
    members: &Members,
    now: &str,
) -> Result<usize, StoreError> {
    if plan.summaries.is_empty() {
        return Ok(0);
    }
    // The write lock is ours (BEGIN IMMEDIATE): the tags read here cannot change before commit.
    let mut stored: HashMap<(String, i64), Option<String>> = HashMap::new();
    for chunk in fixed_chunks(&plan.member_uids) {
        let mut q = QueryBuilder::new(
            "SELECT line_id, source_campaign_id, last_click_tag FROM ryan_click_demo WHERE line_id IN (",
        );
        push_in_list(&mut q, chunk);
        q.push(")");
        let rows = q
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(err("read summaries"))?;
        for row in rows {
            let uid: String = row.try_get(0).map_err(err("read summaries"))?;
            let src: i64 = row.try_get(1).map_err(err("read summaries"))?;
            let tags: Option<String> = row.try_get(2).map_err(err("read summaries"))?;
            stored.insert((uid, src), tags);
        }
    }

    let mut dropped = 0;
    let rows: Vec<SummaryRow<'_>> = plan
        .summaries
        .iter()
        .map(|(&(uid, src), delta)| {
            let existing = stored
                .get(&(uid.to_owned(), src))
                .and_then(Option::as_deref);
            let merged = merge_tags(
                existing,
                delta.tags.iter().copied(),
                LAST_CLICK_TAG_MAX_BYTES,
            );
            dropped += merged.dropped;
            SummaryRow {
                uid,
                src,
                name: members.get(uid).and_then(|(_, name)| name.as_deref()),
                delta,
                last_clicked_at: db_time(delta.last_clicked_at),
                tags: merged.value,
            }
        })
        .collect();

    for chunk in fixed_chunks(&rows) {
        let mut q = QueryBuilder::new(
            "INSERT INTO ryan_click_demo (line_id, source_campaign_id, line_display_name, \
             total_clicks, last_clicked_at, last_click_tag, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut b, row| {
            b.push_bind(row.uid)
                .push_bind(row.src)
                .push_bind(row.name)
                .push_bind(row.delta.clicks)
                .push_bind(row.last_clicked_at.as_str())
                .push_bind(row.tags.as_deref())
                .push_bind(now)
                .push_bind(now);
        });
        q.push(
            " ON CONFLICT (line_id, source_campaign_id) DO UPDATE SET \
             total_clicks = ryan_click_demo.total_clicks + excluded.total_clicks, \
             line_display_name = COALESCE(excluded.line_display_name, ryan_click_demo.line_display_name), \
             last_clicked_at = CASE WHEN ryan_click_demo.last_clicked_at IS NULL \
                 OR excluded.last_clicked_at > ryan_click_demo.last_clicked_at \
                 THEN excluded.last_clicked_at ELSE ryan_click_demo.last_clicked_at END, \
             last_click_tag = excluded.last_click_tag, \
             updated_at = excluded.updated_at",
        );
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(err("upsert summaries"))?;
    }
    Ok(dropped)
}

struct SummaryRow<'a> {
    uid: &'a str,
    src: i64,
    name: Option<&'a str>,
    delta: &'a SummaryDelta<'a>,
    last_clicked_at: String,
    tags: Option<String>,
}

async fn insert_interaction_logs(tx: &mut Tx, clicks: &[&Click]) -> Result<(), StoreError> {
    let rows: Vec<(&Click, String, String)> = clicks
        .iter()
        .map(|c| (*c, db_time(c.received_at), c.click_id.to_string()))
        .collect();
    for chunk in fixed_chunks(&rows) {
        let mut q = QueryBuilder::new(
            "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, \
             interaction_value, triggered_at, user_agent, click_id) ",
        );
        q.push_values(chunk, |mut b, (c, at, id)| {
            b.push_bind(c.uid.as_deref().unwrap_or(""))
                .push_bind(c.campaign_id)
                .push_bind(c.interaction_type.as_str())
                .push_bind(c.target.as_str())
                .push_bind(at.as_str())
                .push_bind(c.user_agent.as_deref())
                .push_bind(id.as_str());
        });
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(err("insert interaction logs"))?;
    }
    Ok(())
}

async fn insert_rejects<'r>(
    tx: &mut Tx,
    rejects: impl Iterator<Item = &'r Reject>,
) -> Result<(), StoreError> {
    let rows: Vec<(&Reject, String, String)> = rejects
        .map(|r| (r, r.click_id.to_string(), db_time(r.received_at)))
        .collect();
    for chunk in fixed_chunks(&rows) {
        let mut q = QueryBuilder::new(
            "INSERT INTO track_rejects (click_id, received_at, reason, detail, query_string, user_agent) ",
        );
        q.push_values(chunk, |mut b, (r, id, at)| {
            b.push_bind(id.as_str())
                .push_bind(at.as_str())
                .push_bind(r.reason.as_str())
                .push_bind(r.detail.as_deref())
                .push_bind(r.query.as_str())
                .push_bind(r.user_agent.as_deref());
        });
        q.push(" ON CONFLICT (click_id) DO NOTHING");
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(err("insert rejects"))?;
    }
    Ok(())
}
