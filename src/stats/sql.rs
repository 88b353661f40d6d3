//! The stats queries, once per SQL dialect, side by side so they stay the same query.
//!
//! Campaign results come from the rollups (docs/rollups.md): a window's whole days from the
//! `track_rollup_days` tables, its other whole hours from the `track_rollup_*` hour tables,
//! the seconds before its first and after its last whole hour from the raw log, in one
//! `UNION ALL` per figure. Every such query binds, in this order, (campaign_id, day_from,
//! day_to) for the days, (campaign_id, mid_from, day_from, day_to, mid_to) for the hours and
//! (campaign_id, from, mid_from, mid_to, to) for the raw part (`window::Split`,
//! `ROLLED_UP_BINDS`); times are `YYYY-MM-DD HH:MM:SS` in UTC (`store::db_time`), `from`
//! inclusive, `to` exclusive. A member's clicks and the CSV export list single clicks, from the
//! raw log. Times come back as text in that same form, integers as BIGINT (MySQL's INT and
//! DECIMAL results are cast), so both backends decode alike.

/// One dialect's statements.
pub struct Dialect {
    /// Every campaign: id, name, clicked_count, last click, distinct members (all time).
    pub campaigns: &'static str,
    /// One campaign by id: id, name, clicked_count, created_at.
    pub campaign: &'static str,
    /// The backfill's progress and the purge horizon, as a `RollupProgress`.
    pub rollup_state: &'static str,
    /// (bucket label, interaction type, clicks, clicks with a uid) for hour buckets
    /// (`YYYY-MM-DD HH`). Binds a split `without_days` (a day row has no hours).
    pub series_hour: &'static str,
    /// The same for day buckets (`YYYY-MM-DD`).
    pub series_day: &'static str,
    /// The members of the window, as `stats::members` reads them: the packs of its whole
    /// hours that are current, the member rows of its other whole hours, and its raw edges'
    /// clicks, each with the member's number where it has one. Binds (`MEMBERS_BINDS`) the
    /// campaign and the whole hours (`mid_from`, `mid_to`), the campaign twice, then the
    /// edges: the campaign, `from`, `mid_from`, `mid_to`, `to`. Its last column is a member
    /// row's clicks, a pack's member clicks (all it covers) or 1 for a raw click.
    pub members: &'static str,
    /// The clicks with a uid of a window's rolled-up part, as one number: what a kept count
    /// of its members (`stats::member_cache`) is checked against. The binds of a
    /// `rolled_up!` statement, for a window without raw edges.
    pub member_clicks_of_hours: &'static str,
    /// `(number, line_id)` of members by number; `stats::members` appends the numbers and
    /// `)`.
    pub member_names: &'static str,
    /// `(number, line_id)` of the next `MEMBER_NAMES_PAGE` members in uid order (byte order)
    /// after the uid bound: ties in the top list are broken by uid, so the first tied members
    /// met in this order are the ones listed.
    pub member_names_after: &'static str,
    /// (target, clicks), the ten most clicked, by their first 255 characters.
    pub top_targets: &'static str,
    /// (tag, clicks), the hundred most used.
    pub tags: &'static str,
    /// A member's display name by uid.
    pub display_name: &'static str,
    /// (uid, display name) of up to ten members, in one statement: `?` ×10, the list padded
    /// with its last uid.
    pub display_names: &'static str,
    /// A member's clicks, newest first, as `MemberClickRow`. Binds (uid, limit).
    pub member_clicks: &'static str,
    /// A member's summaries (`ryan_click_demo`), as `SummaryRow`.
    pub member_summaries: &'static str,
    /// Every click of the range in time order for the CSV export, as `ExportRow` (columns
    /// named as in `CLICK_COLUMNS`). Binds (campaign_id, from, to).
    pub clicks: &'static str,
}

/// The export's columns, in `Dialect::clicks` order (the CSV header).
pub const CLICK_COLUMNS: [&str; 7] = [
    "click_id",
    "clicked_at",
    "line_id",
    "interaction_type",
    "target",
    "tags",
    "user_agent",
];

