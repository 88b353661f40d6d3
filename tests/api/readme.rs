//! The runnable blocks of README.md and docs/, executed as written: every `sh` block is either
//! run here (in bash, with the real `curl`, in an empty folder, `cargo run --release --` being
//! the binary under test and the default ports moved to free ones), run by another test, run
//! by `.ci/run`, or listed below with the reason it cannot run on a test machine. A new block
//! fails `every_shell_block_is_run_somewhere` until it is given one of those.
//!
//! What a block shows as its output (`#   ` lines after a command, `…` standing for anything)
//! must be what the command prints; a command with no shown output must succeed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{BIN, free_port};

const README: &str = include_str!("../../README.md");

/// Who runs each `sh` block, by file and first line.
const RUN_ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "# Run the service on the embedded default store",
        "this test (serve) and .ci/run (cargo test)",
    ),
    (
        "README.md",
        "cargo run --release -- campaign add",
        "this test",
    ),
    ("README.md", "export CLICKTRACK_ADMIN_TOKEN=", "this test"),
    ("README.md", "export CLICKTRACK_SIGNING_KEYS=", "this test"),
    (
        "README.md",
        "curl -sf -H \"Authorization: Bearer",
        "this test",
    ),
    (
        "docs/migrating-from-flask.md",
        "export DATABASE_URL=",
        "tests/api/migrating.rs sets it to its database",
    ),
    (
        "docs/migrating-from-flask.md",
        "clicktrack migrate",
        "tests/api/migrating.rs",
    ),
    (
        "docs/migrating-from-flask.md",
        "clicktrack serve",
        "tests/api/migrating.rs",
    ),
    (
        "docs/migrating-from-flask.md",
        "curl -s -A",
        "tests/api/migrating.rs",
    ),
    (
        "docs/migrating-from-flask.md",
        "nginx -t && nginx -s reload",
        "not here: the production nginx; its config is run by tests/api/nginx.rs",
    ),
    (
        "docs/deploying.md",
        "pip install locust",
        "tests/api/locust.rs (Locust installed by .ci/run)",
    ),
    (
        "docs/deploying.md",
        "install -m 0644 deploy/systemd/clicktrack@.service",
        "not here: needs root and a running systemd; .ci/run verifies the units",
    ),
    (
        "docs/privacy.md",
        "clicktrack member erase",
        "a synopsis ([...] optional flags); tests/api/shared_tables.rs runs both forms",
    ),
    (
        "docs/scale-out.md",
        "clicktrack serve \\",
        "not here: needs the hosts nats-1..3, mysql-primary, redis; tests/api/nats_cluster.rs runs the layout",
    ),
];

/// Every ```sh block of the README and docs/, as (file, first line, body).
fn shell_blocks() -> Vec<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut blocks = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path
            .strip_prefix(root)
            .expect("in the repository")
            .display()
            .to_string();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "```sh" {
                continue;
            }
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            let first = body.first().copied().unwrap_or("").to_owned();
            blocks.push((name.clone(), first, body.join("\n")));
        }
    }
    blocks
}

#[test]
fn every_shell_block_is_run_somewhere() {
    for (file, first, _) in shell_blocks() {
        assert!(
            RUN_ELSEWHERE
                .iter()
                .any(|(f, start, _)| *f == file && first.starts_with(start)),
            "{file}: the block starting `{first}` is run by no test: run it (tests/api/readme.rs) \
             or say in RUN_ELSEWHERE why it cannot be"
        );
    }
}

/// One command of a block and the output the block shows for it.
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The commands of a block (continuation lines joined), each with its `#   ` output lines.
fn steps(body: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut pending = String::new();
    for line in body.lines() {
        if let Some(out) = line.strip_prefix("#   ") {
            steps
                .last_mut()
                .expect("output after a command")
                .shown
                .push(out.to_owned());
            continue;
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                steps.push(Step {
                    command: std::mem::take(&mut pending),
                    shown: Vec::new(),
                });
            }
        }
    }
    steps
}

/// Does some line of `output` equal `shown`, where `…` stands for anything?
fn shows(output: &str, shown: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    output.lines().any(|line| {
        let line = line.trim_end_matches('\r');
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if parts.len() == 1 {
            return line == first;
        }
        let Some(mut rest) = line.strip_prefix(first) else {
            return false;
        };
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    })
}

/// An empty folder with `clicktrack` on the PATH, the environment the blocks export, and the
/// `serve` they start.
struct Terminal {
    dir: tempfile::TempDir,
    path: String,
    env: BTreeMap<String, String>,
    public: u16,
    admin: u16,
    serve: Option<Child>,
}

impl Terminal {
    fn new() -> Terminal {
        let dir = tempfile::tempdir().expect("dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        std::os::unix::fs::symlink(BIN, bin.join("clicktrack")).expect("symlink");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let (public, admin) = (free_port(), free_port());
        let mut env = BTreeMap::new();
        // The README's ports are the defaults; the test's own are given the same way.
        env.insert("CLICKTRACK_LISTEN".into(), format!("127.0.0.1:{public}"));
        env.insert(
            "CLICKTRACK_ADMIN_LISTEN".into(),
            format!("127.0.0.1:{admin}"),
        );
        Terminal {
            dir,
            path,
            env,
            public,
            admin,
            serve: None,
        }
    }

    /// The line as this test runs it: the binary for `cargo run`, the test's ports.
    fn adapt(&self, line: &str) -> String {
        line.replace("cargo run --release -- ", "clicktrack ")
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", self.public))
            .replace("127.0.0.1:9090", &format!("127.0.0.1:{}", self.admin))
    }

    fn bash(&self, line: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-o", "pipefail", "-c", &self.adapt(line)])
            .current_dir(self.dir.path().join("work"))
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.dir.path())
            .env("CLICKTRACK_LOG_FORMAT", "json")
            // The applier does not step aside on this machine busy with other tests
            // (helpers::NO_STEPPING_ASIDE).
            .env("CLICKTRACK_MAX_APPLY_LAG", "0")
            .envs(&self.env);
        cmd
    }

