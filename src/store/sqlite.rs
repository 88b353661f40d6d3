//! The embedded default store: one SQLite file, one writer connection.
//!
//! WAL with `synchronous=FULL`: a committed batch survives power loss, and with hundreds of
//! clicks per commit the fsync costs little. Every batch runs in `BEGIN IMMEDIATE`, which takes
//! the write lock up front, so the read-merge-write of tags is exact even with several
//! processes on one file (a deferred transaction could not upgrade its lock and would fail).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};

use super::backfill::{BackfillTx, CampaignRows, LogRow, RollupState};
use super::batch::{
    BatchTx, CampaignIncrement, ClickTagRow, InteractionLogRow, MemberRow, MessageRow, RejectRow,
    StoredTags, SummaryCountRow, SummaryTagRow,
};
use super::erase::EraseTx;
use super::purge::PurgeTx;
use super::rollup::{
    CampaignMemberRow, CampaignRollupRow, Grain, HourRow, KeyCountRow, KeyedRollup, RollupTx,
};
use super::{ErrorKind, StoreError, StoreTx, sqlx_error as err};
use crate::domain::tags::LAST_CLICK_TAG_MAX_BYTES;

type Tx = Transaction<'static, Sqlite>;

/// WAL pages between two checkpoints in a bulk job (`SqliteStore::set_bulk_mode`): 256 MiB.
const BULK_CHECKPOINT_PAGES: u32 = 65_536;
/// What a bulk job's WAL file is cut back to after a checkpoint.
const BULK_WAL_KEEP_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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
            "no such database file (check --database-url and the folder you are in; \
             `clicktrack migrate` or `serve` creates it)",
        ))
    }
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = crate::db::sqlite_writer(
            SqliteConnectOptions::from_str(url).map_err(err("parse database url"))?,
        )
        .foreign_keys(true)
        // Multi-row upserts keep a statement journal; on a temp file it cost a pwrite per
        // page and halved throughput (profiled). In memory it is only RAM.
        .pragma("temp_store", "memory")
        // 8 MiB of page cache per connection: the hot index pages (members, summaries, the
        // right edge of the logs) stay in memory, the rest comes from the OS page cache.
        // 64 MiB made no difference to the apply rate and put the RSS over 100 MiB.
        .pragma("cache_size", "-8192");
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
            // A local file cannot hang up: no ping round trip before every batch, and no
            // reason to recycle the connection, which keeps the priority of the thread that
            // opened it (its worker thread inherits it: `pipeline/priority.rs`).
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::cannot_open(file.display(), e))?;
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

    /// Bytes `ryan_click_demo.last_click_tag` holds: the seed's width (clicktrack creates the
    /// SQLite schema itself).
    pub(super) fn tag_capacity(&self) -> usize {
        LAST_CLICK_TAG_MAX_BYTES
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

    /// Settings for a bulk job on this connection (`migrate`'s backfill and packing): a page
    /// cache of `cache_mib` MiB, so the rollups' index pages stay in memory instead of being
    /// read back from the OS for every step; and the WAL copied back into the file every
    /// `BULK_CHECKPOINT_PAGES` rather than every 1,000 pages (4 MiB). A backfill step dirties
    /// thousands of pages, most of them the same as the step before (every campaign's latest
    /// hours, in seven tables), and each checkpoint wrote them all again: with the longer
    /// interval they are written once per checkpoint, not once per step (backfill and packing
    /// of 1,500,000 rows: a sixth less time, measured). The WAL file is cut back to
    /// `BULK_WAL_KEEP_BYTES` after each checkpoint. Commits still wait for the disk.
    pub async fn set_bulk_mode(&self, cache_mib: u32) -> Result<(), StoreError> {
        for pragma in [
            format!("PRAGMA cache_size = -{}", u64::from(cache_mib) * 1024),
            format!("PRAGMA wal_autocheckpoint = {BULK_CHECKPOINT_PAGES}"),
            format!("PRAGMA journal_size_limit = {BULK_WAL_KEEP_BYTES}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(pragma))
                .execute(&self.pool)
                .await
                .map_err(err("set up the connection for a bulk job"))?;
        }
        Ok(())
    }

    /// A transaction for one of the writers' steps (`Store::write_batch`, ...).
    pub(super) async fn begin(&self) -> Result<SqliteBatch, StoreError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err("begin"))?;
        Ok(SqliteBatch(tx))
    }
}