macro_rules! range_query {
    ($select:literal, $rest:literal) => {
        concat!(
            $select,
            " FROM component_interaction_logs WHERE campaign_id = ? AND triggered_at >= ? \
             AND triggered_at < ?",
            $rest
        )
    };
}

/// How many values `Dialect::members` takes (the order is in its description).
pub const MEMBERS_BINDS: usize = 10;

/// How many values a `rolled_up!` statement binds (`window::Split::rolled_up_binds`).
pub const ROLLED_UP_BINDS: usize = 13;

/// `$outer` over a window's rows: its whole days (`$day` from `$day_table`), its other whole
/// hours, before the first whole day and after the last (`$hour` from `$hour_table`), and its
/// raw edges (`$raw` from `$raw_table` with its `$hint` and `$filter`).
macro_rules! rolled_up {
    (
        $outer:literal,
        $day:literal from $day_table:literal,
        $hour:literal from $hour_table:literal,
        $raw:literal from $raw_table:literal $hint:literal where $filter:literal,
        $rest:literal
    ) => {
        concat!(
            $outer,
            " FROM (",
            $day,
            " FROM ",
            $day_table,
            " WHERE campaign_id = ? AND day >= ? AND day < ? UNION ALL ",
            $hour,
            " FROM ",
            $hour_table,
            " WHERE campaign_id = ? AND ((hour >= ? AND hour < ?) OR (hour >= ? AND hour < ?)) \
              UNION ALL ",
            $raw,
            " FROM ",
            $raw_table,
            " ",
            $hint,
            " WHERE campaign_id = ? AND ((triggered_at >= ? AND triggered_at < ?) \
              OR (triggered_at >= ? AND triggered_at < ?))",
            $filter,
            ") u",
            $rest
        )
    };
}

/// `rolled_up!` in SQLite's form: each pair of ranges is two `UNION ALL`ed ranges of the
/// index, with numbered parameters (the same binds, in the same order). With `OR`, SQLite
/// reads a covering index by campaign alone, every row of the campaign, rather than two
/// ranges.
macro_rules! sqlite_rolled_up {
    (
        $outer:literal,
        $day:literal from $day_table:literal,
        $hour:literal from $hour_table:literal,
        $raw:literal from $raw_table:literal,
        $rest:literal
    ) => {
        concat!(
            $outer,
            " FROM (",
            $day,
            " FROM ",
            $day_table,
            " WHERE campaign_id = ?1 AND day >= ?2 AND day < ?3 UNION ALL ",
            $hour,
            " FROM ",
            $hour_table,
            " WHERE campaign_id = ?4 AND hour >= ?5 AND hour < ?6 UNION ALL ",
            $hour,
            " FROM ",
            $hour_table,
            " WHERE campaign_id = ?4 AND hour >= ?7 AND hour < ?8 UNION ALL ",
            $raw,
            " FROM ",
            $raw_table,
            " WHERE campaign_id = ?9 AND triggered_at >= ?10 AND triggered_at < ?11 UNION ALL ",
            $raw,
            " FROM ",
            $raw_table,
            " WHERE campaign_id = ?9 AND triggered_at >= ?12 AND triggered_at < ?13) u",
            $rest
        )
    };
}

