//! The production store: MySQL 8 / MariaDB 10.11, on the existing schema, several instances.
//!
//! Every transaction runs at READ COMMITTED and takes its locks in one fixed order, the same
//! on every instance (docs/design.md, "Exact across instances"):
//!   1. campaign counters, ascending id: the exclusive lock first, because the interaction
//!      log's foreign key later takes a shared lock on the same row (shared-then-upgrade is the
//!      classic two-writer deadlock);
//!   0. the erasure list's lock row, shared (`erase.rs`);
//!   2. the batch's members, ascending uid: read and locked shared, the missing ones created
//!      (a duplicate key is a no-op) and read;
//!   3. message rows;
//!   4. summary upsert, ascending key, counting clicks but not touching tags: this locks every
//!      summary row of the batch, new or old;
//!   5. read the tags of those rows (already locked by us, so a READ COMMITTED read sees their
//!      latest committed value), merge, write back the rows whose tags changed. A locking read
//!      of a row that does not exist yet would lock nothing; step 4 makes sure it exists first;
//!   6. interaction logs, their per-click tags (`track_click_tags`, new keys only: uuid v7
//!      click ids), then rejects.
//!
//! Deadlock (1213), lock wait timeout (1205) and 1020 are retried by the caller (`pipeline/commit.rs`) as a whole
//! transaction; that is safe because the batch is idempotent by `click_id`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::query_builder::Separated;
use sqlx::{MySql, QueryBuilder, Transaction};

use super::backfill::{BackfillTx, CampaignRows, LogRow, RollupState};
use super::batch::{
    BatchTx, CampaignIncrement, ClickTagRow, InteractionLogRow, MemberRow, MessageRow, RejectRow,
    StoredTags, SummaryCountRow, SummaryTagRow,
};
use super::chunks::{fixed_chunks, padded_lists};
use super::erase::{self, EraseTx};
use super::purge::PurgeTx;
use super::rollup::{
    CampaignMemberRow, CampaignRollupRow, Grain, HourRow, KeyCountRow, KeyedRollup, RollupTx,
};
use super::{StoreError, StoreTx, mysql_schema};

/// A writer waiting this long for a row lock gives up (1205) and retries, so a stuck lock
/// shows in metrics and `/readyz` within seconds, not after InnoDB's default 50 s.
const LOCK_WAIT_TIMEOUT_SECS: u32 = 5;
/// Both MariaDB and MySQL 8 accept it, and it matches the tables clicktrack creates.
const COLLATION: &str = "utf8mb4_unicode_ci";

type Tx = Transaction<'static, MySql>;

#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
    /// `ryan_click_demo.last_click_tag`'s capacity, read from the schema at migration.
    tag_capacity: super::TagCapacity,
    /// MariaDB: `INSERT ... RETURNING` (MySQL 8 has none).
    returning: bool,
}

/// The shared classifier (`db/classify.rs`), as this module and `mysql_schema` call it.
pub(super) use super::sqlx_error as err;

/// One connection before the pool is built (`super::check_reachable`), named by its socket
/// or host and port, and database.
async fn check_reachable(options: &MySqlConnectOptions) -> Result<(), StoreError> {
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let place = format!("{place}/{}", options.get_database().unwrap_or(""));
    super::check_reachable(options, place).await
}

/// See `Store::check_readable`.
pub(super) async fn check_reachable_url(url: &str) -> Result<(), StoreError> {
    let options = MySqlConnectOptions::from_str(url).map_err(err("parse database url"))?;
    check_reachable(&options).await
}

