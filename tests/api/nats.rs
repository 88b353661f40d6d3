//! The JetStream journal (`--nats-url`) with a real nats-server of the test's own (free ports,
//! its own store directory, stopped by pid): two instances exact on one stream and one
//! database, kill -9 of an instance holding fetched-but-unacked clicks, NATS restarted under
//! load, the stream's de-duplication, and an unsafe stream refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::*;

pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A nats-server with JetStream, on ports and a store directory of its own.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// `None` (with the reason printed) only when nats-server is missing outside CI.
    pub async fn start() -> Option<NatsServer> {
        if !Path::new(NATS_SERVER).exists() {
            skip(
                "nats-server",
                "nats-server is not installed (Debian package nats-server)",
            );
            return None;
        }
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            monitor: free_port(),
            dir: tempfile::tempdir().expect("store dir"),
        };
        server.run(false).await;
        Some(server)
    }

    /// Start on `self.port`; a fresh server whose ports were taken meanwhile (another test's
    /// connection can land on a port `free_port` handed out) moves to other ports, a restarted
    /// one waits for its own port to come free (its clients reconnect to that address).
    async fn run(&mut self, restarting: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.dir.path().join("nats-server.log");
            let child = Command::new(NATS_SERVER)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-m", &self.monitor.to_string(), "-js", "-sd"])
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("nats-server log"))
                .spawn()
                .expect("start nats-server");
            let child = self.child.insert(child);
            match wait_healthy(child, self.monitor).await {
                Ok(()) => return,
                Err(status) => {
                    self.child = None;
                    let printed = std::fs::read_to_string(&log).unwrap_or_default();
                    let port_taken = printed.contains("address already in use");
                    assert!(
                        port_taken && Instant::now() < deadline,
                        "nats-server exited before it was ready ({status}):\n{printed}"
                    );
                    if !restarting {
                        (self.port, self.monitor) = (free_port(), free_port());
                    } else {
                        self.monitor = free_port();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop (SIGTERM: it flushes its store) and start again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.run(true).await;
    }

    /// Never panics: it also runs from `drop` while a failed test unwinds.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
            if let Err(e) = child.wait() {
                eprintln!("could not reap nats-server: {e}");
            }
        }
    }
}

/// Until the server's health endpoint (on `monitor`) says JetStream is up; a server that
/// exits first returns its exit status.
pub async fn wait_healthy(
    server: &mut Child,
    monitor: u16,
) -> Result<(), std::process::ExitStatus> {
    let http = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{monitor}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(&health).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(status);
        }
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Flags for an instance on `server`'s stream: redeliveries after 2 s, so a test does not wait
/// for the 30 s default.
fn nats_args(server: &NatsServer) -> Vec<String> {
    // Journal mode whatever CLICKTRACK_TEST_ACK says: these tests are about the journal.
    [
        "--ack",
        "journal",
        "--nats-ack-wait-ms",
        "2000",
        "--nats-url",
    ]
    .into_iter()
    .map(String::from)
    .chain([server.url()])
    .collect()
}

fn spawn_on(db: &TestDb, server: &NatsServer, extra: &[&str]) -> TestApp {
    let args = nats_args(server);
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    TestApp::spawn(db, &all)
}