/// `Dialect::members` for SQLite and MySQL: `$raw_line` and `$raw_key` a raw row's uid as
/// read and as matched against the numbers, `$raw_from` the log with its index hint,
/// `$raw_where` the edges' condition (binds 6 to 10). A pack is current when its
/// `member_clicks` equal its hour's in `track_rollup_hours` (written in the same transactions
/// as the member rows); any other hour with member clicks is read as rows. One pass over the
/// window's hours (`x`): each row is an hour's current pack, or one of its member rows, or
/// nothing (an hour without member clicks, counted as nothing). Outer joins keep the hours
/// outside (at size, reading a campaign's member rows first would read them all); the member
/// rows are looked up only for an hour without a current pack (`m.hour` is NULL otherwise, so
/// the lookup finds nothing at once). Reading the hours once, not once for the packs and once
/// for the rows, was half the statement's time on MariaDB. One statement, so the parts see the
/// same moment.
macro_rules! members_of_window {
    (
        $raw_line:literal,
        $raw_key:literal,
        $raw_from:literal,
        $raw_where:literal
    ) => {
        concat!(
            "SELECT p.body AS body, m.line_id AS line_id, i.id AS member, \
                COALESCE(m.clicks, p.member_clicks, 0) AS clicks FROM \
                (SELECT hour, SUM(member_clicks) AS s FROM track_rollup_hours \
                 WHERE campaign_id = ? AND hour >= ? AND hour < ? GROUP BY hour) x \
            LEFT JOIN track_rollup_member_packs p \
                ON p.campaign_id = ? AND p.hour = x.hour AND p.member_clicks = x.s \
            LEFT JOIN track_rollup_members m ON m.campaign_id = ? \
                AND m.hour = CASE WHEN p.hour IS NULL AND x.s > 0 THEN x.hour END \
            LEFT JOIN track_rollup_member_ids i ON i.line_id = m.line_id \
            UNION ALL SELECT NULL, ",
            $raw_line,
            ", i.id, 1 FROM ",
            $raw_from,
            " LEFT JOIN track_rollup_member_ids i ON i.line_id = ",
            $raw_key,
            $raw_where
        )
    };
}

const DISPLAY_NAME: &str = "SELECT line_display_name FROM members WHERE line_uid = ?";

/// Members `member_names_after` reads at a time.
pub const MEMBER_NAMES_PAGE: usize = 1_000;

