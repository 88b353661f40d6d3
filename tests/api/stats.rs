//! Campaign results: the stats API's numbers are exact on both stores (clicks made through
//! `/__track`, plus old rows written straight into the interaction log, as the old app left
//! them), the CSV export is RFC 4180 with formulas neutralised, errors are JSON with the right
//! status, `clicktrack stats` prints the same numbers, and the queries use their indexes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::store_tests;

pub const TOKEN: &str = "stats-token-0123456789";

/// `GET` on the admin listener with the token.
async fn admin_response(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("http://{}{path}", app.admin_addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin request")
}

/// `GET` on the admin listener with the token; (status, body).
pub async fn admin_get(app: &TestApp, path: &str) -> (u16, String) {
    let response = admin_response(app, path).await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

pub async fn admin_json(app: &TestApp, path: &str) -> Value {
    let (status, body) = admin_get(app, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

fn track_query(cid: i64, uid: Option<&str>, kind: &str, target: &str, tag: &str) -> String {
    let uid = uid.map(|u| format!("&uid={u}")).unwrap_or_default();
    format!("cid={cid}{uid}&type={kind}&to=https%3A%2F%2F{ALLOWED_HOST}%2F{target}&tag={tag}")
}

/// The clicks every test below counts: campaign 123 gets 8 clicks (U1 ×3, U2 ×2, U3 ×1,
/// anonymous ×2), campaign 456 one click of U1.
pub async fn seed_clicks(app: &TestApp, db: &TestDb) {
    let clicks = [
        (123, Some("U1"), "image_click", "a", "A,B"),
        (123, Some("U1"), "image_click", "a", "A,B"),
        (123, Some("U1"), "image_click", "a", "A"),
        (123, Some("U2"), "button_url", "b", "B"),
        (123, Some("U2"), "button_url", "b", "B"),
        (123, Some("U3"), "text_link", "a", ""),
        (123, None, "button_url", "c", "C,B"),
        (123, None, "button_url", "c", "C"),
        (456, Some("U1"), "flex_click", "z", "Z"),
    ];
    for (cid, uid, kind, target, tag) in clicks {
        let response = app.track(track_query(cid, uid, kind, target, tag)).await;
        assert_eq!(response.status().as_u16(), 302);
    }
    wait_until(app, "the seeded clicks are recorded", async || {
        db.campaign_clicks(123).await == 8 && db.campaign_clicks(456).await == 1
    })
    .await;
}

/// Rows of the old app (no click_id, no tags), at known times in January 2026, written while
/// `app` runs: another program's rows, which its background backfill rolls up within seconds.
async fn seed_old_rows(app: &TestApp, db: &TestDb) {
    db.execute(
        "INSERT INTO component_interaction_logs \
             (line_id, campaign_id, interaction_type, interaction_value, triggered_at) VALUES \
         ('H1', 123, 'flex_click', 'https://example.com/old', '2026-01-09 23:59:59'), \
         ('H1', 123, 'flex_click', 'https://example.com/old', '2026-01-10 05:30:00'), \
         ('H2', 123, 'flex_click', 'https://example.com/old', '2026-01-10 05:59:59'), \
         ('', 123, 'carousel_click', 'https://example.com/old', '2026-01-10 07:00:00'), \
         ('H1', 456, 'flex_click', 'https://example.com/old', '2026-01-10 06:00:00')",
    )
    .await;
    wait_until(app, "the old rows are rolled up", async || {
        app.metric(r#"track_rollup_backfilled_rows_total{source="foreign"}"#)
            .await
            == 5.0
    })
    .await;
}

fn counts(list: &Value) -> BTreeMap<String, i64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["clicks"].as_i64().expect("clicks"),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn clicks_of(series: &Value) -> Vec<i64> {
    series
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["clicks"].as_i64().expect("clicks"))
        .collect()
}

/// A minimal RFC 4180 reader for the assertions: records of fields, CRLF line ends.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\n') => panic!("bare LF ends a record: {text:?}"),
            (false, c) => field.push(c),
        }
    }
    assert!(
        record.is_empty() && field.is_empty(),
        "the last record must end with CRLF"
    );
    records
}

store_tests! {
    async fn stats_are_exact(db) {
        let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
        seed_clicks(&app, &db).await;
        seed_old_rows(&app, &db).await;

        // The last 7 days (the default): the 8 clicks just made, none of the old rows.
        let stats = admin_json(&app, "/api/campaigns/123/stats").await;
        assert_eq!(stats["campaign"]["name"], "campaign 123");
        assert_eq!(stats["campaign"]["clicked_count"], 8);
        assert_eq!(stats["bucket"], "day");
        assert_eq!(
            stats["totals"],
            json!({"clicks": 8, "unique_members": 3, "anonymous_clicks": 2})
        );
        assert_eq!(stats["by_type"].as_array().map(Vec::len), Some(7), "every type listed");
        assert_eq!(
            counts(&stats["by_type"]),
            map(&[("image_click", 3), ("button_url", 4), ("text_link", 1)])
        );
        assert_eq!(counts(&stats["by_tag"]), map(&[("A", 3), ("B", 5), ("C", 2)]));
        assert_eq!(stats["by_tag"][0]["name"], "B", "most used first");
        assert_eq!(
            counts(&stats["top_targets"]),
            map(&[
                ("https://example.com/a", 4),
                ("https://example.com/b", 2),
                ("https://example.com/c", 2),
            ])
        );
        assert_eq!(
            stats["top_members"],
            json!([
                {"uid": "U1", "display_name": null, "clicks": 3},
                {"uid": "U2", "display_name": null, "clicks": 2},
                {"uid": "U3", "display_name": null, "clicks": 1},
            ])
        );
        let series = clicks_of(&stats["series"]);
        assert_eq!(series.len(), 8, "7 days from now-7d: a partial first and last day");
        assert_eq!(series.iter().sum::<i64>(), 8);
        assert_eq!(series[7], 8, "today's bucket: {series:?}");

        // Display names come from members (the marketing app fills them).
        db.execute("UPDATE members SET line_display_name = 'Hana' WHERE line_uid = 'U2'").await;
        let named = admin_json(&app, "/api/campaigns/123/stats").await;
        let names: Vec<&Value> = named["top_members"]
            .as_array()
            .expect("top members")
            .iter()
            .map(|m| &m["display_name"])
            .collect();
        assert_eq!(names, [&Value::Null, &json!("Hana"), &Value::Null]);

        // Old rows by hour: zero-filled buckets, `from` inclusive, `to` exclusive, UTC.
        let old = admin_json(
            &app,
            "/api/campaigns/123/stats?from=2026-01-10T00:00:00Z&to=2026-01-10T08:00:00Z&bucket=hour",
        )
        .await;
        assert_eq!(clicks_of(&old["series"]), [0, 0, 0, 0, 0, 2, 0, 1]);
        assert_eq!(old["series"][5]["start"], "2026-01-10T05:00:00Z");
        assert_eq!(
            old["totals"],
            json!({"clicks": 3, "unique_members": 2, "anonymous_clicks": 1})
        );
        assert_eq!(old["by_tag"], json!([]), "old rows have no per-click tags");
        // Another zone's offset means the same instant.
        let by_day = admin_json(
            &app,
            "/api/campaigns/123/stats?from=2026-01-09T09:00:00%2B09:00&to=2026-01-11&bucket=day",
        )
        .await;
        assert_eq!(by_day["from"], "2026-01-09T00:00:00Z");
        assert_eq!(clicks_of(&by_day["series"]), [1, 3]);

        // The campaign list: counters, all-time unique members, last click.
        let list = admin_json(&app, "/api/campaigns").await;
        let campaigns: BTreeMap<i64, &Value> = list["campaigns"]
            .as_array()
            .expect("campaigns")
            .iter()
            .map(|c| (c["id"].as_i64().expect("id"), c))
            .collect();
        assert_eq!(campaigns.len(), 3);
        assert_eq!(campaigns[&123]["clicked_count"], 8);
        assert_eq!(campaigns[&123]["unique_members"], 5, "U1-3 and H1-2");
        assert_eq!(campaigns[&456]["unique_members"], 2);
        assert_eq!(campaigns[&789]["unique_members"], 0);
        assert_eq!(campaigns[&789]["last_click_at"], Value::Null);
        let last = campaigns[&123]["last_click_at"].as_str().expect("a last click");
        assert!(last.ends_with('Z') && last > "2026-11", "{last}");

        // One member across campaigns, newest first, with tags and the summary.
        let u1 = admin_json(&app, "/api/members/U1/clicks").await;
        let clicks = u1["clicks"].as_array().expect("clicks");
        assert_eq!(clicks.len(), 4);
        assert_eq!(
            clicks.iter().filter(|c| c["campaign_id"] == 123).count(),
            3
        );
        let mut tag_lists: Vec<String> = clicks
            .iter()
            .map(|c| c["tags"].as_array().expect("tags").iter().map(|t| t.as_str().unwrap_or("")).collect::<Vec<_>>().join(","))
            .collect();
        tag_lists.sort();
        assert_eq!(tag_lists, ["A", "A,B", "A,B", "Z"]);
        assert_eq!(
            u1["summaries"],
            json!([{"source_campaign_id": 0, "total_clicks": 4,
                    "last_clicked_at": u1["summaries"][0]["last_clicked_at"],
                    "tags": ["A", "B", "Z"]}])
        );
        let limited = admin_json(&app, "/api/members/U1/clicks?limit=1").await;
        assert_eq!(limited["clicks"].as_array().map(Vec::len), Some(1));
        assert_eq!(limited["clicks"][0]["click_id"], clicks[0]["click_id"]);
        // A member with only old rows is known too.
        let h1 = admin_json(&app, "/api/members/H1/clicks").await;
        assert_eq!(h1["clicks"].as_array().map(Vec::len), Some(3));
        assert_eq!(h1["clicks"][0]["click_id"], Value::Null);
    }

    async fn clicks_csv_is_rfc_4180(db) {
        let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
        seed_clicks(&app, &db).await;
        seed_old_rows(&app, &db).await;
        // A User-Agent with quotes and a comma that a spreadsheet would run as a formula.
        let hostile_ua = "=HYPERLINK(\"https://evil.example\",\"x\"), Mobile";
        let response = app
            .client
            .get(app.url(&format!("/__track?{}", track_query(789, Some("U9"), "image_click", "a", ""))))
            .header("user-agent", hostile_ua)
            .send()
            .await
            .expect("click");
        assert_eq!(response.status().as_u16(), 302);
        wait_until(&app, "the click is recorded", async || db.campaign_clicks(789).await == 1)
            .await;

        let response = admin_response(&app, "/api/campaigns/123/clicks.csv?from=2026-01-01").await;
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap_or("").to_owned();
        assert!(content_type.starts_with("text/csv; charset=utf-8"), "{content_type}");
        let disposition = response.headers()["content-disposition"].to_str().unwrap_or("").to_owned();
        assert!(disposition.contains("campaign-123-clicks.csv"), "{disposition}");
        let rows = parse_csv(&response.text().await.expect("body"));
        assert_eq!(
            rows[0],
            ["click_id", "clicked_at", "line_id", "interaction_type", "target", "tags", "user_agent"]
        );
        assert_eq!(rows.len(), 1 + 4 + 8, "header, 4 old rows, 8 clicks");
        assert_eq!(
            rows[1],
            ["", "2026-01-09T23:59:59Z", "H1", "flex_click", "https://example.com/old", "", ""]
        );
        let times: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order: {times:?}");
        let new = &rows[5..];
        assert!(new.iter().all(|r| r[0].len() == 36 && r[6] == BROWSER_UA), "{new:?}");
        // Arrival order, also within one second (click ids are time-ordered uuid v7).
        let ids: Vec<&str> = new.iter().map(|r| r[0].as_str()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "arrival order: {new:?}");
        let mut tags: Vec<&str> = new.iter().map(|r| r[5].as_str()).collect();
        tags.sort();
        assert_eq!(tags, ["", "A", "A,B", "A,B", "B", "B", "B,C", "C"]);
        assert_eq!(new.iter().filter(|r| r[2].is_empty()).count(), 2, "anonymous");

        let (status, text) = admin_get(&app, "/api/campaigns/789/clicks.csv").await;
        assert_eq!(status, 200);
        assert!(
            text.contains("\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"x\"\"), Mobile\"\r\n"),
            "{text}"
        );
        let rows = parse_csv(&text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][6], format!("'{hostile_ua}"));

        // An empty window is a header alone.
        let (status, text) =
            admin_get(&app, "/api/campaigns/456/clicks.csv?from=2020-01-01&to=2020-02-01").await;
        assert_eq!((status, parse_csv(&text).len()), (200, 1));
    }

    async fn stats_cli_prints_the_api_numbers(db) {
        let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
        seed_clicks(&app, &db).await;

        let out = db.cli_ok(&["stats"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with(" ID  NAME"), "{text}");
        // Aligned: every line puts the CLICKS column's last digit at the same place.
        let end = lines[0].find("CLICKS").expect("CLICKS") + "CLICKS".len();
        let row_123 = lines.iter().find(|l| l.contains("campaign 123")).expect("row 123");
        assert_eq!(&row_123[end - 1..end], "8", "{text}");
        assert!(row_123.contains("  3  "), "3 members: {text}");

        let out = db.cli_ok(&["stats", "--campaign", "123", "--since", "1d", "--format", "json"]);
        let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let api = admin_json(&app, "/api/campaigns/123/stats").await;
        for key in ["totals", "by_type", "by_tag", "top_targets", "top_members"] {
            assert_eq!(cli[key], api[key], "{key}");
        }
        assert_eq!(cli["bucket"], "hour");
        assert_eq!(cli["series"].as_array().map(Vec::len), Some(24), "1d: 24 whole hours");

        let out = db.cli_ok(&["stats", "--campaign", "123"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("8 clicks, 3 unique members, 2 anonymous clicks"), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().eq(["button_url", "4"])), "{text}");

        let out = db.cli_ok(&["stats", "--campaign", "123", "--format", "csv"]);
        let rows = parse_csv(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(rows.len(), 9);

        let out = db.cli(&["stats", "--campaign", "999"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no campaign 999"));
        let out = db.cli(&["stats", "--since", "3x"]);
        assert_eq!(out.status.code(), Some(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_json_errors() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    let admin = |path: &str| format!("http://{}{path}", app.admin_addr);

    for path in [
        "/api/campaigns",
        "/api/campaigns/123/stats",
        "/api/campaigns/123/clicks.csv",
        "/api/members/U1/clicks",
    ] {
        for token in [None, Some("wrong-token-0123456789")] {
            let mut request = app.client.get(admin(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status().as_u16(), 401, "{path}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.expect("JSON");
            assert!(body["error"].is_string(), "{path}: {body}");
        }
        let public = app
            .client
            .get(app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await;
        assert_eq!(
            public.expect("public").status().as_u16(),
            404,
            "not on the public port"
        );
    }

    let cases = [
        ("/api/campaigns/999/stats", 404, "no campaign 999"),
        ("/api/campaigns/999/clicks.csv", 404, "no campaign 999"),
        ("/api/members/U404/clicks", 404, "no member"),
        (
            "/api/campaign/123/stats",
            404,
            "no such endpoint: /api/campaign/123/stats",
        ),
        ("/api/campaigns/abc/stats", 400, "integer"),
        ("/api/campaigns/123/stats?from=yesterday", 400, "from: "),
        (
            "/api/campaigns/123/stats?from=2026-02-01&to=2026-01-01",
            400,
            "before",
        ),
        (
            "/api/campaigns/123/stats?bucket=week",
            400,
            "not hour or day",
        ),
        (
            "/api/campaigns/123/stats?from=2020-01-01&bucket=hour",
            400,
            "at most 2000",
        ),
        (
            "/api/campaigns/123/stats?form=2026-01-01",
            400,
            "unknown field",
        ),
        ("/api/campaigns/123/clicks.csv?to=31-12-2026", 400, "to: "),
        ("/api/members/U1/clicks?limit=0", 400, "limit"),
        ("/api/members/U1/clicks?limit=many", 400, "limit"),
    ];
    for (path, status, reason) in cases {
        let (got, body) = admin_get(&app, path).await;
        assert_eq!(got, status, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON error");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{path}: {error}");
    }
    // A long export window is fine: it has no buckets.
    let (status, _) = admin_get(&app, "/api/campaigns/123/clicks.csv?from=2000-01-01").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_are_503_logged_once_and_counted() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    // The read pool opens its first connection now, on a file that is no longer there (the
    // writer keeps its own open handle, so clicks are unaffected).
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    std::fs::rename(&path, format!("{path}.moved")).expect("move the database away");
    let (status, body) = admin_get(&app, "/api/campaigns").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the store did not answer"), "{body}");
    assert_eq!(
        app.metric("track_errors_total{operation=\"stats\",error_type=\"unavailable\"}")
            .await,
        1.0
    );
    let lines: Vec<Value> = app
        .log_lines()
        .into_iter()
        .filter(|l| l["operation"] == "stats")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["span"]["path"], "/api/campaigns", "{lines:?}");
}
