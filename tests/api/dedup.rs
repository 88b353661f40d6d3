//! De-duplication (SPEC §3, last row): a repeat of the same click within the window is
//! redirected but counted once, within one instance, across instances sharing Redis, and when
//! Redis goes away mid-test.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::{TestApp, TestDb, link, metric, redis_prefix, test_redis, wait_until};
use crate::proxy::CutProxy;

const ANONYMOUS: &str = "cid=123&type=image_click&to=https%3A%2F%2Fexample.com%2Fanon";

async fn get(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = app.client.get(app.url(&format!("/__track?{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request").status().as_u16()
}

// Twenty copies of one tap at once: one click. The other clicks around it are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_the_same_click_is_recorded_once() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--dedup-window-ms", "60000"]);
    let tap = link(123, "U_TAP", 1, "A");
    let statuses = join_all((0..20).map(|_| app.track(&tap))).await;
    assert!(statuses.iter().all(|r| r.status() == 302));
    // Anything that differs is another click: tag, source, member, type.
    for other in [
        link(123, "U_TAP", 1, "B"),
        link(123, "U_TAP", 2, "A"),
        link(123, "U_OTHER", 1, "A"),
        link(123, "U_TAP", 1, "A").replace("type=image_click", "type=button_url"),
    ] {
        assert_eq!(app.track(&other).await.status(), 302);
    }
    assert_eq!(db.count("component_interaction_logs").await, 5);
    assert_eq!(db.campaign_clicks(123).await, 5);
    assert_eq!(db.summary("U_TAP", 1).await.map(|s| s.0), Some(3));
    let m = app.metrics().await;
    assert_eq!(metric(&m, "track_duplicates_total"), 19.0);
    assert_eq!(
        metric(
            &m,
            r#"track_requests_total{interaction_type="image_click",status="duplicate"}"#
        ),
        19.0
    );
    assert_eq!(metric(&m, "track_clicks_recorded_total"), 5.0);
}

// The window runs from the first click and is not extended by repeats; there are no fixed
// buckets, so two taps close together always count once, wherever they fall in time. The
// margins are seconds, not milliseconds: a loaded 2-core machine cannot break them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_starts_at_the_first_click_without_buckets() {
    const WINDOW_MS: u64 = 4000;
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--dedup-window-ms", &WINDOW_MS.to_string()]);
    // 20 double taps 50 ms apart across a boundary of the clock's WINDOW_MS-long buckets
    // (aligned to the Unix epoch, as a bucketed key would be): with buckets each pair would
    // count twice; from the first click, once.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64
    };
    let to_boundary = WINDOW_MS - now_ms() % WINDOW_MS;
    tokio::time::sleep(Duration::from_millis(
        (to_boundary + WINDOW_MS - 25) % WINDOW_MS,
    ))
    .await;
    let pairs = (0..20).map(|i| {
        let app = &app;
        async move {
            let tap = link(123, &format!("U_PAIR_{i}"), 1, "T");
            let first = app.track(&tap).await.status();
            tokio::time::sleep(Duration::from_millis(50)).await;
            (first, app.track(&tap).await.status())
        }
    });
    for (a, b) in join_all(pairs).await {
        assert_eq!((a.as_u16(), b.as_u16()), (302, 302));
    }
    assert_eq!(db.count("component_interaction_logs").await, 20);

    // Repeats do not extend the window: a tap, a repeat inside it (1.5 s later), then one
    // after the first one's window has ended (5 s after it) is a new click, though it is
    // within a window of the repeat.
    let tap = link(123, "U_WINDOW", 1, "T");
    let first = Instant::now();
    assert_eq!(app.track(&tap).await.status(), 302);
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(first.elapsed())).await;
    assert_eq!(app.track(&tap).await.status(), 302);
    tokio::time::sleep(Duration::from_millis(5000).saturating_sub(first.elapsed())).await;
    assert_eq!(app.track(&tap).await.status(), 302);
    assert_eq!(db.summary("U_WINDOW", 1).await.map(|s| s.0), Some(2));
    assert_eq!(app.metric("track_duplicates_total").await, 21.0);
}