// Rows travel as ONE JSON array parameter, unpacked by `json_each`: one statement per table per
// batch whatever its size, and one prepared statement per kind. Every statement is a round
// trip to sqlx's SQLite worker thread; with multi-row VALUES chunks a batch of 50 clicks took
// ~40 of them and each cost 150 µs or more on a busy 2-core machine (measured). Each row is a
// JSON array in the order of the statement's column list: as objects, the field names repeated
// in every row cost ~8 % of the apply rate (examples/apply_ceiling.rs).

/// A batch's transaction, begun with `BEGIN IMMEDIATE`: the write lock is ours from the start,
/// so every read in it sees what no one else can change before commit.
pub(super) struct SqliteBatch(Tx);

/// Serialize rows for `json_each`.
fn json_rows<T: serde::Serialize + ?Sized>(
    rows: &T,
    operation: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|source| StoreError {
        kind: ErrorKind::Other,
        code: None,
        operation,
        source: Box::new(source),
    })
}

impl SqliteBatch {
    /// Run `sql`, whose one parameter (`?1`) is `rows` as a JSON array, and `?2` = `now`.
    async fn execute<T: serde::Serialize + Sync>(
        &mut self,
        sql: &'static str,
        rows: &[T],
        now: Option<&str>,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        let mut query = sqlx::query(sql).bind(json_rows(rows, operation)?);
        if let Some(now) = now {
            query = query.bind(now.to_owned());
        }
        query.execute(&mut *self.0).await.map_err(err(operation))?;
        Ok(())
    }

    /// `sql`'s rows, its one parameter being `keys` as a JSON array.
    async fn fetch<K, R>(
        &mut self,
        sql: &'static str,
        keys: &[K],
        operation: &'static str,
    ) -> Result<Vec<R>, StoreError>
    where
        K: serde::Serialize + Sync,
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        sqlx::query_as(sql)
            .bind(json_rows(keys, operation)?)
            .fetch_all(&mut *self.0)
            .await
            .map_err(err(operation))
    }
}

