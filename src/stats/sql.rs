//! The stats queries, once per SQL dialect, side by side so they stay the same query.
//!
//! Every range query takes `?` in the order (campaign_id, from, to), with `from` inclusive and
//! `to` exclusive, both `YYYY-MM-DD HH:MM:SS` in UTC (`store::db_time`). Each one is answered
//! from one index range (see migrations/sqlite/0003_stats.sql and store/mysql_schema.rs); a
//! test runs EXPLAIN on the MySQL ones. Times come back as text in that same form, integers as
//! BIGINT (MySQL's INT and DECIMAL results are cast), so both backends decode alike.

/// One dialect's statements.
pub struct Dialect {
    /// Every campaign: id, name, clicked_count, last click (one index dive each: MAX() in a
    /// correlated subquery made MariaDB read the campaign's whole index range).
    pub campaigns: &'static str,
    /// (campaign_id, distinct members), all time: one pass over the member index, which
    /// MariaDB reads as a loose index scan (0.33 s for 1,000,000 rows against 1.2 s for a
    /// COUNT(DISTINCT) subquery per campaign; measured).
    pub members_per_campaign: &'static str,
    /// One campaign by id: id, name, clicked_count, created_at.
    pub campaign: &'static str,
    /// (bucket label, interaction type, clicks) for hour buckets (`YYYY-MM-DD HH`).
    pub series_hour: &'static str,
    /// The same for day buckets (`YYYY-MM-DD`).
    pub series_day: &'static str,
    /// (line_id, clicks) of every member who clicked in the range, in one ordered index scan.
    pub members: &'static str,
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
    /// named as in `CLICK_COLUMNS`).
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

/// `target_key` is the target's first 255 characters, a virtual column both schemas add so
/// that the time index can hold it.
const TOP_TARGETS: &str = range_query!(
    "SELECT COALESCE(target_key, '') AS target, COUNT(*) AS n",
    " GROUP BY target_key ORDER BY n DESC, target LIMIT 10"
);

const MEMBERS_PER_CAMPAIGN: &str = "SELECT campaign_id, COUNT(DISTINCT line_id) \
    FROM component_interaction_logs WHERE line_id <> '' GROUP BY campaign_id";

const TAGS: &str = "SELECT tag, COUNT(*) AS n FROM track_click_tags \
    WHERE campaign_id = ? AND triggered_at >= ? AND triggered_at < ? \
    GROUP BY tag ORDER BY n DESC, tag LIMIT 100";

const DISPLAY_NAME: &str = "SELECT line_display_name FROM members WHERE line_uid = ?";

/// How many uids `display_names` takes (the dashboard's top members).
pub const DISPLAY_NAMES_LIST: usize = 10;
const DISPLAY_NAMES: &str = "SELECT line_uid, line_display_name FROM members \
    WHERE line_uid IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const SQLITE: Dialect = Dialect {
    campaigns: "SELECT c.id, COALESCE(c.name, ''), COALESCE(c.clicked_count, 0), \
            (SELECT l.triggered_at FROM component_interaction_logs l \
             WHERE l.campaign_id = c.id ORDER BY l.triggered_at DESC LIMIT 1) \
        FROM campaigns c ORDER BY c.id DESC",
    members_per_campaign: MEMBERS_PER_CAMPAIGN,
    campaign: "SELECT id, COALESCE(name, ''), COALESCE(clicked_count, 0), created_at \
        FROM campaigns WHERE id = ?",
    series_hour: range_query!(
        "SELECT substr(triggered_at, 1, 13) AS bucket, interaction_type, COUNT(*)",
        " GROUP BY bucket, interaction_type"
    ),
    series_day: range_query!(
        "SELECT substr(triggered_at, 1, 10) AS bucket, interaction_type, COUNT(*)",
        " GROUP BY bucket, interaction_type"
    ),
    // Named index: the planner would pick the time index for narrow windows and then sort
    // and read rows; the member index is read alone and in order (0.09 s for 500,000 rows).
    members: "SELECT line_id, COUNT(*) \
        FROM component_interaction_logs INDEXED BY idx_cil_campaign_member \
        WHERE campaign_id = ? AND triggered_at >= ? AND triggered_at < ? AND line_id <> '' \
        GROUP BY line_id",
    top_targets: TOP_TARGETS,
    tags: TAGS,
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
// `track_click_tags`, and comparing two columns of different collations is an error (1267),
// so the interaction log's click_id is converted to the tags table's before the join.
pub const MYSQL: Dialect = Dialect {
    campaigns: "SELECT CAST(c.id AS SIGNED), COALESCE(c.name, ''), \
            CAST(COALESCE(c.clicked_count, 0) AS SIGNED), \
            (SELECT DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:%i:%s') \
             FROM component_interaction_logs l WHERE l.campaign_id = c.id \
             ORDER BY l.triggered_at DESC LIMIT 1) \
        FROM campaigns c ORDER BY c.id DESC",
    members_per_campaign: MEMBERS_PER_CAMPAIGN,
    campaign: "SELECT CAST(id AS SIGNED), COALESCE(name, ''), \
            CAST(COALESCE(clicked_count, 0) AS SIGNED), \
            DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') \
        FROM campaigns WHERE id = ?",
    series_hour: range_query!(
        "SELECT DATE_FORMAT(triggered_at, '%Y-%m-%d %H') AS bucket, \
            CAST(interaction_type AS CHAR), COUNT(*)",
        " GROUP BY bucket, interaction_type"
    ),
    series_day: range_query!(
        "SELECT DATE_FORMAT(triggered_at, '%Y-%m-%d') AS bucket, \
            CAST(interaction_type AS CHAR), COUNT(*)",
        " GROUP BY bucket, interaction_type"
    ),
    members: "SELECT line_id, COUNT(*) \
        FROM component_interaction_logs FORCE INDEX (idx_cil_campaign_member) \
        WHERE campaign_id = ? AND triggered_at >= ? AND triggered_at < ? AND line_id <> '' \
        GROUP BY line_id",
    top_targets: TOP_TARGETS,
    tags: TAGS,
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

impl Dialect {
    /// The statements that bind (campaign_id, from, to), by name: what EXPLAIN is checked on.
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