/// How many uids `display_names` takes (the dashboard's top members).
pub const DISPLAY_NAMES_LIST: usize = 10;
const DISPLAY_NAMES: &str = "SELECT line_uid, line_display_name FROM members \
    WHERE line_uid IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const SQLITE: Dialect = Dialect {
    campaigns: "SELECT c.id, COALESCE(c.name, ''), COALESCE(c.clicked_count, 0), \
            r.last_click_at, COALESCE(r.unique_members, 0) \
        FROM campaigns c LEFT JOIN track_rollup_campaigns r ON r.campaign_id = c.id \
        ORDER BY c.id DESC",
    campaign: "SELECT id, COALESCE(name, ''), COALESCE(clicked_count, 0), created_at \
        FROM campaigns WHERE id = ?",
    rollup_state: "SELECT backfill_next_id AS next_id, backfill_end_id AS end_id, \
            purged_before, days_built FROM track_rollup_state WHERE id = 1",
    series_hour: sqlite_rolled_up!(
        "SELECT bucket, interaction_type, SUM(clicks), SUM(member_clicks)",
        "SELECT substr(day, 1, 13) AS bucket, interaction_type, clicks, member_clicks"
            from "track_rollup_days",
        "SELECT substr(hour, 1, 13) AS bucket, interaction_type, clicks, member_clicks"
            from "track_rollup_hours",
        "SELECT substr(triggered_at, 1, 13), interaction_type, 1, line_id <> ''"
            from "component_interaction_logs INDEXED BY idx_cil_campaign_time",
        " GROUP BY bucket, interaction_type"
    ),
    series_day: sqlite_rolled_up!(
        "SELECT bucket, interaction_type, SUM(clicks), SUM(member_clicks)",
        "SELECT substr(day, 1, 10) AS bucket, interaction_type, clicks, member_clicks"
            from "track_rollup_days",
        "SELECT substr(hour, 1, 10) AS bucket, interaction_type, clicks, member_clicks"
            from "track_rollup_hours",
        "SELECT substr(triggered_at, 1, 10), interaction_type, 1, line_id <> ''"
            from "component_interaction_logs INDEXED BY idx_cil_campaign_time",
        " GROUP BY bucket, interaction_type"
    ),
    member_clicks_of_hours: sqlite_rolled_up!(
        "SELECT COALESCE(SUM(n), 0)",
        "SELECT member_clicks AS n" from "track_rollup_days",
        "SELECT member_clicks AS n" from "track_rollup_hours",
        "SELECT 0" from "component_interaction_logs INDEXED BY idx_cil_campaign_time",
        ""
    ),
    members: members_of_window!(
        "l.line_id",
        "l.line_id",
        "component_interaction_logs l INDEXED BY idx_cil_campaign_time",
        // Two ranges of the index, as in `sqlite_rolled_up!` (a plain `?` is numbered after
        // the largest number before it: the first five are ?1 to ?5).
        " WHERE l.campaign_id = ?6 AND l.triggered_at >= ?7 AND l.triggered_at < ?8 \
            AND l.line_id <> '' \
        UNION ALL SELECT NULL, l.line_id, i.id, 1 \
            FROM component_interaction_logs l INDEXED BY idx_cil_campaign_time \
            LEFT JOIN track_rollup_member_ids i ON i.line_id = l.line_id \
            WHERE l.campaign_id = ?6 AND l.triggered_at >= ?9 AND l.triggered_at < ?10 \
            AND l.line_id <> ''"
    ),
    member_names: "SELECT id, line_id FROM track_rollup_member_ids WHERE id IN (",
    member_names_after: "SELECT id, line_id FROM track_rollup_member_ids \
        WHERE line_id > ? ORDER BY line_id LIMIT 1000",
    top_targets: sqlite_rolled_up!(
        "SELECT target, SUM(n) AS n",
        "SELECT target_key AS target, clicks AS n" from "track_rollup_day_targets",
        "SELECT target_key AS target, clicks AS n" from "track_rollup_targets",
        "SELECT COALESCE(target_key, ''), 1"
            from "component_interaction_logs INDEXED BY idx_cil_campaign_time",
        " GROUP BY target ORDER BY n DESC, target LIMIT 10"
    ),
    tags: sqlite_rolled_up!(
        "SELECT tag, SUM(n) AS n",
        "SELECT tag, clicks AS n" from "track_rollup_day_tags",
        "SELECT tag, clicks AS n" from "track_rollup_tags",
        "SELECT tag, 1" from "track_click_tags",
        " GROUP BY tag ORDER BY n DESC, tag LIMIT 100"
    ),
    display_name: DISPLAY_NAME,
    display_names: DISPLAY_NAMES,
    member_clicks: "SELECT l.click_id, l.triggered_at AS clicked_at, l.campaign_id, \
            c.name AS campaign_name, l.interaction_type, l.interaction_value AS target, \
            (SELECT group_concat(t.tag, ',') FROM track_click_tags t \
             WHERE t.click_id = l.click_id) AS tags \
        FROM component_interaction_logs l LEFT JOIN campaigns c ON c.id = l.campaign_id \
        WHERE l.line_id = ? ORDER BY l.triggered_at DESC, l.id DESC LIMIT ?",
    member_summaries: "SELECT source_campaign_id, total_clicks, last_clicked_at, \
            last_click_tag AS tags \
        FROM ryan_click_demo WHERE line_id = ? ORDER BY source_campaign_id",
    // Arrival order: by time (the index's own order, so rows stream), and within one second
    // by click_id (uuid v7, time-ordered; the index would order those by type). SQLite sorts
    // only each second's rows ("last 2 terms of ORDER BY"). Flask-era rows have no click_id:
    // their id keeps them in insertion order.
    clicks: range_query!(
        "SELECT click_id, triggered_at AS clicked_at, line_id, interaction_type, \
            interaction_value AS target, \
            (SELECT group_concat(t.tag, ',') FROM track_click_tags t \
             WHERE t.click_id = component_interaction_logs.click_id) AS tags, user_agent",
        " ORDER BY triggered_at, click_id, id"
    ),
};

