//! `/readyz` tells the truth about the store, and a click that waited out a stuck store is
//! still redirected in bounded time and written once the store is back.

use std::time::{Duration, Instant};

use crate::helpers::{TestApp, link, metric};

async fn wait_for_readyz(app: &TestApp, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status()
            .as_u16();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status}, wanted {want}:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

crate::store_tests! {
async fn a_store_that_refuses_writes_makes_readyz_fail_and_clicks_wait_it_out(db) {
    let app = TestApp::spawn(&db, &["--ack-timeout-ms", "300"]);
    wait_for_readyz(&app, 200).await;

    // Another process holds a lock the writer needs: the store does not accept writes.
    let blocker = db.block_writes().await;

    let started = Instant::now();
    let resp = app.track(link(123, "U_LATE", 9, "L")).await;
    assert_eq!(resp.status(), 302, "the person is redirected anyway");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by --ack-timeout-ms"
    );
    wait_for_readyz(&app, 503).await;
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"track_errors_total{operation="ack",error_type="timeout"}"#
        ),
        1.0
    );
    assert_eq!(metric(&m, "track_store_ready"), 0.0);

    // The lock goes away: the waiting batch is retried and written, readiness comes back.
    blocker.release().await;
    wait_for_readyz(&app, 200).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.summary("U_LATE", 9).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "late click never written:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(db.summary("U_LATE", 9).await, Some((1, Some("L".into()))));
    assert_eq!(db.campaign_clicks(123).await, 1);
    let m = app.metrics().await;
    let retries = format!("track_batch_retries_total{{code=\"{}\"}}", db.lock_timeout_code());
    assert!(metric(&m, &retries) >= 1.0, "lock retries counted");
    assert_eq!(
        metric(
            &m,
            r#"track_requests_total{interaction_type="image_click",status="not_durable"}"#
        ),
        1.0
    );
}
}
