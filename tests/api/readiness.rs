//! `/readyz` tells the truth, and with `--ack store` a store that stops taking writes costs a
//! click one spill delay: it goes to the journal, is redirected, and is applied once the store
//! is back. (With `--ack journal` it costs nothing: see `journal.rs`.)

use std::time::{Duration, Instant};

use crate::helpers::{TestApp, link, metric, wait_until};

/// Poll `/readyz` until it answers `want`; its body.
pub async fn wait_for_readyz(app: &TestApp, want: u16) -> String {
    let mut body = String::new();
    wait_until(app, &format!("/readyz answers {want}"), async || {
        let resp = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        let status = resp.status().as_u16();
        body = resp.text().await.expect("readyz body");
        status == want
    })
    .await;
    body
}

crate::store_tests! {
async fn a_store_that_refuses_writes_sends_clicks_to_the_spool_until_it_is_back(db) {
    let app = TestApp::spawn(
        &db,
        &["--ack", "store", "--spill-after-ms", "300", "--ack-timeout-ms", "5000"],
    );
    wait_for_readyz(&app, 200).await;

    // Another process holds a lock the writer needs: the store does not accept writes.
    let blocker = db.block_writes().await;

    let started = Instant::now();
    let resp = app.track(link(123, "U_LATE", 9, "L")).await;
    assert_eq!(resp.status(), 302, "the person is redirected anyway");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by --spill-after-ms, not by the database's lock timeout ({:?})",
        started.elapsed()
    );
    // The store is blocked on purpose: read the metrics as they are, not once applied.
    let m = app.metrics_now().await;
    assert_eq!(
        metric(&m, r#"track_requests_total{interaction_type="image_click",status="spooled"}"#),
        1.0
    );
    assert_eq!(metric(&m, r#"track_spooled_total{reason="store_unavailable"}"#), 1.0);
    assert_eq!(metric(&m, "track_spool_depth"), 1.0);
    assert_eq!(metric(&m, "track_store_ready"), 0.0);
    assert!(
        metric(&m, r#"track_errors_total{operation="write_batch",error_type="timeout"}"#) >= 1.0,
        "the stuck attempt is counted"
    );
    // The click is safe in the spool, so the instance stays in the load balancer.
    let body = wait_for_readyz(&app, 200).await;
    assert!(body.contains("store: down") && body.contains("journal: ok"), "{body}\n{}", app.logs());

    // Keep the store stalled for over a second (sqlx's own slow-statement threshold): the
    // stuck statement must not add sqlx's multi-line warning to the logs when it finishes.
    wait_until(&app, "the stall has lasted a while", async || {
        let m = app.metrics_now().await;
        metric(&m, "track_journal_apply_lag_seconds") >= 1.5
    })
    .await;
    // The lock goes away: the spool is replayed, the store is ready again.
    blocker.release().await;
    wait_until(&app, "the spooled click is replayed", async || {
        db.summary("U_LATE", 9).await.is_some()
    })
    .await;
    assert_eq!(db.summary("U_LATE", 9).await, Some((1, Some("L".into()))));
    assert_eq!(db.campaign_clicks(123).await, 1);
    assert_eq!(db.count("component_interaction_logs").await, 1);
    wait_until(&app, "the spool is empty", async || {
        metric(&app.metrics().await, "track_spool_depth") == 0.0
    })
    .await;
    let m = app.metrics().await;
    // The stuck attempt was left to finish: once the lock went, it may have committed the
    // click itself, and the replay then found it there. Either way it counts once (above).
    assert_eq!(
        metric(&m, r#"track_spool_replayed_total{outcome="recorded"}"#)
            + metric(&m, r#"track_spool_replayed_total{outcome="already_recorded"}"#),
        1.0
    );
    assert_eq!(metric(&m, "track_store_ready"), 1.0);
    // One failed attempt, one error. Every attempt here may use the whole budget (300 ms,
    // under the 1 s attempt limit), so a timeout leaves no time to retry: it is handed back
    // ("batch not written"), counted once, and is no retry (it was once counted as a retry
    // it never got, and then again when handed back).
    let handed_back = app
        .log_lines()
        .iter()
        .filter(|l| l["message"] == "batch not written after retries" && l["kind"] == "timeout")
        .count() as f64;
    assert!(handed_back >= 1.0, "{}", app.logs());
    assert_eq!(
        metric(&m, r#"track_errors_total{operation="write_batch",error_type="timeout"}"#),
        handed_back,
        "{}",
        app.logs()
    );
    assert_eq!(
        metric(&m, r#"track_batch_retries_total{code="timeout"}"#),
        0.0,
        "no retry was made after a timeout"
    );
    let body = wait_for_readyz(&app, 200).await;
    assert!(body.contains("store: ok"), "{body}");

    // And the next click goes straight to the store.
    assert_eq!(app.track(link(123, "U_NEXT", 9, "N")).await.status(), 302);
    assert_eq!(db.summary("U_NEXT", 9).await, Some((1, Some("N".into()))));
    // clicktrack's own lines only: one per event, none of sqlx's statement dumps.
    for line in app.log_lines() {
        let target = line["target"].as_str().unwrap_or_default();
        assert!(!target.starts_with("sqlx"), "{line}");
    }
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_says_what_it_serves_and_the_public_one_does_not() {
    let db = crate::helpers::TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    let index = app
        .client
        .get(format!("http://{}/", app.admin_addr))
        .send()
        .await
        .expect("admin /");
    assert_eq!(index.status(), 200);
    let body = index.text().await.expect("body");
    for path in ["/dashboard", "/metrics", "/api/", "/readyz"] {
        assert!(body.contains(path), "{body}");
    }
    let public = app.client.get(app.url("/")).send().await.expect("public /");
    assert_eq!(public.status(), 404);
}
