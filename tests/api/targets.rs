//! The redirect policy at the HTTP edge: bad targets get a 400 page and no `Location`, and
//! nothing is recorded; HEAD is redirected but not recorded; listeners serve what they should.

use crate::helpers::{TestApp, TestDb, metric};

#[tokio::test]
async fn bad_targets_get_400_without_location_and_nothing_is_recorded() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    let long = format!("https%3A%2F%2Fexample.com%2F{}", "a".repeat(3 * 1024));
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "missing"),
        ("to=".into(), "missing"),
        ("to=javascript%3Aalert(1)".into(), "not_http"),
        ("to=javascript:alert(document.cookie)".into(), "not_http"),
        ("to=%2F%2Fevil.com".into(), "not_http"),
        ("to=//evil.com/".into(), "not_http"),
        ("to=https%3A%2F%2Fallowed.com%40evil.com".into(), "userinfo"),
        (
            "to=https%3A%2F%2Fexample.com%40evil.com%2F".into(),
            "userinfo",
        ),
        ("to=https%3A%2F%2Fevil.com%2F".into(), "host_not_allowed"),
        (
            "to=https%3A%2F%2Fexample.com.evil.com%2F".into(),
            "host_not_allowed",
        ),
        (
            "to=https%3A%2F%2Fexample.com%2F%0D%0ASet-Cookie%3A%20a%3Db".into(),
            "control_character",
        ),
        (
            "to=https%3A%2F%2Fexample.com%2F%0A".into(),
            "control_character",
        ),
        (
            "to=https%3A%2F%2Fexample.com%2F%00".into(),
            "control_character",
        ),
        (format!("to={long}"), "too_long"),
        (
            "to=https%3A%2F%2Fexample.com%2F%FF%FE".into(),
            "bad_encoding",
        ),
        (
            "to=https%3A%2F%2Fexample.com%2F%C3%28".into(),
            "bad_encoding",
        ),
        (
            "to=https%3A%2F%2Fexample.com%2Fa&to=https%3A%2F%2Fevil.com%2F".into(),
            "repeated",
        ),
        ("to=ftp%3A%2F%2Fexample.com%2F".into(), "not_http"),
    ];
    for (target, _) in &cases {
        let resp = app.track(&format!("cid=123&uid=U1&{target}")).await;
        assert_eq!(resp.status(), 400, "{target}");
        assert!(resp.headers().get("location").is_none(), "{target}");
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        let body = resp.text().await.expect("body");
        assert!(body.contains("This link cannot be opened"), "{body}");
        // The reason is a sentence: "<p>The target ...", never "<p>the target ...".
        assert!(body.contains("<p>The "), "{body}");
        assert!(
            !body.contains("evil"),
            "the page must not echo the input: {body}"
        );
    }
    assert_eq!(db.count("component_interaction_logs").await, 0);
    assert_eq!(db.count("track_rejects").await, 0);
    assert_eq!(db.campaign_clicks_total().await, 0);

    let m = app.metrics().await;
    let mut by_reason = std::collections::BTreeMap::<&str, f64>::new();
    for (_, reason) in &cases {
        *by_reason.entry(reason).or_default() += 1.0;
    }
    for (reason, n) in by_reason {
        assert_eq!(
            metric(
                &m,
                &format!("track_refused_targets_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn subdomain_rules_and_idn_hosts() {
    let db = TestDb::sqlite().await;
    let app = TestApp::on(&db)
        .own_policy()
        .args(&["--allow-host", "*.hotel.example,bücher.example"])
        .start();
    let ok = [
        (
            "https%3A%2F%2Fwww.hotel.example%2Fbook",
            "https://www.hotel.example/book",
        ),
        (
            "https%3A%2F%2FB%C3%9CCHER.example%2F",
            "https://xn--bcher-kva.example/",
        ),
    ];
    for (to, location) in ok {
        let resp = app.track(&format!("cid=123&to={to}")).await;
        assert_eq!(resp.status(), 302, "{to}");
        assert_eq!(resp.headers()["location"], location);
    }
    for to in [
        "https%3A%2F%2Fhotel.example%2F",
        "https%3A%2F%2Fexample.com%2F",
    ] {
        assert_eq!(
            app.track(&format!("cid=123&to={to}")).await.status(),
            400,
            "{to}"
        );
    }
}

#[tokio::test]
async fn without_any_policy_every_redirect_is_refused_with_a_warning() {
    let db = TestDb::sqlite().await;
    let app = TestApp::on(&db).own_policy().args(&[]).start();
    let resp = app.track("cid=123&to=https%3A%2F%2Fexample.com%2F").await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    assert!(
        app.logs().contains("every redirect will be refused"),
        "{}",
        app.logs()
    );
}

#[tokio::test]
async fn allow_any_target_redirects_anywhere_http_and_warns() {
    let db = TestDb::sqlite().await;
    let app = TestApp::on(&db)
        .own_policy()
        .args(&["--allow-any-target"])
        .start();
    let resp = app
        .track("cid=123&to=https%3A%2F%2Fanywhere.example%2F")
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        app.track("cid=123&to=javascript%3Aalert(1)").await.status(),
        400
    );
    assert!(app.logs().contains("open redirect"), "{}", app.logs());
}

#[tokio::test]
async fn head_is_redirected_but_not_recorded() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    let resp = app
        .client
        .head(app.url("/__track?cid=123&uid=UHEAD&to=https%3A%2F%2Fexample.com%2F"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://example.com/");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(db.count("component_interaction_logs").await, 0);
    assert_eq!(db.campaign_clicks(123).await, 0);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"track_requests_total{interaction_type="none",status="head"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn listeners_serve_health_everywhere_and_metrics_only_on_admin() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    for base in [app.addr, app.admin_addr] {
        for path in ["/healthz", "/readyz"] {
            let resp = app
                .client
                .get(format!("http://{base}{path}"))
                .send()
                .await
                .expect("get");
            assert_eq!(resp.status(), 200, "{base}{path}");
        }
    }
    let public_metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("get");
    assert_eq!(public_metrics.status(), 404);
    let m = app.metrics().await;
    // Present from start-up, before any event.
    for series in [
        r#"track_requests_total{interaction_type="button_url",status="redirected"}"#,
        r#"track_errors_total{operation="write_batch",error_type="unavailable"}"#,
        r#"track_rejects_total{reason="unknown_campaign"}"#,
        "track_queue_depth",
        "track_store_ready",
        "track_spool_ready",
        "track_spool_depth",
        r#"track_spooled_total{reason="overflow"}"#,
        r#"track_spool_replayed_total{outcome="already_recorded"}"#,
        r#"track_errors_total{operation="spool",error_type="disk_full"}"#,
        r#"track_requests_total{interaction_type="flex_click",status="spooled"}"#,
    ] {
        let want = if series.ends_with("_ready") { 1.0 } else { 0.0 };
        assert_eq!(metric(&m, series), want, "{series}");
    }
}

// Spellings of one target are one target: the log, the message row and the statistics hold
// where the browser was sent (the `Location`), not the link's spelling of it; a backslash the
// browser reads as a slash is recorded as the slash it became.
#[tokio::test]
async fn targets_are_recorded_as_the_browser_was_sent() {
    use crate::stats::{TOKEN, admin_json};
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    let spellings = [
        ("U1", "https%3A%2F%2FEXAMPLE.COM%2Fx"),
        ("U2", "https%3A%2F%2Fexample.com%2Fx"),
        ("U3", "https%3A%2F%2Fexample.com%2F..%2F..%2Fx"),
        ("U4", "https%3A%2F%2Fexample.com%5C%40evil.com"),
    ];
    for (uid, to) in spellings {
        let resp = app.track(&format!("cid=123&uid={uid}&to={to}")).await;
        assert_eq!(resp.status(), 302, "{to}");
    }
    app.settled().await;
    for uid in ["U1", "U2", "U3"] {
        assert_eq!(db.interaction(uid).await[0].2, "https://example.com/x");
        assert!(
            db.messages_of(uid).await[0].contains(r#""target":"https://example.com/x""#),
            "{:?}",
            db.messages_of(uid).await
        );
    }
    assert_eq!(
        db.interaction("U4").await[0].2,
        "https://example.com/@evil.com"
    );
    let stats = admin_json(&app, "/api/campaigns/123/stats").await;
    let targets: Vec<(String, i64)> = stats["top_targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_owned(),
                t["clicks"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("https://example.com/x".to_owned(), 3),
            ("https://example.com/@evil.com".to_owned(), 1)
        ]
    );
}
