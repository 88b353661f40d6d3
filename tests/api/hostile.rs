//! Hostile input through the real server: random and malicious query strings never get a 5xx,
//! never a `Location` off the allow-list, never a header we did not mean to send; every 302
//! leaves exactly one record (a click or a reject); overlong request lines get 414 (431 past
//! the HTTP parser's buffer) without being parsed. Bots get the redirect and are not recorded.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, TestDb, metric, wait_until};

/// Response headers clicktrack may send on `/__track`.
const EXPECTED_HEADERS: &[&str] = &[
    "location",
    "cache-control",
    "content-type",
    "content-length",
    "x-content-type-options",
    "x-request-id",
    "date",
];

/// Targets, escaped so the request line stays valid HTTP whatever they say.
const TARGETS: &[&str] = &[
    "to=https%3A%2F%2Fexample.com%2F",
    "to=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1%23frag",
    "to=https%3A%2F%2FEXAMPLE.com%2F",
    "to=https%3A%2F%2Fexample.com%40evil.com%2F",
    "to=https%3A%2F%2Fevil.com%5C%40example.com",
    "to=%2F%2Fevil.com",
    "to=https%3Aevil.com",
    "to=https%3A%2F%2Fexample.com%0D%0ASet-Cookie%3A%20a%3Db",
    "to=https%3A%2F%2Fexample.com%2F%00",
    "to=https%3A%2F%2Fexample.com%E3%80%82evil.com",
    "to=https%3A%2F%2F%EF%BD%85xample.com%2F",
    "to=https%3A%2F%2Fexample.com%2F%FF",
    "to=javascript%3Aalert(1)",
    "to=https://example.com/raw?x=1",
];

/// Other parameters, plausible and not.
const PIECES: &[&str] = &[
    "cid=123",
    "cid=0",
    "cid=-1",
    "cid=99999999999999999999",
    "cid=%31%32%33",
    "uid=U1",
    "uid=%0D%0AX-Injected%3A%201",
    "uid=%FF%FE",
    "type=button_url",
    "type=%00",
    "src=7",
    "src=-5",
    "tag=A,B",
    "tag=%2C%2C%2C",
    "tag=A%0AB",
    "sig=k1.AAAAAAAAAAAAAAAAAAAAAA",
    "sig=",
    "exp=1",
    "%",
    "%%",
    "%zz",
    "=",
    "&&",
    "to",
    "utm_source=line",
];

fn random_query() -> String {
    let mut parts = Vec::new();
    // Most queries carry one target (some two), so that most reach the tracking fields.
    for _ in 0..[0, 1, 1, 1, 1, 1, 1, 1, 1, 2][fastrand::usize(0..10)] {
        parts.push(TARGETS[fastrand::usize(0..TARGETS.len())].to_owned());
    }
    for _ in 0..fastrand::usize(0..8) {
        let piece = match fastrand::u8(0..10) {
            0 => {
                // Random bytes, percent-escaped.
                let bytes: Vec<u8> = (0..fastrand::usize(0..30))
                    .map(|_| fastrand::u8(..))
                    .collect();
                let name = ["to", "uid", "tag", "cid", "x"][fastrand::usize(0..5)];
                let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
                format!("{name}={escaped}")
            }
            1 => format!("tag={}", "A,".repeat(fastrand::usize(0..40))),
            2 => format!("uid={}", "u".repeat(fastrand::usize(60..70))),
            _ => PIECES[fastrand::usize(0..PIECES.len())].to_owned(),
        };
        parts.push(piece);
    }
    fastrand::shuffle(&mut parts);
    parts.join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_malicious_queries_never_break_the_rules() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    let seed = fastrand::u64(..);
    fastrand::seed(seed);
    let mut statuses = BTreeMap::<u16, usize>::new();
    for _ in 0..400 {
        let query = random_query();
        let r = app.track(&query).await;
        let status = r.status().as_u16();
        assert!(
            [302, 400, 403, 414].contains(&status),
            "seed {seed}: {status} for {query}"
        );
        for (name, value) in r.headers() {
            assert!(
                EXPECTED_HEADERS.contains(&name.as_str()),
                "seed {seed}: header {name} for {query}"
            );
            assert!(value.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)));
        }
        match r.headers().get("location") {
            Some(location) => {
                assert_eq!(status, 302);
                let url = url::Url::parse(location.to_str().expect("ASCII")).expect("a URL");
                assert_eq!(url.host_str(), Some("example.com"), "seed {seed}: {query}");
                assert!(url.username().is_empty());
            }
            None => assert_ne!(status, 302),
        }
        *statuses.entry(status).or_default() += 1;
    }
    eprintln!("seed {seed}: {statuses:?}");
    // Every redirect left exactly one record: a click, or a reject with its reason.
    let redirected = statuses.get(&302).copied().unwrap_or(0) as i64;
    let records = db.count("component_interaction_logs").await + db.count("track_rejects").await;
    assert_eq!(records, redirected, "seed {seed}");
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"track_errors_total{operation="http",error_type="panic"}"#
        ),
        0.0
    );
}

