//! The member packer's SQL: one closed hour of one campaign's member rollup
//! (`track_rollup_members`) written again as one pack (`db/member_pack.rs`, docs/rollups.md
//! "Member packs").
//!
//! A pack is derived data and never has to be right to keep the figures right: it records the
//! member clicks it covers, and a reader uses it only while they equal the hour's
//! `member_clicks` in `track_rollup_hours` (both written by the same transactions), otherwise
//! it reads that hour's rows. So packing takes no lock and needs no transaction: a click that
//! lands in the hour meanwhile leaves the pack short, stale, and packed again by a later sweep
//! (`pipeline/member_packs.rs` decides which hours and when).

use super::{Store, StoreError, sqlx_error};
use crate::db::member_pack;

/// Hours with fewer member clicks than this stay rows: their rows cost a reader no more than
/// a pack would, and packing the many small hours of small campaigns would cost the packer a
/// round trip each.
pub const PACK_MIN_MEMBER_CLICKS: i64 = 64;

/// What one sweep step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStep {
    /// Campaign-hours packed (new, or stale packs written again).
    pub hours: u64,
    /// Member-hour rows they hold.
    pub members: u64,
    /// No hour of the range is left unpacked or stale (as of the step's read).
    pub range_done: bool,
}

struct Sql {
    /// The oldest hour in the rollups, as text (NULL when they are empty).
    first_hour: &'static str,
    /// (campaign_id, hour) of the range whose pack is missing or stale, oldest first. Binds
    /// (from, to, PACK_MIN_MEMBER_CLICKS, limit).
    stale: &'static str,
    /// Number the hour's members that have no number yet. Binds (campaign_id, hour).
    number_members: &'static str,
    /// (member number, clicks) of the hour, by number. Binds (campaign_id, hour).
    numbered_members: &'static str,
    /// Write the pack. Binds (campaign_id, hour, member_clicks, members, body).
    write_pack: &'static str,
    /// Keep the statements prepared on the connection. Not on PostgreSQL: after five
    /// executions it may keep one generic plan for a prepared statement, made with the sizes of
    /// that moment. Planned on an empty `track_rollup_member_ids`, numbering kept a hash join
    /// over the whole table as it grew: 56 ms per campaign-hour, 366 s to pack the hours of
    /// 2,000,000 clicks instead of 21 s (measured; until autovacuum's ANALYZE, if it runs,
    /// makes it plan again). Unprepared, each is planned for its own campaign-hour.
    persistent: bool,
}

/// `Sql::stale` for SQLite and MySQL, selecting `$columns` (the campaign id and the hour
/// as text).
macro_rules! stale {
    ($columns:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM \
                (SELECT campaign_id, hour, SUM(member_clicks) AS s FROM track_rollup_hours \
                 WHERE hour >= ? AND hour < ? GROUP BY campaign_id, hour) h \
            LEFT JOIN track_rollup_member_packs p \
                ON p.campaign_id = h.campaign_id AND p.hour = h.hour \
            WHERE h.s >= ? AND (p.member_clicks IS NULL OR p.member_clicks <> h.s) \
            ORDER BY h.hour, h.campaign_id LIMIT ?"
        )
    };
}

/// `Sql::number_members` for SQLite and MySQL, ending with `$on_duplicate`: a member another
/// packer numbered meanwhile is no error. Members that have a number are left out before the
/// insert, so numbers are not used up by conflicts (MySQL and PostgreSQL would skip them).
macro_rules! number_members {
    ($on_duplicate:literal) => {
        concat!(
            "INSERT INTO track_rollup_member_ids (line_id) \
            SELECT m.line_id FROM track_rollup_members m \
            WHERE m.campaign_id = ? AND m.hour = ? AND NOT EXISTS \
                (SELECT 1 FROM track_rollup_member_ids i WHERE i.line_id = m.line_id) ",
            $on_duplicate
        )
    };
}

const SQLITE: Sql = Sql {
    first_hour: "SELECT MIN(hour) FROM track_rollup_hours",
    stale: stale!("h.campaign_id, h.hour"),
    number_members: number_members!("ON CONFLICT (line_id) DO NOTHING"),
    numbered_members: "SELECT i.id, m.clicks FROM track_rollup_members m \
        JOIN track_rollup_member_ids i ON i.line_id = m.line_id \
        WHERE m.campaign_id = ? AND m.hour = ? ORDER BY i.id",
    write_pack: "INSERT INTO track_rollup_member_packs \
            (campaign_id, hour, member_clicks, members, body) VALUES (?, ?, ?, ?, ?) \
        ON CONFLICT (campaign_id, hour) DO UPDATE SET member_clicks = excluded.member_clicks, \
            members = excluded.members, body = excluded.body",
    persistent: true,
};

const MYSQL: Sql = Sql {
    first_hour: "SELECT DATE_FORMAT(MIN(hour), '%Y-%m-%d %H:%i:%s') FROM track_rollup_hours",
    stale: stale!("CAST(h.campaign_id AS SIGNED), DATE_FORMAT(h.hour, '%Y-%m-%d %H:%i:%s')"),
    // Not INSERT IGNORE, which would also store a value cut to the column: only the
    // duplicate key (another packer numbered the member first) is a no-op.
    number_members: number_members!("ON DUPLICATE KEY UPDATE id = id"),
    numbered_members: "SELECT CAST(i.id AS SIGNED), CAST(m.clicks AS SIGNED) \
        FROM track_rollup_members m \
        JOIN track_rollup_member_ids i ON i.line_id = m.line_id \
        WHERE m.campaign_id = ? AND m.hour = ? ORDER BY i.id",
    write_pack: "INSERT INTO track_rollup_member_packs \
            (campaign_id, hour, member_clicks, members, body) VALUES (?, ?, ?, ?, ?) \
        ON DUPLICATE KEY UPDATE member_clicks = VALUES(member_clicks), \
            members = VALUES(members), body = VALUES(body)",
    persistent: true,
};