impl MysqlStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<MysqlStore, StoreError> {
        let options = crate::db::mysql_options(
            MySqlConnectOptions::from_str(url).map_err(err("parse database url"))?,
        )
        .collation(COLLATION);
        check_reachable(&options).await?;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("SET SESSION innodb_lock_wait_timeout = ?")
                        .bind(LOCK_WAIT_TIMEOUT_SECS)
                        .execute(&mut *conn)
                        .await?;
                    // A value too long for its column is an error, as on every table and
                    // whatever the server's default: never a warning and a value cut to size.
                    sqlx::query(
                        "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')",
                    )
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(err("open database"))?;
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&pool)
            .await
            .map_err(err("open database"))?;
        Ok(MysqlStore {
            pool,
            tag_capacity: super::TagCapacity::default(),
            returning: version.contains("MariaDB"),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        mysql_schema::migrate(&self.pool).await?;
        let capacity: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(character_maximum_length AS SIGNED) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'ryan_click_demo' \
               AND column_name = 'last_click_tag'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(err("migrate"))?
        .flatten();
        self.tag_capacity.learn(capacity);
        Ok(())
    }

    /// Bytes `ryan_click_demo.last_click_tag` holds.
    pub(super) fn tag_capacity(&self) -> usize {
        self.tag_capacity.get()
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// A transaction for one of the writers' steps (`Store::write_batch`, ...).
    pub(super) async fn begin(&self) -> Result<MysqlBatch, StoreError> {
        let tx = self.pool.begin().await.map_err(err("begin"))?;
        Ok(MysqlBatch {
            tx,
            returning: self.returning,
        })
    }
}

/// A batch's transaction (READ COMMITTED, set per connection). Statements are cut into the
/// fixed sizes of `chunks.rs`; rows arrive in lock order.
pub(super) struct MysqlBatch {
    tx: Tx,
    /// See `MysqlStore::returning`.
    returning: bool,
}

/// `(?, ?, ...)` with one bound value per item. Bound parameters take the column's collation,
/// so indexes are used whatever collation the production tables have.
fn push_in_list<T>(q: &mut QueryBuilder<MySql>, items: &[T])
where
    T: for<'q> sqlx::Encode<'q, MySql> + sqlx::Type<MySql> + Clone,
{
    q.push("(");
    let mut list = q.separated(", ");
    for item in items {
        list.push_bind(item.clone());
    }
    q.push(")");
}

impl MysqlBatch {
    /// `SELECT {columns} FROM {table} WHERE {column} IN (...)` over `keys`, as padded lists.
    async fn select_in<K, R>(
        &mut self,
        columns_from_table: &'static str,
        column: &'static str,
        keys: &[K],
        operation: &'static str,
    ) -> Result<Vec<R>, StoreError>
    where
        K: for<'q> sqlx::Encode<'q, MySql> + sqlx::Type<MySql> + Clone + Send + Sync,
        R: for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow> + Send + Unpin,
    {
        let mut rows = Vec::new();
        for list in padded_lists(keys) {
            let mut q = QueryBuilder::new("SELECT ");
            q.push(columns_from_table)
                .push(" WHERE ")
                .push(column)
                .push(" IN ");
            push_in_list(&mut q, &list);
            rows.extend(
                q.build_query_as::<R>()
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(err(operation))?,
            );
        }
        Ok(rows)
    }

    /// `{insert} VALUES (...), ... {tail}` over `rows` in fixed-size chunks, `bind` filling
    /// one row's values.
    async fn insert<T: Sync>(
        &mut self,
        insert: &'static str,
        rows: &[T],
        tail: &'static str,
        operation: &'static str,
        mut bind: impl FnMut(Separated<'_, MySql, &'static str>, &T) + Send,
    ) -> Result<(), StoreError> {
        for chunk in fixed_chunks(rows) {
            let mut q = QueryBuilder::new(insert);
            q.push(" ");
            q.push_values(chunk, &mut bind);
            q.push(tail);
            q.build()
                .execute(&mut *self.tx)
                .await
                .map_err(err(operation))?;
        }
        Ok(())
    }
}

impl BatchTx for MysqlBatch {
    async fn recorded_click_ids(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        const OP: &str = "find recorded clicks";
        // Two lookups, not a UNION: the old app's tables may have another collation than
        // clicktrack's own table, and MySQL refuses to UNION them (1271).
        let mut found: Vec<(String,)> = self
            .select_in(
                "click_id FROM component_interaction_logs",
                "click_id",
                ids,
                OP,
            )
            .await?;
        found.extend(
            self.select_in::<_, (String,)>("click_id FROM track_rejects", "click_id", ids, OP)
                .await?,
        );
        Ok(found.into_iter().map(|(id,)| id).collect())
    }

    async fn existing_campaigns(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        // Locked now (ascending: the same rows and order as `bump_campaigns`), so a campaign
        // the marketing app deletes meanwhile is either still there at commit or seen missing
        // here (the clicks set aside as unknown), never missing only at the insert.
        let mut found = Vec::with_capacity(ids.len());
        for list in padded_lists(ids) {
            let mut q = QueryBuilder::new("SELECT id FROM campaigns WHERE id IN ");
            push_in_list(&mut q, &list);
            q.push(" ORDER BY id FOR UPDATE");
            let rows: Vec<(i64,)> = q
                .build_query_as()
                .fetch_all(&mut *self.tx)
                .await
                .map_err(err("find campaigns"))?;
            found.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(found)
    }

    async fn bump_campaigns(
        &mut self,
        increments: &[CampaignIncrement],
        now: &str,
    ) -> Result<(), StoreError> {
        // One statement per campaign, ascending id: the first lock of the order. COALESCE:
        // clicked_count is nullable.
        for increment in increments {
            sqlx::query(
                "UPDATE campaigns SET clicked_count = COALESCE(clicked_count, 0) + ?, \
                 updated_at = ? WHERE id = ?",
            )
            .bind(increment.clicks)
            .bind(now)
            .bind(increment.id)
            .execute(&mut *self.tx)
            .await
            .map_err(err("count campaign clicks"))?;
        }
        Ok(())
    }

    async fn erasures_after(&mut self, since: &str) -> Result<Vec<(String, String)>, StoreError> {
        // The lock row shared, first: an erasure (which takes it exclusively) waits for this
        // batch, and a batch that starts after an erasure sees its entry.
        sqlx::query_as(
            "SELECT uid_hash, erased_at FROM track_erasures \
             WHERE uid_hash = '*' OR erased_at > ? LOCK IN SHARE MODE",
        )
        .bind(since)
        .fetch_all(&mut *self.tx)
        .await
        .map(|rows: Vec<(String, String)>| {
            rows.into_iter()
                .filter(|(hash, _)| hash != erase::LOCK_ROW)
                .collect()
        })
        .map_err(err("read erasure list"))
    }

    async fn read_members(&mut self, uids: &[&str]) -> Result<Vec<MemberRow>, StoreError> {
        // Locked shared until commit: the marketing app cannot delete a member under the
        // batch's `messages` rows (it waits for the commit, then deletes them all).
        let mut rows = Vec::new();
        for list in padded_lists(uids) {
            let mut q = QueryBuilder::new(
                "SELECT id, line_uid, line_display_name FROM members WHERE line_uid IN ",
            );
            push_in_list(&mut q, &list);
            q.push(" LOCK IN SHARE MODE");
            rows.extend(
                q.build_query_as::<MemberRow>()
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(err("read members"))?,
            );
        }
        Ok(rows)
    }

    async fn create_members(&mut self, uids: &[&str], now: &str) -> Result<(), StoreError> {
        // Sorted uids, and a duplicate key is a no-op: concurrent first clicks of one uid on
        // several instances create one member, and none of them fails (the unique key decides,
        // in the same order). Not INSERT IGNORE, which would also store a value cut to size.
        self.insert(
            "INSERT INTO members (line_uid, line_display_name, created_at, updated_at)",
            uids,
            " ON DUPLICATE KEY UPDATE id = id",
            "create members",
            |mut row, uid| {
                row.push_bind(*uid)
                    .push("NULL")
                    .push_bind(now)
                    .push_bind(now);
            },
        )
        .await
    }

    async fn insert_messages(&mut self, rows: &[MessageRow]) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO messages (member_id, direction, message_type, content, campaign_id, created_at)",
            rows,
            "",
            "insert messages",
            |mut b, m| {
                b.push_bind(m.member_id)
                    .push("'incoming'")
                    .push("'text'")
                    .push_bind(m.content.as_str())
                    .push_bind(m.campaign_id)
                    .push_bind(m.created_at.as_str());
            },
        )
        .await
    }

    async fn upsert_summary_counts(
        &mut self,
        rows: &[SummaryCountRow<'_>],
        now: &str,
    ) -> Result<(), StoreError> {
        // VALUES(col), not MySQL 8's `AS new` alias: MariaDB has no alias.
        self.insert(
            "INSERT INTO ryan_click_demo (line_id, source_campaign_id, line_display_name, \
             total_clicks, last_clicked_at, created_at, updated_at)",
            rows,
            " ON DUPLICATE KEY UPDATE \
             total_clicks = total_clicks + VALUES(total_clicks), \
             line_display_name = COALESCE(VALUES(line_display_name), line_display_name), \
             last_clicked_at = GREATEST(COALESCE(last_clicked_at, VALUES(last_clicked_at)), \
                                        VALUES(last_clicked_at)), \
             updated_at = VALUES(updated_at)",
            "upsert summaries",
            |mut b, r| {
                b.push_bind(r.line_id)
                    .push_bind(r.source_campaign_id)
                    .push_bind(r.line_display_name)
                    .push_bind(r.total_clicks)
                    .push_bind(r.last_clicked_at.as_str())
                    .push_bind(now)
                    .push_bind(now);
            },
        )
        .await
    }

    async fn summary_tags(&mut self, uids: &[&str]) -> Result<Vec<StoredTags>, StoreError> {
        // A plain read, by uid: the count upsert holds the exclusive lock on every summary row
        // of the batch, so at READ COMMITTED this sees their latest committed tags, and nobody
        // can change them before we commit. Not `FOR UPDATE`: that would also lock the uids'
        // other rows, and an OR of 50 (line_id, src) pairs cost MariaDB ~40 ms per batch
        // (measured).
        self.select_in(
            "line_id, source_campaign_id, last_click_tag FROM ryan_click_demo",
            "line_id",
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
        // Every row exists and is locked by the count upsert: this only updates.
        self.insert(
            "INSERT INTO ryan_click_demo (line_id, source_campaign_id, last_click_tag, \
             total_clicks, created_at, updated_at)",
            rows,
            " ON DUPLICATE KEY UPDATE last_click_tag = VALUES(last_click_tag)",
            "write summary tags",
            |mut b, r| {
                b.push_bind(r.line_id)
                    .push_bind(r.source_campaign_id)
                    .push_bind(r.last_click_tag.as_str())
                    .push("0")
                    .push_bind(now)
                    .push_bind(now);
            },
        )
        .await
    }

    async fn insert_interaction_logs(
        &mut self,
        rows: &[InteractionLogRow<'_>],
    ) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, \
             interaction_value, triggered_at, user_agent, click_id)",
            rows,
            "",
            "insert interaction logs",
            |mut b, r| {
                b.push_bind(r.line_id)
                    .push_bind(r.campaign_id)
                    .push_bind(r.interaction_type)
                    .push_bind(r.interaction_value)
                    .push_bind(r.triggered_at.as_str())
                    .push_bind(r.user_agent)
                    .push_bind(r.click_id.as_str());
            },
        )
        .await
    }

    async fn insert_click_tags(&mut self, rows: &[ClickTagRow<'_>]) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at)",
            rows,
            "",
            "insert click tags",
            |mut b, r| {
                b.push_bind(r.click_id.as_str())
                    .push_bind(r.campaign_id)
                    .push_bind(r.tag)
                    .push_bind(r.triggered_at.as_str());
            },
        )
        .await
    }

    async fn insert_rejects(&mut self, rows: &[RejectRow<'_>]) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO track_rejects (click_id, received_at, reason, detail, query_string, user_agent)",
            rows,
            // A plain insert, like the log's: a reject already stored (by a timed-out attempt
            // of the same batch that committed late) fails this transaction (1062) instead of
            // being counted a second time; the next attempt looks the ids up.
            "",
            "insert rejects",
            |mut b, r| {
                b.push_bind(r.click_id.as_str())
                    .push_bind(r.received_at.as_str())
                    .push_bind(r.reason)
                    .push_bind(r.detail)
                    .push_bind(r.query_string)
                    .push_bind(r.user_agent);
            },
        )
        .await
    }
}

