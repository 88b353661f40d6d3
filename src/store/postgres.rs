//! The PostgreSQL store (13 or later): the same tables, steps and lock order as MySQL's.
//!
//! Every transaction runs at READ COMMITTED (PostgreSQL's default) and takes its locks in the
//! order `batch.rs` runs its steps, the same on every instance: the erasure list's lock row
//! shared, the campaign rows `FOR UPDATE` by ascending id (the interaction log's foreign key
//! later takes a weaker lock on the same rows, which the transaction already holds), the
//! members `FOR SHARE` by uid, then the summaries by the upsert, in ascending key. Deadlocks
//! (40P01), lock timeouts (55P03) and serialization failures are retried by the caller as a
//! whole transaction, which is safe because a batch is idempotent by `click_id`.
//!
//! Rows travel as one array parameter per column, unpacked by `UNNEST`: one statement per step
//! whatever the batch's size, each one prepared statement. Times are bound as `db_time` text
//! and cast to `timestamp` in the SQL; every connection's time zone is UTC.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::backfill::{BackfillTx, CampaignRows, LogRow, RollupState};
use super::batch::{
    BatchTx, CampaignIncrement, ClickTagRow, InteractionLogRow, MemberRow, MessageRow, RejectRow,
    StoredTags, SummaryCountRow, SummaryTagRow,
};
use super::erase::{self, EraseTx};
use super::purge::PurgeTx;
use super::rollup::{
    CampaignMemberRow, CampaignRollupRow, Grain, HourRow, KeyCountRow, KeyedRollup, RollupTx,
};
use super::{StoreError, StoreTx, postgres_schema};

/// The shared classifier (`db/classify.rs`), as this module and `postgres_schema` call it.
pub(super) use super::sqlx_error as err;

/// A writer waiting this long for a row lock gives up (55P03) and retries, so a stuck lock
/// shows in metrics and `/readyz` within seconds (PostgreSQL would wait forever).
const LOCK_TIMEOUT: &str = "5s";

type Tx = Transaction<'static, Postgres>;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// `ryan_click_demo.last_click_tag`'s capacity, read from the schema at migration.
    tag_capacity: super::TagCapacity,
}

fn options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(err("parse database url"))?;
    Ok(crate::db::postgres_options(options))
}

/// One connection before the pool is built (`super::check_reachable`), named by its host,
/// port and database.
async fn check_reachable(options: &PgConnectOptions) -> Result<(), StoreError> {
    let place = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    );
    super::check_reachable(options, place).await
}

/// See `Store::check_readable`.
pub(super) async fn check_reachable_url(url: &str) -> Result<(), StoreError> {
    check_reachable(&options(url)?).await
}

