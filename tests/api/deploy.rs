//! The systemd files in deploy/systemd: the environment example is a configuration clicktrack
//! accepts as it is (every name one it reads, every value valid), and the unit gives a
//! SIGTERM drain the time it needs. `.ci/run` also checks the unit with `systemd-analyze
//! verify`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::helpers::*;

const ENV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd/clicktrack.env");
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/clicktrack.service"
);

/// The `NAME=value` lines of the example (comments and blank lines left out).
fn env_example() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(ENV_FILE).expect("deploy/systemd/clicktrack.env");
    for l in text.lines().map(str::trim) {
        assert!(
            l.is_empty() || l.starts_with('#') || l.contains('='),
            "not NAME=value: {l}"
        );
    }
    env_file("clicktrack.env")
}

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/clicktrack@.service"
);
const NGINX: &str = include_str!("../../deploy/nginx/clicktrack.conf");

/// `Key=value` of a unit file.
fn setting_of(path: &str, key: &str) -> String {
    let unit = std::fs::read_to_string(path).expect("unit file");
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in {path}"))
        .to_owned()
}

fn unit_setting(key: &str) -> String {
    setting_of(UNIT, key)
}

/// The `NAME=value` lines of an environment file of deploy/systemd.
fn env_file(name: &str) -> Vec<(String, String)> {
    let path = format!("{}/deploy/systemd/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_environment_example_is_a_configuration_clicktrack_accepts() {
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    let known: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(['=', ']']).next())
        .collect();
    let example = env_example();
    for (name, _) in &example {
        assert!(
            known.contains(name.as_str()) || name == "RUST_LOG",
            "{name} is not a variable clicktrack reads (known: {known:?})"
        );
    }
    // Started with it (the database, journal and ports of the test override the example's),
    // clicktrack comes up, redirects to the example's allowed host, and stops within the drain.
    let db = TestDb::sqlite().await;
    let mut app = TestApp::on(&db).own_policy().env(&example).start();
    let r = app
        .track("cid=123&uid=U_SD&to=https%3A%2F%2Fwww.hotel.example.com%2Froom")
        .await;
    assert_eq!(r.status(), 302, "{}", app.logs());
    assert_eq!(db.count("component_interaction_logs").await, 1);
    app.terminate();
}

// The template of nginx's two instances: each instance file gives one of nginx's upstream
// servers and an admin port of its own; the template is the single unit except where an
// instance must differ (its files, state directory and journal), so the two cannot drift.
#[test]
fn the_template_unit_starts_the_instances_nginx_sends_to() {
    let upstream: Vec<&str> = NGINX
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))
        .filter_map(|l| l.split([' ', ';']).next())
        .filter(|port| port.starts_with("80"))
        .collect();
    assert_eq!(
        upstream,
        ["8080", "8081"],
        "nginx's clicktrack upstream moved"
    );
    let mut admin = BTreeSet::new();
    for (i, port) in upstream.iter().enumerate() {
        let instance = env_file(&format!("instance-{}.env", i + 1));
        let get = |k: &str| {
            instance
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("instance-{} sets {k}", i + 1))
        };
        assert_eq!(get("CLICKTRACK_LISTEN"), format!("127.0.0.1:{port}"));
        assert!(
            admin.insert(get("CLICKTRACK_ADMIN_LISTEN")),
            "admin ports differ"
        );
        assert_eq!(instance.len(), 2, "only what an instance does not share");
    }
    let single = std::fs::read_to_string(UNIT).expect("unit");
    let template = std::fs::read_to_string(TEMPLATE).expect("template");
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter(|l| {
                ![
                    "Description=",
                    "StateDirectory=",
                    "WorkingDirectory=",
                    "ExecStart=",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .filter(|l| !l.contains("%i") && !l.starts_with("DefaultInstance="))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        settings(&template),
        settings(&single),
        "the template drifted from the unit"
    );
    assert_eq!(
        setting_of(TEMPLATE, "ExecStart"),
        "/usr/local/bin/clicktrack serve --spool-path /var/lib/clicktrack-%i/clicktrack.spool.db"
    );
    assert_eq!(setting_of(TEMPLATE, "StateDirectory"), "clicktrack-%i");
    assert!(template.contains("EnvironmentFile=/etc/clicktrack/instance-%i.env"));
}

#[test]
fn the_unit_gives_the_sigterm_drain_its_time() {
    let drain_ms: u64 = env_example()
        .into_iter()
        .find(|(k, _)| k == "CLICKTRACK_DRAIN_TIMEOUT_MS")
        .map(|(_, v)| v.parse().expect("a number"))
        .expect("the example sets the drain time");
    let stop: u64 = unit_setting("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    // The drain, then closing the pools and the journal: a few seconds to spare.
    assert!(
        stop * 1000 >= drain_ms + 5_000,
        "TimeoutStopSec={stop}s, drain {drain_ms} ms"
    );
    assert_eq!(unit_setting("KillSignal"), "SIGTERM");
    // The journal is in the state directory, the only place the sandbox lets it write.
    let state = format!("/var/lib/{}/", unit_setting("StateDirectory"));
    assert!(unit_setting("ExecStart").contains(&format!("--spool-path {state}")));
    assert_eq!(unit_setting("ProtectSystem"), "strict");
}