impl RollupTx for MysqlBatch {
    async fn add_rollup_hours(
        &mut self,
        grain: Grain,
        rows: &[HourRow<'_>],
    ) -> Result<(), StoreError> {
        let (insert, operation) = match grain {
            Grain::Hour => (
                "INSERT INTO track_rollup_hours (campaign_id, hour, interaction_type, clicks, \
                 member_clicks, last_click_at)",
                "add to hourly rollups",
            ),
            Grain::Day => (
                "INSERT INTO track_rollup_days (campaign_id, day, interaction_type, clicks, \
                 member_clicks, last_click_at)",
                "add to daily rollups",
            ),
        };
        self.insert(
            insert,
            rows,
            " ON DUPLICATE KEY UPDATE clicks = clicks + VALUES(clicks), \
             member_clicks = member_clicks + VALUES(member_clicks), \
             last_click_at = GREATEST(last_click_at, VALUES(last_click_at))",
            operation,
            |mut b, r| {
                b.push_bind(r.campaign_id)
                    .push_bind(r.hour)
                    .push_bind(r.interaction_type)
                    .push_bind(r.clicks)
                    .push_bind(r.member_clicks)
                    .push_bind(r.last_click_at);
            },
        )
        .await
    }

    async fn add_rollup_keyed(
        &mut self,
        table: KeyedRollup,
        rows: &[KeyCountRow<'_>],
    ) -> Result<(), StoreError> {
        let (insert, operation) = match table {
            KeyedRollup::Targets => (
                "INSERT INTO track_rollup_targets (campaign_id, hour, target_key, clicks)",
                "add to target rollups",
            ),
            KeyedRollup::Tags => (
                "INSERT INTO track_rollup_tags (campaign_id, hour, tag, clicks)",
                "add to tag rollups",
            ),
            KeyedRollup::Members => (
                "INSERT INTO track_rollup_members (campaign_id, hour, line_id, clicks)",
                "add to member rollups",
            ),
            KeyedRollup::DayTargets => (
                "INSERT INTO track_rollup_day_targets (campaign_id, day, target_key, clicks)",
                "add to daily target rollups",
            ),
            KeyedRollup::DayTags => (
                "INSERT INTO track_rollup_day_tags (campaign_id, day, tag, clicks)",
                "add to daily tag rollups",
            ),
        };
        self.insert(
            insert,
            rows,
            " ON DUPLICATE KEY UPDATE clicks = clicks + VALUES(clicks)",
            operation,
            |mut b, r| {
                b.push_bind(r.campaign_id)
                    .push_bind(r.hour)
                    .push_bind(r.key)
                    .push_bind(r.clicks);
            },
        )
        .await
    }

    async fn add_campaign_members(
        &mut self,
        rows: &[CampaignMemberRow<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        const OP: &str = "add campaign members";
        // INSERT IGNORE only skips the duplicate key here: every column fits its source's width.
        const INSERT: &str =
            "INSERT IGNORE INTO track_rollup_campaign_members (campaign_id, line_id) ";
        let mut inserted = Vec::new();
        if self.returning {
            // MariaDB returns only the rows the statement inserted.
            for chunk in fixed_chunks(rows) {
                let mut q = QueryBuilder::new(INSERT);
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.campaign_id).push_bind(r.line_id);
                });
                q.push(" RETURNING CAST(campaign_id AS SIGNED)");
                let ids: Vec<(i64,)> = q
                    .build_query_as()
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(err(OP))?;
                inserted.extend(ids.into_iter().map(|(id,)| id));
            }
            return Ok(inserted);
        }
        // MySQL 8: one campaign at a time, its new rows counted by rows_affected.
        for of_campaign in rows.chunk_by(|a, b| a.campaign_id == b.campaign_id) {
            for chunk in fixed_chunks(of_campaign) {
                let mut q = QueryBuilder::new(INSERT);
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.campaign_id).push_bind(r.line_id);
                });
                let added = q
                    .build()
                    .execute(&mut *self.tx)
                    .await
                    .map_err(err(OP))?
                    .rows_affected();
                let cid = chunk[0].campaign_id;
                inserted.extend(std::iter::repeat_n(cid, added as usize));
            }
        }
        Ok(inserted)
    }

    async fn add_rollup_campaigns(
        &mut self,
        rows: &[CampaignRollupRow<'_>],
    ) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO track_rollup_campaigns (campaign_id, unique_members, last_click_at)",
            rows,
            " ON DUPLICATE KEY UPDATE unique_members = unique_members + VALUES(unique_members), \
             last_click_at = GREATEST(last_click_at, VALUES(last_click_at))",
            "add to campaign rollups",
            |mut b, r| {
                b.push_bind(r.campaign_id)
                    .push_bind(r.new_members)
                    .push_bind(r.last_click_at);
            },
        )
        .await
    }
}