impl PostgresStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresStore, StoreError> {
        let options = options(url)?.options([("lock_timeout", LOCK_TIMEOUT)]);
        check_reachable(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(err("open database"))?;
        Ok(PostgresStore {
            pool,
            tag_capacity: super::TagCapacity::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        postgres_schema::migrate(&self.pool).await?;
        let capacity: Option<i32> = sqlx::query_scalar(
            "SELECT character_maximum_length::int FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'ryan_click_demo' \
               AND column_name = 'last_click_tag'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(err("migrate"))?
        .flatten();
        self.tag_capacity.learn(capacity.map(i64::from));
        Ok(())
    }

    /// Bytes `ryan_click_demo.last_click_tag` holds.
    pub(super) fn tag_capacity(&self) -> usize {
        self.tag_capacity.get()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction for one of the writers' steps (`Store::write_batch`, ...).
    pub(super) async fn begin(&self) -> Result<PostgresBatch, StoreError> {
        let tx = self.pool.begin().await.map_err(err("begin"))?;
        Ok(PostgresBatch(tx))
    }
}

/// A batch's transaction (READ COMMITTED); rows arrive in lock order.
pub(super) struct PostgresBatch(Tx);

impl PostgresBatch {
    /// Run `query` in the transaction; the rows it changed.
    async fn exec(
        &mut self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
        operation: &'static str,
    ) -> Result<u64, StoreError> {
        Ok(query
            .execute(&mut *self.0)
            .await
            .map_err(err(operation))?
            .rows_affected())
    }
}

/// One column of `rows` as an array parameter.
fn column<'a, T, V>(rows: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    rows.iter().map(value).collect()
}

impl BatchTx for PostgresBatch {
    async fn erasures_after(&mut self, since: &str) -> Result<Vec<(String, String)>, StoreError> {
        // The lock row shared, first: an erasure (which takes it exclusively) waits for this
        // batch, and a batch that starts after an erasure sees its entry.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT uid_hash, erased_at FROM track_erasures \
             WHERE uid_hash = '*' OR erased_at > $1 FOR SHARE",
        )
        .bind(since)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read erasure list"))?;
        Ok(rows
            .into_iter()
            .filter(|(hash, _)| hash != erase::LOCK_ROW)
            .collect())
    }

    async fn recorded_click_ids(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT click_id FROM component_interaction_logs WHERE click_id = ANY($1) \
             UNION ALL SELECT click_id FROM track_rejects WHERE click_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("find recorded clicks"))
    }

    async fn existing_campaigns(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        // Locked now, ascending (the first lock of every writer), so a campaign the marketing
        // app deletes meanwhile is either still there at commit or seen missing here.
        sqlx::query_scalar(
            "SELECT id::bigint FROM campaigns WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("find campaigns"))
    }

    async fn bump_campaigns(
        &mut self,
        increments: &[CampaignIncrement],
        now: &str,
    ) -> Result<(), StoreError> {
        // COALESCE: clicked_count is nullable.
        let query = sqlx::query(
            "UPDATE campaigns c SET clicked_count = COALESCE(c.clicked_count, 0) + u.clicks, \
                 updated_at = $3::timestamp \
             FROM UNNEST($1::bigint[], $2::bigint[]) AS u(id, clicks) WHERE c.id = u.id",
        )
        .bind(column(increments, |i| i.id))
        .bind(column(increments, |i| i.clicks))
        .bind(now);
        self.exec(query, "count campaign clicks").await?;
        Ok(())
    }

    async fn read_members(&mut self, uids: &[&str]) -> Result<Vec<MemberRow>, StoreError> {
        // Locked shared until commit: the marketing app cannot delete a member under the
        // batch's `messages` rows.
        sqlx::query_as(
            "SELECT id::bigint AS id, line_uid, line_display_name FROM members \
             WHERE line_uid = ANY($1) ORDER BY line_uid FOR SHARE",
        )
        .bind(uids)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read members"))
    }

    async fn create_members(&mut self, uids: &[&str], now: &str) -> Result<(), StoreError> {
        // A uid another writer creates meanwhile is no error: the unique key decides.
        let query = sqlx::query(
            "INSERT INTO members (line_uid, line_display_name, created_at, updated_at) \
             SELECT u.uid, NULL, $2::timestamp, $2::timestamp FROM UNNEST($1::text[]) AS u(uid) \
             ON CONFLICT (line_uid) DO NOTHING",
        )
        .bind(uids)
        .bind(now);
        self.exec(query, "create members").await?;
        Ok(())
    }

    async fn insert_messages(&mut self, rows: &[MessageRow]) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO messages (member_id, direction, message_type, content, campaign_id, \
                 created_at) \
             SELECT u.member_id, 'incoming', 'text', u.content, u.campaign_id, u.at::timestamp \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[]) \
                 AS u(member_id, content, campaign_id, at)",
        )
        .bind(column(rows, |m| m.member_id))
        .bind(column(rows, |m| m.content.as_str()))
        .bind(column(rows, |m| m.campaign_id))
        .bind(column(rows, |m| m.created_at.as_str()));
        self.exec(query, "insert messages").await?;
        Ok(())
    }

    async fn upsert_summary_counts(
        &mut self,
        rows: &[SummaryCountRow<'_>],
        now: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO ryan_click_demo AS d (line_id, source_campaign_id, line_display_name, \
                 total_clicks, last_clicked_at, created_at, updated_at) \
             SELECT u.line_id, u.src, u.name, u.clicks, u.at::timestamp, $6::timestamp, \
                 $6::timestamp \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[]) \
                 AS u(line_id, src, name, clicks, at) \
             ON CONFLICT (line_id, source_campaign_id) DO UPDATE SET \
                 total_clicks = d.total_clicks + EXCLUDED.total_clicks, \
                 line_display_name = COALESCE(EXCLUDED.line_display_name, d.line_display_name), \
                 last_clicked_at = GREATEST(d.last_clicked_at, EXCLUDED.last_clicked_at), \
                 updated_at = EXCLUDED.updated_at",
        )
        .bind(column(rows, |r| r.line_id))
        .bind(column(rows, |r| r.source_campaign_id))
        .bind(column(rows, |r| r.line_display_name))
        .bind(column(rows, |r| r.total_clicks))
        .bind(column(rows, |r| r.last_clicked_at.as_str()))
        .bind(now);
        self.exec(query, "upsert summaries").await?;
        Ok(())
    }

    async fn summary_tags(&mut self, uids: &[&str]) -> Result<Vec<StoredTags>, StoreError> {
        // A plain read: the count upsert holds every summary row of the batch, so this sees
        // their latest committed tags, and nobody can change them before we commit.
        sqlx::query_as(
            "SELECT line_id, source_campaign_id::bigint AS source_campaign_id, last_click_tag \
             FROM ryan_click_demo WHERE line_id = ANY($1)",
        )
        .bind(uids)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read summary tags"))
    }

    async fn write_summary_tags(
        &mut self,
        rows: &[SummaryTagRow<'_>],
        _now: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE ryan_click_demo d SET last_click_tag = u.tag \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS u(line_id, src, tag) \
             WHERE d.line_id = u.line_id AND d.source_campaign_id = u.src",
        )
        .bind(column(rows, |r| r.line_id))
        .bind(column(rows, |r| r.source_campaign_id))
        .bind(column(rows, |r| r.last_click_tag.as_str()));
        self.exec(query, "write summary tags").await?;
        Ok(())
    }

    async fn insert_interaction_logs(
        &mut self,
        rows: &[InteractionLogRow<'_>],
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, \
                 interaction_value, triggered_at, user_agent, click_id) \
             SELECT u.line_id, u.campaign_id, u.kind, u.target, u.at::timestamp, u.ua, u.click_id \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[]) AS u(line_id, campaign_id, kind, target, at, ua, click_id)",
        )
        .bind(column(rows, |r| r.line_id))
        .bind(column(rows, |r| r.campaign_id))
        .bind(column(rows, |r| r.interaction_type))
        .bind(column(rows, |r| r.interaction_value))
        .bind(column(rows, |r| r.triggered_at.as_str()))
        .bind(column(rows, |r| r.user_agent))
        .bind(column(rows, |r| r.click_id.as_str()));
        self.exec(query, "insert interaction logs").await?;
        Ok(())
    }

    async fn insert_click_tags(&mut self, rows: &[ClickTagRow<'_>]) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at) \
             SELECT u.click_id, u.campaign_id, u.tag, u.at::timestamp \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[]) \
                 AS u(click_id, campaign_id, tag, at)",
        )
        .bind(column(rows, |r| r.click_id.as_str()))
        .bind(column(rows, |r| r.campaign_id))
        .bind(column(rows, |r| r.tag))
        .bind(column(rows, |r| r.triggered_at.as_str()));
        self.exec(query, "insert click tags").await?;
        Ok(())
    }

    async fn insert_rejects(&mut self, rows: &[RejectRow<'_>]) -> Result<(), StoreError> {
        // A plain insert, like the log's: a reject already stored (by a timed-out attempt of
        // the same batch that committed late) fails this transaction instead of being counted
        // twice; the next attempt looks the ids up.
        let query = sqlx::query(
            "INSERT INTO track_rejects (click_id, received_at, reason, detail, query_string, \
                 user_agent) \
             SELECT u.click_id, u.at::timestamp, u.reason, u.detail, u.query, u.ua \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[]) AS u(click_id, at, reason, detail, query, ua)",
        )
        .bind(column(rows, |r| r.click_id.as_str()))
        .bind(column(rows, |r| r.received_at.as_str()))
        .bind(column(rows, |r| r.reason))
        .bind(column(rows, |r| r.detail))
        .bind(column(rows, |r| r.query_string))
        .bind(column(rows, |r| r.user_agent));
        self.exec(query, "insert rejects").await?;
        Ok(())
    }
}

