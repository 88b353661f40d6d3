//! The marketing app shares the tables (docs/privacy.md): it deletes and renames members,
//! deletes campaigns, adds columns and holds row locks, and no click is lost or orphaned; a
//! member can be erased from everything clicktrack keeps. Each case runs on both stores, and
//! CI runs the suite in both ack modes.

use std::time::{Duration, Instant};

use sqlx::Row;

use crate::helpers::*;
use crate::stats::TOKEN;
use crate::store_tests;

/// One count from the test database.
async fn scalar(db: &TestDb, sql: &str, bind: &str) -> i64 {
    let pool = db.pool().await;
    let row = sqlx::query(db.sql(sql))
        .bind(bind.to_owned())
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    row.try_get::<Option<i64>, _>(0)
        .expect("integer")
        .unwrap_or(0)
}

async fn logs_of(db: &TestDb, uid: &str) -> i64 {
    scalar(
        db,
        "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM component_interaction_logs WHERE line_id = ?",
        uid,
    )
    .await
}

/// `messages` rows whose member no longer exists.
async fn orphan_messages(db: &TestDb) -> i64 {
    scalar(
        db,
        "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM messages m \
         LEFT JOIN members u ON u.id = m.member_id WHERE u.id IS NULL AND m.direction <> ?",
        "-",
    )
    .await
}

/// What the marketing app does when it deletes a member: its messages, its summaries, the row.
async fn app_deletes_member(db: &TestDb, uid: &str) {
    db.execute(&format!(
        "DELETE FROM messages WHERE member_id IN (SELECT id FROM members WHERE line_uid = '{uid}')"
    ))
    .await;
    db.execute(&format!(
        "DELETE FROM ryan_click_demo WHERE line_id = '{uid}'"
    ))
    .await;
    db.execute(&format!("DELETE FROM members WHERE line_uid = '{uid}'"))
        .await;
}

async fn click_ok(app: &TestApp, query: &str) {
    let answer = app.track(query).await;
    assert_eq!(answer.status().as_u16(), 302, "{query}");
}

