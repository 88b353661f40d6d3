//! The stats queries use their indexes: EXPLAIN (MariaDB/MySQL, PostgreSQL) and EXPLAIN QUERY
//! PLAN (SQLite) of every statement, on a table of 10,000 rows over 10 campaigns (rolled up by
//! `migrate`) with optimizer statistics, name the index each part was written for (the rollup
//! tables' primary keys for whole hours, the log's time index for the edges) and never a full
//! table scan.

use sqlx::{AssertSqlSafe, Row};

use crate::helpers::*;
use crate::store_tests;
use clicktrack::stats::sql;

/// The index each table of a window statement must be read through (the tags subquery of
/// `clicks` reads the tags table's primary key, `t`).
fn expected_index(table: &str) -> &'static str {
    match table {
        "track_click_tags" => "idx_track_click_tags_campaign_time",
        "component_interaction_logs" | "l" => "idx_cil_campaign_time",
        "i" => "uq_track_rollup_member_ids_line_id",
        _ => "PRIMARY",
    }
}

/// The tables a window statement reads (`members` names them `p` for the packs, `m` for the
/// member rows, `i` for the member numbers and `l` for the log).
const TABLES: [&str; 14] = [
    "component_interaction_logs",
    "track_click_tags",
    "track_rollup_days",
    "track_rollup_day_targets",
    "track_rollup_day_tags",
    "track_rollup_hours",
    "track_rollup_members",
    "track_rollup_targets",
    "track_rollup_tags",
    "t",
    "p",
    "m",
    "i",
    "l",
];

/// Binds for a window statement: (campaign, from, to) for the export, the rollup split of
/// `FROM`..`TO` (whole days, whole hours, two raw edges) for the others.
fn window_binds(statement: &str) -> Vec<String> {
    match parameters(statement) {
        3 => vec!["5".into(), FROM.into(), TO.into()],
        sql::ROLLED_UP_BINDS => ROLLED_UP_BINDS.iter().map(|s| s.to_string()).collect(),
        sql::MEMBERS_BINDS => MEMBERS_BINDS.iter().map(|s| s.to_string()).collect(),
        n => panic!("{n} parameters in {statement}"),
    }
}