crate::store_tests! {
// Two instances, one stream, one database: every click once, every counter exact, and both
// instances apply (the consumer is shared).
async fn two_instances_on_one_stream_stay_exact(db) {
    let Some(server) = NatsServer::start().await else { return };
    let apps = [spawn_on(&db, &server, &[]), spawn_on(&db, &server, &[])];
    let clients = (0..20).map(|w| {
        let app = &apps[w % 2];
        async move {
            let mut ok = 0u32;
            for i in 0..20 {
                let hot = app.track(link(CAMPAIGNS[0], "U_HOT", 1, &format!("T{}", (w + i) % 10))).await;
                let own = app.track(link(CAMPAIGNS[1], &format!("U_OWN_{w}"), 2, "Z")).await;
                ok += u32::from(hot.status() == 302) + u32::from(own.status() == 302);
            }
            ok
        }
    });
    let ok: u32 = join_all(clients).await.into_iter().sum();
    assert_eq!(ok, 800);
    assert_eq!(db.campaign_clicks(CAMPAIGNS[0]).await, 400);
    assert_eq!(db.campaign_clicks(CAMPAIGNS[1]).await, 400);
    assert_eq!(db.summary("U_HOT", 1).await.map(|s| s.0), Some(400));
    let tags = db.summary("U_HOT", 1).await.and_then(|s| s.1).expect("tags");
    assert_eq!(tags.split(',').count(), 10, "each tag once: {tags}");
    assert_eq!(db.summary("U_OWN_7", 2).await, Some((20, Some("Z".into()))));
    assert_eq!(db.count("component_interaction_logs").await, 800);
    assert_eq!(db.count("members").await, 21);
    // The rows above are the exactness; here: the clicks went through the stream, and the
    // stream is empty for every instance. (Which instance applied what, and whether a batch
    // that outlived its time limit on a loaded machine counted as recorded or as already
    // recorded when it was retried, varies.)
    let mut published = 0.0;
    for app in &apps {
        let m = app.metrics().await;
        published += metric(&m, r#"track_spooled_total{reason="journal"}"#);
        assert_eq!(metric(&m, "track_journal_depth"), 0.0);
        // Read from the consumer every 200 ms: it may trail the depth by one reading.
        wait_until(app, "the consumer's pending count reaches 0", async || {
            app.metric("track_nats_consumer_pending").await == 0.0
        })
        .await;
    }
    assert!(published > 0.0, "the clicks went through the stream");
}

// kill -9 of an instance that holds fetched-but-unacked clicks (the store is blocked, so it
// cannot commit them) while more clicks are in flight: the survivor applies them once the
// stream redelivers them, and every click that got a 302 is recorded exactly once.
async fn kill_9_of_an_instance_holding_unacked_clicks_loses_none(db) {
    let Some(server) = NatsServer::start().await else { return };
    let victim = spawn_on(&db, &server, &[]);
    let survivor = spawn_on(&db, &server, &[]);
    instance_killed_holding_unacked_clicks(&db, victim, &survivor).await;
}
}

/// The kill -9 case, on one server or a cluster: `victim` and `survivor` serve `db` on one
/// stream with a short ack wait.
pub async fn instance_killed_holding_unacked_clicks(
    db: &TestDb,
    victim: TestApp,
    survivor: &TestApp,
) {
    let blocker = db.block_writes().await;
    // Clicks to the victim; its applier fetches them and cannot commit.
    let mut redirected = 0;
    for i in 0..30 {
        let r = victim.track(link(123, &format!("U_V{i}"), 1, "V")).await;
        redirected += u32::from(r.status() == 302);
    }
    wait_until(&victim, "the victim holds unacked clicks", async || {
        metric(
            &victim.metrics_now().await,
            "track_nats_consumer_ack_pending",
        ) > 0.0
    })
    .await;
    // More clicks in flight at the moment of the kill: each either got its 302 or failed.
    let in_flight: Vec<_> = (0..40)
        .map(|i| {
            let client = victim.client.clone();
            let uid = format!("U_F{i}");
            let url = victim.url(&format!("/__track?{}", link(123, &uid, 1, "F")));
            async move {
                let ok = client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 302);
                (uid, ok)
            }
        })
        .collect();
    let kill = async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        victim.kill9();
    };
    let (answers, ()) = tokio::join!(join_all(in_flight), kill);
    blocker.release().await;
    // The survivor gets the victim's clicks after the ack wait (2 s) and applies them. A click
    // in flight at the kill may be recorded without its 302 having left (it was durable
    // already); one that got its 302 must be there; none may be there twice.
    let redirected_in_flight: Vec<&str> = answers
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(uid, _)| uid.as_str())
        .collect();
    let at_least = i64::from(redirected) + redirected_in_flight.len() as i64;
    wait_until(survivor, "the survivor applied every click", async || {
        db.campaign_clicks(123).await >= at_least
    })
    .await;
    for i in 0..30 {
        assert_eq!(db.interaction(&format!("U_V{i}")).await.len(), 1, "U_V{i}");
    }
    for (uid, ok) in &answers {
        let rows = db.interaction(uid).await.len();
        assert!(rows <= 1, "{uid} recorded {rows} times");
        assert!(!ok || rows == 1, "{uid} got its 302 and is not recorded");
    }
    let total = db.count("component_interaction_logs").await;
    assert_eq!(
        db.campaign_clicks(123).await,
        total,
        "the counter agrees with the rows"
    );
    let m = survivor.metrics().await;
    let redelivered = metric(&m, "track_nats_redelivered_total");
    assert!(
        redelivered >= 1.0,
        "the survivor applied clicks the victim had fetched"
    );
    // One line for the takeover, with its count (logged once the redeliveries stop).
    wait_until(survivor, "the takeover is logged", async || {
        survivor.logs().contains("took over clicks")
    })
    .await;
    let counted: Vec<f64> = survivor
        .log_lines()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("took over clicks"))
        })
        .map(|l| l["clicks"].as_f64().unwrap_or(0.0))
        .collect();
    assert_eq!(counted.iter().sum::<f64>(), redelivered, "{counted:?}");
}