store_tests! {
    async fn a_member_deleted_by_the_app_and_clicking_again_loses_nothing(db) {
        let app = TestApp::spawn(&db, &[]);
        click_ok(&app, &link(123, "UX", 1, "A")).await;
        click_ok(&app, &link(123, "UX", 1, "B")).await;
        assert_eq!(logs_of(&db, "UX").await, 2);
        app_deletes_member(&db, "UX").await;
        // Within the minute a member cache would have trusted the deleted row.
        click_ok(&app, &link(123, "UX", 1, "C")).await;
        click_ok(&app, &link(123, "UX", 1, "D")).await;
        assert_eq!(logs_of(&db, "UX").await, 4);
        assert_eq!(db.campaign_clicks(123).await, 4);
        assert_eq!(db.members_named("UX").await, 1, "the member is created again");
        assert_eq!(db.messages_of("UX").await.len(), 2);
        assert_eq!(orphan_messages(&db).await, 0);
        assert_eq!(db.summary("UX", 1).await.map(|s| s.0), Some(2));
        assert!(db.rejects_by_reason().await.is_empty(), "{:?}", db.rejects_by_reason().await);
    }

    async fn a_display_name_set_by_the_app_reaches_the_summaries_with_the_next_click(db) {
        let app = TestApp::spawn(&db, &[]);
        click_ok(&app, &link(123, "UN", 4, "A")).await;
        assert_eq!(db.summary_name("UN", 4).await, None);
        db.execute("UPDATE members SET line_display_name = 'Alice' WHERE line_uid = 'UN'").await;
        click_ok(&app, &link(123, "UN", 4, "B")).await;
        assert_eq!(db.summary_name("UN", 4).await.as_deref(), Some("Alice"));
    }

    async fn a_campaign_deleted_while_its_clicks_wait_is_set_aside_once(db) {
        db.cli_ok(&["campaign", "add", "--id", "900", "--name", "short-lived"]);
        let app = TestApp::spawn(&db, &[]);
        // The app holds the campaign's row (SQLite: the write lock), clicks arrive and wait,
        // then the app deletes the campaign and commits.
        let mut lock = app_transaction(&db, 900).await;
        for tag in ["A", "B", "C"] {
            click_ok(&app, &link(900, "UD", 1, tag)).await;
        }
        // Longer than an attempt may wait (1 s): the waiting attempts time out, and commit
        // late beside their retries; each reject is still written and counted once.
        tokio::time::sleep(Duration::from_secs(3)).await;
        lock.run("DELETE FROM campaigns WHERE id = 900").await;
        lock.commit().await;
        assert_eq!(db.rejects_by_reason().await.get("unknown_campaign"), Some(&3));
        assert_eq!(logs_of(&db, "UD").await, 0);
        // A batch that waited past its time for the app's lock is counted when it commits,
        // which may be just after the journal empties: poll, then check the exact count.
        let unknown = "track_rejects_total{reason=\"unknown_campaign\"}";
        wait_until(&app, "the three rejects are counted", async || {
            metric(&app.metrics().await, unknown) >= 3.0
        })
        .await;
        let metrics = app.metrics().await;
        assert_eq!(metric(&metrics, unknown), 3.0);
        assert_eq!(metric(&metrics, "track_journal_depth"), 0.0, "never retried forever");
    }

    async fn columns_the_app_adds_to_the_five_tables_change_nothing(db) {
        for table in ["campaigns", "members", "messages", "ryan_click_demo", "component_interaction_logs"] {
            db.execute(&format!(
                "ALTER TABLE {table} ADD COLUMN app_flag INTEGER NOT NULL DEFAULT 7"
            ))
            .await;
        }
        let app = TestApp::spawn(&db, &[]);
        for (uid, tag) in [("UC1", "A"), ("UC2", "B"), ("UC1", "C")] {
            click_ok(&app, &link(123, uid, 2, tag)).await;
        }
        assert_eq!(db.campaign_clicks(123).await, 3);
        assert_eq!(db.count("component_interaction_logs").await, 3);
        assert_eq!(db.count("messages").await, 3);
        assert_eq!(db.summary("UC1", 2).await, Some((2, Some("A,C".into()))));
        assert_eq!(
            scalar(&db, "SELECT CAST(MIN(app_flag) AS SIGNED INTEGER) FROM members WHERE line_uid <> ?", "").await,
            7
        );
    }

    async fn a_campaign_row_locked_by_the_app_for_10_s_under_load_delays_only_the_writes(db) {
        let app = TestApp::spawn(&db, &[]);
        let lock = app_transaction(&db, 123).await;
        let started = Instant::now();
        let mut sent = 0u64;
        let mut slowest = Duration::ZERO;
        // Eight clients, for ten seconds: every redirect must still come.
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..8 {
            let client_app = app.client.clone();
            let url = app.url("/__track?");
            tasks.spawn(async move {
                let mut done = Vec::new();
                let mut i = 0;
                while started.elapsed() < Duration::from_secs(10) {
                    let t = Instant::now();
                    let answer = client_app
                        .get(format!("{url}{}", link(123, &format!("UL{client}"), 1, &format!("t{i}"))))
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(answer.status().as_u16(), 302);
                    done.push(t.elapsed());
                    i += 1;
                }
                done
            });
        }
        while let Some(done) = tasks.join_next().await {
            let done = done.expect("client task");
            sent += done.len() as u64;
            slowest = slowest.max(done.into_iter().max().unwrap_or_default());
        }
        lock.commit().await;
        assert!(sent > 100, "only {sent} redirects in 10 s");
        assert!(slowest < Duration::from_secs(3), "a redirect waited {slowest:?} for the lock");
        assert_eq!(db.campaign_clicks(123).await, sent as i64);
        assert_eq!(db.count("component_interaction_logs").await, sent as i64);
        assert!(db.rejects_by_reason().await.is_empty());
    }
}

/// A transaction of "the marketing app" holding campaign `id`'s row (on SQLite, the
/// database's write lock, as any write transaction there).
struct AppTransaction {
    conn: sqlx::AnyConnection,
}

async fn app_transaction(db: &TestDb, id: i64) -> AppTransaction {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("connect");
    let begin = match db.kind {
        StoreKind::Sqlite => "BEGIN IMMEDIATE",
        StoreKind::Mysql | StoreKind::Postgres => "BEGIN",
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(begin))
        .execute(&mut conn)
        .await
        .expect("begin");
    let mut t = AppTransaction { conn };
    t.run(&format!("UPDATE campaigns SET name = name WHERE id = {id}"))
        .await;
    t
}

