//! What operators see (issue 6): `/metrics` counts exactly what happened, every series the
//! alert rules and the dashboard use is exported, log lines carry a request id and the
//! context of their error, and a successful click logs nothing at the default level.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use futures_util::future::join_all;

use crate::helpers::{StoreKind, TestApp, TestDb, journal_mode, link, metric};

const TYPES: [&str; 7] = [
    "image_click",
    "button_url",
    "carousel_click",
    "imagemap_click",
    "richmenu_click",
    "flex_click",
    "text_link",
];

fn typed_link(uid: &str, interaction_type: &str) -> String {
    link(123, uid, 1, "T").replace("type=image_click", &format!("type={interaction_type}"))
}

crate::store_tests! {
// A scripted run: clicks of every type (some types more than once), rejects of two kinds,
// refused targets, HEAD requests and clicks the database refuses (an injected error). Every
// counter must equal what the test did, no more and no less.
async fn metrics_count_exactly_what_the_test_did(db) {
    db.refuse_inserts("refuse_poison", "component_interaction_logs", "line_id", "U_POISON%", "poisoned row")
        .await;
    // A generous --spill-after-ms: the test counts errors exactly, and on a loaded machine a
    // MariaDB batch can take longer than the 1 s default (a timeout, rightly counted).
    let app = TestApp::spawn(
        &db,
        &["--db-max-connections", "3", "--dedup-window-ms", "60000", "--spill-after-ms", "4000"],
    );

    let mut good = Vec::new();
    for (i, t) in TYPES.iter().enumerate() {
        // i + 1 clicks of the i-th type.
        for n in 0..=i {
            good.push((t.to_string(), typed_link(&format!("U_{t}_{n}"), t)));
        }
    }
    let bad_cid: Vec<String> = (0..3)
        .map(|i| format!("cid=x{i}&uid=U_BAD&to=https%3A%2F%2Fexample.com%2F"))
        .collect();
    let unknown_campaign: Vec<String> = (0..2).map(|i| link(999, &format!("U_UNK_{i}"), 1, "T")).collect();
    let refused_targets = [
        "cid=123&uid=U1&to=javascript%3Aalert(1)",
        "cid=123&uid=U1&to=https%3A%2F%2Fevil.example.net%2F",
        "cid=123&uid=U1",
    ];
    let poisoned: Vec<String> = (0..2).map(|i| typed_link(&format!("U_POISON_{i}"), "flex_click")).collect();

    let all = good
        .iter()
        .map(|(_, q)| q.clone())
        .chain(bad_cid.iter().cloned())
        .chain(unknown_campaign.iter().cloned())
        .chain(refused_targets.iter().map(|q| q.to_string()))
        .chain(poisoned.iter().cloned())
        .collect::<Vec<_>>();
    let statuses: Vec<u16> = join_all(all.iter().map(|q| app.track(q)))
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let heads = 4;
    for _ in 0..heads {
        let r = app
            .client
            .head(app.url(&format!("/__track?{}", typed_link("U_HEAD", "button_url"))))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(r.status(), 302);
    }
    // Repeats of a click already made (duplicates), and bots: redirected, not recorded.
    let repeats = 3;
    for _ in 0..repeats {
        assert_eq!(app.track(&good[0].1).await.status(), 302);
    }
    let bots = 2;
    for _ in 0..bots {
        let r = app
            .client
            .get(app.url(&format!("/__track?{}", typed_link("U_BOT", "text_link"))))
            .header("user-agent", "curl/8.5.0")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 302);
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 400).count(), refused_targets.len());
    assert_eq!(statuses.iter().filter(|&&s| s == 302).count(), all.len() - refused_targets.len());

    let m = app.metrics().await;
    let requests = |t: &str, s: &str| {
        metric(&m, &format!("track_requests_total{{interaction_type=\"{t}\",status=\"{s}\"}}"))
    };
    for (i, t) in TYPES.iter().enumerate() {
        // Unknown campaigns are typed clicks (image_click); a bad cid never gets a type.
        let set_aside_by_store = match *t {
            "flex_click" => poisoned.len(),
            "image_click" => unknown_campaign.len(),
            _ => 0,
        };
        // With --ack journal the 302 goes out before the store decides: those clicks were
        // redirected as durable, and their rejection shows in track_rejects_total below.
        let (redirected, rejected) = if journal_mode() {
            (i + 1 + set_aside_by_store, 0)
        } else {
            (i + 1, set_aside_by_store)
        };
        assert_eq!(requests(t, "redirected"), redirected as f64, "{t}");
        assert_eq!(requests(t, "rejected"), rejected as f64, "{t} rejected");
    }
    assert_eq!(requests("none", "rejected"), bad_cid.len() as f64);
    assert_eq!(requests("none", "refused_target"), refused_targets.len() as f64);
    assert_eq!(requests("none", "head"), heads as f64);
    assert_eq!(requests("none", "bot"), bots as f64);
    assert_eq!(metric(&m, r#"track_bot_hits_total{kind="http_client"}"#), bots as f64);
    assert_eq!(requests(&good[0].0, "duplicate"), repeats as f64);
    assert_eq!(metric(&m, "track_duplicates_total"), repeats as f64);
    for s in ["spooled", "not_durable"] {
        for t in TYPES.iter().chain(&["none"]) {
            assert_eq!(requests(t, s), 0.0, "{t} {s}");
        }
    }
    let total = (all.len() + heads + repeats + bots) as f64;
    assert_eq!(metric(&m, "track_request_duration_seconds_count"), total);

    let recorded = good.len() as f64;
    assert_eq!(metric(&m, "track_clicks_recorded_total"), recorded);
    assert_eq!(metric(&m, r#"track_rejects_total{reason="invalid_cid"}"#), bad_cid.len() as f64);
    assert_eq!(
        metric(&m, r#"track_rejects_total{reason="unknown_campaign"}"#),
        unknown_campaign.len() as f64
    );
    assert_eq!(
        metric(&m, r#"track_rejects_total{reason="refused_by_database"}"#),
        poisoned.len() as f64
    );
    assert_eq!(metric(&m, r#"track_refused_targets_total{reason="not_http"}"#), 1.0);
    assert_eq!(metric(&m, r#"track_refused_targets_total{reason="host_not_allowed"}"#), 1.0);
    assert_eq!(metric(&m, r#"track_refused_targets_total{reason="missing"}"#), 1.0);
    // The injected error: each poisoned click refused once, once it is alone in its part.
    assert_eq!(
        metric(&m, r#"track_errors_total{operation="write_batch",error_type="refused"}"#),
        poisoned.len() as f64
    );
    for (operation, kind) in [("write_batch", "unavailable"), ("write_batch", "timeout"), ("spool", "unavailable"), ("ack", "timeout"), ("http", "panic")] {
        assert_eq!(
            metric(&m, &format!("track_errors_total{{operation=\"{operation}\",error_type=\"{kind}\"}}")),
            0.0,
            "{operation} {kind}"
        );
    }
    assert_eq!(metric(&m, "track_clicks_not_written_total"), 0.0);
    assert_eq!(db.count("component_interaction_logs").await as f64, recorded);

    // The pool: SQLite always has one connection, a server what --db-max-connections says.
    let max = match db.kind {
        StoreKind::Sqlite => 1.0,
        StoreKind::Mysql | StoreKind::Postgres => 3.0,
    };
    assert_eq!(metric(&m, r#"db_pool_connections{state="max"}"#), max);
    let open = metric(&m, r#"db_pool_connections{state="idle"}"#)
        + metric(&m, r#"db_pool_connections{state="in_use"}"#);
    assert!((1.0..=max).contains(&open), "{open} connections open");
    // Process metrics, sampled at the scrape.
    assert!(metric(&m, "process_resident_memory_bytes") > 1e6);
    assert!(metric(&m, "process_open_fds") > 0.0);
    assert!(metric(&m, "process_start_time_seconds") > 1.7e9);
}
}

// The request id: returned in X-Request-Id, equal to the click_id stored with the click, on
// the debug line of the request; an error line names the click, its campaign and a shortened
// uid; successful clicks write no line at the default level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_request_id_and_the_error_context() {
    let db = TestDb::sqlite().await;
    db.refuse_inserts(
        "refuse_poison",
        "component_interaction_logs",
        "line_id",
        "U_POISON%",
        "poisoned row",
    )
    .await;
    let app = TestApp::spawn(&db, &[]);
    let started_lines = app.log_lines().len();

    let mut ids = Vec::new();
    for i in 0..20 {
        let r = app.track(link(123, &format!("U_FINE_{i}"), 1, "T")).await;
        assert_eq!(r.status(), 302);
        ids.push(request_id(&r));
    }
    // The click_id stored with a click is its request's id.
    let pool = db.pool().await;
    let stored: String = sqlx::query_scalar(
        "SELECT click_id FROM component_interaction_logs WHERE line_id = 'U_FINE_7'",
    )
    .fetch_one(&pool)
    .await
    .expect("click row");
    assert_eq!(stored, ids[7]);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "ids are unique"
    );
    assert_eq!(
        app.log_lines().len(),
        started_lines,
        "successful clicks logged something:\n{}",
        app.logs()
    );

    let uid = "U_POISON_0123456789abcdef";
    let r = app.track(link(123, uid, 1, "T")).await;
    assert_eq!(r.status(), 302);
    let poisoned_id = request_id(&r);
    app.settled().await;
    let lines = app.log_lines();
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["click_id"].as_str() == Some(poisoned_id.as_str()))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one line for the refused click:\n{}",
        app.logs()
    );
    let line = refused[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["operation"], "write_batch");
    assert_eq!(line["campaign_id"], 123);
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("poisoned row")),
        "{line}"
    );
    let shown = line["uid"].as_str().expect("uid field");
    assert!(
        shown.starts_with("U_POIS") && !shown.contains(uid),
        "uid shown as {shown}"
    );
    assert!(!app.logs().contains(uid), "the full uid is in the logs");
    drop(app);

    // At debug level every request has a line, in a span that carries its id.
    let app = TestApp::on(&db).log_filter("info,clicktrack=debug").start();
    let r = app.track(link(123, "U_DEBUG", 1, "T")).await;
    let id = request_id(&r);
    let bad = app
        .client
        .get(app.url("/__track?cid=1&to=javascript%3Ax"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 400);
    let bad_id = request_id(&bad);
    let admin = app
        .client
        .get(format!("http://{}/readyz", app.admin_addr))
        .send()
        .await
        .expect("get");
    let admin_id = request_id(&admin);
    crate::helpers::wait_until(&app, "three request lines", async || {
        let lines = app.log_lines();
        [&id, &bad_id, &admin_id].iter().all(|want| {
            lines.iter().any(|l| {
                l["message"] == "request done"
                    && l["span"]["request_id"].as_str() == Some(want.as_str())
            })
        })
    })
    .await;
}

fn request_id(r: &reqwest::Response) -> String {
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id header")
        .to_owned();
    uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("request id {id} is not a uuid: {e}"));
    id
}

/// Names of the series in a Prometheus exposition, with the `_bucket`, `_sum` and `_count`
/// series of each histogram.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                names.insert(name.to_owned());
                if kind == "histogram" || kind == "summary" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        } else if let Some(name) = line
            .split(['{', ' '])
            .next()
            .filter(|n| !n.starts_with('#'))
        {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Every identifier in `text` that looks like one of clicktrack's series.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.split(|c: char| !is_ident(c))
        .filter(|w| {
            ["track_", "db_pool_", "process_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// The `expr:` blocks of a rules file (an expression continues on the lines indented below it).
fn rule_expressions(rules: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(first) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = first.trim().trim_start_matches('|').to_owned();
        while let Some(next) = lines.next_if(|l| l.trim().is_empty() || indent(l) > indent(line)) {
            expr.push('\n');
            expr.push_str(next.trim());
        }
        exprs.push(expr);
    }
    exprs
}

fn deploy_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The dashboard's queries, with Grafana's variables replaced by what Prometheus accepts.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy_file("deploy/grafana/clicktrack.json"))
            .expect("dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            queries.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$job", ".*")
                    .replace("$instance", ".*"),
            );
        }
    }
    queries
}

// A renamed metric must not leave an alert or a dashboard panel silently empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_use_only_exported_series() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &[]);
    let exported = exported_names(&app.metrics().await);
    let queries = dashboard_queries();
    let alert_exprs = rule_expressions(&deploy_file("deploy/prometheus/alerts.yml"));
    assert_eq!(alert_exprs.len(), 11, "{alert_exprs:#?}");
    assert!(queries.len() >= 20, "{} dashboard queries", queries.len());
    for (file, referenced) in [
        (
            "deploy/prometheus/alerts.yml",
            referenced_names(&alert_exprs.join("\n")),
        ),
        (
            "deploy/grafana/clicktrack.json",
            referenced_names(&queries.join("\n")),
        ),
    ] {
        assert!(referenced.len() >= 8, "{file}: {referenced:?}");
        let missing: Vec<_> = referenced.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses series clicktrack does not export: {missing:?}"
        );
    }
}

// The dashboard's PromQL parses: promtool checks it as recording rules. promtool is installed
// by .ci/run; locally the test is skipped (with a reason) when it is missing.
#[test]
fn dashboard_queries_are_valid_promql() {
    if Command::new("promtool").arg("--version").output().is_err() {
        crate::helpers::skip(
            "promtool",
            "promtool is not installed (Debian package prometheus; .ci/run installs it)",
        );
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in dashboard_queries().iter().enumerate() {
        let quoted = serde_json::to_string(q).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "dashboard queries do not parse:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// The process runs without transparent huge pages (they put ~45 MiB on the peak RSS, README
// "Benchmark"), unless the operator leaves them to the allocator with MIMALLOC_ALLOW_THP.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_pages_are_off_unless_the_operator_allows_them() {
    fn thp_enabled(pid: u32) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no THP_enabled line in /proc/{pid}/status:\n{status}"))
    }
    let db = TestDb::sqlite().await;
    let mut app = TestApp::on(&db).start();
    assert_eq!(
        thp_enabled(app.pid()),
        "0",
        "huge pages left on:\n{}",
        app.logs()
    );
    app.terminate();
    let allowed = [("MIMALLOC_ALLOW_THP".to_owned(), "1".to_owned())];
    let mut app = TestApp::on(&db).env(&allowed).start();
    assert_eq!(
        thp_enabled(app.pid()),
        "1",
        "the operator's setting ignored:\n{}",
        app.logs()
    );
    app.terminate();
}