// NATS restarted while clicks keep coming: every request gets its 302 (the clicks meanwhile go
// to the store directly), and each is recorded once, including those published just before
// the restart and applied after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_under_load_loses_nothing() {
    let Some(mut server) = NatsServer::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let app = Arc::new(spawn_on(&db, &server, &[]));
    let load = Load::start(std::slice::from_ref(&app), "N");
    load.until_more(200).await;
    server.restart().await;
    load.until_more(200).await;
    let sent = load.finish().await;
    assert_eq!(
        db.count("component_interaction_logs").await,
        sent,
        "{}",
        app.logs()
    );
    assert_eq!(db.campaign_clicks(123).await, sent);
    // After the restart the journal is NATS again, not the store directly (under load the
    // appender retries it every 500 ms; once idle, at once).
    wait_until(&app, "the journal is writable again", async || {
        app.metric("track_spool_ready").await == 1.0
    })
    .await;
    // One outage, at most one line saying the journal could not be read.
    let read_failures = app
        .log_lines()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("journal read failed"))
        })
        .count();
    assert!(read_failures <= 1, "{}", app.logs());
}

/// For a test that drives the journal without an app: `db`'s store, its identity, and the
/// settings of a stream on `server` with a 2 s ack wait and `max_bytes`.
async fn direct_journal(
    db: &TestDb,
    server: &NatsServer,
    max_bytes: u64,
) -> (
    clicktrack::store::Store,
    clicktrack::journal::StoreIdentity,
    clicktrack::journal::NatsSettings,
) {
    use clicktrack::store::{ConnectOptions, DatabaseUrl, Store};
    let url = DatabaseUrl::parse(&db.url).expect("url");
    let store = Store::connect(&url, ConnectOptions { max_connections: 1 })
        .await
        .expect("store");
    let identity = clicktrack::app::journal_identity(&store, &url)
        .await
        .expect("identity");
    let settings = clicktrack::journal::NatsSettings {
        urls: vec![server.url()],
        stream: "clicktrack".into(),
        subject: "clicktrack.clicks".into(),
        replicas: 1,
        ack_wait: Duration::from_secs(2),
        max_bytes,
    };
    (store, identity, settings)
}

// A publisher retry (the same click_id published twice) is one message in the stream and one
// row in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_drops_a_click_published_twice() {
    use clicktrack::journal::NatsJournal;

    let Some(server) = NatsServer::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let (store, identity, settings) = direct_journal(&db, &server, 0).await;
    let publisher = NatsJournal::connect(&settings, &identity)
        .await
        .expect("journal");
    let click = click_record("U_TWICE", "T");
    for _ in 0..2 {
        publisher.append(&[&click]).await.expect("published");
    }
    publisher.close().await;
    // An instance applies the stream: one click.
    let app = spawn_on(&db, &server, &[]);
    wait_until(&app, "the click is applied", async || {
        db.campaign_clicks(123).await >= 1
    })
    .await;
    assert_eq!(db.count("component_interaction_logs").await, 1);
    let m = app.metrics().await;
    assert_eq!(
        metric(&m, r#"track_journal_applied_total{outcome="recorded"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"track_journal_applied_total{outcome="already_recorded"}"#
        ),
        0.0,
        "the second publish never reached the stream"
    );
    store.close().await;
}

