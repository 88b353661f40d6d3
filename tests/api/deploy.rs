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
    std::fs::read_to_string(ENV_FILE)
        .expect("deploy/systemd/clicktrack.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not NAME=value: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// `Key=value` of the unit file.
fn unit_setting(key: &str) -> String {
    let unit = std::fs::read_to_string(UNIT).expect("deploy/systemd/clicktrack.service");
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in the unit"))
        .to_owned()
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
