//! `deploy/nginx/clicktrack.conf` with the real nginx (Debian package nginx): the test starts
//! nginx on free ports with a prefix of its own, in front of clicktrack and of a stand-in for
//! the existing app, and stops it by its pid. The file is used as shipped; only its addresses
//! (marked ADDRESS) and its log directory are swapped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::*;

const NGINX: &str = "/usr/sbin/nginx";
const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/clicktrack.conf");
const TOKEN: &str = "nginx-test-admin-token-0123";

/// The app that served everything before clicktrack: answers every path with its own name.
async fn old_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind old app");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .fallback(|uri: axum::http::Uri| async move { format!("old app: {}", uri.path()) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// nginx running the shipped file; stopped (TERM to the master, which ends its workers) on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx in front of `instances` (the file's two clicktrack addresses, in order) and
    /// `old`. `None` (with the reason printed) only when nginx is missing outside CI.
    async fn start(instances: [SocketAddr; 2], old: SocketAddr) -> Option<Nginx> {
        if !Path::new(NGINX).exists() {
            skip("nginx", "nginx is not installed (Debian package nginx)");
            return None;
        }
        let dir = tempfile::tempdir().expect("nginx prefix");
        let port = free_port();
        let shipped = std::fs::read_to_string(CONF).expect("deploy/nginx/clicktrack.conf");
        let mut conf = String::new();
        for line in shipped.lines() {
            let line = if line.contains("clicktrack instance 1") {
                line.replace("127.0.0.1:8080", &instances[0].to_string())
            } else if line.contains("clicktrack instance 2") {
                line.replace("127.0.0.1:8081", &instances[1].to_string())
            } else if line.contains("the existing app") {
                line.replace("127.0.0.1:5000", &old.to_string())
            } else if line.contains("the public port") {
                line.replace("listen 80", &format!("listen 127.0.0.1:{port}"))
            } else {
                line.replace("/var/log/nginx/", &format!("{}/", dir.path().display()))
            };
            conf.push_str(&line);
            conf.push('\n');
        }
        let site = dir.path().join("clicktrack.conf");
        std::fs::write(&site, &conf).expect("write site");
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("temp dir");
        }
        let d = dir.path().display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/client_body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {};\n}}\n",
            site.display()
        );
        let main_path = dir.path().join("nginx.conf");
        std::fs::write(&main_path, main).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&main_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Nginx { child, addr, dir })
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clicktrack.access.log")).unwrap_or_default()
    }

    fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        if let Err(e) = self.child.wait() {
            eprintln!("could not reap nginx: {e}");
        }
    }
}

/// A browser on the loopback address `ip` (nginx is reached from another address than its
/// own, as a real client would), following no redirects.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(BROWSER_UA)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