// Without a uid, the client address and User-Agent say who clicked; X-Forwarded-For counts
// only when the peer is a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clicks_are_told_apart_by_address_and_user_agent() {
    let db = TestDb::sqlite().await;
    let direct = TestApp::spawn(&db, &["--dedup-window-ms", "60000"]);
    let ua2 = (
        "user-agent",
        "Mozilla/5.0 (Linux; Android 14) Chrome/124.0 Mobile Safari/537.36",
    );
    // Same peer, forged X-Forwarded-For: the same client.
    for xff in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(
            get(&direct, ANONYMOUS, &[("x-forwarded-for", xff)]).await,
            302
        );
    }
    // Another browser on the same address: another person.
    assert_eq!(get(&direct, ANONYMOUS, &[ua2]).await, 302);
    assert_eq!(db.count("component_interaction_logs").await, 2);
    drop(direct);

    let behind_proxy = TestApp::spawn(
        &db,
        &[
            "--dedup-window-ms",
            "60000",
            "--trusted-proxy",
            "127.0.0.0/8",
        ],
    );
    for xff in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.1",
        "6.6.6.6, 198.51.100.2",
    ] {
        assert_eq!(
            get(&behind_proxy, ANONYMOUS, &[("x-forwarded-for", xff)]).await,
            302
        );
    }
    // Two clients (the forged 6.6.6.6 is ignored: only the hop our proxy added counts).
    assert_eq!(db.count("component_interaction_logs").await, 4);
    assert_eq!(behind_proxy.metric("track_duplicates_total").await, 2.0);
}

crate::store_tests! {
// Two instances sharing a database and a Redis: every tap is sent to both at once, as a
// retry through another load-balancer path would be. Each counts once.
async fn a_double_tap_sent_to_two_instances_counts_once(db) {
    let Some(redis) = test_redis().await else { return };
    let prefix = redis_prefix();
    let args = [
        "--dedup-window-ms", "60000",
        "--redis-url", &format!("redis://{redis}"),
        "--redis-key-prefix", &prefix,
        // What is tested is the shared decision, not the fallback: on a loaded CI machine a
        // Redis answer can take longer than the 50 ms default, and the local cache of each
        // instance would then decide alone (counted, and tested in the Redis-cut test).
        "--redis-timeout-ms", "2000",
    ];
    let a = TestApp::spawn(&db, &args);
    // One journal per process.
    let b_journal = db.journal_path("b");
    let b = TestApp::spawn(&db, &[&args[..], &["--spool-path", &b_journal]].concat());
    let taps = (0..30).map(|i| link(123, &format!("U_TWO_{i}"), 1, "T")).collect::<Vec<_>>();
    let sent = taps.iter().flat_map(|tap| [a.track(tap), b.track(tap)]);
    let statuses = join_all(sent).await;
    assert!(statuses.iter().all(|r| r.status() == 302));
    assert_eq!(db.count("component_interaction_logs").await, 30);
    assert_eq!(db.campaign_clicks(123).await, 30);
    let duplicates = a.metric("track_duplicates_total").await + b.metric("track_duplicates_total").await;
    assert_eq!(duplicates, 30.0);
    for app in [&a, &b] {
        assert_eq!(app.metric("track_dedup_redis_ready").await, 1.0);
        assert_eq!(app.metric("track_dedup_fallbacks_total").await, 0.0);
    }
}
}

// Redis going away mid-test: clicks are still redirected and recorded, repeats to the same
// instance are still caught by its own cache, the fallback is counted and logged once; when
// Redis is back, it is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_stops_the_local_cache_takes_over() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let proxy = CutProxy::start("127.0.0.1:0".parse().expect("addr"), redis)
        .await
        .expect("proxy");
    let prefix = redis_prefix();
    let app = TestApp::spawn(
        &db,
        &[
            "--dedup-window-ms",
            "60000",
            "--redis-url",
            &format!("redis://{}", proxy.addr),
            "--redis-key-prefix",
            &prefix,
        ],
    );
    assert_eq!(app.track(link(123, "U_BEFORE", 1, "T")).await.status(), 302);
    assert_eq!(app.metric("track_dedup_redis_ready").await, 1.0);

    proxy.cut();
    for i in 0..10 {
        let tap = link(123, &format!("U_DURING_{i}"), 1, "T");
        assert_eq!(app.track(&tap).await.status(), 302);
        assert_eq!(app.track(&tap).await.status(), 302, "the repeat");
    }
    assert_eq!(db.count("component_interaction_logs").await, 11);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "track_dedup_redis_ready"), 0.0);
    assert_eq!(metric(&m, "track_duplicates_total"), 10.0);
    assert!(metric(&m, "track_dedup_fallbacks_total") >= 10.0);
    let failures = metric(
        &m,
        r#"track_errors_total{operation="dedup",error_type="unavailable"}"#,
    ) + metric(
        &m,
        r#"track_errors_total{operation="dedup",error_type="timeout"}"#,
    );
    assert!(failures >= 1.0, "the failure is counted");
    let outage_lines = app
        .log_lines()
        .iter()
        .filter(|l| l["operation"] == "dedup" && l["level"] == "ERROR")
        .count();
    assert_eq!(outage_lines, 1, "one line per outage:\n{}", app.logs());

    proxy.restore();
    let mut i = 0;
    wait_until(&app, "Redis is used again", async || {
        i += 1;
        app.track(link(123, &format!("U_AFTER_{i}"), 1, "T")).await;
        app.metric("track_dedup_redis_ready").await == 1.0
    })
    .await;
    assert_eq!(db.count("component_interaction_logs").await, 11 + i);
}
