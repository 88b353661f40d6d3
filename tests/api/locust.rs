//! The seed's load tool pointed at clicktrack: `deploy/locust/locustfile.py` runs headless for a
//! few seconds against a real clicktrack; every request must get its 302 and every click must
//! be in the database. (The benchmark is scripts/bench.sh; this proves the file works.)

use std::process::Command;

use crate::helpers::*;

const LOCUSTFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/locust/locustfile.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locustfile_runs_against_clicktrack_and_every_click_is_recorded() {
    // .ci/run names the Python that has Locust (a venv of its own when the system's lacks it).
    let python = std::env::var("CLICKTRACK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_locust = Command::new(&python)
        .args(["-c", "import locust"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_locust {
        skip("Locust", "Locust is not installed (pip install locust)");
        return;
    }
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db, &["--dedup-window-ms", "2000"]);
    let out = tokio::task::spawn_blocking({
        let host = format!("http://{}", app.addr);
        move || {
            Command::new(python)
                .args([
                    "-m",
                    "locust",
                    "-f",
                    LOCUSTFILE,
                    "--headless",
                    "--only-summary",
                ])
                .args(["--users", "20", "--spawn-rate", "20", "--run-time", "4s"])
                .args(["--json", "--host", &host])
                .env("CLICKTRACK_TARGET_HOST", ALLOWED_HOST)
                .output()
                .expect("run locust")
        }
    })
    .await
    .expect("locust task");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "locust failed:\n{stderr}");

    // Locust's final count of requests and failures (its --json summary on stdout).
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("locust JSON");
    let entries = stats.as_array().expect("one entry per request name");
    let sum = |field: &str| -> i64 {
        entries
            .iter()
            .map(|e| e[field].as_i64().expect("a count"))
            .sum()
    };
    let requests = sum("num_requests");
    assert_eq!(sum("num_failures"), 0, "{stderr}");
    assert!(
        requests >= 20,
        "too few requests to mean anything: {requests}"
    );
    eprintln!("locust: {requests} requests, all 302");
    // Locust stops its users mid-request at the end of the run: a request clicktrack
    // answered may be missing from Locust's count, never the other way round.
    let m = app.metrics().await;
    let redirected = metric(
        &m,
        r#"track_requests_total{interaction_type="image_click",status="redirected"}"#,
    ) as i64;
    assert!(
        (requests..=requests + 20).contains(&redirected),
        "locust {requests}, clicktrack {redirected}"
    );

    // Every 302 is a click in the database: no duplicates (each target is unique), no bots
    // (LINE's in-app browser), campaigns that exist.
    assert_eq!(db.count("component_interaction_logs").await, redirected);
    assert_eq!(db.campaign_clicks_total().await, redirected);
    assert_eq!(db.count("track_rejects").await, 0);
}