// The previous release published one message per click (a JSON object, not an array): what
// it left in the stream at an upgrade is applied, each click once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_previous_release_are_applied_after_an_upgrade() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    // The stream as an instance makes it, then stopped before anything is published.
    drop(spawn_on(&db, &server, &[]));
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let received_at_ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    for i in 0..5 {
        let click_id = uuid::Uuid::now_v7();
        let old = serde_json::json!({
            "kind": "click", "v": 1, "click_id": click_id, "received_at_ns": received_at_ns as i64,
            "uid": format!("U_OLD_{i}"), "campaign_id": 123, "source_campaign_id": 1,
            "interaction_type": "image_click", "target": format!("https://{ALLOWED_HOST}/old"),
            "tags": ["OLD"], "user_agent": null,
        });
        let message = async_nats::jetstream::message::PublishMessage::build()
            .payload(old.to_string().into())
            .message_id(click_id.to_string());
        js.send_publish("clicktrack.clicks", message)
            .await
            .expect("publish")
            .await
            .expect("PubAck");
    }
    let app = spawn_on(&db, &server, &[]);
    wait_until(&app, "the old messages are applied", async || {
        app.metric("track_journal_depth").await == 0.0
    })
    .await;
    assert_eq!(db.campaign_clicks(123).await, 5);
    assert_eq!(
        db.summary("U_OLD_3", 1).await,
        Some((1, Some("OLD".into())))
    );
    // And a new click after them, in the new form.
    assert_eq!(app.track(link(123, "U_NEW", 1, "NEW")).await.status(), 302);
    assert_eq!(db.count("component_interaction_logs").await, 6);
}

// --journal-max-bytes is the stream's size limit (discard new): a full stream refuses a
// publish as "full" (the group then goes to the store directly), and an instance started
// with another limit sets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_size_limit_reaches_the_stream() {
    use clicktrack::journal::{NatsJournal, NatsSettings};

    let Some(server) = NatsServer::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let (store, identity, settings) = direct_journal(&db, &server, 2048).await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let limit = async || {
        let mut stream = js.get_stream("clicktrack").await.expect("stream");
        stream.info().await.expect("info").config.max_bytes
    };
    let journal = NatsJournal::connect(&settings, &identity)
        .await
        .expect("journal");
    assert_eq!(limit().await, 2048);
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = journal
            .append(&[&click_record(&format!("U_FULL_{i}"), "T")])
            .await
        {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("a 2 KiB stream fills up");
    assert_eq!(refused.kind(), "full", "{refused}");
    assert!(
        refused.to_string().contains("--journal-max-bytes"),
        "{refused}"
    );
    journal.close().await;
    let unlimited = NatsJournal::connect(
        &NatsSettings {
            max_bytes: 0,
            ..settings
        },
        &identity,
    )
    .await
    .expect("journal");
    assert_eq!(
        limit().await,
        -1,
        "the instance's own limit (none) is the stream's"
    );
    unlimited.close().await;
    store.close().await;
}