impl StoreTx for MysqlBatch {
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(err("commit"))
    }
}

impl BackfillTx for MysqlBatch {
    async fn lock_rollup_state(&mut self) -> Result<RollupState, StoreError> {
        sqlx::query_as(
            "SELECT CAST(backfill_start_id AS SIGNED) AS backfill_start_id, \
                 CAST(backfill_end_id AS SIGNED) AS backfill_end_id, \
                 CAST(backfill_next_id AS SIGNED) AS backfill_next_id \
             FROM track_rollup_state WHERE id = 1 FOR UPDATE",
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(err("read rollup state"))
    }

    async fn campaigns_between(
        &mut self,
        from_id: i64,
        to_id: i64,
    ) -> Result<Vec<CampaignRows>, StoreError> {
        sqlx::query_as(
            "SELECT CAST(campaign_id AS SIGNED) AS campaign_id, \
                 CAST(COUNT(*) AS SIGNED) AS `rows`, \
                 DATE_FORMAT(MAX(triggered_at), '%Y-%m-%d %H:%i:%s') AS last_click_at \
             FROM component_interaction_logs WHERE id BETWEEN ? AND ? \
             GROUP BY campaign_id ORDER BY campaign_id",
        )
        .bind(from_id)
        .bind(to_id)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err("read campaigns to roll up"))
    }

