//! Signed links (SPEC §4): minted by `clicktrack link` and `POST /api/links`, verified by
//! `/__track` with key rotation and expiry; a signature lets a link leave the allow-list, and
//! a tampered link is never recorded and never redirected outside the allow-list.

use std::process::Command;

use crate::helpers::{BIN, TestApp, TestDb, metric, wait_until};

const OLD: &str = "old:0123456789abcdef-old";
const NEW: &str = "new:fedcba9876543210-new";
const TOKEN: &str = "admin-token-0123456789";
/// Not on the test allow-list (example.com): only a signature gets a link there.
const PARTNER: &str = "https://partner.test/landing?x=1";

/// `clicktrack link` with these keys and flags; its stdout (one line) or its failure.
fn mint(keys: &[&str], args: &[&str]) -> Result<String, (i32, String)> {
    let mut cmd = Command::new(BIN);
    cmd.args(["link", "--log-format", "json"]);
    for key in keys {
        cmd.args(["--signing-key", key]);
    }
    let out = cmd
        .args(args)
        .env_remove("CLICKTRACK_SIGNING_KEYS")
        .output()
        .expect("run clicktrack link");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned())
    } else {
        Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

fn mint_for(app: &TestApp, keys: &[&str], uid: &str, extra: &[&str]) -> String {
    let base = format!("http://{}", app.addr);
    let mut args = vec![
        "--base-url",
        &base,
        "--to",
        PARTNER,
        "--cid",
        "123",
        "--uid",
        uid,
    ];
    args.extend_from_slice(extra);
    mint(keys, &args).unwrap_or_else(|e| panic!("mint: {e:?}"))
}

async fn get(app: &TestApp, url: &str) -> reqwest::Response {
    app.client.get(url).send().await.expect("request")
}

fn location(r: &reqwest::Response) -> Option<&str> {
    r.headers().get("location").and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_link_may_leave_the_allow_list_an_unsigned_one_may_not() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--signing-key", OLD]);
    let link = mint_for(
        &app,
        &[OLD],
        "U_SIGNED",
        &["--tag", "A,B", "--type", "button_url"],
    );
    assert!(
        link.starts_with(&format!("http://{}/__track?", app.addr)),
        "{link}"
    );
    let r = get(&app, &link).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), Some(PARTNER));
    assert_eq!(
        db.summary("U_SIGNED", 0).await,
        Some((1, Some("A,B".into())))
    );
    assert_eq!(db.interaction("U_SIGNED").await.len(), 1);

    // Unsigned: the allow-list decides, as for links already in the wild.
    let unsigned = link.split("&sig=").next().expect("query").to_owned();
    assert_eq!(get(&app, &unsigned).await.status(), 400);
    let allowed = app
        .track("cid=123&uid=U_PLAIN&to=https%3A%2F%2Fexample.com%2F")
        .await;
    assert_eq!(allowed.status(), 302);
    assert_eq!(db.count("component_interaction_logs").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_links_expire() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--signing-key", OLD]);
    let by_old = mint_for(&app, &[OLD], "U_OLD", &[]);
    let addr = app.addr;
    drop(app);

    // Rotation: the new key signs, the old one still verifies.
    let app = TestApp::spawn(&db, &["--signing-key", NEW, "--signing-key", OLD]);
    let by_old = by_old.replace(&addr.to_string(), &app.addr.to_string());
    let by_new = mint_for(&app, &[NEW, OLD], "U_NEW", &[]);
    assert!(by_new.contains("&sig=new."), "{by_new}");
    assert_eq!(get(&app, &by_old).await.status(), 302);
    assert_eq!(get(&app, &by_new).await.status(), 302);
    let addr = app.addr;
    drop(app);

    // Retired: links signed by the old key are refused, with a page and no Location.
    let app = TestApp::spawn(&db, &["--signing-key", NEW]);
    let by_old = by_old.replace(&addr.to_string(), &app.addr.to_string());
    let r = get(&app, &by_old).await;
    assert_eq!(r.status(), 403);
    assert_eq!(location(&r), None);
    assert!(r.text().await.expect("body").contains("not valid"));
    assert_eq!(
        app.metric(r#"track_signature_failures_total{reason="unknown_key"}"#)
            .await,
        1.0
    );

    // Expiry: valid until its time, then 403 "expired", never a redirect.
    let expiring = mint_for(&app, &[NEW], "U_EXPIRING", &["--expires-in", "2s"]);
    assert_eq!(get(&app, &expiring).await.status(), 302);
    wait_until(&app, "the link expires", async || {
        get(&app, &expiring).await.status() == 403
    })
    .await;
    let recorded = db.interaction("U_EXPIRING").await.len();
    assert!(recorded >= 1, "recorded while valid");
    let r = get(&app, &expiring).await;
    assert_eq!(location(&r), None);
    assert!(r.text().await.expect("body").contains("expired"));
    assert_eq!(
        db.interaction("U_EXPIRING").await.len(),
        recorded,
        "not after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_signature_refuses_unsigned_links() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--signing-key", NEW, "--require-signature"]);
    let r = app
        .track("cid=123&uid=U1&to=https%3A%2F%2Fexample.com%2F")
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(location(&r), None);
    let link = mint_for(&app, &[NEW], "U_OK", &[]);
    assert_eq!(get(&app, &link).await.status(), 302);
    assert_eq!(db.count("component_interaction_logs").await, 1);
    let m = app.metrics().await;
    assert_eq!(
        crate::helpers::metric(&m, r#"track_signature_failures_total{reason="unsigned"}"#),
        1.0
    );
    assert_eq!(
        crate::helpers::metric(
            &m,
            r#"track_requests_total{interaction_type="none",status="bad_signature"}"#
        ),
        1.0
    );
}

// Flip each byte of a signed link's query (every parameter, names, values, escapes and the
// signature itself): no variant is recorded, none is redirected outside the allow-list.
// Without --require-signature a tampered link is refused (403) or, having lost its
// signature, judged by the allow-list (400: its target is not on it); with it, always 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_link_is_never_recorded_nor_redirected_off_the_allow_list() {
    for require in [false, true] {
        let db = TestDb::sqlite().await;
        let mut args = vec!["--signing-key", NEW];
        if require {
            args.push("--require-signature");
        }
        let app = TestApp::spawn(&db, &args);
        let link = mint_for(
            &app,
            &[NEW],
            "U_TAMPER",
            &["--tag", "A,B", "--src", "7", "--expires-in", "1d"],
        );
        let (base, query) = link.split_once('?').expect("a query");
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for i in 0..query.len() {
            let mut bytes = query.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            // Escaped, so the request line stays valid whatever the byte became.
            let tampered: String = bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() && b != b'#' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            let r = get(&app, &format!("{base}?{tampered}")).await;
            let status = r.status().as_u16();
            if let Some(location) = location(&r) {
                let host = url::Url::parse(location)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned));
                assert_eq!(host.as_deref(), Some("example.com"), "byte {i}: {tampered}");
            }
            let want: &[u16] = if require { &[403] } else { &[400, 403] };
            assert!(want.contains(&status), "byte {i} → {status}: {tampered}");
            *statuses.entry(status).or_default() += 1;
        }
        assert_eq!(db.count("component_interaction_logs").await, 0);
        assert_eq!(db.count("track_rejects").await, 0);
        // And the link itself still works.
        assert_eq!(get(&app, &link).await.status(), 302);
        assert_eq!(db.count("component_interaction_logs").await, 1);
        eprintln!(
            "require_signature={require}: {} variants of {} bytes: {statuses:?}",
            query.len(),
            query.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_api_needs_its_token_and_mints_what_the_cli_mints() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--signing-key", NEW, "--admin-token", TOKEN]);
    let api = format!("http://{}/api/links", app.admin_addr);
    let body = serde_json::json!({
        "base_url": format!("http://{}", app.addr),
        "to": PARTNER, "cid": 123, "uid": "U_API", "type": "flex_click", "tag": "X",
        "expires_in": "30d",
    });
    // A guessing attempt: every refusal counted, one warning line (rate-limited) naming it.
    let guesses = [None, Some("wrong-token-0123456789")].repeat(5);
    for token in guesses {
        let mut request = app.client.post(&api).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let r = request.send().await.expect("post");
        assert_eq!(r.status(), 401);
        let json: serde_json::Value = r.json().await.expect("JSON error");
        assert!(json["error"].as_str().is_some_and(|e| e.contains("token")));
    }
    let m = app.metrics_now().await;
    for reason in ["missing", "wrong"] {
        let series = format!("track_admin_auth_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&m, &series), 5.0, "{series}");
    }
    let warnings: Vec<_> = app
        .log_lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("bearer token refused"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{}", app.logs());
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["path"], "/api/links");
    assert!(
        warnings[0]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    assert!(
        !app.logs().contains("wrong-token-0123456789"),
        "a guessed token was logged"
    );
    let r = app
        .client
        .post(&api)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let json: serde_json::Value = r.json().await.expect("JSON");
    let url = json["url"].as_str().expect("url").to_owned();
    // RFC 3339 in whole seconds, as signed: 2026-12-25T08:00:00Z.
    let expires_at = json["expires_at"].as_str().expect("expires_at");
    assert!(
        expires_at.starts_with("20") && expires_at.len() == 20 && expires_at.ends_with('Z'),
        "{expires_at}"
    );
    let r = get(&app, &url).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), Some(PARTNER));
    assert_eq!(db.interaction("U_API").await.len(), 1);

    // Bad input: 400 with the reason, as JSON.
    for (bad, reason) in [
        (
            serde_json::json!({"base_url": "http://x", "to": "javascript:alert(1)", "cid": 123}),
            "to:",
        ),
        (
            serde_json::json!({"base_url": "http://x", "to": PARTNER, "cid": 0}),
            "cid",
        ),
        (
            serde_json::json!({"base_url": "x", "to": PARTNER, "cid": 1}),
            "base_url",
        ),
        (
            serde_json::json!({"base_url": "http://x", "to": PARTNER, "cid": 1, "expires_in": "soon"}),
            "expires_in",
        ),
        (
            serde_json::json!({"base_url": "http://x", "to": PARTNER, "cid": 1, "colour": "red"}),
            "colour",
        ),
    ] {
        let r = app
            .client
            .post(&api)
            .bearer_auth(TOKEN)
            .json(&bad)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 400, "{bad}");
        let json: serde_json::Value = r.json().await.expect("JSON error");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{bad}: {error}");
    }
    // The API lives on the admin listener only.
    let public = app
        .client
        .post(app.url("/api/links"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await;
    assert_eq!(public.expect("post").status(), 404);
    drop(app);

    // Without --admin-token the API is off, and says so.
    let app = TestApp::spawn(&db, &["--signing-key", NEW]);
    let r = app
        .client
        .post(format!("http://{}/api/links", app.admin_addr))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let json: serde_json::Value = r.json().await.expect("JSON error");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("--admin-token"))
    );
}