// A stream that could drop acknowledged clicks is refused at start (exit 2, every reason); the
// sync warning is printed until --nats-server-syncs says the servers sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_stream_is_refused_and_unsynced_servers_are_warned_about() {
    use async_nats::jetstream::stream::{Config, StorageType};

    let Some(server) = NatsServer::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(Config {
        name: "clicktrack".into(),
        subjects: vec!["clicktrack.clicks".into()],
        storage: StorageType::Memory,
        max_age: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .expect("create a memory stream");
    let out = serve_command(&db)
        .args([
            "--nats-url",
            &server.url(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for reason in [
        "memory storage",
        "retention",
        "max_age",
        "not created by clicktrack",
    ] {
        assert!(stderr.contains(reason), "{reason}: {stderr}");
    }
    js.delete_stream("clicktrack").await.expect("delete");

    // A second stream on a server that already has clicktrack's: the subject is taken, a
    // configuration mistake (exit 2, so systemd does not restart it in a loop) naming the
    // stream that has it and the flag that fixes it.
    let app = spawn_on(&db, &server, &[]);
    drop(app);
    let out = serve_command(&db)
        .args(["--nats-url", &server.url(), "--nats-stream", "NEW"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for said in ["stream clicktrack already has it", "--nats-subject"] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    js.delete_stream("clicktrack").await.expect("delete");

    let app = spawn_on(&db, &server, &[]);
    assert!(
        app.logs().contains("sync_interval: always"),
        "{}",
        app.logs()
    );
    drop(app);
    let app = spawn_on(&db, &server, &["--nats-server-syncs"]);
    assert!(
        !app.logs().contains("sync_interval: always"),
        "{}",
        app.logs()
    );
}

// deploy/nats/nats-server.conf starts a server clicktrack can use (its store directory and
// ports swapped for the test's), as written on a current nats-server; on Debian's 2.9, which
// predates `sync_interval`, without that line (the test says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_config_runs() {
    use crate::nats_cluster::{Release, server_binary};
    for release in [Release::Current, Release::Debian] {
        if let Some(binary) = server_binary(release) {
            example_config_runs(&binary).await;
        }
    }
}

async fn example_config_runs(binary: &Path) {
    let version = Command::new(binary)
        .arg("--version")
        .output()
        .expect("version");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let syncs = !version.contains("v2.9.") && !version.contains("v2.8.");
    let shipped = include_str!("../../deploy/nats/nats-server.conf");
    assert!(shipped.contains("sync_interval: always"));
    let dir = tempfile::tempdir().expect("dir");
    let (port, monitor) = (free_port(), free_port());
    let conf: String = shipped
        .lines()
        .filter(|l| syncs || !l.trim_start().starts_with("sync_interval"))
        .map(|l| {
            l.replace("127.0.0.1:4222", &format!("127.0.0.1:{port}"))
                .replace("127.0.0.1:8222", &format!("127.0.0.1:{monitor}"))
                .replace(
                    "/var/lib/nats-server",
                    &dir.path().join("js").display().to_string(),
                )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if !syncs {
        eprintln!(
            "{} predates sync_interval: checked without that line",
            version.trim()
        );
    }
    let path = dir.path().join("nats-server.conf");
    std::fs::write(&path, conf).expect("write conf");
    let mut server = Command::new(binary)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
        .spawn()
        .expect("start");
    if let Err(status) = wait_healthy(&mut server, monitor).await {
        let printed = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("nats-server refused the example config ({status}):\n{printed}");
    }
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(
        &db,
        &[
            "--ack",
            "journal",
            "--nats-url",
            &format!("nats://127.0.0.1:{port}"),
        ],
    );
    assert_eq!(app.track(link(123, "U_CONF", 1, "C")).await.status(), 302);
    assert_eq!(db.campaign_clicks(123).await, 1);
    drop(app);
    signal(server.id(), "TERM");
    server.wait().expect("reap");
}

/// Clicks from 6 workers, each click a uid of its own, alternating between `apps`, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl Load {
    /// `prefix` keeps the uids of two loads in one test apart.
    pub fn start(apps: &[Arc<TestApp>], prefix: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let workers = (0..6)
            .map(|w| {
                let (app, stop, sent) = (apps[w % apps.len()].clone(), stop.clone(), sent.clone());
                tokio::spawn(async move {
                    let mut bad = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let r = app
                            .track(link(123, &format!("U_{prefix}{w}_{i}"), 1, "C"))
                            .await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        if r.status() != 302 {
                            bad.push(r.status().as_u16());
                        }
                        i += 1;
                    }
                    bad
                })
            })
            .collect();
        Load {
            stop,
            sent,
            workers,
        }
    }

    pub async fn until_more(&self, more: u64) {
        sent_at_least(&self.sent, self.sent.load(Ordering::Relaxed) + more).await;
    }

    /// Stop; every answer was a 302; how many clicks were sent.
    pub async fn finish(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut bad = Vec::new();
        for w in self.workers {
            bad.extend(w.await.expect("worker"));
        }
        assert!(bad.is_empty(), "statuses other than 302: {bad:?}");
        self.sent.load(Ordering::Relaxed) as i64
    }
}