// MySQL: the old app's tables may have another collation (or charset) than clicktrack's own
// tables, and comparing or UNIONing columns of different collations is an error (1267, 1271),
// so text read from the interaction log is converted to the rollups' `utf8mb4_bin` (and its
// click_id to the tags table's collation before the join).
pub const MYSQL: Dialect = Dialect {
    campaigns: "SELECT CAST(c.id AS SIGNED), COALESCE(c.name, ''), \
            CAST(COALESCE(c.clicked_count, 0) AS SIGNED), \
            DATE_FORMAT(r.last_click_at, '%Y-%m-%d %H:%i:%s'), \
            CAST(COALESCE(r.unique_members, 0) AS SIGNED) \
        FROM campaigns c LEFT JOIN track_rollup_campaigns r ON r.campaign_id = c.id \
        ORDER BY c.id DESC",
    campaign: "SELECT CAST(id AS SIGNED), COALESCE(name, ''), \
            CAST(COALESCE(clicked_count, 0) AS SIGNED), \
            DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') \
        FROM campaigns WHERE id = ?",
    rollup_state: "SELECT CAST(backfill_next_id AS SIGNED) AS next_id, \
            CAST(backfill_end_id AS SIGNED) AS end_id, \
            DATE_FORMAT(purged_before, '%Y-%m-%d %H:%i:%s') AS purged_before, \
            CAST(days_built AS SIGNED) AS days_built \
        FROM track_rollup_state WHERE id = 1",
    series_hour: rolled_up!(
        "SELECT bucket, kind, CAST(SUM(clicks) AS SIGNED), CAST(SUM(member_clicks) AS SIGNED)",
        "SELECT DATE_FORMAT(day, '%Y-%m-%d %H') AS bucket, interaction_type AS kind, clicks, \
            member_clicks" from "track_rollup_days",
        "SELECT DATE_FORMAT(hour, '%Y-%m-%d %H') AS bucket, interaction_type AS kind, clicks, \
            member_clicks" from "track_rollup_hours",
        "SELECT DATE_FORMAT(triggered_at, '%Y-%m-%d %H'), \
            CONVERT(CAST(interaction_type AS CHAR) USING utf8mb4) COLLATE utf8mb4_bin, 1, \
            line_id <> ''"
            from "component_interaction_logs" "FORCE INDEX (idx_cil_campaign_time)" where "",
        " GROUP BY bucket, kind"
    ),
    series_day: rolled_up!(
        "SELECT bucket, kind, CAST(SUM(clicks) AS SIGNED), CAST(SUM(member_clicks) AS SIGNED)",
        "SELECT DATE_FORMAT(day, '%Y-%m-%d') AS bucket, interaction_type AS kind, clicks, \
            member_clicks" from "track_rollup_days",
        "SELECT DATE_FORMAT(hour, '%Y-%m-%d') AS bucket, interaction_type AS kind, clicks, \
            member_clicks" from "track_rollup_hours",
        "SELECT DATE_FORMAT(triggered_at, '%Y-%m-%d'), \
            CONVERT(CAST(interaction_type AS CHAR) USING utf8mb4) COLLATE utf8mb4_bin, 1, \
            line_id <> ''"
            from "component_interaction_logs" "FORCE INDEX (idx_cil_campaign_time)" where "",
        " GROUP BY bucket, kind"
    ),
    member_clicks_of_hours: rolled_up!(
        "SELECT CAST(COALESCE(SUM(n), 0) AS SIGNED)",
        "SELECT member_clicks AS n" from "track_rollup_days",
        "SELECT member_clicks AS n" from "track_rollup_hours",
        "SELECT 0" from "component_interaction_logs" "FORCE INDEX (idx_cil_campaign_time)" where "",
        ""
    ),
    members: members_of_window!(
        "CONVERT(l.line_id USING utf8mb4) COLLATE utf8mb4_bin",
        "CONVERT(l.line_id USING utf8mb4) COLLATE utf8mb4_bin",
        "component_interaction_logs l FORCE INDEX (idx_cil_campaign_time)",
        // One range scan of two intervals.
        " WHERE l.campaign_id = ? AND ((l.triggered_at >= ? AND l.triggered_at < ?) \
            OR (l.triggered_at >= ? AND l.triggered_at < ?)) AND l.line_id <> ''"
    ),
    member_names: "SELECT CAST(id AS SIGNED), line_id FROM track_rollup_member_ids WHERE id IN (",
    member_names_after: "SELECT CAST(id AS SIGNED), line_id FROM track_rollup_member_ids \
        WHERE line_id > ? ORDER BY line_id LIMIT 1000",
    top_targets: rolled_up!(
        "SELECT target, CAST(SUM(n) AS SIGNED) AS n",
        "SELECT target_key AS target, clicks AS n" from "track_rollup_day_targets",
        "SELECT target_key AS target, clicks AS n" from "track_rollup_targets",
        "SELECT CONVERT(COALESCE(target_key, '') USING utf8mb4) COLLATE utf8mb4_bin, 1"
            from "component_interaction_logs" "FORCE INDEX (idx_cil_campaign_time)" where "",
        " GROUP BY target ORDER BY n DESC, target LIMIT 10"
    ),
    tags: rolled_up!(
        "SELECT tag, CAST(SUM(n) AS SIGNED) AS n",
        "SELECT tag, clicks AS n" from "track_rollup_day_tags",
        "SELECT tag, clicks AS n" from "track_rollup_tags",
        "SELECT tag, 1" from "track_click_tags" "" where "",
        " GROUP BY tag ORDER BY n DESC, tag LIMIT 100"
    ),
    display_name: DISPLAY_NAME,
    display_names: DISPLAY_NAMES,
    member_clicks: "SELECT l.click_id, \
            DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:%i:%s') AS clicked_at, \
            CAST(l.campaign_id AS SIGNED) AS campaign_id, c.name AS campaign_name, \
            CAST(l.interaction_type AS CHAR) AS interaction_type, l.interaction_value AS target, \
            (SELECT GROUP_CONCAT(t.tag ORDER BY t.tag SEPARATOR ',') FROM track_click_tags t \
             WHERE t.click_id = CONVERT(l.click_id USING utf8mb4) COLLATE utf8mb4_unicode_ci) \
                AS tags \
        FROM component_interaction_logs l LEFT JOIN campaigns c ON c.id = l.campaign_id \
        WHERE l.line_id = ? ORDER BY l.triggered_at DESC, l.id DESC LIMIT ?",
    member_summaries: "SELECT CAST(source_campaign_id AS SIGNED) AS source_campaign_id, \
            CAST(total_clicks AS SIGNED) AS total_clicks, \
            DATE_FORMAT(last_clicked_at, '%Y-%m-%d %H:%i:%s') AS last_clicked_at, \
            last_click_tag AS tags \
        FROM ryan_click_demo WHERE line_id = ? ORDER BY source_campaign_id",
    clicks: range_query!(
        "SELECT click_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:%i:%s') AS clicked_at, \
            line_id, CAST(interaction_type AS CHAR) AS interaction_type, \
            interaction_value AS target, \
            (SELECT GROUP_CONCAT(t.tag ORDER BY t.tag SEPARATOR ',') FROM track_click_tags t \
             WHERE t.click_id = CONVERT(component_interaction_logs.click_id USING utf8mb4) \
                 COLLATE utf8mb4_unicode_ci) AS tags, user_agent",
        " ORDER BY triggered_at, click_id, id"
    ),
};