impl BatchTx for SqliteBatch {
    async fn recorded_click_ids(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .fetch(
                "SELECT click_id FROM component_interaction_logs \
                     WHERE click_id IN (SELECT value FROM json_each(?1)) \
                 UNION ALL \
                 SELECT click_id FROM track_rejects \
                     WHERE click_id IN (SELECT value FROM json_each(?1))",
                ids,
                "find recorded clicks",
            )
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn existing_campaigns(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = self
            .fetch(
                "SELECT id FROM campaigns WHERE id IN (SELECT value FROM json_each(?))",
                ids,
                "find campaigns",
            )
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn bump_campaigns(
        &mut self,
        increments: &[CampaignIncrement],
        now: &str,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = increments.iter().map(|i| (i.id, i.clicks)).collect();
        // COALESCE: the old schema's clicked_count is nullable.
        self.execute(
            "UPDATE campaigns SET clicked_count = COALESCE(campaigns.clicked_count, 0) + d.n, \
                 updated_at = ?2 \
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS n FROM json_each(?1)) AS d \
             WHERE campaigns.id = d.id",
            &rows,
            Some(now),
            "count campaign clicks",
        )
        .await
    }

    async fn erasures_after(&mut self, since: &str) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as(
            "SELECT uid_hash, erased_at FROM track_erasures \
             WHERE erased_at > ? AND uid_hash <> '*'",
        )
        .bind(since)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read erasure list"))
    }

    async fn read_members(&mut self, uids: &[&str]) -> Result<Vec<MemberRow>, StoreError> {
        // BEGIN IMMEDIATE: no other writer can delete them before commit.
        self.fetch(
            "SELECT id, line_uid, line_display_name FROM members \
             WHERE line_uid IN (SELECT value FROM json_each(?))",
            uids,
            "read members",
        )
        .await
    }

    async fn create_members(&mut self, uids: &[&str], now: &str) -> Result<(), StoreError> {
        // `WHERE true` lets SQLite parse ON CONFLICT after a SELECT.
        self.execute(
            "INSERT INTO members (line_uid, line_display_name, created_at, updated_at) \
             SELECT value, NULL, ?2, ?2 FROM json_each(?1) WHERE true \
             ON CONFLICT (line_uid) DO NOTHING",
            uids,
            Some(now),
            "create members",
        )
        .await
    }

    async fn insert_messages(&mut self, rows: &[MessageRow]) -> Result<(), StoreError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (r.member_id, &r.content, r.campaign_id, &r.created_at))
            .collect();
        self.execute(
            "INSERT INTO messages (member_id, direction, message_type, content, campaign_id, created_at) \
             SELECT value ->> 0, 'incoming', 'text', value ->> 1, value ->> 2, value ->> 3 \
             FROM json_each(?)",
            &rows,
            None,
            "insert messages",
        )
        .await
    }

    async fn upsert_summary_counts(
        &mut self,
        rows: &[SummaryCountRow<'_>],
        now: &str,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let (uid, src, name) = (r.line_id, r.source_campaign_id, r.line_display_name);
                (uid, src, name, r.total_clicks, &r.last_clicked_at)
            })
            .collect();
        self.execute(
            "INSERT INTO ryan_click_demo (line_id, source_campaign_id, line_display_name, \
                 total_clicks, last_clicked_at, created_at, updated_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2, ?2 \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (line_id, source_campaign_id) DO UPDATE SET \
                 total_clicks = ryan_click_demo.total_clicks + excluded.total_clicks, \
                 line_display_name = COALESCE(excluded.line_display_name, ryan_click_demo.line_display_name), \
                 last_clicked_at = CASE WHEN ryan_click_demo.last_clicked_at IS NULL \
                     OR excluded.last_clicked_at > ryan_click_demo.last_clicked_at \
                     THEN excluded.last_clicked_at ELSE ryan_click_demo.last_clicked_at END, \
                 updated_at = excluded.updated_at",
            &rows,
            Some(now),
            "upsert summaries",
        )
        .await
    }

    async fn summary_tags(&mut self, uids: &[&str]) -> Result<Vec<StoredTags>, StoreError> {
        self.fetch(
            "SELECT line_id, source_campaign_id, last_click_tag FROM ryan_click_demo \
             WHERE line_id IN (SELECT value FROM json_each(?))",
            uids,
            "read summary tags",
        )
        .await
    }

    async fn write_summary_tags(
        &mut self,
        rows: &[SummaryTagRow<'_>],
        now: &str,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (r.line_id, r.source_campaign_id, &r.last_click_tag))
            .collect();
        self.execute(
            "UPDATE ryan_click_demo SET last_click_tag = d.tags, updated_at = ?2 \
             FROM (SELECT value ->> 0 AS uid, value ->> 1 AS src, value ->> 2 AS tags \
                   FROM json_each(?1)) AS d \
             WHERE ryan_click_demo.line_id = d.uid AND ryan_click_demo.source_campaign_id = d.src",
            &rows,
            Some(now),
            "write summary tags",
        )
        .await
    }

    async fn insert_interaction_logs(
        &mut self,
        rows: &[InteractionLogRow<'_>],
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let (at, id) = (&r.triggered_at, &r.click_id);
                let (uid, cid, kind, target) = (
                    r.line_id,
                    r.campaign_id,
                    r.interaction_type,
                    r.interaction_value,
                );
                (uid, cid, kind, target, at, r.user_agent, id)
            })
            .collect();
        self.execute(
            "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, \
                 interaction_value, triggered_at, user_agent, click_id) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                 value ->> 5, value ->> 6 \
             FROM json_each(?)",
            &rows,
            None,
            "insert interaction logs",
        )
        .await
    }

    async fn insert_click_tags(&mut self, rows: &[ClickTagRow<'_>]) -> Result<(), StoreError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (&r.click_id, r.campaign_id, r.tag, &r.triggered_at))
            .collect();
        self.execute(
            "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
            &rows,
            None,
            "insert click tags",
        )
        .await
    }

    async fn insert_rejects(&mut self, rows: &[RejectRow<'_>]) -> Result<(), StoreError> {
        // A plain insert, like the log's: a reject already stored (written by a timed-out
        // attempt of the same batch that committed late) fails this transaction instead of
        // being counted a second time; the next attempt looks the ids up.
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let (id, at, reason) = (&r.click_id, &r.received_at, r.reason);
                (id, at, reason, r.detail, r.query_string, r.user_agent)
            })
            .collect();
        self.execute(
            "INSERT INTO track_rejects (click_id, received_at, reason, detail, query_string, user_agent) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
             FROM json_each(?)",
            &rows,
            None,
            "insert rejects",
        )
        .await
    }
}