/// How many values a `?` statement takes: a plain `?` is numbered one past the largest
/// number before it, `?N` is number N (SQLite's rule; MySQL has plain ones only).
fn parameters(statement: &str) -> usize {
    let mut largest = 0;
    for (at, _) in statement.match_indices('?') {
        let digits: String = statement[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        largest = match digits.parse::<usize>() {
            Ok(n) => largest.max(n),
            Err(_) => largest + 1,
        };
    }
    largest
}

/// `sql::ROLLED_UP_BINDS`: whole days, the whole hours around them, the raw edges.
const ROLLED_UP_BINDS: [&str; sql::ROLLED_UP_BINDS] = [
    "5", DAY_FROM, DAY_TO, "5", MID_FROM, DAY_FROM, DAY_TO, MID_TO, "5", FROM, MID_FROM, MID_TO, TO,
];

/// `Dialect::members`: packs of the whole hours, rows of the others, the raw edges.
const MEMBERS_BINDS: [&str; sql::MEMBERS_BINDS] = [
    "5", MID_FROM, MID_TO, "5", "5", "5", FROM, MID_FROM, MID_TO, TO,
];

/// 10,000 interaction-log rows over campaigns 1..=10 and 30 days, each with one tag.
async fn seed(db: &TestDb) {
    let ids: Vec<String> = (1..=10)
        .map(|id| format!("({id}, 'c{id}', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
        .collect();
    db.execute(&format!(
        "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at) VALUES {}",
        ids.join(", ")
    ))
    .await;
    let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
        UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
        UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let n = "(a.d + 10 * b.d + 100 * c.d + 1000 * e.d)";
    let (concat, at) = match db.kind {
        StoreKind::Sqlite => (
            format!("'U' || ({n} % 700)"),
            format!("datetime(1767225600 + {n} * 259, 'unixepoch')"),
        ),
        StoreKind::Mysql => (
            format!("CONCAT('U', {n} % 700)"),
            format!("FROM_UNIXTIME(1767225600 + {n} * 259)"),
        ),
        StoreKind::Postgres => (
            format!("'U' || ({n} % 700)"),
            format!("to_timestamp(1767225600 + {n} * 259) AT TIME ZONE 'UTC'"),
        ),
    };
    let uuid = match db.kind {
        StoreKind::Sqlite => format!("printf('00000000-0000-7000-8000-%012d', {n})"),
        StoreKind::Mysql => format!("CONCAT('00000000-0000-7000-8000-', LPAD({n}, 12, '0'))"),
        StoreKind::Postgres => format!("'00000000-0000-7000-8000-' || lpad({n}::text, 12, '0')"),
    };
    db.execute(&format!(
        "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, \
             interaction_value, triggered_at, click_id) \
         SELECT {concat}, 1 + {n} % 10, 'image_click', \
             'https://example.com/p', {at}, {uuid} \
         FROM {digits} a, {digits} b, {digits} c, {digits} e"
    ))
    .await;
    db.execute(
        "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at) \
         SELECT click_id, campaign_id, 'T', triggered_at FROM component_interaction_logs",
    )
    .await;
    db.cli_ok(&["migrate"]);
    match db.kind {
        StoreKind::Sqlite | StoreKind::Postgres => db.execute("ANALYZE").await,
        StoreKind::Mysql => {
            db.execute(
                "ANALYZE TABLE component_interaction_logs, track_click_tags, campaigns, \
                 track_rollup_hours, track_rollup_members, track_rollup_targets, \
                 track_rollup_tags, track_rollup_campaigns, track_rollup_days, \
                 track_rollup_day_targets, track_rollup_day_tags",
            )
            .await
        }
    }
}

const FROM: &str = "2026-01-05 00:10:00";
const MID_FROM: &str = "2026-01-05 01:00:00";
const DAY_FROM: &str = "2026-01-06 00:00:00";
const DAY_TO: &str = "2026-01-11 00:00:00";
const MID_TO: &str = "2026-01-12 00:00:00";
const TO: &str = "2026-01-12 00:20:00";

store_tests! {
    async fn stats_queries_use_their_indexes(db) {
        seed(&db).await;
        match db.kind {
            StoreKind::Mysql => check_mysql(&db).await,
            StoreKind::Sqlite => check_sqlite(&db).await,
            StoreKind::Postgres => check_postgres(&db).await,
        }
    }
}

async fn check_mysql(db: &TestDb) {
    let pool = sqlx::MySqlPool::connect(&db.url).await.expect("connect");
    for (name, statement) in sql::MYSQL.range_queries() {
        let mut query = sqlx::query(AssertSqlSafe(format!("EXPLAIN {statement}")));
        for value in window_binds(statement) {
            query = query.bind(value);
        }
        let plan = query
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {name}: {e}"));
        let rows: Vec<(String, String, String)> = plan
            .iter()
            .map(|row| {
                let text = |column: &str| {
                    row.try_get::<Option<String>, _>(column)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                };
                (text("table"), text("type"), text("key"))
            })
            .collect();
        let mut read = 0;
        for (table, kind, key) in &rows {
            if table.starts_with('<') {
                continue; // the UNION's own result
            }
            assert!(
                TABLES.contains(&table.as_str()),
                "{name} reads {table}: {rows:?}"
            );
            assert_ne!(kind, "ALL", "{name}: {rows:?}");
            assert_eq!(key, expected_index(table), "{name}: {rows:?}");
            read += 1;
        }
        assert!(read >= 2, "{name}: {rows:?}");
    }
    sqlx::query(sql::MYSQL.campaigns)
        .fetch_all(&pool)
        .await
        .expect("the campaign list runs");
    let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN {}", sql::MYSQL.campaigns)))
        .fetch_all(&pool)
        .await
        .expect("EXPLAIN campaigns");
    for row in &rows {
        let table: Option<String> = row.try_get("table").ok().flatten();
        let kind: Option<String> = row.try_get("type").ok().flatten();
        if table.as_deref() == Some("r") {
            assert_eq!(
                kind.as_deref(),
                Some("eq_ref"),
                "campaign list reads its rollup by key"
            );
        }
    }
    pool.close().await;
}

async fn check_sqlite(db: &TestDb) {
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("connect");
    for (name, statement) in sql::SQLITE.range_queries() {
        let mut query = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}")));
        for value in window_binds(statement) {
            query = query.bind(value);
        }
        let plan: Vec<String> = query
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN QUERY PLAN {name}: {e}"))
            .iter()
            .map(|row| row.try_get::<String, _>("detail").unwrap_or_default())
            .collect();
        let searched: Vec<&String> = plan.iter().filter(|l| l.starts_with("SEARCH")).collect();
        assert!(searched.len() >= 2 || name == "clicks", "{name}: {plan:?}");
        for line in &searched {
            let table = line.split_whitespace().nth(1).unwrap_or_default();
            let index = match (table, expected_index(table)) {
                // A rowid table's key is an automatic index; the numbers are found by uid.
                ("p", _) => {
                    "INDEX sqlite_autoindex_track_rollup_member_packs_1 (campaign_id=?".to_owned()
                }
                ("i", _) => {
                    "INDEX sqlite_autoindex_track_rollup_member_ids_1 (line_id=?".to_owned()
                }
                (_, "PRIMARY") => "PRIMARY KEY (campaign_id=?".to_owned(),
                (_, index) => format!("INDEX {index} (campaign_id=?"),
            };
            if table != "t" {
                assert!(line.contains(&index), "{name}: {line} in {plan:?}");
            }
            // The raw rows of a window are a time range of the index, never every row of the
            // campaign (what SQLite chose for two ranges joined by OR once the index covered
            // the query).
            if matches!(
                table,
                "component_interaction_logs" | "l" | "track_click_tags"
            ) {
                assert!(
                    line.contains("triggered_at>"),
                    "{name}: {table} is read by campaign, not by time: {line} in {plan:?}"
                );
            }
        }
        for table in TABLES {
            assert!(
                !plan
                    .iter()
                    .any(|line| line.starts_with(&format!("SCAN {table}"))),
                "{name} scans {table}: {plan:?}"
            );
        }
        if name == "clicks" {
            // Rows stream in time order; only the clicks of one second are sorted by arrival
            // (SQLite says "RIGHT PART OF ORDER BY" or "LAST 2 TERMS OF ORDER BY" for that).
            assert!(
                !plan.iter().any(|l| l == "USE TEMP B-TREE FOR ORDER BY"),
                "the export sorts the whole window: {plan:?}"
            );
            assert!(
                plan.iter()
                    .any(|l| l.starts_with("SEARCH component_interaction_logs")
                        && l.contains("triggered_at>")),
                "{plan:?}"
            );
        }
    }
    let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        sql::SQLITE.campaigns
    )))
    .fetch_all(&pool)
    .await
    .expect("EXPLAIN campaigns")
    .iter()
    .map(|row| row.try_get::<String, _>("detail").unwrap_or_default())
    .collect();
    assert!(
        plan.iter()
            .any(|l| l.starts_with("SEARCH r USING INTEGER PRIMARY KEY")),
        "{plan:?}"
    );
    pool.close().await;
}