    async fn roll_up_between(
        &mut self,
        from_id: i64,
        to_id: i64,
        campaigns: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        // The same sums as `rollup::RollupDelta`, by SQL: `tests/api/rollups.rs` recounts both.
        // Text from the log is grouped byte for byte, as the rollup tables (utf8mb4_bin) key it.
        // `$time` is the table's time column, `$at` a log row's hour or day.
        macro_rules! sums {
            ($grain:literal, $hours:literal, $targets:literal, $tags:literal,
             $time:literal, $at:literal) => {
                [
                    (
                        concat!("add history to ", $grain, " rollups"),
                        concat!(
                            "INSERT INTO ", $hours, " (campaign_id, ", $time,
                            ", interaction_type, clicks, member_clicks, last_click_at) \
                             SELECT l.campaign_id, ", $at, ", \
                                 CAST(l.interaction_type AS CHAR), COUNT(*), SUM(l.line_id <> ''), \
                                 MAX(l.triggered_at) \
                             FROM component_interaction_logs l WHERE l.id BETWEEN ? AND ? \
                             GROUP BY 1, 2, 3 \
                             ON DUPLICATE KEY UPDATE clicks = clicks + VALUES(clicks), \
                                 member_clicks = member_clicks + VALUES(member_clicks), \
                                 last_click_at = GREATEST(last_click_at, VALUES(last_click_at))"
                        ),
                    ),
                    (
                        concat!("add history to ", $grain, " target rollups"),
                        concat!(
                            "INSERT INTO ", $targets, " (campaign_id, ", $time, ", target_key, clicks) \
                             SELECT l.campaign_id, ", $at, ", \
                                 CONVERT(LEFT(COALESCE(l.interaction_value, ''), 255) USING utf8mb4) \
                                     COLLATE utf8mb4_bin, \
                                 COUNT(*) \
                             FROM component_interaction_logs l WHERE l.id BETWEEN ? AND ? \
                             GROUP BY 1, 2, 3 \
                             ON DUPLICATE KEY UPDATE clicks = clicks + VALUES(clicks)"
                        ),
                    ),
                    (
                        concat!("add history to ", $grain, " tag rollups"),
                        concat!(
                            "INSERT INTO ", $tags, " (campaign_id, ", $time, ", tag, clicks) \
                             SELECT l.campaign_id, ", $at, ", t.tag, COUNT(*) \
                             FROM component_interaction_logs l JOIN track_click_tags t \
                                 ON t.click_id = CONVERT(l.click_id USING utf8mb4) \
                                     COLLATE utf8mb4_unicode_ci \
                             WHERE l.id BETWEEN ? AND ? \
                             GROUP BY 1, 2, 3 \
                             ON DUPLICATE KEY UPDATE clicks = clicks + VALUES(clicks)"
                        ),
                    ),
                ]
            };
        }
        const HOURS: [(&str, &str); 3] = sums!(
            "hourly",
            "track_rollup_hours",
            "track_rollup_targets",
            "track_rollup_tags",
            "hour",
            "DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:00:00')"
        );
        const DAYS: [(&str, &str); 3] = sums!(
            "daily",
            "track_rollup_days",
            "track_rollup_day_targets",
            "track_rollup_day_tags",
            "day",
            "DATE_FORMAT(l.triggered_at, '%Y-%m-%d 00:00:00')"
        );
        const MEMBERS: (&str, &str) = (
            "add history to member rollups",
            "INSERT INTO track_rollup_members (campaign_id, hour, line_id, clicks) \
             SELECT l.campaign_id, DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:00:00'), \
                 CONVERT(l.line_id USING utf8mb4) COLLATE utf8mb4_bin, COUNT(*) \
             FROM component_interaction_logs l \
             WHERE l.id BETWEEN ? AND ? AND l.line_id <> '' \
             GROUP BY 1, 2, 3 \
             ON DUPLICATE KEY UPDATE clicks = clicks + VALUES(clicks)",
        );
        let sums = HOURS.into_iter().chain(DAYS).chain([MEMBERS]);
        for (operation, sql) in sums {
            sqlx::query(sql)
                .bind(from_id)
                .bind(to_id)
                .execute(&mut *self.tx)
                .await
                .map_err(err(operation))?;
        }
        // INSERT IGNORE only skips the duplicate key: the column is as wide as the log's.
        const OP: &str = "add history's campaign members";
        if self.returning {
            // MariaDB returns only the rows the statement inserted.
            let new: Vec<(i64,)> = sqlx::query_as(
                "INSERT IGNORE INTO track_rollup_campaign_members (campaign_id, line_id) \
                 SELECT DISTINCT l.campaign_id, CONVERT(l.line_id USING utf8mb4) COLLATE utf8mb4_bin \
                 FROM component_interaction_logs l WHERE l.id BETWEEN ? AND ? AND l.line_id <> '' \
                 RETURNING CAST(campaign_id AS SIGNED)",
            )
            .bind(from_id)
            .bind(to_id)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(err(OP))?;
            return Ok(new.into_iter().map(|(id,)| id).collect());
        }
        // MySQL 8: one campaign at a time, its new pairs counted by rows_affected.
        let mut new = Vec::new();
        for &cid in campaigns {
            let added = sqlx::query(
                "INSERT IGNORE INTO track_rollup_campaign_members (campaign_id, line_id) \
                 SELECT DISTINCT l.campaign_id, CONVERT(l.line_id USING utf8mb4) COLLATE utf8mb4_bin \
                 FROM component_interaction_logs l \
                 WHERE l.id BETWEEN ? AND ? AND l.campaign_id = ? AND l.line_id <> ''",
            )
            .bind(from_id)
            .bind(to_id)
            .bind(cid)
            .execute(&mut *self.tx)
            .await
            .map_err(err(OP))?
            .rows_affected();
            new.extend(std::iter::repeat_n(cid, added as usize));
        }
        Ok(new)
    }