/// `rolled_up!` in PostgreSQL's form: numbered parameters, and the bound text times cast to
/// `timestamp` (PostgreSQL compares no `timestamp` with `text`).
macro_rules! pg_rolled_up {
    (
        $outer:literal,
        $day:literal from $day_table:literal,
        $hour:literal from $hour_table:literal,
        $raw:literal from $raw_table:literal where $filter:literal,
        $rest:literal
    ) => {
        concat!(
            $outer,
            " FROM (",
            $day,
            " FROM ",
            $day_table,
            " WHERE campaign_id = $1 AND day >= $2::timestamp AND day < $3::timestamp \
              UNION ALL ",
            $hour,
            " FROM ",
            $hour_table,
            " WHERE campaign_id = $4 \
              AND ((hour >= $5::timestamp AND hour < $6::timestamp) \
                OR (hour >= $7::timestamp AND hour < $8::timestamp)) \
              UNION ALL ",
            $raw,
            " FROM ",
            $raw_table,
            " WHERE campaign_id = $9 \
              AND ((triggered_at >= $10::timestamp AND triggered_at < $11::timestamp) \
                OR (triggered_at >= $12::timestamp AND triggered_at < $13::timestamp))",
            $filter,
            ") u",
            $rest
        )
    };
}

/// A `timestamp` as the stats read it: `YYYY-MM-DD HH:MM:SS`.
macro_rules! pg_time {
    ($column:literal) => {
        concat!("to_char(", $column, ", 'YYYY-MM-DD HH24:MI:SS')")
    };
}

