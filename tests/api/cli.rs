//! The command line's contract: exit codes (0 ok, 2 bad configuration naming the flag,
//! 1 runtime failure), `migrate` and `campaign add`.

use crate::helpers::{StoreKind, TestDb, serve_command};

/// `serve` with `args`, on random ports unless `args` names its own `--listen`.
fn serve_output(db: &TestDb, args: &[&str]) -> std::process::Output {
    let mut cmd = serve_command(db);
    cmd.args(["--admin-listen", "127.0.0.1:0"]);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(args).output().expect("run serve")
}

#[tokio::test]
async fn bad_configuration_exits_2_and_names_the_flag() {
    let db = TestDb::sqlite().await;
    let cases: [(&[&str], &str); 6] = [
        (&["--allow-host", "http://example.com/"], "--allow-host"),
        (&["--database-url", "oracle://db"], "--database-url"),
        (&["--batch-max-rows", "0"], "--batch-max-rows"),
        (&["--queue-capacity", "many"], "--queue-capacity"),
        (&["--listen", "not-an-address"], "--listen"),
        (&["--spill-after-ms", "6000"], "--spill-after-ms"),
    ];
    for (args, flag) in cases {
        let out = serve_output(&db, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} should name {flag}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_listen_address_in_use_is_a_runtime_failure() {
    let db = TestDb::sqlite().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = serve_output(&db, &["--listen", &addr]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[tokio::test]
async fn migrate_is_repeatable_and_campaign_add_refuses_duplicates() {
    let db = TestDb::empty(StoreKind::Sqlite).await.expect("sqlite");
    // It says what it did: the first run creates the tables, the second changes nothing.
    let first = String::from_utf8_lossy(&db.cli_ok(&["migrate"]).stdout).into_owned();
    for table in [
        "campaigns",
        "members",
        "messages",
        "ryan_click_demo",
        "component_interaction_logs",
    ] {
        assert!(first.contains(table), "{first}");
    }
    assert!(
        first.contains("created tables") && first.contains("nothing dropped"),
        "{first}"
    );
    let second = String::from_utf8_lossy(&db.cli_ok(&["migrate"]).stdout).into_owned();
    assert!(
        second.ends_with(
            ": schema already up to date, nothing changed\n\
             rollups: up to date, campaign statistics are complete\n"
        ),
        "{second}"
    );
    db.cli_ok(&["campaign", "add", "--id", "123", "--name", "first"]);
    let out = db.cli(&["campaign", "add", "--id", "123", "--name", "again"]);
    assert_eq!(out.status.code(), Some(1));
    // A command's own error is one plain line, not a log record.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: campaign 123 already exists\n"
    );
    let out = db.cli(&["campaign", "add", "--id", "7", "--name", "Spring sale"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "campaign 7 added: Spring sale"
    );
    let out = db.cli(&["campaign", "add", "--id", "0", "--name", "zero"]);
    assert_eq!(out.status.code(), Some(2), "ids are positive");
}

#[tokio::test]
async fn an_unreachable_database_is_named_with_its_cause_at_once() {
    // A port nobody listens on.
    let port = crate::helpers::free_port();
    let mysql = format!("mysql://root@127.0.0.1:{port}/test");
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-dir").join("x.db");
    let sqlite = format!("sqlite://{}", missing.display());
    for (url, named, cause) in [
        (mysql.as_str(), format!("127.0.0.1:{port}/test"), "refused"),
        (
            sqlite.as_str(),
            missing.display().to_string(),
            "does not exist",
        ),
    ] {
        for command in ["migrate", "stats"] {
            let started = std::time::Instant::now();
            let out = std::process::Command::new(crate::helpers::BIN)
                .args([command, "--database-url", url])
                .output()
                .expect("run clicktrack");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command} {url}: {stderr}");
            assert!(
                stderr.starts_with("error: ") && stderr.contains(&named),
                "{command} names {named}: {stderr}"
            );
            let cause = if command == "stats" && url.starts_with("sqlite") {
                "no such database file"
            } else {
                cause
            };
            assert!(stderr.contains(cause), "{command} says why: {stderr}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{command} fails fast, not after a pool timeout"
            );
        }
    }
}