    async fn foreign_log_rows(
        &mut self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        // The click_id index holds the NULLs in id order: a range, not a scan of the log.
        sqlx::query_as(
            "SELECT CAST(l.id AS SIGNED) AS id, CAST(l.campaign_id AS SIGNED) AS campaign_id, \
                 l.line_id, CAST(l.interaction_type AS CHAR) AS interaction_type, \
                 l.interaction_value AS target, \
                 DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:%i:%s') AS triggered_at \
             FROM component_interaction_logs l \
                 FORCE INDEX (uq_component_interaction_logs_click_id) \
             WHERE l.click_id IS NULL AND l.id > ? \
               AND NOT EXISTS (SELECT 1 FROM track_rollup_foreign f WHERE f.log_id = l.id) \
             ORDER BY l.id LIMIT ?",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err("read foreign log rows"))
    }

    async fn lock_campaigns(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        // Ascending, as each batch locks them first: no step waits in a cycle with a batch.
        for list in padded_lists(ids) {
            let mut q = QueryBuilder::new("SELECT id FROM campaigns WHERE id IN ");
            push_in_list(&mut q, &list);
            q.push(" ORDER BY id FOR UPDATE");
            q.build()
                .execute(&mut *self.tx)
                .await
                .map_err(err("lock campaigns"))?;
        }
        Ok(())
    }

