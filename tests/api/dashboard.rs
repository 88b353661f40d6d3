//! The dashboard in a real browser: headless Chromium, driven through ChromeDriver's WebDriver
//! protocol (plain HTTP + JSON, so no client crate), against a server seeded with clicks, on a
//! phone-sized window. Signs in, opens the campaign, checks the numbers, the chart and the
//! breakdowns, and saves a screenshot whose path it prints (the CI artifact).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::stats::{TOKEN, seed_clicks};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A ChromeDriver process and one browser session; both end on drop.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Browser {
    async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            skip(
                "Chromium",
                &format!("{CHROMEDRIVER} not installed (apt-get install chromium chromium-driver)"),
            );
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            // A process group of its own: the browser it starts is ended with it (below).
            .process_group(0)
            .arg(format!("--port={port}"))
            // A zone that is not UTC, to see the page convert the API's UTC times.
            .env("TZ", "Asia/Tokyo")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(status) = r.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut browser = Browser {
            driver,
            http,
            base,
            session: String::new(),
        };
        let created = browser
            .call(
                "POST",
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=390,1600",
                                 "--lang=en-US"],
                    },
                }}}),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Some(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request.send().await.expect("webdriver request");
        let status = response.status();
        let value: Value = response.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "{method} {path}: {value}");
        value["value"].clone()
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn open(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url })).await;
    }

    /// Run `script` (a function body) in the page and return its value.
    async fn eval(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Poll `script` until it returns true (the page loads data asynchronously).
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(script).await != true {
            let error = self
                .eval("return document.getElementById('error').textContent")
                .await;
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page error: {error}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .session(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.session("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.session("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, path: &PathBuf) {
        let png = self.session("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("PNG bytes");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("artifact dir");
        std::fs::write(path, bytes).expect("write screenshot");
    }
}

impl Browser {
    /// The process group of the driver and every browser process it started.
    fn group(&self) -> u32 {
        self.driver.id()
    }
}

/// Whether any process of group `pgid` is still running.
fn group_alive(pgid: u32) -> bool {
    Command::new("pgrep")
        .args(["-g", &pgid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing the driver alone leaves its Chromium processes running: end the group.
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.group())])
            .status();
        if !killed.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("could not end the browser's process group: {killed:?}");
        }
        if let Err(e) = self.driver.wait() {
            eprintln!("could not reap chromedriver: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_campaign_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    // A member the marketing app created, with a Japanese name (as most names are).
    db.execute(
        "INSERT INTO members (line_uid, line_display_name, created_at, updated_at) \
         VALUES ('U1', '山田 花子', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    )
    .await;
    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    seed_clicks(&app, &db).await;
    let dashboard = format!("http://{}/dashboard", app.admin_addr);

    // Assets come from clicktrack itself, with a policy that allows nothing else.
    let page = app.client.get(&dashboard).send().await.expect("page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );

    browser.open(&dashboard).await;
    browser
        .wait_for(
            "the sign-in form",
            "return !document.getElementById('sign-in').hidden",
        )
        .await;
    browser.type_into("#token", "wrong-token-0123456789").await;
    browser.click("#sign-in button").await;
    browser
        .wait_for(
            "the wrong token to be refused",
            "return document.getElementById('error').textContent.includes('not accepted')",
        )
        .await;
    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in button").await;
    browser
        .wait_for(
            "the campaign list",
            "return document.querySelectorAll('#campaigns tbody tr').length === 3",
        )
        .await;
    let row = browser.text("#campaigns tbody tr[data-id='123']").await;
    assert!(row.contains("campaign 123") && row.contains('8'), "{row}");

    browser.click("#campaigns tbody tr[data-id='123'] a").await;
    browser
        .wait_for(
            "the campaign's numbers",
            "return document.getElementById('total-clicks').textContent === '8'",
        )
        .await;
    assert_eq!(browser.text("#unique-members").await, "3");
    let hidden = browser
        .eval("return ['sign-in', 'list'].map(id => getComputedStyle(document.getElementById(id)).display)")
        .await;
    assert_eq!(
        hidden,
        json!(["none", "none"]),
        "only the campaign is shown"
    );
    assert_eq!(browser.text("#zone").await, "Times in Asia/Tokyo");
    // Day buckets are UTC days, labelled by their date, not by 9:00 (UTC midnight in Tokyo).
    let first = browser.text("#axis-start").await;
    assert!(!first.is_empty() && !first.contains(':'), "{first}");
    assert_eq!(browser.text("#bucket").await, "(per day, UTC days)");
    assert_eq!(browser.text("#anonymous-clicks").await, "2");
    // The chart: one bar per day of "Last 7 days" (7, not a partial 8th), today's holding
    // all 8 clicks, with its number printed and the scale beside it.
    let bars = browser
        .eval(
            "return Array.from(document.querySelectorAll('#chart rect.bar'))
                .map(r => [Number(r.dataset.clicks), r.getBoundingClientRect().height])",
        )
        .await;
    let bars = bars.as_array().expect("bars");
    assert_eq!(bars.len(), 7, "{bars:?}");
    assert_eq!(bars[6][0], 8, "{bars:?}");
    assert!(
        bars[6][1].as_f64().unwrap_or(0.0) > 100.0,
        "the bar is drawn: {bars:?}"
    );
    let values = browser
        .eval("return Array.from(document.querySelectorAll('#chart-values span')).map(s => s.textContent)")
        .await;
    assert_eq!(values, json!(["", "", "", "", "", "", "8"]));
    assert_eq!(browser.text("#y-max").await, "8");
    // Types by their ids, as the API and the CLI name them, every one (none-clicked too);
    // tags explained when they add up to more than the clicks.
    let types = browser.text("#by-type").await;
    assert!(
        types.contains("button_url\n4") && types.contains("richmenu_click\n0"),
        "{types}"
    );
    let tags = browser.text("#by-tag").await;
    assert!(tags.starts_with("B\n5"), "{tags}");
    let note = browser.text("#tag-note").await;
    assert!(note.contains("several tags"), "{note}");
    let members = browser.text("#top-members").await;
    assert!(
        members.contains("山田 花子 (U1)") && members.contains('3'),
        "{members}"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        // So the screenshot shows the name, not boxes (.ci/run installs fonts-noto-cjk).
        let fonts = Command::new("fc-list")
            .arg(":lang=ja")
            .output()
            .expect("fc-list");
        assert!(!fonts.stdout.is_empty(), "no Japanese font installed");
    }
    // Readable on a phone and on a desktop: nothing wider than the window.
    for width in [390, 1280] {
        browser
            .session(
                "POST",
                "/window/rect",
                json!({"width": width, "height": 1600}),
            )
            .await;
        let overflow = browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth")
            .await;
        assert_eq!(overflow, true, "the page scrolls sideways at {width} px");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("target/e2e/dashboard-{width}.png"));
        browser.screenshot(&path).await;
        println!("dashboard screenshot: {}", path.display());
        eprintln!("dashboard screenshot: {}", path.display());
    }

    // Another campaign that does not exist: its error alone, none of campaign 123's numbers.
    browser.open(&format!("{dashboard}#campaign=999")).await;
    browser
        .wait_for(
            "the unknown campaign's error",
            "return document.getElementById('error').textContent.includes('no campaign 999')",
        )
        .await;
    let stale = browser
        .eval("return [document.getElementById('detail').hidden, document.getElementById('total-clicks').textContent]")
        .await;
    assert_eq!(stale, json!([true, ""]), "campaign 123's numbers are gone");
    // And a way back to the list that is not the logo.
    browser.click("#back a").await;
    browser
        .wait_for(
            "the campaign list again",
            "return !document.getElementById('list').hidden",
        )
        .await;

    // Nothing of the browser outlives the test.
    let group = browser.group();
    assert!(
        group_alive(group),
        "the browser's processes are found while it runs"
    );
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_alive(group) {
        assert!(
            Instant::now() < deadline,
            "browser processes left running (group {group})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