impl RollupTx for SqliteBatch {
    async fn add_rollup_hours(
        &mut self,
        grain: Grain,
        rows: &[HourRow<'_>],
    ) -> Result<(), StoreError> {
        macro_rules! upsert {
            ($table:literal, $time:literal) => {
                concat!(
                    "INSERT INTO ",
                    $table,
                    " (campaign_id, ",
                    $time,
                    ", interaction_type, clicks, member_clicks, last_click_at) \
                     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                         value ->> 5 \
                     FROM json_each(?) WHERE true \
                     ON CONFLICT (campaign_id, ",
                    $time,
                    ", interaction_type) DO UPDATE SET \
                         clicks = ",
                    $table,
                    ".clicks + excluded.clicks, member_clicks = ",
                    $table,
                    ".member_clicks + excluded.member_clicks, last_click_at = max(",
                    $table,
                    ".last_click_at, excluded.last_click_at)"
                )
            };
        }
        let (sql, operation) = match grain {
            Grain::Hour => (
                upsert!("track_rollup_hours", "hour"),
                "add to hourly rollups",
            ),
            Grain::Day => (upsert!("track_rollup_days", "day"), "add to daily rollups"),
        };
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let (cid, hour, kind) = (r.campaign_id, r.hour, r.interaction_type);
                (cid, hour, kind, r.clicks, r.member_clicks, r.last_click_at)
            })
            .collect();
        self.execute(sql, &rows, None, operation).await
    }

    async fn add_rollup_keyed(
        &mut self,
        table: KeyedRollup,
        rows: &[KeyCountRow<'_>],
    ) -> Result<(), StoreError> {
        macro_rules! upsert {
            ($table:literal, $time:literal, $key:literal) => {
                concat!(
                    "INSERT INTO ",
                    $table,
                    " (campaign_id, ",
                    $time,
                    ", ",
                    $key,
                    ", clicks) \
                     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 \
                     FROM json_each(?) WHERE true \
                     ON CONFLICT (campaign_id, ",
                    $time,
                    ", ",
                    $key,
                    ") DO UPDATE SET \
                         clicks = ",
                    $table,
                    ".clicks + excluded.clicks"
                )
            };
        }
        let (sql, operation) = match table {
            KeyedRollup::Targets => (
                upsert!("track_rollup_targets", "hour", "target_key"),
                "add to target rollups",
            ),
            KeyedRollup::Tags => (
                upsert!("track_rollup_tags", "hour", "tag"),
                "add to tag rollups",
            ),
            KeyedRollup::Members => (
                upsert!("track_rollup_members", "hour", "line_id"),
                "add to member rollups",
            ),
            KeyedRollup::DayTargets => (
                upsert!("track_rollup_day_targets", "day", "target_key"),
                "add to daily target rollups",
            ),
            KeyedRollup::DayTags => (
                upsert!("track_rollup_day_tags", "day", "tag"),
                "add to daily tag rollups",
            ),
        };
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (r.campaign_id, r.hour, r.key, r.clicks))
            .collect();
        self.execute(sql, &rows, None, operation).await
    }

    async fn add_campaign_members(
        &mut self,
        rows: &[CampaignMemberRow<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<_> = rows.iter().map(|r| (r.campaign_id, r.line_id)).collect();
        // RETURNING names only the rows inserted, not those DO NOTHING skipped.
        let inserted: Vec<(i64,)> = self
            .fetch(
                "INSERT INTO track_rollup_campaign_members (campaign_id, line_id) \
                 SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true \
                 ON CONFLICT (campaign_id, line_id) DO NOTHING \
                 RETURNING campaign_id",
                &rows,
                "add campaign members",
            )
            .await?;
        Ok(inserted.into_iter().map(|(id,)| id).collect())
    }

    async fn add_rollup_campaigns(
        &mut self,
        rows: &[CampaignRollupRow<'_>],
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (r.campaign_id, r.new_members, r.last_click_at))
            .collect();
        self.execute(
            "INSERT INTO track_rollup_campaigns (campaign_id, unique_members, last_click_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?) WHERE true \
             ON CONFLICT (campaign_id) DO UPDATE SET \
                 unique_members = track_rollup_campaigns.unique_members + excluded.unique_members, \
                 last_click_at = max(track_rollup_campaigns.last_click_at, excluded.last_click_at)",
            &rows,
            None,
            "add to campaign rollups",
        )
        .await
    }
}