    async fn set_backfill_next(&mut self, next_id: i64, now: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE track_rollup_state SET backfill_next_id = ?, updated_at = ? WHERE id = 1",
        )
        .bind(next_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(err("record backfill progress"))?;
        Ok(())
    }

    async fn mark_foreign(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO track_rollup_foreign (log_id)",
            ids,
            "",
            "mark foreign log rows",
            |mut b, id| {
                b.push_bind(*id);
            },
        )
        .await
    }
}

impl MysqlBatch {
    /// `{delete_where} IN (...)` over `keys`, as padded lists; the rows it deleted.
    async fn delete_in<K>(
        &mut self,
        delete_where: &'static str,
        keys: &[K],
        operation: &'static str,
    ) -> Result<u64, StoreError>
    where
        K: for<'q> sqlx::Encode<'q, MySql> + sqlx::Type<MySql> + Clone + Send + Sync,
    {
        let mut deleted = 0;
        for list in padded_lists(keys) {
            let mut q = QueryBuilder::new(delete_where);
            q.push(" IN ");
            push_in_list(&mut q, &list);
            deleted += q
                .build()
                .execute(&mut *self.tx)
                .await
                .map_err(err(operation))?
                .rows_affected();
        }
        Ok(deleted)
    }
}

impl EraseTx for MysqlBatch {
    async fn lock_erasure_list(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT uid_hash FROM track_erasures WHERE uid_hash = '*' FOR UPDATE")
            .execute(&mut *self.tx)
            .await
            .map_err(err("lock erasure list"))?;
        Ok(())
    }