/// Send a raw request line, return the status line.
async fn raw_status(app: &TestApp, query_len: usize) -> String {
    let mut conn = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /__track?cid=123&to=https%3A%2F%2Fexample.com%2F&x={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(query_len)
    );
    // The server may answer and close before it has read everything.
    let _ = conn.write_all(request.as_bytes()).await;
    let mut buf = vec![0u8; 64];
    let n = conn.read(&mut buf).await.unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_requests_get_414_without_being_parsed() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    // Just under the limit: a link (the target is fine, the extra parameter ignored).
    assert!(raw_status(&app, 7 * 1024).await.contains(" 302 "));
    for len in [9 * 1024, 60 * 1024] {
        let status = raw_status(&app, len).await;
        assert!(status.contains(" 414 "), "{len}: {status}");
    }
    // Past hyper's head buffer the parser itself refuses, with 431 (or 414).
    let status = raw_status(&app, 1024 * 1024).await;
    assert!(
        status.contains(" 431 ") || status.contains(" 414 "),
        "{status}"
    );
    assert_eq!(db.count("component_interaction_logs").await, 1);
    assert_eq!(db.count("track_rejects").await, 0);
    assert_eq!(
        app.metric(r#"track_requests_total{interaction_type="none",status="too_long"}"#)
            .await,
        2.0
    );
    // The parser's own refusal (431 above, a raw non-UTF-8 byte below) is counted too.
    let mut conn = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let _ = conn
        .write_all(b"GET /__track?cid=123&uid=U\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = vec![0u8; 64];
    let n = conn.read(&mut buf).await.unwrap_or(0);
    let status = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    // Counted when hyper hands the error back, just after it answered: polled, then exact.
    let unparsable = r#"track_requests_total{interaction_type="none",status="unparsable"}"#;
    wait_until(&app, "both unparsable requests are counted", async || {
        app.metric(unparsable).await >= 2.0
    })
    .await;
    assert_eq!(app.metric(unparsable).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_and_previews_are_redirected_but_not_recorded() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    let link = "cid=123&uid=U_BOT&to=https%3A%2F%2Fexample.com%2F";
    let agents = [
        ("facebookexternalhit/1.1;line-poker/1.0", Some("line")),
        (
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            Some("slack"),
        ),
        ("curl/8.5.0", Some("http_client")),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.9.0",
            None,
        ),
    ];
    for (ua, _) in agents {
        let r = app
            .client
            .get(app.url(&format!("/__track?{link}")))
            .header("user-agent", ua)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 302, "{ua}");
    }
    // No User-Agent at all is a click (privacy tools strip it).
    let mut conn = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    conn.write_all(
        format!("GET /__track?{link} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 302"), "{response}");

    assert_eq!(
        db.interaction("U_BOT").await.len(),
        2,
        "the browser and the bare request"
    );
    let m = app.metrics().await;
    for (_, kind) in agents {
        if let Some(kind) = kind {
            assert_eq!(
                metric(&m, &format!("track_bot_hits_total{{kind=\"{kind}\"}}")),
                1.0,
                "{kind}"
            );
        }
    }
    assert_eq!(
        metric(
            &m,
            r#"track_requests_total{interaction_type="none",status="bot"}"#
        ),
        3.0
    );
}