impl StoreTx for SqliteBatch {
    async fn commit(self) -> Result<(), StoreError> {
        self.0.commit().await.map_err(err("commit"))
    }
}

impl BackfillTx for SqliteBatch {
    async fn lock_rollup_state(&mut self) -> Result<RollupState, StoreError> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        sqlx::query_as(
            "SELECT backfill_start_id, backfill_end_id, backfill_next_id \
             FROM track_rollup_state WHERE id = 1",
        )
        .fetch_one(&mut *self.0)
        .await
        .map_err(err("read rollup state"))
    }

    async fn campaigns_between(
        &mut self,
        from_id: i64,
        to_id: i64,
    ) -> Result<Vec<CampaignRows>, StoreError> {
        sqlx::query_as(
            "SELECT campaign_id, COUNT(*) AS rows, MAX(triggered_at) AS last_click_at \
             FROM component_interaction_logs WHERE id BETWEEN ? AND ? \
             GROUP BY campaign_id ORDER BY campaign_id",
        )
        .bind(from_id)
        .bind(to_id)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read campaigns to roll up"))
    }

    async fn roll_up_between(
        &mut self,
        from_id: i64,
        to_id: i64,
        _campaigns: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        // The same sums as `rollup::RollupDelta`, by SQL: `tests/api/rollups.rs` recounts both.
        // The range is read from the log once, into a temporary table (`temp_store` is memory)
        // of what the rollups need: each of the eleven sums reading the log itself cost a
        // quarter more time per row (measured on 2,000,000 rows). The days are summed from the
        // chunk's hour sums, not from the rows again.
        macro_rules! sums {
            ($grain:literal, $hours:literal, $targets:literal, $tags:literal,
             $time:literal, $at:literal) => {
                [
                    (
                        concat!("add history to ", $grain, " rollups"),
                        concat!(
                            "INSERT INTO ",
                            $hours,
                            " (campaign_id, ",
                            $time,
                            ", interaction_type, clicks, member_clicks, last_click_at) \
                             SELECT campaign_id, ",
                            $at,
                            ", interaction_type, SUM(clicks), \
                                 SUM(member_clicks), MAX(last_click_at) \
                             FROM temp.backfill_hours GROUP BY 1, 2, 3 \
                             ON CONFLICT (campaign_id, ",
                            $time,
                            ", interaction_type) DO UPDATE SET \
                                 clicks = ",
                            $hours,
                            ".clicks + excluded.clicks, \
                                 member_clicks = ",
                            $hours,
                            ".member_clicks + excluded.member_clicks, \
                                 last_click_at = max(",
                            $hours,
                            ".last_click_at, excluded.last_click_at)"
                        ),
                    ),
                    (
                        concat!("add history to ", $grain, " target rollups"),
                        concat!(
                            "INSERT INTO ",
                            $targets,
                            " (campaign_id, ",
                            $time,
                            ", target_key, clicks) \
                             SELECT campaign_id, ",
                            $at,
                            ", target_key, SUM(clicks) \
                             FROM temp.backfill_targets GROUP BY 1, 2, 3 \
                             ON CONFLICT (campaign_id, ",
                            $time,
                            ", target_key) DO UPDATE SET \
                                 clicks = ",
                            $targets,
                            ".clicks + excluded.clicks"
                        ),
                    ),
                    (
                        concat!("add history to ", $grain, " tag rollups"),
                        concat!(
                            "INSERT INTO ",
                            $tags,
                            " (campaign_id, ",
                            $time,
                            ", tag, clicks) \
                             SELECT campaign_id, ",
                            $at,
                            ", tag, SUM(clicks) \
                             FROM temp.backfill_tags GROUP BY 1, 2, 3 \
                             ON CONFLICT (campaign_id, ",
                            $time,
                            ", tag) DO UPDATE SET \
                                 clicks = ",
                            $tags,
                            ".clicks + excluded.clicks"
                        ),
                    ),
                ]
            };
        }
        // The chunk's hour sums are unique per key already: summing them again by hour is
        // the identity, and keeps one macro for both grains.
        const HOURS: [(&str, &str); 3] = sums!(
            "hourly",
            "track_rollup_hours",
            "track_rollup_targets",
            "track_rollup_tags",
            "hour",
            "hour"
        );
        const DAYS: [(&str, &str); 3] = sums!(
            "daily",
            "track_rollup_days",
            "track_rollup_day_targets",
            "track_rollup_day_tags",
            "day",
            "substr(hour, 1, 10) || ' 00:00:00'"
        );
        sqlx::query(
            "CREATE TEMP TABLE backfill_rows AS \
             SELECT campaign_id, substr(triggered_at, 1, 13) || ':00:00' AS hour, \
                 interaction_type, substr(COALESCE(interaction_value, ''), 1, 255) AS target_key, \
                 line_id, click_id, triggered_at \
             FROM component_interaction_logs WHERE id BETWEEN ?1 AND ?2",
        )
        .bind(from_id)
        .bind(to_id)
        .execute(&mut *self.0)
        .await
        .map_err(err("read history to roll up"))?;
        const CHUNK_SUMS: [(&str, &str); 3] = [
            (
                "sum history by hour",
                "CREATE TEMP TABLE backfill_hours AS \
                 SELECT campaign_id, hour, interaction_type, COUNT(*) AS clicks, \
                     SUM(line_id <> '') AS member_clicks, MAX(triggered_at) AS last_click_at \
                 FROM temp.backfill_rows GROUP BY 1, 2, 3",
            ),
            (
                "sum history by target",
                "CREATE TEMP TABLE backfill_targets AS \
                 SELECT campaign_id, hour, target_key, COUNT(*) AS clicks \
                 FROM temp.backfill_rows GROUP BY 1, 2, 3",
            ),
            (
                "sum history by tag",
                "CREATE TEMP TABLE backfill_tags AS \
                 SELECT r.campaign_id, r.hour, t.tag, COUNT(*) AS clicks \
                 FROM temp.backfill_rows r JOIN track_click_tags t ON t.click_id = r.click_id \
                 GROUP BY 1, 2, 3",
            ),
        ];
        const MEMBERS: (&str, &str) = (
            "add history to member rollups",
            "INSERT INTO track_rollup_members (campaign_id, hour, line_id, clicks) \
             SELECT campaign_id, hour, line_id, COUNT(*) \
             FROM temp.backfill_rows WHERE line_id <> '' \
             GROUP BY 1, 2, 3 \
             ON CONFLICT (campaign_id, hour, line_id) DO UPDATE SET \
                 clicks = track_rollup_members.clicks + excluded.clicks",
        );
        let sums = CHUNK_SUMS
            .into_iter()
            .chain(HOURS)
            .chain(DAYS)
            .chain([MEMBERS]);
        for (operation, sql) in sums {
            sqlx::query(sql)
                .execute(&mut *self.0)
                .await
                .map_err(err(operation))?;
        }
        let new: Vec<(i64,)> = sqlx::query_as(
            "INSERT INTO track_rollup_campaign_members (campaign_id, line_id) \
             SELECT DISTINCT campaign_id, line_id FROM temp.backfill_rows WHERE line_id <> '' \
             ON CONFLICT (campaign_id, line_id) DO NOTHING \
             RETURNING campaign_id",
        )
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("add history's campaign members"))?;
        // Dropped in the same transaction (a failed step's rollback drops them too), so the
        // next step on this connection creates them again.
        for drop in [
            "DROP TABLE temp.backfill_rows",
            "DROP TABLE temp.backfill_hours",
            "DROP TABLE temp.backfill_targets",
            "DROP TABLE temp.backfill_tags",
        ] {
            sqlx::query(drop)
                .execute(&mut *self.0)
                .await
                .map_err(err("drop the history step's temporary tables"))?;
        }
        Ok(new.into_iter().map(|(id,)| id).collect())
    }

    async fn foreign_log_rows(
        &mut self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        sqlx::query_as(
            "SELECT l.id, l.campaign_id, l.line_id, l.interaction_type, \
                 l.interaction_value AS target, l.triggered_at \
             FROM component_interaction_logs l \
             WHERE l.click_id IS NULL AND l.id > ? \
               AND NOT EXISTS (SELECT 1 FROM track_rollup_foreign f WHERE f.log_id = l.id) \
             ORDER BY l.id LIMIT ?",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read foreign log rows"))
    }

    async fn lock_campaigns(&mut self, _ids: &[i64]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn set_backfill_next(&mut self, next_id: i64, now: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE track_rollup_state SET backfill_next_id = ?, updated_at = ? WHERE id = 1",
        )
        .bind(next_id)
        .bind(now)
        .execute(&mut *self.0)
        .await
        .map_err(err("record backfill progress"))?;
        Ok(())
    }

    async fn mark_foreign(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO track_rollup_foreign (log_id) SELECT value FROM json_each(?)",
            ids,
            None,
            "mark foreign log rows",
        )
        .await
    }
}