    async fn add_to_erasure_list(&mut self, uid_hash: &str, at: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO track_erasures (uid_hash, erased_at) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE erased_at = VALUES(erased_at)",
        )
        .bind(uid_hash)
        .bind(at)
        .execute(&mut *self.tx)
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
        let done = query.execute(&mut *self.tx).await.map_err(err(operation))?;
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
            .fetch_all(&mut *self.tx)
            .await
            .map_err(err(operation))
    }

    async fn delete_rejects(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
        self.delete_in("DELETE FROM track_rejects WHERE id", ids, "erase rejects")
            .await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await.map_err(err("roll back"))
    }
}

impl PurgeTx for MysqlBatch {
    async fn old_log_rows(
        &mut self,
        before: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        sqlx::query_as(concat!(
            "SELECT CAST(id AS SIGNED), click_id FROM component_interaction_logs \
             WHERE triggered_at < ? ",
            super::purge::rolled_up_only!(),
            " ORDER BY triggered_at LIMIT ?",
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err("find old log rows"))
    }

    async fn delete_click_tags(&mut self, click_ids: &[&str]) -> Result<u64, StoreError> {
        self.delete_in(
            "DELETE FROM track_click_tags WHERE click_id",
            click_ids,
            "purge click tags",
        )
        .await
    }

    async fn delete_log_rows(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
        self.delete_in(
            "DELETE FROM track_rollup_foreign WHERE log_id",
            ids,
            "purge foreign marks",
        )
        .await?;
        self.delete_in(
            "DELETE FROM component_interaction_logs WHERE id",
            ids,
            "purge log rows",
        )
        .await
    }

    async fn delete_old_rejects(&mut self, before: &str, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM track_rejects WHERE received_at < ? ORDER BY received_at LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *self.tx)
        .await
        .map_err(err("purge rejects"))?;
        Ok(done.rows_affected())
    }
}