impl RollupTx for PostgresBatch {
    async fn add_rollup_hours(
        &mut self,
        grain: Grain,
        rows: &[HourRow<'_>],
    ) -> Result<(), StoreError> {
        macro_rules! add_sums {
            ($table:literal, $time:literal) => {
                concat!(
                    "INSERT INTO ",
                    $table,
                    " AS r (campaign_id, ",
                    $time,
                    ", interaction_type, clicks, member_clicks, last_click_at) \
                     SELECT u.campaign_id, u.hour::timestamp, u.kind, u.clicks, \
                         u.member_clicks, u.last_click_at::timestamp \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], \
                         $5::bigint[], $6::text[]) \
                         AS u(campaign_id, hour, kind, clicks, member_clicks, last_click_at) \
                     ON CONFLICT (campaign_id, ",
                    $time,
                    ", interaction_type) DO UPDATE SET \
                         clicks = r.clicks + EXCLUDED.clicks, \
                         member_clicks = r.member_clicks + EXCLUDED.member_clicks, \
                         last_click_at = GREATEST(r.last_click_at, EXCLUDED.last_click_at)"
                )
            };
        }
        let (sql, operation) = match grain {
            Grain::Hour => (
                add_sums!("track_rollup_hours", "hour"),
                "add to hourly rollups",
            ),
            Grain::Day => (
                add_sums!("track_rollup_days", "day"),
                "add to daily rollups",
            ),
        };
        let query = sqlx::query(sql)
            .bind(column(rows, |r| r.campaign_id))
            .bind(column(rows, |r| r.hour))
            .bind(column(rows, |r| r.interaction_type))
            .bind(column(rows, |r| r.clicks))
            .bind(column(rows, |r| r.member_clicks))
            .bind(column(rows, |r| r.last_click_at));
        self.exec(query, operation).await?;
        Ok(())
    }

    async fn add_rollup_keyed(
        &mut self,
        table: KeyedRollup,
        rows: &[KeyCountRow<'_>],
    ) -> Result<(), StoreError> {
        // One statement per table: (campaign, hour, key) → clicks added.
        macro_rules! add_keyed {
            ($table:literal, $key:literal) => {
                add_keyed!($table, "hour", $key)
            };
            ($table:literal, $time:literal, $key:literal) => {
                concat!(
                    "INSERT INTO ",
                    $table,
                    " AS r (campaign_id, ",
                    $time,
                    ", ",
                    $key,
                    ", clicks) \
                     SELECT u.campaign_id, u.hour::timestamp, u.key, u.clicks \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
                         AS u(campaign_id, hour, key, clicks) \
                     ON CONFLICT (campaign_id, ",
                    $time,
                    ", ",
                    $key,
                    ") \
                         DO UPDATE SET clicks = r.clicks + EXCLUDED.clicks"
                )
            };
        }
        let (sql, operation) = match table {
            KeyedRollup::Targets => (
                add_keyed!("track_rollup_targets", "target_key"),
                "add to target rollups",
            ),
            KeyedRollup::Tags => (add_keyed!("track_rollup_tags", "tag"), "add to tag rollups"),
            KeyedRollup::Members => (
                add_keyed!("track_rollup_members", "line_id"),
                "add to member rollups",
            ),
            KeyedRollup::DayTargets => (
                add_keyed!("track_rollup_day_targets", "day", "target_key"),
                "add to daily target rollups",
            ),
            KeyedRollup::DayTags => (
                add_keyed!("track_rollup_day_tags", "day", "tag"),
                "add to daily tag rollups",
            ),
        };
        let query = sqlx::query(sql)
            .bind(column(rows, |r| r.campaign_id))
            .bind(column(rows, |r| r.hour))
            .bind(column(rows, |r| r.key))
            .bind(column(rows, |r| r.clicks));
        self.exec(query, operation).await?;
        Ok(())
    }

    async fn add_campaign_members(
        &mut self,
        rows: &[CampaignMemberRow<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        // RETURNING lists only the pairs this statement inserted.
        sqlx::query_scalar(
            "INSERT INTO track_rollup_campaign_members (campaign_id, line_id) \
             SELECT u.campaign_id, u.line_id FROM UNNEST($1::bigint[], $2::text[]) \
                 AS u(campaign_id, line_id) \
             ON CONFLICT DO NOTHING RETURNING campaign_id",
        )
        .bind(column(rows, |r| r.campaign_id))
        .bind(column(rows, |r| r.line_id))
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("add campaign members"))
    }

    async fn add_rollup_campaigns(
        &mut self,
        rows: &[CampaignRollupRow<'_>],
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO track_rollup_campaigns AS r (campaign_id, unique_members, last_click_at) \
             SELECT u.campaign_id, u.new_members, u.last_click_at::timestamp \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) \
                 AS u(campaign_id, new_members, last_click_at) \
             ON CONFLICT (campaign_id) DO UPDATE SET \
                 unique_members = r.unique_members + EXCLUDED.unique_members, \
                 last_click_at = GREATEST(r.last_click_at, EXCLUDED.last_click_at)",
        )
        .bind(column(rows, |r| r.campaign_id))
        .bind(column(rows, |r| r.new_members))
        .bind(column(rows, |r| r.last_click_at));
        self.exec(query, "add to campaign rollups").await?;
        Ok(())
    }
}

impl StoreTx for PostgresBatch {
    async fn commit(self) -> Result<(), StoreError> {
        self.0.commit().await.map_err(err("commit"))
    }
}

impl BackfillTx for PostgresBatch {
    async fn lock_rollup_state(&mut self) -> Result<RollupState, StoreError> {
        sqlx::query_as(
            "SELECT backfill_start_id, backfill_end_id, backfill_next_id \
             FROM track_rollup_state WHERE id = 1 FOR UPDATE",
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
            "SELECT campaign_id::bigint AS campaign_id, COUNT(*) AS \"rows\", \
                 to_char(MAX(triggered_at), 'YYYY-MM-DD HH24:MI:SS') AS last_click_at \
             FROM component_interaction_logs WHERE id BETWEEN $1 AND $2 \
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
        // `$time` is the table's time column, and the unit a log row's time is truncated to.
        // A step's tags are looked up by click id, one index probe per row (`OFFSET 0` keeps
        // the subquery a lookup): as a join, PostgreSQL hashed the step's rows and scanned all
        // of `track_click_tags` for them, in parallel, 240 ms per statement at 1,500,000 tag
        // rows against 52 ms for the lookups (and growing with the table).
        macro_rules! sums {
            ($grain:literal, $hours:literal, $targets:literal, $tags:literal, $time:literal) => {
                [
                    (
                        concat!("add history to ", $grain, " rollups"),
                        concat!(
                            "INSERT INTO ", $hours, " AS r (campaign_id, ", $time,
                            ", interaction_type, clicks, member_clicks, last_click_at) \
                             SELECT l.campaign_id, date_trunc('", $time, "', l.triggered_at), \
                                 l.interaction_type::text, COUNT(*), \
                                 SUM(CASE WHEN l.line_id <> '' THEN 1 ELSE 0 END), \
                                 MAX(l.triggered_at) \
                             FROM component_interaction_logs l WHERE l.id BETWEEN $1 AND $2 \
                             GROUP BY 1, 2, 3 \
                             ON CONFLICT (campaign_id, ", $time, ", interaction_type) DO UPDATE SET \
                                 clicks = r.clicks + EXCLUDED.clicks, \
                                 member_clicks = r.member_clicks + EXCLUDED.member_clicks, \
                                 last_click_at = GREATEST(r.last_click_at, EXCLUDED.last_click_at)"
                        ),
                    ),
                    (
                        concat!("add history to ", $grain, " target rollups"),
                        concat!(
                            "INSERT INTO ", $targets, " AS r (campaign_id, ", $time,
                            ", target_key, clicks) \
                             SELECT l.campaign_id, date_trunc('", $time, "', l.triggered_at), \
                                 LEFT(COALESCE(l.interaction_value, ''), 255), COUNT(*) \
                             FROM component_interaction_logs l WHERE l.id BETWEEN $1 AND $2 \
                             GROUP BY 1, 2, 3 \
                             ON CONFLICT (campaign_id, ", $time, ", target_key) \
                                 DO UPDATE SET clicks = r.clicks + EXCLUDED.clicks"
                        ),
                    ),
                    (
                        concat!("add history to ", $grain, " tag rollups"),
                        concat!(
                            "INSERT INTO ", $tags, " AS r (campaign_id, ", $time, ", tag, clicks) \
                             SELECT l.campaign_id, date_trunc('", $time, "', l.triggered_at), \
                                 t.tag, COUNT(*) \
                             FROM component_interaction_logs l CROSS JOIN LATERAL \
                                 (SELECT tag FROM track_click_tags t \
                                  WHERE t.click_id = l.click_id OFFSET 0) t \
                             WHERE l.id BETWEEN $1 AND $2 \
                             GROUP BY 1, 2, 3 \
                             ON CONFLICT (campaign_id, ", $time, ", tag) \
                                 DO UPDATE SET clicks = r.clicks + EXCLUDED.clicks"
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
            "hour"
        );
        const DAYS: [(&str, &str); 3] = sums!(
            "daily",
            "track_rollup_days",
            "track_rollup_day_targets",
            "track_rollup_day_tags",
            "day"
        );
        const MEMBERS: (&str, &str) = (
            "add history to member rollups",
            "INSERT INTO track_rollup_members AS r (campaign_id, hour, line_id, clicks) \
             SELECT l.campaign_id, date_trunc('hour', l.triggered_at), l.line_id, COUNT(*) \
             FROM component_interaction_logs l \
             WHERE l.id BETWEEN $1 AND $2 AND l.line_id <> '' \
             GROUP BY 1, 2, 3 \
             ON CONFLICT (campaign_id, hour, line_id) \
                 DO UPDATE SET clicks = r.clicks + EXCLUDED.clicks",
        );
        let sums = HOURS.into_iter().chain(DAYS).chain([MEMBERS]);
        for (operation, sql) in sums {
            let query = sqlx::query(sql).bind(from_id).bind(to_id);
            self.exec(query, operation).await?;
        }
        // RETURNING lists only the pairs this statement inserted.
        sqlx::query_scalar(
            "INSERT INTO track_rollup_campaign_members (campaign_id, line_id) \
             SELECT DISTINCT l.campaign_id, l.line_id FROM component_interaction_logs l \
             WHERE l.id BETWEEN $1 AND $2 AND l.line_id <> '' \
             ON CONFLICT DO NOTHING RETURNING campaign_id",
        )
        .bind(from_id)
        .bind(to_id)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("add history's campaign members"))
    }

    async fn foreign_log_rows(
        &mut self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        // idx_cil_foreign holds exactly the rows without a click id, in id order.
        sqlx::query_as(
            "SELECT l.id, l.campaign_id::bigint AS campaign_id, l.line_id, \
                 l.interaction_type::text AS interaction_type, l.interaction_value AS target, \
                 to_char(l.triggered_at, 'YYYY-MM-DD HH24:MI:SS') AS triggered_at \
             FROM component_interaction_logs l \
             WHERE l.click_id IS NULL AND l.id > $1 \
               AND NOT EXISTS (SELECT 1 FROM track_rollup_foreign f WHERE f.log_id = l.id) \
             ORDER BY l.id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("read foreign log rows"))
    }

    async fn lock_campaigns(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        // Ascending, as each batch locks them first: no step waits in a cycle with a batch.
        let query =
            sqlx::query("SELECT id FROM campaigns WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(ids);
        self.exec(query, "lock campaigns").await?;
        Ok(())
    }

    async fn set_backfill_next(&mut self, next_id: i64, now: &str) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE track_rollup_state SET backfill_next_id = $1, updated_at = $2::timestamp \
             WHERE id = 1",
        )
        .bind(next_id)
        .bind(now);
        self.exec(query, "record backfill progress").await?;
        Ok(())
    }

    async fn mark_foreign(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO track_rollup_foreign (log_id) SELECT * FROM UNNEST($1::bigint[])",
        )
        .bind(ids);
        self.exec(query, "mark foreign log rows").await?;
        Ok(())
    }
}

impl EraseTx for PostgresBatch {
    async fn lock_erasure_list(&mut self) -> Result<(), StoreError> {
        let query =
            sqlx::query("SELECT uid_hash FROM track_erasures WHERE uid_hash = '*' FOR UPDATE");
        self.exec(query, "lock erasure list").await?;
        Ok(())
    }

    async fn add_to_erasure_list(&mut self, uid_hash: &str, at: &str) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO track_erasures (uid_hash, erased_at) VALUES ($1, $2) \
             ON CONFLICT (uid_hash) DO UPDATE SET erased_at = EXCLUDED.erased_at",
        )
        .bind(uid_hash)
        .bind(at);
        self.exec(query, "add to erasure list").await?;
        Ok(())
    }

    async fn run(
        &mut self,
        sql: &'static str,
        binds: &[&str],
        operation: &'static str,
    ) -> Result<u64, StoreError> {
        let sql = crate::db::numbered(sql);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(*bind);
        }
        self.exec(query, operation).await
    }

    async fn id_text_rows(
        &mut self,
        sql: &'static str,
        bind: &str,
        operation: &'static str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(crate::db::numbered(sql)))
            .bind(bind)
            .fetch_all(&mut *self.0)
            .await
            .map_err(err(operation))
    }

    async fn delete_rejects(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
        let query = sqlx::query("DELETE FROM track_rejects WHERE id = ANY($1)").bind(ids);
        self.exec(query, "erase rejects").await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.0.rollback().await.map_err(err("roll back"))
    }
}

impl PurgeTx for PostgresBatch {
    async fn old_log_rows(
        &mut self,
        before: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        sqlx::query_as(concat!(
            "SELECT id, click_id FROM component_interaction_logs \
             WHERE triggered_at < $1::timestamp ",
            super::purge::rolled_up_only!(),
            " ORDER BY triggered_at LIMIT $2",
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *self.0)
        .await
        .map_err(err("find old log rows"))
    }

    async fn delete_click_tags(&mut self, click_ids: &[&str]) -> Result<u64, StoreError> {
        let query =
            sqlx::query("DELETE FROM track_click_tags WHERE click_id = ANY($1)").bind(click_ids);
        self.exec(query, "purge click tags").await
    }

    async fn delete_log_rows(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
        let query =
            sqlx::query("DELETE FROM track_rollup_foreign WHERE log_id = ANY($1)").bind(ids);
        self.exec(query, "purge foreign marks").await?;
        let query =
            sqlx::query("DELETE FROM component_interaction_logs WHERE id = ANY($1)").bind(ids);
        self.exec(query, "purge log rows").await
    }

    async fn delete_old_rejects(&mut self, before: &str, limit: i64) -> Result<u64, StoreError> {
        // PostgreSQL's DELETE has no LIMIT: the oldest `limit` by id, through the index.
        let query = sqlx::query(
            "DELETE FROM track_rejects WHERE id IN (SELECT id FROM track_rejects \
             WHERE received_at < $1::timestamp ORDER BY received_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit);
        self.exec(query, "purge rejects").await
    }
}