    /// `export NAME=value` lines change this terminal's environment.
    fn export(&mut self, line: &str) -> bool {
        let Some(assignment) = line.strip_prefix("export ") else {
            return false;
        };
        let assignment = assignment.split("   #").next().unwrap_or(assignment).trim();
        let (name, value) = assignment.split_once('=').expect("NAME=value");
        self.env
            .insert(name.to_owned(), value.trim_matches('\'').to_owned());
        true
    }

    /// Start `serve` (stopping the one running: "restart it") and wait until it is ready.
    fn start_serve(&mut self, line: &str) {
        self.stop_serve();
        let line = line.split("  #").next().unwrap_or(line);
        let child = self
            .bash(&format!("exec {line}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        self.serve = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = format!("http://127.0.0.1:{}/readyz", self.public);
        while Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &ready])
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "{line} did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_serve(&mut self) {
        if let Some(mut child) = self.serve.take() {
            crate::helpers::signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    /// Run a command until it prints what the block shows (the click reaches the database
    /// moments after its 302), at most 15 s; a command that shows nothing must succeed.
    fn run(&self, step: &Step) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.bash(&step.command).output().expect("bash");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let missing: Vec<&String> = step.shown.iter().filter(|s| !shows(&stdout, s)).collect();
            if out.status.success() && missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` ({}):\n{stdout}\n{}\ndoes not show {missing:?}",
                step.command,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every command of a README block, in order.
    fn block(&mut self, first_line: &str) {
        let body = shell_blocks()
            .into_iter()
            .find(|(file, first, _)| file == "README.md" && first.starts_with(first_line))
            .unwrap_or_else(|| panic!("README.md has no block starting `{first_line}`"))
            .2;
        for step in steps(&body) {
            if self.export(&step.command) {
                continue;
            }
            let command = self.adapt(&step.command);
            if command.starts_with("clicktrack serve") {
                self.start_serve(&step.command);
            } else if command.trim() == "cargo test" {
                // The README's test command: what .ci/run runs.
            } else {
                self.run(&step);
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop_serve();
    }
}

// Set up, "Try it", the admin API, a signed link and the campaign results, as a newcomer types
// them into two terminals in an empty folder.
#[test]
fn the_readme_runs_as_written() {
    assert!(README.contains("```sh\n# Run the service on the embedded default store"));
    let mut t = Terminal::new();
    std::fs::create_dir(t.dir.path().join("work")).expect("work dir");
    t.block("# Run the service on the embedded default store");
    t.block("cargo run --release -- campaign add");
    t.block("export CLICKTRACK_ADMIN_TOKEN=");
    t.block("export CLICKTRACK_SIGNING_KEYS=");
    t.block("curl -sf -H \"Authorization: Bearer");
    assert!(
        t.dir.path().join("work/clicks.csv").is_file(),
        "the CSV was downloaded"
    );
}

#[test]
fn shown_output_matches_with_ellipses() {
    assert!(shows("a\r\nHTTP/1.1 302 Found\r\n", "HTTP/1.1 302 Found"));
    assert!(!shows("HTTP/1.1 302 Found", "HTTP/1.1 302"));
    assert!(shows(
        r#"{"url":"https://t/x?cid=1&sig=k1.ab","e":"2"}"#,
        r#"{"url":"https://t/…&sig=k1.…"}"#
    ));
    assert!(!shows(
        r#"{"url":"https://t/x"}, 1"#,
        r#"{"url":"https://t/…"}"#
    ));
    assert!(!shows("track_x 2", "track_x 1"));
}

// The README's flag table and `serve --help` agree: every flag in the table is in the help, with
// the same environment variable and the same default.
#[test]
fn the_flag_table_agrees_with_the_help() {
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // The help's sections, one per flag, keyed by the long name.
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        if let Some(rest) = line.strip_prefix("      --") {
            let name = rest.split([' ', ',']).next().unwrap_or("").to_owned();
            current = Some(format!("--{name}"));
        }
        if let Some(name) = &current {
            let section = sections.entry(name.clone()).or_default();
            section.push_str(line);
            section.push('\n');
        }
    }
    let backticked = |cell: &str| -> Option<String> {
        let cell = cell.trim();
        let rest = cell.strip_prefix('`')?;
        Some(rest.split('`').next().unwrap_or("").to_owned())
    };
    let mut checked = 0;
    for row in README.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let flag = backticked(cells[0].trim_start_matches("| ")).expect("flag");
        let flag = flag.split(' ').next().unwrap_or("").to_owned();
        let section = sections
            .get(&flag)
            .unwrap_or_else(|| panic!("README's {flag} is not in `serve --help`"));
        if let Some(env) = backticked(cells[1]) {
            assert!(
                // A secret's value is hidden: `[env: NAME]`.
                section.contains(&format!("[env: {env}="))
                    || section.contains(&format!("[env: {env}]")),
                "{flag}: README says {env}, the help:\n{section}"
            );
        }
        if let Some(default) = backticked(cells[2]) {
            assert!(
                section.contains(&format!("[default: {default}]")),
                "{flag}: README's default is {default}, the help:\n{section}"
            );
        }
        checked += 1;
    }
    assert!(
        checked > 30,
        "the README's flag table moved ({checked} rows)"
    );
}