/// PostgreSQL: on tables this small the planner rightly prefers reading them whole, so the
/// plans are taken with sequential scans disabled: a statement that still scans a table could
/// not be answered from an index at any size.
async fn check_postgres(db: &TestDb) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .expect("disable sequential scans");
    for (name, statement) in sql::POSTGRES.range_queries() {
        // PostgreSQL types its parameters: the campaign is a number.
        let typed = |values: &[&'static str]| {
            values.iter().fold(
                sqlx::query(AssertSqlSafe(format!("EXPLAIN {statement}"))),
                |q, value| match value.parse::<i64>() {
                    Ok(id) => q.bind(id),
                    Err(_) => q.bind(*value),
                },
            )
        };
        let query = if name == "members" {
            typed(&MEMBERS_BINDS)
        } else if statement.contains("$13") {
            typed(&ROLLED_UP_BINDS)
        } else {
            typed(&["5", FROM, TO])
        };
        let plan: Vec<String> = query
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {name}: {e}"))
            .iter()
            .map(|row| row.try_get::<String, _>(0).unwrap_or_default())
            .collect();
        assert!(
            !plan.iter().any(|l| l.contains("Seq Scan")),
            "{name} scans a table: {plan:#?}"
        );
        // Which index the planner takes for the raw edges depends on its statistics (the
        // seed's campaign or time index, or clicktrack's campaign-and-time one); that it
        // takes one, and an index of each rollup table, is what matters at any size.
        let indexed = plan.iter().filter(|l| l.contains("Index")).count();
        assert!(indexed >= 2 || name == "clicks", "{name}: {plan:#?}");
    }
    let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!(
        "EXPLAIN {}",
        sql::POSTGRES.campaigns
    )))
    .fetch_all(&mut conn)
    .await
    .expect("EXPLAIN campaigns")
    .iter()
    .map(|row| row.try_get::<String, _>(0).unwrap_or_default())
    .collect();
    assert!(
        !plan
            .iter()
            .any(|l| l.contains("Seq Scan on track_rollup_campaigns")),
        "{plan:#?}"
    );
}