impl PurgeTx for SqliteBatch {
    async fn old_log_rows(
        &mut self,
        before: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        sqlx::query_as(concat!(
            "SELECT id, click_id FROM component_interaction_logs \
             WHERE triggered_at < ? ",
            super::purge::rolled_up_only!(),
            " ORDER BY triggered_at LIMIT ?",
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("find old log rows"))
    }

    async fn delete_click_tags(&mut self, click_ids: &[&str]) -> Result<u64, StoreError> {
        self.delete(
            "DELETE FROM track_click_tags WHERE click_id IN (SELECT value FROM json_each(?))",
            click_ids,
            "purge click tags",
        )
        .await
    }

    async fn delete_log_rows(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
        self.delete(
            "DELETE FROM track_rollup_foreign WHERE log_id IN (SELECT value FROM json_each(?))",
            ids,
            "purge foreign marks",
        )
        .await?;
        self.delete(
            "DELETE FROM component_interaction_logs WHERE id IN (SELECT value FROM json_each(?))",
            ids,
            "purge log rows",
        )
        .await
    }

    async fn delete_old_rejects(&mut self, before: &str, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM track_rejects WHERE id IN (SELECT id FROM track_rejects \
                 WHERE received_at < ? ORDER BY received_at LIMIT ?)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *self.0)
        .await
        .map_err(err("purge rejects"))?;
        Ok(done.rows_affected())
    }
}

