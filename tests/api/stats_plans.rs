//! The stats queries use their indexes: EXPLAIN (MariaDB/MySQL) and EXPLAIN QUERY PLAN
//! (SQLite) of every statement, on a table of 10,000 rows over 10 campaigns with optimizer
//! statistics, name the index each one was written for and never a full table scan.

use sqlx::{AssertSqlSafe, Row};

use crate::helpers::*;
use crate::store_tests;
use clicktrack::stats::sql;

/// The index each range statement must read (the tags subquery of `clicks` reads the tags
/// table's primary key).
fn expected_index(statement: &str) -> &'static str {
    match statement {
        "members" => "idx_cil_campaign_member",
        "tags" => "idx_track_click_tags_campaign_time",
        _ => "idx_cil_campaign_time",
    }
}

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
    };
    let uuid = match db.kind {
        StoreKind::Sqlite => format!("printf('00000000-0000-7000-8000-%012d', {n})"),
        StoreKind::Mysql => format!("CONCAT('00000000-0000-7000-8000-', LPAD({n}, 12, '0'))"),
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
    match db.kind {
        StoreKind::Sqlite => db.execute("ANALYZE").await,
        StoreKind::Mysql => {
            db.execute("ANALYZE TABLE component_interaction_logs, track_click_tags, campaigns")
                .await
        }
    }
}

const FROM: &str = "2026-01-05 00:00:00";
const TO: &str = "2026-01-12 00:00:00";

store_tests! {
    async fn stats_queries_use_their_indexes(db) {
        seed(&db).await;
        match db.kind {
            StoreKind::Mysql => check_mysql(&db).await,
            StoreKind::Sqlite => check_sqlite(&db).await,
        }
    }
}

async fn check_mysql(db: &TestDb) {
    let pool = sqlx::MySqlPool::connect(&db.url).await.expect("connect");
    for (name, statement) in sql::MYSQL.range_queries() {
        let plan = sqlx::query(AssertSqlSafe(format!("EXPLAIN {statement}")))
            .bind(5_i64)
            .bind(FROM)
            .bind(TO)
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
        let outer = &rows[0];
        assert_eq!(outer.2, expected_index(name), "{name}: {rows:?}");
        assert_ne!(outer.1, "ALL", "{name}: {rows:?}");
        for (table, kind, key) in &rows[1..] {
            assert_eq!(
                (table.as_str(), kind.as_str(), key.as_str()),
                ("t", "ref", "PRIMARY"),
                "{name}: {rows:?}"
            );
        }
    }
    sqlx::query(sql::MYSQL.campaigns)
        .fetch_all(&pool)
        .await
        .expect("the campaign list runs");
    let rows = sqlx::query(AssertSqlSafe(format!(
        "EXPLAIN {}",
        sql::MYSQL.members_per_campaign
    )))
    .fetch_all(&pool)
    .await
    .expect("EXPLAIN members_per_campaign");
    let key: Option<String> = rows[0].try_get("key").ok().flatten();
    assert_eq!(key.as_deref(), Some("idx_cil_campaign_member"));
    let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN {}", sql::MYSQL.campaigns)))
        .fetch_all(&pool)
        .await
        .expect("EXPLAIN campaigns");
    for row in &rows {
        let table: Option<String> = row.try_get("table").ok().flatten();
        let kind: Option<String> = row.try_get("type").ok().flatten();
        if table.as_deref() == Some("l") {
            assert_ne!(
                kind.as_deref(),
                Some("ALL"),
                "campaign list subquery scans the table"
            );
        }
    }
    pool.close().await;
}

async fn check_sqlite(db: &TestDb) {
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("connect");
    for (name, statement) in sql::SQLITE.range_queries() {
        let plan: Vec<String> =
            sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}")))
                .bind(5_i64)
                .bind(FROM)
                .bind(TO)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("EXPLAIN QUERY PLAN {name}: {e}"))
                .iter()
                .map(|row| row.try_get::<String, _>("detail").unwrap_or_default())
                .collect();
        let expected = format!("INDEX {} (campaign_id=?", expected_index(name));
        assert!(
            plan.iter()
                .any(|line| line.starts_with("SEARCH") && line.contains(&expected)),
            "{name}: {plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|line| line.starts_with("SCAN component_interaction_logs")
                    || line.starts_with("SCAN track_click_tags")),
            "{name}: {plan:?}"
        );
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
        !plan
            .iter()
            .any(|l| l.starts_with("SCAN l") && !l.contains("INDEX")),
        "{plan:?}"
    );
    pool.close().await;
}