#[test]
fn the_link_command_refuses_what_the_endpoint_would_and_never_prints_a_secret() {
    let base = ["--base-url", "https://t.example.com", "--cid", "123"];
    let cases: [(&[&str], &[&str], &str); 6] = [
        (&[], &["--to", PARTNER], "--signing-key"),
        (&["k1:short"], &["--to", PARTNER], "--signing-key"),
        (
            &[NEW],
            &["--to", "javascript:alert(1)"],
            "error: invalid value for --to: the target is not an absolute http or https address\n",
        ),
        (
            &[NEW],
            &["--to", PARTNER, "--type", "poke"],
            "error: invalid value for --type: unknown type \"poke\"; one of image_click, button_url, \
             carousel_click, imagemap_click, richmenu_click, flex_click, text_link\n",
        ),
        (
            &[NEW],
            &["--to", PARTNER, "--uid", "U 1"],
            "invalid value for --uid: must be printable",
        ),
        (
            &[NEW],
            &["--to", PARTNER, "--expires-in", "soon"],
            "--expires-in",
        ),
    ];
    for (keys, args, needle) in cases {
        let mut all = base.to_vec();
        all.extend_from_slice(args);
        let (code, stderr) = mint(keys, &all).expect_err("refused");
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?} should say {needle}: {stderr}"
        );
        assert!(
            !stderr.contains("k1:short"),
            "a secret was printed: {stderr}"
        );
    }
    let mut all = base.to_vec();
    all.extend_from_slice(&["--to", PARTNER, "--uid", "U1", "--tag", "A,B"]);
    let link = mint(&[NEW], &all).expect("minted");
    assert!(
        link.starts_with("https://t.example.com/__track?cid=123&uid=U1&tag=A%2CB&to="),
        "{link}"
    );
    assert!(link.contains("&sig=new."), "{link}");
}