impl AppTransaction {
    async fn run(&mut self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn commit(mut self) {
        self.run("COMMIT").await;
    }
}

/// `DELETE /api/members/{uid}`; (status, JSON body).
async fn api_erase(app: &TestApp, uid: &str) -> (u16, serde_json::Value) {
    let answer = app
        .client
        .delete(format!("http://{}/api/members/{uid}", app.admin_addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("erase request");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON body"))
}

/// Rows naming `uid` in every table clicktrack writes (rollups: by uid, before pseudonyms).
async fn rows_naming(db: &TestDb, uid: &str) -> Vec<(&'static str, i64)> {
    let like = format!("%{uid}%");
    let mut rows = Vec::new();
    for (table, sql, bind) in [
        (
            "members",
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM members WHERE line_uid = ?",
            uid,
        ),
        (
            "ryan_click_demo",
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM ryan_click_demo WHERE line_id = ?",
            uid,
        ),
        (
            "logs",
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM component_interaction_logs WHERE line_id = ?",
            uid,
        ),
        (
            "rejects",
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM track_rejects WHERE query_string LIKE ?",
            like.as_str(),
        ),
        (
            "rollup_members",
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM track_rollup_members WHERE line_id = ?",
            uid,
        ),
        (
            "rollup_campaign_members",
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM track_rollup_campaign_members WHERE line_id = ?",
            uid,
        ),
    ] {
        rows.push((table, scalar(db, sql, bind).await));
    }
    rows
}

fn none_left(rows: &[(&'static str, i64)]) -> bool {
    rows.iter().all(|(_, n)| *n == 0)
}

store_tests! {
    async fn erasure_removes_a_member_from_every_table_the_journal_and_redis(db) {
        let Some(redis) = test_redis().await else { return };
        let redis_url = format!("redis://{redis}");
        let prefix = redis_prefix();
        const UX: &str = "Uerase0a1b2c3d4e5f";
        let flags = [
            "--redis-url", redis_url.as_str(), "--redis-key-prefix", prefix.as_str(),
            "--dedup-window-ms", "600000",
        ];
        let app = TestApp::spawn(&db, &flags);
        click_ok(&app, &link(123, UX, 1, "A")).await;
        click_ok(&app, &link(123, UX, 1, "B")).await;
        click_ok(&app, &link(123, "UKEEP", 1, "K")).await;
        // A reject that names the member: its raw query is kept.
        click_ok(&app, &format!("cid=abc&uid={UX}&to=https%3A%2F%2F{ALLOWED_HOST}%2F")).await;
        let before = rows_naming(&db, UX).await;
        assert!(before.iter().all(|(_, n)| *n > 0), "{before:?}");
        assert_eq!(db.count("track_click_tags").await, 3);

        // Two more clicks of the member wait in the journal (the store held), then the
        // instance dies: only the journal has them.
        let blocker = db.block_writes().await;
        click_ok(&app, &link(123, UX, 1, "C")).await;
        click_ok(&app, &link(123, UX, 1, "D")).await;
        click_ok(&app, &link(123, "UKEEP", 1, "L")).await;
        app.kill9();
        blocker.release().await;

        let spool = db.spool_path();
        let erase = |dry_run: bool| {
            let mut args = vec![
                "member", "erase", "--uid", UX, "--spool-path", spool.as_str(),
                "--redis-url", &redis_url, "--redis-key-prefix", &prefix,
            ];
            if dry_run {
                args.push("--dry-run");
            }
            db.cli_ok(&args)
        };
        let dry = String::from_utf8_lossy(&erase(true).stdout).into_owned();
        assert!(dry.contains("would remove"), "{dry}");
        assert!(!none_left(&rows_naming(&db, UX).await), "a dry run removes nothing");
        let out = erase(false);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let line = |name: &str| line_of(&stdout, name);
        assert_eq!(line("members"), 1, "{stdout}");
        assert_eq!(line("messages"), 2, "{stdout}");
        assert_eq!(line("ryan_click_demo"), 1, "{stdout}");
        assert_eq!(line("component_interaction_logs"), 2, "{stdout}");
        assert_eq!(line("track_rejects"), 1, "{stdout}");
        assert_eq!(line("journal records"), 2, "{stdout}");
        assert_eq!(line("redis de-duplication keys"), 4, "{stdout}");
        assert!(!stdout.contains(UX) && !stderr.contains(UX), "the uid is named:\n{stdout}\n{stderr}");
        assert!(none_left(&rows_naming(&db, UX).await), "{:?}", rows_naming(&db, UX).await);
        // The log keeps the clicks without identity: a pseudonym, no User-Agent.
        let kept = "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM component_interaction_logs \
                    WHERE line_id LIKE ? AND user_agent IS NULL";
        assert_eq!(scalar(&db, kept, "erased-%").await, 2);
        assert_eq!(db.count("track_click_tags").await, 3, "tags hold no identity");

        // The other member's journaled click is applied by the next instance; the erased
        // member's keys are gone from Redis, the other member's are not.
        let mut with_api = flags.to_vec();
        with_api.extend(["--admin-token", TOKEN]);
        let app = TestApp::spawn(&db, &with_api);
        click_ok(&app, &link(123, UX, 1, "A")).await;
        click_ok(&app, &link(123, "UKEEP", 1, "K")).await;
        let metrics = app.metrics().await;
        assert_eq!(metric(&metrics, "track_duplicates_total"), 1.0, "only UKEEP's repeat");
        assert_eq!(logs_of(&db, UX).await, 1, "a click after the erasure is a new click");
        assert_eq!(logs_of(&db, "UKEEP").await, 2);
        // Counters and statistics keep the erased member's applied clicks.
        assert_eq!(db.campaign_clicks(123).await, 2 + 2 + 1);
        let (status, body) = crate::stats::admin_get(&app, "/api/campaigns/123/stats").await;
        assert_eq!(status, 200, "{body}");
        let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(stats["totals"]["clicks"], 5, "{stats}");
        // The pseudonym of the erased member, UKEEP, and UX's new click.
        assert_eq!(stats["totals"]["unique_members"], 3, "{stats}");

        // Again: nothing left to remove.
        let again = String::from_utf8_lossy(&erase(false).stdout).into_owned();
        assert_eq!(line_of(&again, "members"), 1, "the new click's member:\n{again}");
    }

    async fn erasure_through_the_api_under_load_keeps_every_other_click(db) {
        let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
        const UX: &str = "Uapi0a1b2c3d";
        let load = |round: usize| {
            let app_client = app.client.clone();
            let url = app.url("/__track?");
            async move {
                let mut ok = 0u64;
                for i in 0..150 {
                    let uid = if i % 3 == 0 { UX.to_owned() } else { format!("UO{}", i % 7) };
                    let q = link(123, &uid, 1, &format!("r{round}i{i}"));
                    let answer = app_client.get(format!("{url}{q}")).send().await.expect("request");
                    assert_eq!(answer.status().as_u16(), 302);
                    ok += u64::from(uid != UX);
                }
                ok
            }
        };
        let (others_during, (status, report)) = tokio::join!(load(0), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            api_erase(&app, UX).await
        });
        assert_eq!(status, 200, "{report}");
        assert!(report["uid_hash"].as_str().is_some_and(|h| h.len() == 16), "{report}");
        let others_after = load(1).await;
        db.settled().await;
        // Every other member's click is there; the member's clicks from after the erasure are.
        assert_eq!(
            scalar(&db, "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM component_interaction_logs WHERE line_id LIKE ?", "UO%").await,
            (others_during + others_after) as i64
        );
        assert!(logs_of(&db, UX).await >= 50, "the 50 clicks sent after the erasure");
        // Each of the member's 100 clicks is either recorded (after the erasure), kept under
        // the pseudonym (applied before it), or dropped from the journal (waiting then).
        let pseudonymized = scalar(&db, "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM component_interaction_logs WHERE line_id LIKE ?", "erased-%").await;
        let metrics = app.metrics().await;
        let dropped = metric(&metrics, "track_clicks_erased_total") as i64
            + report["journal_records"].as_i64().expect("a local journal");
        assert_eq!(logs_of(&db, UX).await + pseudonymized + dropped, 100, "{report}");
        assert_eq!(db.campaign_clicks(123).await, 300 - dropped);
        assert_eq!(orphan_messages(&db).await, 0);
        assert_eq!(metric(&metrics, "track_erasures_total"), 1.0);
        let logs = app.logs();
        assert!(!logs.contains(&format!("\"{UX}\"")), "a log line names the uid");
        // Bad input: a clear 400.
        let long = "U".repeat(101);
        assert_eq!(api_erase(&app, &long).await.0, 400);
    }
}

fn line_of(stdout: &str, name: &str) -> i64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// A journal record as an earlier release (or another producer on NATS) could have written it.
fn old_click(n: u32, uid: &str, target: &str, tag: &str) -> (String, String) {
    let click_id = format!("0192c6a0-0000-7000-8000-{n:012}");
    let record = serde_json::json!({
        "kind": "click", "v": 1, "click_id": click_id,
        "received_at_ns": 1_764_496_800_000_000_000i64 + i64::from(n),
        "uid": uid, "campaign_id": 123, "source_campaign_id": 1,
        "interaction_type": "button_url", "target": target, "tags": [tag], "user_agent": null,
    });
    (click_id, record.to_string())
}

store_tests! {
    async fn values_too_long_for_a_column_are_set_aside_alike_on_every_store(db) {
        // No request can carry them (they are refused at the door); a journal record can.
        let path = db.spool_path();
        let url = format!("sqlite://{path}?mode=rwc");
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.expect("create");
        sqlx::raw_sql(
            "CREATE TABLE spooled_records (seq INTEGER PRIMARY KEY AUTOINCREMENT, click_id TEXT NOT NULL, \
                 reason TEXT NOT NULL, spooled_at TEXT NOT NULL, record TEXT NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .expect("journal table");
        let fine = "https://example.com/ok";
        let records = [
            old_click(1, &"U".repeat(80), fine, "A"),
            old_click(2, "ULONG", &format!("https://example.com/{}", "x".repeat(9_000)), "A"),
            old_click(3, "ULONG", fine, &"T".repeat(70)),
            old_click(4, "ULONG", fine, "A"),
        ];
        for (click_id, record) in &records {
            sqlx::query(
                "INSERT INTO spooled_records (click_id, reason, spooled_at, record) \
                 VALUES (?, 'journal', '2026-11-30 10:00:00', ?)",
            )
            .bind(click_id)
            .bind(record)
            .execute(&mut conn)
            .await
            .expect("write record");
        }
        sqlx::Connection::close(conn).await.expect("close");

        let app = TestApp::spawn(&db, &[]);
        wait_until(&app, "the journal is applied", async || {
            app.metric("track_journal_depth").await == 0.0
        })
        .await;
        let rejects = db.rejects_by_reason().await;
        assert_eq!(rejects.get("uid_too_long"), Some(&1), "{rejects:?}");
        assert_eq!(rejects.get("value_too_long"), Some(&1), "{rejects:?}");
        assert_eq!(rejects.get("tag_too_long"), Some(&1), "{rejects:?}");
        assert_eq!(rejects.get("refused_by_database"), None, "{rejects:?}");
        assert_eq!(db.count("component_interaction_logs").await, 1);
        assert_eq!(db.campaign_clicks(123).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_agent_detail_keeps_the_family_or_nothing_and_no_address_is_ever_stored() {
    for (detail, expected) in [
        ("full", Some(BROWSER_UA.to_owned())),
        ("family", Some("LINE / iPhone".to_owned())),
        ("none", None),
    ] {
        let db = TestDb::sqlite().await;
        let app = TestApp::spawn(
            &db,
            &[
                "--user-agent-detail",
                detail,
                "--trusted-proxy",
                "127.0.0.0/8",
            ],
        );
        let answer = app
            .client
            .get(app.url(&format!("/__track?{}", link(123, "UAGENT", 1, "A"))))
            .header("X-Forwarded-For", "203.0.113.77")
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status().as_u16(), 302);
        click_ok(&app, "cid=bad&uid=UAGENT&to=https%3A%2F%2Fexample.com%2F").await;
        let logged = db.interaction("UAGENT").await;
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].4, expected, "--user-agent-detail {detail}");
        let reject_ua = scalar(
            &db,
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM track_rejects WHERE user_agent IS ?",
            expected.as_deref().unwrap_or(""),
        )
        .await;
        if expected.is_some() {
            assert_eq!(
                reject_ua, 1,
                "the reject's User-Agent follows --user-agent-detail {detail}"
            );
        }
        // No address anywhere: every text column of the file, read raw.
        drop(app);
        let path = db.url.trim_start_matches("sqlite://").to_owned();
        let mut text =
            String::from_utf8_lossy(&std::fs::read(&path).expect("read database")).into_owned();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            text.push_str(&String::from_utf8_lossy(&wal));
        }
        assert!(
            !text.contains("203.0.113.77") && !text.contains("127.0.0.1"),
            "an IP address is stored"
        );
    }
}
