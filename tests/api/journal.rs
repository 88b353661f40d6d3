//! The journal-first path (`--ack journal`): a 302 as soon as the click is in the journal on
//! disk, the store written moments later by the applier; one journal per store and per
//! process; a journal of the previous release applied by this one; a full journal falls back
//! to the store; SIGTERM applies within the drain time and leaves the rest for the next start.

use std::time::Duration;

use crate::helpers::{
    BIN, StoreKind, TestApp, TestDb, WriteBlocker, link, metric, serve_command, signal, wait_until,
};
use crate::readiness::wait_for_readyz;

/// `serve` on `db` with `journal`, expected to refuse to start: its exit code and stderr.
fn serve_refused(db: &TestDb, journal: &str) -> (Option<i32>, String) {
    let out = serve_command(db)
        .args(["--spool-path", journal, "--allow-host", "example.com"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .expect("run clicktrack serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Clicks to campaign 123 sent while `db`'s store refuses writes: they wait in the journal
/// until the returned blocker is released.
async fn clicks_held_in_the_journal(app: &TestApp, db: &TestDb, uids: &[&str]) -> WriteBlocker {
    let blocker = db.block_writes().await;
    for uid in uids {
        assert_eq!(app.track(link(123, uid, 4, "J")).await.status(), 302);
    }
    let n = uids.len() as f64;
    wait_until(
        app,
        "the clicks wait in the journal, store seen down",
        async || {
            let m = app.metrics_now().await;
            metric(&m, "track_journal_depth") == n && metric(&m, "track_store_ready") == 0.0
        },
    )
    .await;
    blocker
}

crate::store_tests! {
async fn a_store_that_refuses_writes_does_not_hold_up_a_redirect(db) {
    let app = TestApp::spawn(&db, &["--ack", "journal", "--apply-timeout-ms", "300"]);
    let blocker = db.block_writes().await;
    for i in 0..5 {
        assert_eq!(app.track(link(123, &format!("U_J{i}"), 4, "J")).await.status(), 302);
    }
    // Answered from the journal as durable clicks, none of them in the store yet.
    let m = app.metrics_now().await;
    assert_eq!(
        metric(&m, r#"track_requests_total{interaction_type="image_click",status="redirected"}"#),
        5.0
    );
    assert_eq!(metric(&m, r#"track_spooled_total{reason="journal"}"#), 5.0);
    wait_until(&app, "the store is seen down and the lag grows", async || {
        let m = app.metrics_now().await;
        metric(&m, "track_store_ready") == 0.0
            && metric(&m, "track_journal_depth") == 5.0
            && metric(&m, "track_journal_apply_lag_seconds") > 0.0
    })
    .await;
    let body = wait_for_readyz(&app, 200).await;
    assert!(body.contains("store: down") && body.contains("journal: ok"), "{body}");

    blocker.release().await;
    wait_until(&app, "the journal is applied and the lag is back to 0", async || {
        let m = app.metrics_now().await;
        metric(&m, "track_journal_depth") == 0.0
            && metric(&m, "track_journal_apply_lag_seconds") == 0.0
            && metric(&m, "track_store_ready") == 1.0
    })
    .await;
    assert_eq!(db.count("component_interaction_logs").await, 5);
    assert_eq!(db.campaign_clicks(123).await, 5);
    assert_eq!(db.summary("U_J3", 4).await, Some((1, Some("J".into()))));
    let m = app.metrics().await;
    assert_eq!(
        metric(&m, r#"track_journal_applied_total{outcome="recorded"}"#)
            + metric(&m, r#"track_journal_applied_total{outcome="already_recorded"}"#),
        5.0
    );
    assert!(metric(&m, "track_journal_apply_batch_size_count") >= 1.0);
    assert!(metric(&m, "track_journal_append_seconds_count") >= 1.0);
}

async fn a_batch_that_commits_after_its_time_limit_is_counted_once_as_recorded(db) {
    let app = TestApp::spawn(&db, &["--ack", "journal", "--apply-timeout-ms", "300"]);
    let blocker = db.block_writes().await;
    for i in 0..5 {
        assert_eq!(app.track(link(123, &format!("U_LATE{i}"), 4, "L")).await.status(), 302);
    }
    // The applier's attempt gives up after 300 ms but keeps waiting for the lock; released
    // now, it commits late, and the next attempt finds every click already there.
    wait_until(&app, "an attempt runs out of time", async || {
        app.metric(r#"track_errors_total{operation="write_batch",error_type="timeout"}"#).await
            >= 1.0
    })
    .await;
    blocker.release().await;
    assert_eq!(db.count("component_interaction_logs").await, 5);
    let m = app.metrics().await;
    // Each click once, as recorded: not again as a replay.
    assert_eq!(metric(&m, "track_clicks_recorded_total"), 5.0);
    assert_eq!(metric(&m, "track_clicks_already_recorded_total"), 0.0);
    assert_eq!(metric(&m, r#"track_journal_applied_total{outcome="recorded"}"#), 5.0);
    assert_eq!(
        metric(&m, r#"track_journal_applied_total{outcome="already_recorded"}"#),
        0.0
    );
}

async fn a_journal_of_another_store_is_refused_and_applied_by_its_own(db) {
    let journal = db.spool_path();
    let app = TestApp::spawn(&db, &["--ack", "journal", "--apply-timeout-ms", "300"]);
    let blocker = clicks_held_in_the_journal(&app, &db, &["U_A1", "U_A2", "U_A3"]).await;
    app.kill9();
    blocker.release().await;

    // Another store, same journal file: the service does not start, and says whose it is.
    let other = TestDb::sqlite().await;
    let (code, stderr) = serve_refused(&other, &journal);
    assert_eq!(code, Some(2), "{stderr}");
    let this_store = other.url.as_str();
    let its_store = db.url.rsplit('/').next().expect("database name");
    assert!(
        stderr.contains("holds 3 records") && stderr.contains(this_store) && stderr.contains(its_store),
        "names both stores: {stderr}"
    );
    let replay = other.cli(&["spool", "replay", "--spool-path", &journal]);
    assert_eq!(replay.status.code(), Some(2), "{}", String::from_utf8_lossy(&replay.stderr));
    assert_eq!(other.count("component_interaction_logs").await, 0);

    // Its own store takes it.
    let app = TestApp::spawn(&db, &[]);
    wait_until(&app, "the held clicks are applied", async || {
        db.count("component_interaction_logs").await == 3
    })
    .await;
    assert_eq!(db.campaign_clicks(123).await, 3);
}

async fn a_journal_written_by_the_previous_release_is_applied(db) {
    // The spool file of the release before the journal: no journal_meta, a v1 record, and one
    // record nobody can read (set aside, logged once, counted; the others are applied).
    let path = db.spool_path();
    let url = format!("sqlite://{path}?mode=rwc");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.expect("create");
    sqlx::raw_sql(
        "CREATE TABLE spooled_records (seq INTEGER PRIMARY KEY AUTOINCREMENT, click_id TEXT NOT NULL, \
             reason TEXT NOT NULL, spooled_at TEXT NOT NULL, record TEXT NOT NULL); \
         CREATE TABLE unreadable_records (seq INTEGER PRIMARY KEY, reason TEXT NOT NULL, \
             spooled_at TEXT NOT NULL, record TEXT NOT NULL, error TEXT NOT NULL, moved_at TEXT NOT NULL); \
         INSERT INTO spooled_records (click_id, reason, spooled_at, record) VALUES \
           ('0192c6a0-0000-7000-8000-000000000001', 'store_unavailable', '2026-11-30 10:00:01', \
            '{\"kind\":\"click\",\"v\":1,\"click_id\":\"0192c6a0-0000-7000-8000-000000000001\",\
\"received_at_ns\":1764496800000000000,\"uid\":\"U_OLD\",\"campaign_id\":123,\"source_campaign_id\":2,\
\"interaction_type\":\"button_url\",\"target\":\"https://example.com/old\",\"tags\":[\"X\",\"Y\"],\
\"user_agent\":\"Line/13.1\"}'), \
           ('0192c6a0-0000-7000-8000-000000000002', 'overflow', '2026-11-30 10:00:02', \
            '{\"kind\":\"reject\",\"v\":1,\"click_id\":\"0192c6a0-0000-7000-8000-000000000002\",\
\"received_at_ns\":1764496801000000000,\"reason\":\"invalid_cid\",\"detail\":null,\
\"query\":\"cid=x&to=https%3A%2F%2Fexample.com%2F\",\"user_agent\":null}'), \
           ('0192c6a0-0000-7000-8000-000000000003', 'journal', '2026-11-30 10:00:03', \
            '{\"kind\":\"click\",\"v\":1,\"click_id\":');",
    )
    .execute(&mut conn)
    .await
    .expect("write the old spool");
    sqlx::Connection::close(conn).await.expect("close");

    let app = TestApp::spawn(&db, &[]);
    wait_until(&app, "the old journal is applied", async || {
        db.summary("U_OLD", 2).await.is_some()
    })
    .await;
    assert_eq!(db.summary("U_OLD", 2).await, Some((1, Some("X,Y".into()))));
    let logged = db.interaction("U_OLD").await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].1, "button_url");
    assert_eq!(logged[0].3, "2025-11-30 10:00:00", "the click's own time");
    assert_eq!(db.rejects_by_reason().await.get("invalid_cid"), Some(&1));
    assert_eq!(app.metric("track_journal_depth").await, 0.0);
    assert_eq!(
        app.metric(r#"track_errors_total{operation="spool",error_type="undecodable"}"#).await,
        1.0
    );
    let unreadable: Vec<_> = app
        .log_lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("journal record cannot be read")))
        .collect();
    assert_eq!(unreadable.len(), 1, "{}", app.logs());
    assert!(unreadable[0]["at"].as_str().is_some_and(|at| at.starts_with("record 3 of ")), "{unreadable:?}");
    // The old file became a journal directory; the unreadable record is kept in it.
    let aside: Vec<_> = std::fs::read_dir(std::path::Path::new(&path).join("unreadable"))
        .expect("unreadable/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(aside, ["record00000000000000000003.json"]);
}

async fn a_full_journal_sends_clicks_to_the_store_directly(db) {
    let app = TestApp::spawn(&db, &["--ack", "journal", "--journal-max-bytes", "1"]);
    for i in 0..3 {
        assert_eq!(app.track(link(123, &format!("U_F{i}"), 1, "F")).await.status(), 302);
    }
    // Committed before the 302 (no journal to wait in): in the store at once.
    assert_eq!(db.campaign_clicks(123).await, 3);
    let m = app.metrics_now().await;
    assert_eq!(
        metric(&m, r#"track_requests_total{interaction_type="image_click",status="redirected"}"#),
        3.0
    );
    assert!(metric(&m, r#"track_errors_total{operation="spool",error_type="full"}"#) >= 1.0);
    assert_eq!(metric(&m, "track_spool_ready"), 0.0);
    assert!(metric(&m, "track_journal_bytes") > 1.0);
    // Still ready: a click now is durable (in the store).
    let body = wait_for_readyz(&app, 200).await;
    assert!(body.contains("journal: down") && body.contains("store: ok"), "{body}");
    assert!(app.logs().contains("is full"), "{}", app.logs());
}

async fn sigterm_applies_within_the_drain_time_and_leaves_the_rest_for_the_next_start(db) {
    let mut app = TestApp::spawn(
        &db,
        &["--ack", "journal", "--apply-timeout-ms", "300", "--drain-timeout-ms", "500"],
    );
    let blocker = clicks_held_in_the_journal(&app, &db, &["U_D1", "U_D2"]).await;
    signal(app.pid(), "TERM");
    let (status, app) =
        tokio::task::spawn_blocking(move || (app.wait(Duration::from_secs(30)), app))
            .await
            .expect("wait for exit");
    blocker.release().await;
    assert!(status.success(), "exit 0 after the drain time:\n{}", app.logs());
    let left: Vec<_> = app
        .log_lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("stopped with clicks in the journal")))
        .collect();
    assert_eq!(left.len(), 1, "{}", app.logs());
    assert_eq!(left[0]["left"], 2);

    // Next start (the lock holder is gone): applied.
    let app = TestApp::spawn(&db, &[]);
    wait_until(&app, "the left clicks are applied", async || {
        db.count("component_interaction_logs").await == 2
    })
    .await;
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_journal_exits_2_naming_it() {
    let db = TestDb::new(StoreKind::Sqlite).await.expect("sqlite");
    let app = TestApp::spawn(&db, &[]);
    let journal = db.spool_path();
    let (code, stderr) = serve_refused(&db, &journal);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&journal) && stderr.contains("in use by another clicktrack process"),
        "{stderr}"
    );
    let replay = db.cli(&["spool", "replay", "--spool-path", &journal]);
    assert_eq!(replay.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("in use by another"));
    // The first one is unaffected.
    assert_eq!(app.track(link(123, "U_FIRST", 1, "A")).await.status(), 302);
    assert_eq!(db.summary("U_FIRST", 1).await, Some((1, Some("A".into()))));
}

/// The nice value of each of `pid`'s threads, by thread name.
#[cfg(target_os = "linux")]
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("threads") {
        let dir = task.expect("thread").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, nice field 19.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let nice = after_name
            .split_whitespace()
            .nth(16)
            .and_then(|n| n.parse().ok())
            .unwrap_or(i64::MIN);
        threads.push((name.trim().to_owned(), nice));
    }
    threads
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applier_and_its_store_connection_run_below_the_redirects() {
    let db = TestDb::new(StoreKind::Sqlite).await.expect("sqlite");
    // In journal mode, so that the applier has opened its journal reader.
    let app = TestApp::spawn(&db, &["--ack", "journal", "--apply-nice", "7"]);
    assert_eq!(app.track(link(123, "U_NICE", 1, "A")).await.status(), 302);
    assert_eq!(db.summary("U_NICE", 1).await, Some((1, Some("A".into()))));
    let threads = thread_nice(app.pid());
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, nice)| *nice)
            .collect()
    };
    assert_eq!(nice_of("clicktrack-appl"), [7], "{threads:?}");
    // Lowered: the SQLite workers of the applier's store, started by the applier's thread,
    // and of the upkeep connection (backfill, retention, erasures), started by a thread
    // lowered to open it. Not lowered: the journal's writer thread (every acknowledgement
    // waits for it; started with the journal, though the applier may be first to open it) and
    // the store connection of the request path.
    let workers = nice_of("sqlx-sqlite");
    assert_eq!(
        workers.iter().filter(|n| **n == 7).count(),
        2,
        "{threads:?}"
    );
    assert_eq!(nice_of("journal-writer"), [0], "{threads:?}");
    assert!(workers.contains(&0), "{threads:?}");
    assert!(
        nice_of("tokio-rt-worker").iter().all(|n| *n == 0),
        "{threads:?}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_runs_below_the_redirects() {
    let db = TestDb::new(StoreKind::Sqlite).await.expect("sqlite");
    // Held so that the purge waits for the write lock while its threads are looked at.
    let blocker = db.block_writes().await;
    let mut purge = std::process::Command::new(BIN)
        .args(["purge", "--before", "2026-01-01", "--nice", "5"])
        .args(["--database-url", &db.url, "--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start purge");
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let threads = loop {
        let threads = thread_nice(purge.id());
        if threads
            .iter()
            .any(|(name, _)| name.starts_with("sqlx-sqlite"))
        {
            break threads;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the purge opened no store connection: {threads:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Every thread, the runtime's and the store's worker included.
    assert!(threads.iter().all(|(_, nice)| *nice == 5), "{threads:?}");
    blocker.release().await;
    let status = tokio::task::spawn_blocking(move || purge.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "purge failed: {status}");
}

/// A CPU pressure file in the kernel's format: while saturated, its stalled time grows with
/// the wall clock and its ten-second average says 100 %; after `relax` both say 0 %. It is a
/// named pipe answered by a thread of the test, so every read gets the total as of that read,
/// like the kernel's file: a regular file rewritten every few milliseconds would read as "no
/// pressure" whenever its writer stalls for a window (an fsync-heavy disk, a loaded CI).
struct FakePressure {
    path: std::path::PathBuf,
    saturated: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _dir: tempfile::TempDir,
}

impl FakePressure {
    fn saturated() -> FakePressure {
        use std::io::Write;
        use std::os::unix::ffi::OsStrExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cpu");
        let c_path =
            std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a tempdir");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let saturated = std::sync::Arc::new(AtomicBool::new(true));
        let flag = saturated.clone();
        let fifo = path.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::OpenOptionsExt;
            let started = std::time::Instant::now();
            let mut total = 0;
            // Each open waits for a reader (blocked in it when the test is over, harmlessly).
            while let Ok(mut reader) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                let avg10 = if flag.load(Ordering::Relaxed) {
                    total = started.elapsed().as_micros();
                    100
                } else {
                    0
                };
                let text = format!(
                    "some avg10={avg10}.00 avg60=0.00 avg300=0.00 total={total}\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                );
                // One write under PIPE_BUF: the reader gets it whole, then end of file.
                if reader.write_all(text.as_bytes()).is_err() {
                    continue;
                }
                drop(reader);
                // Wait for that reader to close (a non-blocking open finds no reader), so
                // the next text is written for the next read, at its time.
                while std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo)
                    .is_ok()
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        FakePressure {
            path,
            saturated,
            _dir: dir,
        }
    }

    fn relax(&self) {
        self.saturated
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_cpu_leaves_clicks_in_the_journal_up_to_the_lag_bound() {
    let db = TestDb::new(StoreKind::Sqlite).await.expect("sqlite");
    let pressure = FakePressure::saturated();
    let lag = Duration::from_secs(5);
    let app = TestApp::spawn(
        &db,
        &[
            "--ack",
            "journal",
            "--max-apply-lag",
            "5s",
            "--cpu-pressure-path",
            pressure.path.to_str().expect("utf-8 path"),
        ],
    );
    let sent = std::time::Instant::now();
    for i in 0..5 {
        assert_eq!(
            app.track(link(123, &format!("U_ASIDE{i}"), 4, "A"))
                .await
                .status(),
            302
        );
    }
    wait_until(&app, "the applier steps aside", async || {
        app.metric("track_applier_aside").await == 1.0
    })
    .await;
    let held = db.count("component_interaction_logs").await;
    // Only meaningful while the oldest click is younger than the bound (a stalled machine
    // could take longer than that to get here; then the rest still holds).
    if sent.elapsed() < lag - Duration::from_secs(1) {
        assert_eq!(held, 0, "applied while the CPU was saturated");
    }
    wait_until(
        &app,
        "the clicks are applied at the lag bound",
        async || db.count("component_interaction_logs").await == 5,
    )
    .await;
    assert!(
        sent.elapsed() >= lag,
        "applied {:?} after the first click, before --max-apply-lag",
        sent.elapsed()
    );
    assert_eq!(db.campaign_clicks(123).await, 5);
    let m = app.metrics().await;
    assert!(
        metric(&m, "track_applier_aside_seconds_total") >= 3.0,
        "{m}"
    );
    assert_eq!(metric(&m, "track_clicks_recorded_total"), 5.0);

    // The burst is over: a new click is applied at once, well within the bound.
    pressure.relax();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = std::time::Instant::now();
    assert_eq!(
        app.track(link(123, "U_ASIDE_AFTER", 4, "A")).await.status(),
        302
    );
    wait_until(&app, "the next click is applied", async || {
        db.count("component_interaction_logs").await == 6
    })
    .await;
    assert!(again.elapsed() < lag, "{:?}", again.elapsed());
    assert_eq!(app.metric("track_applier_aside").await, 0.0);
}