const POSTGRES: Sql = Sql {
    first_hour: "SELECT to_char(MIN(hour), 'YYYY-MM-DD HH24:MI:SS') FROM track_rollup_hours",
    stale: "SELECT h.campaign_id, to_char(h.hour, 'YYYY-MM-DD HH24:MI:SS') FROM \
            (SELECT campaign_id, hour, SUM(member_clicks) AS s FROM track_rollup_hours \
             WHERE hour >= $1::timestamp AND hour < $2::timestamp GROUP BY campaign_id, hour) h \
        LEFT JOIN track_rollup_member_packs p \
            ON p.campaign_id = h.campaign_id AND p.hour = h.hour \
        WHERE h.s >= $3 AND (p.member_clicks IS NULL OR p.member_clicks <> h.s) \
        ORDER BY h.hour, h.campaign_id LIMIT $4",
    number_members: "INSERT INTO track_rollup_member_ids (line_id) \
        SELECT m.line_id FROM track_rollup_members m \
        WHERE m.campaign_id = $1 AND m.hour = $2::timestamp AND NOT EXISTS \
            (SELECT 1 FROM track_rollup_member_ids i WHERE i.line_id = m.line_id) \
        ON CONFLICT (line_id) DO NOTHING",
    numbered_members: "SELECT i.id, m.clicks FROM track_rollup_members m \
        JOIN track_rollup_member_ids i ON i.line_id = m.line_id \
        WHERE m.campaign_id = $1 AND m.hour = $2::timestamp ORDER BY i.id",
    write_pack: "INSERT INTO track_rollup_member_packs \
            (campaign_id, hour, member_clicks, members, body) \
            VALUES ($1, $2::timestamp, $3, $4, $5) \
        ON CONFLICT (campaign_id, hour) DO UPDATE SET member_clicks = EXCLUDED.member_clicks, \
            members = EXCLUDED.members, body = EXCLUDED.body",
    persistent: false,
};

macro_rules! on_pool {
    ($store:expr, $pool:ident, $sql:ident => $body:expr) => {
        crate::db::on_pool!($store.pools(), $pool, $sql in (&SQLITE, &MYSQL, &POSTGRES) => $body)
    };
}

impl Store {
    /// The oldest hour in the rollups (`db_time`), where a sweep of the packer starts.
    pub async fn first_rollup_hour(&self) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool, sql => {
            sqlx::query_scalar(sql.first_hour)
                .fetch_one(pool)
                .await
                .map_err(sqlx_error("read the first rollup hour"))
        })
    }

    /// Pack up to `limit` campaign-hours of `from..to` (`db_time`, whole hours) whose pack is
    /// missing or stale.
    pub async fn pack_member_hours(
        &self,
        from: &str,
        to: &str,
        limit: i64,
    ) -> Result<PackStep, StoreError> {
        let stale: Vec<(i64, String)> = on_pool!(self, pool, sql => {
            sqlx::query_as(sql.stale)
                .persistent(sql.persistent)
                .bind(from)
                .bind(to)
                .bind(PACK_MIN_MEMBER_CLICKS)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(sqlx_error("find member hours to pack"))?
        });
        let mut step = PackStep {
            range_done: (stale.len() as i64) < limit,
            ..PackStep::default()
        };
        for (campaign_id, hour) in &stale {
            step.members += self.pack_hour(*campaign_id, hour).await?;
            step.hours += 1;
        }
        Ok(step)
    }

    /// Number the hour's new members, read the hour by number and write its pack; the rows
    /// it holds.
    async fn pack_hour(&self, campaign_id: i64, hour: &str) -> Result<u64, StoreError> {
        on_pool!(self, pool, sql => {
            sqlx::query(sql.number_members)
                .persistent(sql.persistent)
                .bind(campaign_id)
                .bind(hour)
                .execute(pool)
                .await
                .map_err(sqlx_error("number members"))?;
            let rows: Vec<(i64, i64)> = sqlx::query_as(sql.numbered_members)
                .persistent(sql.persistent)
                .bind(campaign_id)
                .bind(hour)
                .fetch_all(pool)
                .await
                .map_err(sqlx_error("read a member hour"))?;
            // Numbers and clicks are positive by construction; anything else is left out,
            // which leaves the pack short of the hour's clicks: stale, never used.
            let members: Vec<(u64, u64)> = rows
                .into_iter()
                .filter_map(|(id, clicks)| Some((u64::try_from(id).ok()?, u64::try_from(clicks).ok().filter(|c| *c > 0)?)))
                .collect();
            let member_clicks: u64 = members.iter().map(|m| m.1).sum();
            sqlx::query(sql.write_pack)
                .persistent(sql.persistent)
                .bind(campaign_id)
                .bind(hour)
                .bind(i64::try_from(member_clicks).unwrap_or(i64::MAX))
                .bind(members.len() as i64)
                .bind(member_pack::encode(&members))
                .execute(pool)
                .await
                .map_err(sqlx_error("write a member pack"))?;
            Ok(members.len() as u64)
        })
    }
}