// PostgreSQL: sums are NUMERIC and INTEGER columns INT4 unless cast, so every integer is cast
// to BIGINT; text is ordered by its bytes (`COLLATE "C"`), as SQLite and the rollups'
// `utf8mb4_bin` order it.
pub const POSTGRES: Dialect = Dialect {
    campaigns: concat!(
        "SELECT c.id::bigint, COALESCE(c.name, ''), COALESCE(c.clicked_count, 0)::bigint, ",
        pg_time!("r.last_click_at"),
        ", COALESCE(r.unique_members, 0)::bigint \
        FROM campaigns c LEFT JOIN track_rollup_campaigns r ON r.campaign_id = c.id \
        ORDER BY c.id DESC"
    ),
    campaign: concat!(
        "SELECT id::bigint, COALESCE(name, ''), COALESCE(clicked_count, 0)::bigint, ",
        pg_time!("created_at"),
        " FROM campaigns WHERE id = $1"
    ),
    rollup_state: concat!(
        "SELECT backfill_next_id AS next_id, backfill_end_id AS end_id, ",
        pg_time!("purged_before"),
        " AS purged_before, days_built::bigint AS days_built FROM track_rollup_state \
        WHERE id = 1"
    ),
    series_hour: pg_rolled_up!(
        "SELECT bucket, kind, SUM(clicks)::bigint, SUM(member_clicks)::bigint",
        "SELECT to_char(day, 'YYYY-MM-DD HH24') AS bucket, interaction_type::text AS kind, \
            clicks, member_clicks" from "track_rollup_days",
        "SELECT to_char(hour, 'YYYY-MM-DD HH24') AS bucket, interaction_type::text AS kind, \
            clicks, member_clicks" from "track_rollup_hours",
        "SELECT to_char(triggered_at, 'YYYY-MM-DD HH24'), interaction_type::text, 1, \
            CASE WHEN line_id <> '' THEN 1 ELSE 0 END"
            from "component_interaction_logs" where "",
        " GROUP BY bucket, kind"
    ),
    series_day: pg_rolled_up!(
        "SELECT bucket, kind, SUM(clicks)::bigint, SUM(member_clicks)::bigint",
        "SELECT to_char(day, 'YYYY-MM-DD') AS bucket, interaction_type::text AS kind, \
            clicks, member_clicks" from "track_rollup_days",
        "SELECT to_char(hour, 'YYYY-MM-DD') AS bucket, interaction_type::text AS kind, \
            clicks, member_clicks" from "track_rollup_hours",
        "SELECT to_char(triggered_at, 'YYYY-MM-DD'), interaction_type::text, 1, \
            CASE WHEN line_id <> '' THEN 1 ELSE 0 END"
            from "component_interaction_logs" where "",
        " GROUP BY bucket, kind"
    ),
    member_clicks_of_hours: pg_rolled_up!(
        "SELECT COALESCE(SUM(n), 0)::bigint",
        "SELECT member_clicks AS n" from "track_rollup_days",
        "SELECT member_clicks AS n" from "track_rollup_hours",
        "SELECT 0" from "component_interaction_logs" where "",
        ""
    ),
    // As `members_of_window!`, with numbered parameters (no join-order hint: the planner
    // estimates the hours of one window as few).
    members: "SELECT p.body AS body, m.line_id::text AS line_id, i.id AS member, \
            COALESCE(m.clicks, p.member_clicks, 0)::bigint AS clicks FROM \
            (SELECT hour, SUM(member_clicks) AS s FROM track_rollup_hours \
             WHERE campaign_id = $1 AND hour >= $2::timestamp AND hour < $3::timestamp \
             GROUP BY hour) x \
            LEFT JOIN track_rollup_member_packs p \
                ON p.campaign_id = $4 AND p.hour = x.hour AND p.member_clicks = x.s \
            LEFT JOIN track_rollup_members m ON m.campaign_id = $5 \
                AND m.hour = CASE WHEN p.hour IS NULL AND x.s > 0 THEN x.hour END \
            LEFT JOIN track_rollup_member_ids i ON i.line_id = m.line_id \
        UNION ALL SELECT NULL::bytea, l.line_id::text, i.id, 1::bigint \
            FROM component_interaction_logs l \
            LEFT JOIN track_rollup_member_ids i ON i.line_id = l.line_id \
            WHERE l.campaign_id = $6 \
              AND ((l.triggered_at >= $7::timestamp AND l.triggered_at < $8::timestamp) \
                OR (l.triggered_at >= $9::timestamp AND l.triggered_at < $10::timestamp)) \
              AND l.line_id <> ''",
    member_names: "SELECT id, line_id::text FROM track_rollup_member_ids WHERE id IN (",
    // The column is in the "C" collation: its index is in byte order.
    member_names_after: "SELECT id, line_id::text FROM track_rollup_member_ids \
        WHERE line_id > $1 ORDER BY line_id LIMIT 1000",
    top_targets: pg_rolled_up!(
        "SELECT target, SUM(n)::bigint AS n",
        "SELECT target_key::text AS target, clicks AS n" from "track_rollup_day_targets",
        "SELECT target_key::text AS target, clicks AS n" from "track_rollup_targets",
        "SELECT LEFT(COALESCE(interaction_value, ''), 255), 1"
            from "component_interaction_logs" where "",
        " GROUP BY target ORDER BY n DESC, target COLLATE \"C\" LIMIT 10"
    ),
    tags: pg_rolled_up!(
        "SELECT tag, SUM(n)::bigint AS n",
        "SELECT tag::text AS tag, clicks AS n" from "track_rollup_day_tags",
        "SELECT tag::text AS tag, clicks AS n" from "track_rollup_tags",
        "SELECT tag::text, 1" from "track_click_tags" where "",
        " GROUP BY tag ORDER BY n DESC, tag COLLATE \"C\" LIMIT 100"
    ),
    display_name: "SELECT line_display_name FROM members WHERE line_uid = $1",
    display_names: "SELECT line_uid, line_display_name FROM members \
        WHERE line_uid IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    member_clicks: concat!(
        "SELECT l.click_id::text AS click_id, ",
        pg_time!("l.triggered_at"),
        " AS clicked_at, l.campaign_id::bigint AS campaign_id, c.name AS campaign_name, \
            l.interaction_type::text AS interaction_type, l.interaction_value AS target, \
            (SELECT string_agg(t.tag, ',' ORDER BY t.tag COLLATE \"C\") FROM track_click_tags t \
             WHERE t.click_id = l.click_id) AS tags \
        FROM component_interaction_logs l LEFT JOIN campaigns c ON c.id = l.campaign_id \
        WHERE l.line_id = $1 ORDER BY l.triggered_at DESC, l.id DESC LIMIT $2"
    ),
    member_summaries: concat!(
        "SELECT source_campaign_id::bigint AS source_campaign_id, \
            total_clicks::bigint AS total_clicks, ",
        pg_time!("last_clicked_at"),
        " AS last_clicked_at, last_click_tag AS tags \
        FROM ryan_click_demo WHERE line_id = $1 ORDER BY source_campaign_id"
    ),
    // Arrival order, as on the other stores: by time, within one second by click_id (uuid
    // v7), and the Flask-era rows without one by id.
    clicks: concat!(
        "SELECT l.click_id::text AS click_id, ",
        pg_time!("l.triggered_at"),
        " AS clicked_at, l.line_id::text AS line_id, l.interaction_type::text AS interaction_type, \
            l.interaction_value AS target, \
            (SELECT string_agg(t.tag, ',' ORDER BY t.tag COLLATE \"C\") FROM track_click_tags t \
             WHERE t.click_id = l.click_id) AS tags, l.user_agent \
        FROM component_interaction_logs l WHERE l.campaign_id = $1 \
            AND l.triggered_at >= $2::timestamp AND l.triggered_at < $3::timestamp \
        ORDER BY l.triggered_at, l.click_id COLLATE \"C\", l.id"
    ),
};

impl Dialect {
    /// The statements that read a window, by name: what EXPLAIN is checked on.
    pub fn range_queries(&self) -> [(&'static str, &'static str); 6] {
        [
            ("series_hour", self.series_hour),
            ("series_day", self.series_day),
            ("members", self.members),
            ("top_targets", self.top_targets),
            ("tags", self.tags),
            ("clicks", self.clicks),
        ]
    }
}
