//! Retention: `clicktrack purge --before` and `serve --log-retention` delete old raw rows
//! (interaction log, per-click tags, rejects) in small steps while the statistics of the purged
//! period stay exactly what they were, and the CSV export says which period it can no longer
//! list.

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::helpers::*;
use crate::rollups::{Mix, connect, insert_raw_rows, rfc3339, write_twice};
use crate::stats::{TOKEN, admin_get};
use clicktrack::store::db_time;

/// Rows before this are purged by hand (the clicks span August to October 2026).
const HORIZON: OffsetDateTime = datetime!(2026-09-15 00:00:00 UTC);

async fn stats(app: &TestApp, from: OffsetDateTime, to: OffsetDateTime, bucket: &str) -> Value {
    let path = format!(
        "/api/campaigns/123/stats?from={}&to={}&bucket={bucket}",
        rfc3339(from),
        rfc3339(to)
    );
    let (status, body) = admin_get(app, &path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// What must not change when raw rows go: every figure but the purge note.
fn figures(mut stats: Value) -> Value {
    stats
        .as_object_mut()
        .expect("object")
        .remove("log_purged_before");
    stats
}

async fn older_than(db: &TestDb, table: &str, column: &str, t: OffsetDateTime) -> i64 {
    let pool = db.pool().await;
    let n: i64 = sqlx::query_scalar(db.sql(&format!(
        "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM {table} WHERE {column} < '{}'",
        db_time(t)
    )))
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    n
}

crate::store_tests! {
async fn a_purge_leaves_rows_that_are_not_rolled_up_yet(db) {
    // Rows another program inserts (no click_id) after a purge brought the rollups up to
    // date, e.g. the Flask route replaying old clicks during a cut-over.
    let mut mix = Mix::new(5);
    insert_raw_rows(&db, &mut mix, 60, false).await;
    let old = older_than(&db, "component_interaction_logs", "triggered_at", HORIZON).await;
    assert!(old > 0, "the mix spans the horizon");
    let store = connect(&db).await;
    let horizon = db_time(HORIZON);
    let step = store.purge_step(&horizon, 1_000).await.expect("purge step");
    assert_eq!(step.logs, 0, "rows outside the rollups must wait");
    assert_eq!(
        older_than(&db, "component_interaction_logs", "triggered_at", HORIZON).await,
        old
    );
    // Once rolled up they go, and the rollups keep their counts.
    let rolled = store.backfill_step(1_000).await.expect("backfill step");
    assert_eq!(rolled.foreign_rows, 60);
    let step = store.purge_step(&horizon, 1_000).await.expect("purge step");
    assert_eq!(i64::try_from(step.logs).expect("count"), old);
    store.close().await;
    let pool = db.pool().await;
    let clicks: i64 = sqlx::query_scalar(db.sql(
        "SELECT CAST(COALESCE(SUM(clicks), 0) AS SIGNED INTEGER) FROM track_rollup_hours",
    ))
    .fetch_one(&pool)
    .await
    .expect("rollup clicks");
    assert_eq!(clicks, 60);
    pool.close().await;
}

async fn purged_rows_leave_the_statistics_exactly_as_they_were(db) {
    let mut mix = Mix::new(11);
    let store = connect(&db).await;
    for _ in 0..10 {
        let batch: Vec<_> = (0..100).map(|_| mix.record()).collect();
        write_twice(&store, &batch).await;
    }
    store.close().await;
    insert_raw_rows(&db, &mut mix, 100, false).await;
    let mut app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    wait_until(&app, "the old endpoint's rows are rolled up", async || {
        app.metric(r#"track_rollup_backfilled_rows_total{source="foreign"}"#).await == 100.0
    })
    .await;

    // Windows before, across and after the horizon (whole hours before it).
    let windows = [
        (datetime!(2026-08-01 00:00 UTC), datetime!(2026-11-01 00:00 UTC), "day"),
        (datetime!(2026-08-03 05:00 UTC), datetime!(2026-08-04 19:00 UTC), "hour"),
        (datetime!(2026-09-10 07:00 UTC), datetime!(2026-09-20 10:11:12 UTC), "day"),
        (datetime!(2026-09-20 10:11:12 UTC), datetime!(2026-10-02 03:04:05 UTC), "day"),
    ];
    let mut before = Vec::new();
    for (from, to, bucket) in windows {
        before.push(figures(stats(&app, from, to, bucket).await));
    }
    // A window whose edges are not whole hours, before the horizon: after the purge it is
    // counted over whole hours, as the rollups hold them.
    let ragged = (datetime!(2026-08-20 10:15 UTC), datetime!(2026-08-21 12:30 UTC));
    let widened = figures(
        stats(&app, datetime!(2026-08-20 10:00 UTC), datetime!(2026-08-21 13:00 UTC), "hour").await,
    );
    let (_, campaigns_before) = admin_get(&app, "/api/campaigns").await;

    let logs = older_than(&db, "component_interaction_logs", "triggered_at", HORIZON).await;
    let tags = older_than(&db, "track_click_tags", "triggered_at", HORIZON).await;
    let rejects = older_than(&db, "track_rejects", "received_at", HORIZON).await;
    assert!(logs > 100 && tags > 0 && rejects > 0, "{logs} {tags} {rejects}");
    let kept = db.count("component_interaction_logs").await - logs;

    let dry = db.cli_ok(&["purge", "--before", "2026-09-15", "--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains(&format!(
            "would delete {logs} interaction log rows, {tags} click tags and {rejects} rejects \
             older than 2026-09-15 00:00:00 UTC"
        )),
        "{said}"
    );
    assert_eq!(older_than(&db, "component_interaction_logs", "triggered_at", HORIZON).await, logs);

    // The real purge, while clicktrack serves.
    let out = db.cli_ok(&["purge", "--before", "2026-09-15"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("deleted {logs} interaction log rows, {tags} click tags and {rejects} rejects")),
        "{said}"
    );
    assert_eq!(older_than(&db, "component_interaction_logs", "triggered_at", HORIZON).await, 0);
    assert_eq!(older_than(&db, "track_click_tags", "triggered_at", HORIZON).await, 0);
    assert_eq!(older_than(&db, "track_rejects", "received_at", HORIZON).await, 0);
    assert_eq!(db.count("component_interaction_logs").await, kept, "newer rows are kept");
    for ((from, to, bucket), expected) in windows.into_iter().zip(&before) {
        let now = stats(&app, from, to, bucket).await;
        assert_eq!(now["log_purged_before"], "2026-09-15T00:00:00Z");
        assert_eq!(&figures(now), expected, "{from} .. {to}");
    }
    let ragged_now = stats(&app, ragged.0, ragged.1, "hour").await;
    assert_eq!(ragged_now["from"], "2026-08-20T10:00:00Z", "widened to whole hours");
    assert_eq!(figures(ragged_now), widened);
    let (_, campaigns_after) = admin_get(&app, "/api/campaigns").await;
    assert_eq!(campaigns_after, campaigns_before);

    // The export says which period it can no longer list.
    let response = app
        .client
        .get(format!(
            "http://{}/api/campaigns/123/clicks.csv?from=2026-09-01&to=2026-10-01",
            app.admin_addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("export");
    assert_eq!(
        response.headers().get("clicktrack-log-purged-before").and_then(|v| v.to_str().ok()),
        Some("2026-09-15T00:00:00Z")
    );
    let csv = response.text().await.expect("body");
    assert!(csv.lines().skip(1).all(|l| l.contains(",2026-09-") || l.contains(",2026-10-")), "{csv}");
    app.terminate();

    // serve --log-retention purges on its own, at start and every hour.
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(45);
    let app = TestApp::spawn(&db, &["--admin-token", TOKEN, "--log-retention", "45d"]);
    wait_until(&app, "--log-retention purges", async || {
        app.metric(r#"track_purged_rows_total{table="component_interaction_logs"}"#).await > 0.0
    })
    .await;
    assert_eq!(
        older_than(&db, "component_interaction_logs", "triggered_at", cutoff - time::Duration::minutes(5)).await,
        0
    );
    let (status, body) = admin_get(&app, "/api/campaigns/123/stats?from=2026-08-01&to=2026-11-01&bucket=day").await;
    assert_eq!(status, 200, "{body}");
    let whole: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(figures(whole), before[0], "still exact after the second purge");
}
}

#[test]
fn a_purge_into_the_future_or_a_short_retention_is_refused() {
    let out = std::process::Command::new(BIN)
        .args([
            "purge",
            "--before",
            "2999-01-01",
            "--database-url",
            "sqlite:///nonexistent/x.db",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--before"));
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--log-retention",
            "30m",
            "--database-url",
            "sqlite:///nonexistent/x.db",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-retention"));
}