const ANONYMOUS: &str = "/__track?cid=123&type=image_click&to=https%3A%2F%2Fexample.com%2Fa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_clicks_reach_clicktrack_with_the_real_client_address() {
    let db = TestDb::sqlite().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = TestApp::spawn(
        &db,
        &[
            "--listen",
            &listen,
            "--trusted-proxy",
            "127.0.0.1/32",
            "--dedup-window-ms",
            "60000",
            "--admin-token",
            TOKEN,
        ],
    );
    let old = old_app().await;
    let Some(nginx) = Nginx::start([app.addr, app.addr], old).await else {
        return;
    };
    let alice = client_from([127, 0, 0, 2]);
    let bob = client_from([127, 0, 0, 3]);

    // A click through nginx: the 302 and clicktrack's request id, which is the stored click's.
    let first = alice
        .get(nginx.url(ANONYMOUS))
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .expect("click");
    assert_eq!(first.status(), 302);
    assert_eq!(first.headers()["location"], "https://example.com/a");
    let request_id = first.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let pool = db.pool().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT click_id FROM component_interaction_logs")
        .fetch_all(&pool)
        .await
        .expect("click ids");
    assert_eq!(stored, std::slice::from_ref(&request_id));
    assert!(
        nginx
            .access_log()
            .contains(&format!("request_id={request_id}")),
        "nginx's line names the click: {}",
        nginx.access_log()
    );

    // The same anonymous tap from the same person, with another forged X-Forwarded-For: the
    // address nginx saw decides, so it is a duplicate. From another person, it is a click.
    let again = alice
        .get(nginx.url(ANONYMOUS))
        .header("x-forwarded-for", "7.7.7.7")
        .send()
        .await
        .expect("click");
    assert_eq!(again.status(), 302);
    assert_eq!(
        bob.get(nginx.url(ANONYMOUS))
            .send()
            .await
            .expect("click")
            .status(),
        302
    );
    assert_eq!(db.count("component_interaction_logs").await, 2);
    assert_eq!(app.metric("track_duplicates_total").await, 1.0);

    // clicktrack's admin side is not reachable through nginx; the old app keeps its paths.
    let metrics = alice
        .get(nginx.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 404);
    assert!(!metrics.text().await.unwrap_or_default().contains("track_"));
    for path in ["/dashboard", "/api/campaigns", "/", "/menu"] {
        let r = alice
            .get(nginx.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("old app");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            r.text().await.unwrap_or_default(),
            format!("old app: {path}")
        );
    }
    // The link contract has GET (and HEAD) only.
    let post = alice.post(nginx.url(ANONYMOUS)).send().await.expect("post");
    assert_eq!(post.status(), 403);
    assert_eq!(db.count("component_interaction_logs").await, 2);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_clicktrack_behind_nginx_loses_and_doubles_no_click() {
    let db = TestDb::sqlite().await;
    let ports = [free_port(), free_port()];
    let listen = ports.map(|p| format!("127.0.0.1:{p}"));
    let journals = [db.journal_path("a"), db.journal_path("b")];
    let spawn =
        |i: usize| TestApp::spawn(&db, &["--listen", &listen[i], "--spool-path", &journals[i]]);
    let mut apps = [Some(spawn(0)), Some(spawn(1))];
    let addrs = ports.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let old = old_app().await;
    let Some(nginx) = Nginx::start(addrs, old).await else {
        return;
    };

    // Clicks keep coming, each a different member, while each instance is restarted in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let url = nginx.url("/__track?");
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (stop, sent, client) = (stop.clone(), sent.clone(), client_from([127, 0, 0, 2]));
            let url = url.clone();
            async move {
                let mut bad = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .get(format!("{url}{}", link(123, &format!("U_{w}_{i}"), 1, "R")))
                        .send()
                        .await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(r) if r.status() == 302 => {}
                        other => bad.push(format!("{other:?}")),
                    }
                    i += 1;
                }
                bad
            }
        })
        .collect();
    let load = tokio::spawn(async move { join_all(workers).await });
    for (i, slot) in apps.iter_mut().enumerate() {
        sent_at_least(&sent, sent.load(Ordering::Relaxed) + 200).await;
        // SIGTERM: stop accepting, finish what was accepted, apply the journal, exit 0.
        let mut app = slot.take().expect("running");
        app.terminate();
        sent_at_least(&sent, sent.load(Ordering::Relaxed) + 200).await;
        *slot = Some(spawn(i));
    }
    sent_at_least(&sent, sent.load(Ordering::Relaxed) + 200).await;
    stop.store(true, Ordering::Relaxed);
    let bad: Vec<String> = load.await.expect("load").into_iter().flatten().collect();
    assert!(
        bad.is_empty(),
        "{} requests did not get their 302, e.g. {:?}\nnginx: {}",
        bad.len(),
        bad.first(),
        std::fs::read_to_string(nginx.error_log()).unwrap_or_default()
    );
    // The restarts were seen: nginx found an instance refusing or closing connections and
    // sent those clicks to the other one.
    let errors = std::fs::read_to_string(nginx.error_log()).unwrap_or_default();
    assert!(
        errors.contains("Connection refused") || errors.contains("prematurely closed"),
        "nginx never met a restarting instance: {errors}"
    );
    let sent = sent.load(Ordering::Relaxed) as i64;
    eprintln!("{sent} clicks through nginx during two restarts");
    assert_eq!(
        db.count("component_interaction_logs").await,
        sent,
        "each click once"
    );
    assert_eq!(db.campaign_clicks(123).await, sent);
    assert_eq!(db.count("members").await, sent, "one member per click");
    drop(apps);
}
