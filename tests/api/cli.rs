//! The command line's contract: exit codes (0 ok, 2 bad configuration naming the flag,
//! 1 runtime failure), `migrate` and `campaign add`.

use crate::helpers::{StoreKind, TestDb, serve_command};

/// `serve` with `args` and `env`, on random ports unless `args` names its own listeners.
fn serve_output_with(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = serve_command(db);
    for flag in ["--listen", "--admin-listen"] {
        if !args.contains(&flag) {
            cmd.args([flag, "127.0.0.1:0"]);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.args(args).output().expect("run serve")
}

fn serve_output(db: &TestDb, args: &[&str]) -> std::process::Output {
    serve_output_with(db, args, &[])
}

/// Flags, environment, what the message must say.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

#[tokio::test]
async fn bad_configuration_exits_2_and_names_the_flag() {
    let db = TestDb::sqlite().await;
    let port = crate::helpers::free_port().to_string();
    let both = format!("127.0.0.1:{port}");
    let any = format!("0.0.0.0:{port}");
    let cases: [Case; 11] = [
        (
            &["--allow-host", "http://example.com/"],
            &[],
            &["--allow-host"],
        ),
        // A wildcard over a public suffix is an open redirect in all but name.
        (
            &["--allow-host", "*.com"],
            &[],
            &["--allow-host", "public suffix"],
        ),
        (
            &["--allow-host", "*.co.jp"],
            &[],
            &["--allow-host", "public suffix"],
        ),
        (&["--database-url", "oracle://db"], &[], &["--database-url"]),
        (&["--batch-max-rows", "0"], &[], &["--batch-max-rows"]),
        (&["--queue-capacity", "many"], &[], &["--queue-capacity"]),
        (&["--listen", "not-an-address"], &[], &["--listen"]),
        (&["--spill-after-ms", "6000"], &[], &["--spill-after-ms"]),
        (
            &["--redis-url", "http://x"],
            &[],
            &["--redis-url", "redis://HOST[:PORT][/DB]"],
        ),
        (
            &["--listen", &both, "--admin-listen", &any],
            &[],
            &["--admin-listen", "ports of their own"],
        ),
        // Set in the environment: the message names the variable that was set.
        (
            &[],
            &[("CLICKTRACK_ADMIN_TOKEN", "short")],
            &["CLICKTRACK_ADMIN_TOKEN", "--admin-token", "16 characters"],
        ),
    ];
    for (args, env, said) in cases {
        let out = serve_output_with(&db, args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        for s in said {
            assert!(
                stderr.contains(s),
                "{args:?} {env:?} should say {s}: {stderr}"
            );
        }
    }
    // Pretty logs into a pipe: no colour codes around the fields.
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["serve", "--log-format", "pretty", "--database-url", &db.url])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--batch-max-rows", "0"])
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--batch-max-rows"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a pipe: {stderr:?}"
    );
    // `link` without a key: the key is missing, not "invalid".
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["link", "--base-url", "https://t.example.com"])
        .args(["--to", "https://example.com/", "--cid", "1"])
        .env_remove("CLICKTRACK_SIGNING_KEYS")
        .output()
        .expect("run link");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --signing-key (CLICKTRACK_SIGNING_KEYS) is needed"),
        "{stderr}"
    );
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
    // It names the database it used.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: campaign 7 added: Spring sale", db.url)
    );
    let out = db.cli(&["campaign", "add", "--id", "0", "--name", "zero"]);
    assert_eq!(out.status.code(), Some(2), "ids are positive");
    let out = db.cli(&["campaign", "add", "--id", "8", "--name", " "]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--name"), "{stderr}");
}

// In a folder without the database (the wrong one), `campaign add` refuses, names the file and
// says what creates it, instead of creating an empty database of its own.
#[test]
fn campaign_add_never_creates_a_database() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["campaign", "add", "--id", "1", "--name", "x"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for said in [
        "clicktrack.db",
        "no such database file",
        "clicktrack migrate",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    assert!(!dir.path().join("clicktrack.db").exists());
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