impl EraseTx for SqliteBatch {
    async fn lock_erasure_list(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn add_to_erasure_list(&mut self, uid_hash: &str, at: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO track_erasures (uid_hash, erased_at) VALUES (?, ?) \
             ON CONFLICT (uid_hash) DO UPDATE SET erased_at = excluded.erased_at",
        )
        .bind(uid_hash)
        .bind(at)
        .execute(&mut *self.0)
        .await
        .map_err(err("add to erasure list"))?;
        Ok(())
    }

    async fn run(
        &mut self,
        sql: &'static str,
        binds: &[&str],
        operation: &'static str,
    ) -> Result<u64, StoreError> {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        let done = query.execute(&mut *self.0).await.map_err(err(operation))?;
        Ok(done.rows_affected())
    }

    async fn id_text_rows(
        &mut self,
        sql: &'static str,
        bind: &str,
        operation: &'static str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        sqlx::query_as(sql)
            .bind(bind)
            .fetch_all(&mut *self.0)
            .await
            .map_err(err(operation))
    }

    async fn delete_rejects(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
        self.delete(
            "DELETE FROM track_rejects WHERE id IN (SELECT value FROM json_each(?))",
            ids,
            "erase rejects",
        )
        .await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.0.rollback().await.map_err(err("roll back"))
    }
}

impl SqliteBatch {
    /// Run `sql`, whose one parameter is `keys` as a JSON array; the rows it deleted.
    async fn delete<K: serde::Serialize + Sync>(
        &mut self,
        sql: &'static str,
        keys: &[K],
        operation: &'static str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(json_rows(keys, operation)?)
            .execute(&mut *self.0)
            .await
            .map_err(err(operation))?;
        Ok(done.rows_affected())
    }
}
