//! Test harness: runs the real `clicktrack` binary on random ports against its own database,
//! and reads results back through store-neutral helpers, so every test case can later run
//! against every store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{AssertSqlSafe, Connection, Row};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_clicktrack");
/// Campaigns every test database starts with (the seed's Locust mix uses these).
pub const CAMPAIGNS: [i64; 3] = [123, 456, 789];
pub const ALLOWED_HOST: &str = "example.com";
/// Benchmarks and tests send a browser user agent (command-line clients are bots, SPEC §4a).
pub const BROWSER_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Line/13.20.0";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Mysql,
    Postgres,
}

/// Where the MySQL-family tests find their server (CI: the local MariaDB).
fn mysql_server_url() -> String {
    std::env::var("CLICKTRACK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// Where the PostgreSQL tests find their server (CI: the local PostgreSQL 15).
fn postgres_server_url() -> String {
    std::env::var("CLICKTRACK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database server the tests create their databases on.
struct ServerOf {
    /// `scheme://user@host:port`, without a database.
    url: String,
    /// Where to connect to create and drop databases.
    admin: String,
    /// What a skipped test needed, and the variable that points at it.
    needs: &'static str,
    variable: &'static str,
    /// `CREATE DATABASE name ...`'s options, `DROP DATABASE IF EXISTS name...`'s suffix.
    charset: &'static str,
    drop_force: &'static str,
}

impl ServerOf {
    fn new(kind: StoreKind) -> ServerOf {
        if kind == StoreKind::Postgres {
            let url = postgres_server_url();
            return ServerOf {
                admin: format!("{url}/postgres"),
                url,
                needs: "PostgreSQL",
                variable: "CLICKTRACK_TEST_POSTGRES_URL",
                charset: "ENCODING 'UTF8'",
                // Connections of an app that was killed may linger a moment.
                drop_force: " WITH (FORCE)",
            };
        }
        let url = mysql_server_url();
        ServerOf {
            admin: url.clone(),
            url,
            needs: "MariaDB",
            variable: "CLICKTRACK_TEST_MYSQL_URL",
            charset: "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            drop_force: "",
        }
    }
}

/// Run one test case against every store: `store_tests! { async fn name(db) { ... } }` makes
/// `name::sqlite`, `name::mysql` and `name::postgres`, each with a fresh `db: TestDb` of that
/// store.
#[macro_export]
macro_rules! store_tests {
    ($($cases:tt)*) => {
        $crate::cases_on!([sqlite Sqlite, mysql Mysql, postgres Postgres] $($cases)*);
    };
}

/// `store_tests!` for the stores on a server only (MySQL and PostgreSQL): for cases that cut
/// the connection or hold a row lock, which SQLite's single file has no counterpart of.
#[macro_export]
macro_rules! server_store_tests {
    ($($cases:tt)*) => {
        $crate::cases_on!([mysql Mysql, postgres Postgres] $($cases)*);
    };
}

/// Each case as a module holding `case` and one test per store of the list, one case at a
/// time (the list repeats inside every case).
#[macro_export]
macro_rules! cases_on {
    ($stores:tt) => {};
    ($stores:tt async fn $name:ident($db:ident) $body:block $($rest:tt)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($db: $crate::helpers::TestDb) $body

            $crate::store_test!($stores);
        }
        $crate::cases_on!($stores $($rest)*);
    };
}

/// A test per store of the list for a `store_tests!` case (`case`, in the module the macro
/// made).
#[macro_export]
macro_rules! store_test {
    ([$($test:ident $kind:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(db) =
                    $crate::helpers::TestDb::new($crate::helpers::StoreKind::$kind).await
                {
                    case(db).await;
                }
            }
        )*
    };
}

/// The `--ack` mode apps run in unless a test names one: `CLICKTRACK_TEST_ACK` (`journal`,
/// the default, or `store`). CI runs the suite in both.
pub fn ack_mode() -> String {
    std::env::var("CLICKTRACK_TEST_ACK").unwrap_or_else(|_| "journal".into())
}

/// True when apps answer from the journal (the store has the click moments later).
pub fn journal_mode() -> bool {
    ack_mode() == "journal"
}

/// A database of the test's own: a temporary SQLite file, or a fresh MySQL or PostgreSQL
/// database that is dropped afterwards; and a temporary directory for its journal.
///
/// Reads wait until every app serving this database has applied its journal (or finds its
/// store down): with `--ack journal` a 302 means the click is durable in the journal, and the
/// database has it a moment later. Tests read the settled state, as a report would.
pub struct TestDb {
    pub kind: StoreKind,
    pub url: String,
    /// The database created on a server (MySQL, PostgreSQL), dropped with the `TestDb`.
    server_database: Option<String>,
    dir: TempDir,
    /// Admin addresses of the apps serving this database.
    apps: Arc<Mutex<Vec<SocketAddr>>>,
}

impl TestDb {
    /// A fresh database with the schema and `CAMPAIGNS`, created through the CLI (`migrate`,
    /// then `campaign add`, which never creates a database). `None` (with
    /// the reason printed) only when MariaDB is unreachable outside CI.
    pub async fn new(kind: StoreKind) -> Option<TestDb> {
        let db = TestDb::empty(kind).await?;
        db.cli_ok(&["migrate"]);
        for id in CAMPAIGNS {
            db.cli_ok(&[
                "campaign",
                "add",
                "--id",
                &id.to_string(),
                "--name",
                &format!("campaign {id}"),
            ]);
        }
        Some(db)
    }

    /// A fresh SQLite database (always available).
    pub async fn sqlite() -> TestDb {
        TestDb::new(StoreKind::Sqlite)
            .await
            .expect("SQLite is always available")
    }

    /// A database with nothing in it (no schema).
    pub async fn empty(kind: StoreKind) -> Option<TestDb> {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("clicktrack.db").display());
                Some(TestDb {
                    kind,
                    url,
                    server_database: None,
                    dir,
                    apps: Arc::default(),
                })
            }
            StoreKind::Mysql | StoreKind::Postgres => TestDb::empty_on_server(kind).await,
        }
    }

    /// A fresh database on the MySQL or PostgreSQL test server.
    async fn empty_on_server(kind: StoreKind) -> Option<TestDb> {
        let server = ServerOf::new(kind);
        sqlx::any::install_default_drivers();
        let mut conn = match sqlx::AnyConnection::connect(&server.admin).await {
            Ok(conn) => conn,
            Err(e) => {
                skip(
                    server.needs,
                    &format!(
                        "{} not reachable at {} ({e}); set {}",
                        server.needs, server.url, server.variable
                    ),
                );
                return None;
            }
        };
        let name = format!(
            "ct_test_{}",
            &uuid::Uuid::now_v7().simple().to_string()[16..]
        );
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {name} {}",
            server.charset
        )))
        .execute(&mut conn)
        .await
        .expect("create test database");
        conn.close().await.expect("close");
        Some(TestDb {
            kind,
            url: format!("{}/{name}", server.url),
            server_database: Some(name),
            dir: tempfile::tempdir().expect("temp dir"),
            apps: Arc::default(),
        })
    }

    /// `sql`, written for SQLite and MySQL (`?` placeholders, `CAST(.. AS SIGNED INTEGER)`,
    /// `CAST(.. AS CHAR)`), in this store's dialect: the tests' own reads, written once.
    pub fn sql(&self, sql: &str) -> AssertSqlSafe<String> {
        if self.kind != StoreKind::Postgres {
            return AssertSqlSafe(sql.to_owned());
        }
        let sql = sql
            .replace("AS SIGNED INTEGER)", "AS BIGINT)")
            .replace("AS SIGNED)", "AS BIGINT)")
            .replace("AS CHAR)", "AS TEXT)");
        AssertSqlSafe(clicktrack::db::numbered(&sql))
    }

    /// This MySQL or PostgreSQL database's server address.
    pub fn server_addr(&self) -> SocketAddr {
        let url = url::Url::parse(&self.url).expect("database url");
        let default_port = match self.kind {
            StoreKind::Postgres => 5432,
            StoreKind::Mysql | StoreKind::Sqlite => 3306,
        };
        url.socket_addrs(|| Some(default_port))
            .expect("resolve")
            .into_iter()
            .next()
            .expect("an address")
    }

    /// The URL that reaches this database through a proxy at `proxy`.
    pub fn url_via(&self, proxy: SocketAddr) -> String {
        let mut url = url::Url::parse(&self.url).expect("database url");
        url.set_port(Some(proxy.port())).expect("set port");
        url.to_string()
    }

    /// Wait (30 s at most) until every live app serving this database has an empty journal.
    /// An app nobody listens for any more (killed, stopped) is skipped. A test that reads
    /// while it keeps the store down on purpose uses `TestApp::metrics_now` instead.
    pub async fn settled(&self) {
        let apps = self.apps.lock().expect("apps").clone();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        for admin in apps {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = match client.get(format!("http://{admin}/metrics")).send().await {
                    Ok(answer) => answer.text().await.unwrap_or_default(),
                    // Nobody listens: the app has stopped (a stopped app applies nothing more).
                    Err(e) if e.is_connect() => break,
                    // Slow under load: ask again.
                    Err(_) => String::new(),
                };
                if text.contains("track_journal_depth") && settled(&text) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the journal of the app at {admin} did not drain:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Another journal in this database's directory, for a second instance (one journal per
    /// process).
    pub fn journal_path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(format!("{name}.spool.db"))
            .display()
            .to_string()
    }

    /// The journal file every app serving this database uses (unless a test gives its own).
    pub fn spool_path(&self) -> String {
        self.dir
            .path()
            .join("clicktrack.spool.db")
            .display()
            .to_string()
    }

    /// Run a clicktrack subcommand that must succeed; its output.
    pub fn cli_ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "clicktrack {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run a clicktrack subcommand against this database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .args(["--database-url", &self.url, "--log-format", "json"])
            .output()
            .expect("run clicktrack")
    }

    /// A connection pool for assertions: the same SQL on both stores (`?` placeholders, and
    /// numbers cast to `SIGNED INTEGER`, which both read as a 64-bit integer). Waits until the
    /// apps serving the database have applied their journals (`settled`).
    pub async fn pool(&self) -> AnyPool {
        self.settled().await;
        sqlx::any::install_default_drivers();
        AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .expect("open test database")
    }

    pub async fn execute(&self, sql: &str) {
        let pool = self.pool().await;
        sqlx::raw_sql(self.sql(sql))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
    }

    async fn scalar(&self, sql: String) -> i64 {
        let pool = self.pool().await;
        let row = sqlx::query(self.sql(&sql))
            .fetch_one(&pool)
            .await
            .expect("query");
        let value: Option<i64> = row.try_get(0).expect("integer");
        pool.close().await;
        value.unwrap_or(0)
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(format!(
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM {table}"
        ))
        .await
    }

    pub async fn campaign_clicks(&self, id: i64) -> i64 {
        self.scalar(format!(
            "SELECT CAST(clicked_count AS SIGNED INTEGER) FROM campaigns WHERE id = {id}"
        ))
        .await
    }

    pub async fn campaign_clicks_total(&self) -> i64 {
        self.scalar("SELECT CAST(SUM(clicked_count) AS SIGNED INTEGER) FROM campaigns".into())
            .await
    }

    pub async fn members_named(&self, uid: &str) -> i64 {
        let pool = self.pool().await;
        let n: i64 = sqlx::query_scalar(
            self.sql("SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM members WHERE line_uid = ?"),
        )
        .bind(uid)
        .fetch_one(&pool)
        .await
        .expect("query");
        pool.close().await;
        n
    }

    /// (total_clicks, last_click_tag) of one summary row, if it exists.
    pub async fn summary(&self, uid: &str, src: i64) -> Option<(i64, Option<String>)> {
        let pool = self.pool().await;
        let row = sqlx::query(self.sql(
            "SELECT CAST(total_clicks AS SIGNED INTEGER), last_click_tag FROM ryan_click_demo \
             WHERE line_id = ? AND source_campaign_id = ?",
        ))
        .bind(uid)
        .bind(src)
        .fetch_optional(&pool)
        .await
        .expect("query");
        pool.close().await;
        row.map(|r| (r.get(0), r.get(1)))
    }

    /// line_display_name of one summary row.
    pub async fn summary_name(&self, uid: &str, src: i64) -> Option<String> {
        let pool = self.pool().await;
        let name: Option<String> = sqlx::query_scalar(self.sql(
            "SELECT line_display_name FROM ryan_click_demo WHERE line_id = ? AND source_campaign_id = ?"),
        )
        .bind(uid)
        .bind(src)
        .fetch_one(&pool)
        .await
        .expect("query");
        pool.close().await;
        name
    }

    /// Sum of `total_clicks` over every summary row.
    pub async fn summary_clicks_total(&self) -> i64 {
        self.scalar("SELECT CAST(SUM(total_clicks) AS SIGNED INTEGER) FROM ryan_click_demo".into())
            .await
    }

    /// The `line_id` of every interaction-log row.
    pub async fn logged_uids(&self) -> Vec<String> {
        let pool = self.pool().await;
        let uids = sqlx::query_scalar(self.sql("SELECT line_id FROM component_interaction_logs"))
            .fetch_all(&pool)
            .await
            .expect("query");
        pool.close().await;
        uids
    }

    /// reason → count, from `track_rejects`.
    pub async fn rejects_by_reason(&self) -> BTreeMap<String, i64> {
        let pool = self.pool().await;
        let rows = sqlx::query(self.sql(
            "SELECT reason, CAST(COUNT(*) AS SIGNED INTEGER) FROM track_rejects GROUP BY reason",
        ))
        .fetch_all(&pool)
        .await
        .expect("query");
        pool.close().await;
        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// (campaign_id, interaction_type, interaction_value, triggered_at, user_agent, click_id)
    /// of one uid's interaction-log rows.
    pub async fn interaction(
        &self,
        uid: &str,
    ) -> Vec<(i64, String, String, String, Option<String>, Option<String>)> {
        let pool = self.pool().await;
        let rows = sqlx::query(self.sql(
            "SELECT CAST(campaign_id AS SIGNED INTEGER), CAST(interaction_type AS CHAR), \
                    CAST(interaction_value AS CHAR), CAST(triggered_at AS CHAR), \
                    CAST(user_agent AS CHAR), click_id \
             FROM component_interaction_logs WHERE line_id = ? ORDER BY id",
        ))
        .bind(uid)
        .fetch_all(&pool)
        .await
        .expect("query");
        pool.close().await;
        rows.into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    }

    pub async fn messages_of(&self, uid: &str) -> Vec<String> {
        let pool = self.pool().await;
        let rows = sqlx::query_scalar(self.sql(
            "SELECT CAST(m.content AS CHAR) FROM messages m JOIN members u ON u.id = m.member_id \
             WHERE u.line_uid = ? AND m.direction = 'incoming' AND m.message_type = 'text' ORDER BY m.id"),
        )
        .bind(uid)
        .fetch_all(&pool)
        .await
        .expect("query");
        pool.close().await;
        rows
    }

    /// Make the database refuse inserts into `table` whose `column` is LIKE `pattern`,
    /// standing in for any constraint a production schema may have.
    pub async fn refuse_inserts(
        &self,
        name: &str,
        table: &str,
        column: &str,
        pattern: &str,
        message: &str,
    ) {
        let sql = match self.kind {
            StoreKind::Sqlite => format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN NEW.{column} LIKE '{pattern}' \
                 BEGIN SELECT RAISE(ABORT, '{message}'); END"
            ),
            StoreKind::Mysql => format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW \
                 BEGIN IF NEW.{column} LIKE '{pattern}' THEN \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'; END IF; END"
            ),
            StoreKind::Postgres => format!(
                "CREATE FUNCTION {name}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.{column} LIKE '{pattern}' THEN RAISE EXCEPTION '{message}'; \
                 END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW \
                 EXECUTE FUNCTION {name}_refuse()"
            ),
        };
        self.execute(&sql).await;
    }
}

/// Something holding a lock that keeps the store from accepting writes, until released: on
/// SQLite the database-wide write lock, on a server a row lock on campaign 123, which every
/// batch clicking it must take first.
pub struct WriteBlocker(sqlx::AnyConnection);

impl TestDb {
    pub async fn block_writes(&self) -> WriteBlocker {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("connect");
        let lock = match self.kind {
            StoreKind::Sqlite => "BEGIN IMMEDIATE",
            StoreKind::Mysql | StoreKind::Postgres => {
                "BEGIN; SELECT id FROM campaigns WHERE id = 123 FOR UPDATE"
            }
        };
        sqlx::raw_sql(AssertSqlSafe(lock))
            .execute(&mut conn)
            .await
            .expect("take the lock");
        WriteBlocker(conn)
    }
}

impl WriteBlocker {
    pub async fn release(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release");
        self.0.close().await.expect("close");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.server_database.take() else {
            return;
        };
        let kind = self.kind;
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let server = ServerOf::new(kind);
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&server.admin).await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}{}",
                    server.drop_force
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

/// A running `clicktrack serve`.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

/// How a test starts `clicktrack serve` on its database: `TestApp::on(&db)`, then what differs
/// from the usual (its flags, no redirect policy, another URL, a log filter, environment
/// variables), then `start()`. `TestApp::spawn(&db, flags)` is the usual case in one call.
pub struct AppBuilder<'a> {
    db: &'a TestDb,
    database_url: String,
    allow_test_host: bool,
    args: Vec<String>,
    log_filter: String,
    env: Vec<(String, String)>,
}

impl<'a> AppBuilder<'a> {
    /// More flags (a flag given here replaces the default the harness would add).
    pub fn args(mut self, args: &[&str]) -> AppBuilder<'a> {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// No `--allow-host` of the harness's: the test's flags (or environment) set the policy.
    pub fn own_policy(mut self) -> AppBuilder<'a> {
        self.allow_test_host = false;
        self
    }

    /// Reach the database at `url` (e.g. through a proxy).
    pub fn database_url(mut self, url: &str) -> AppBuilder<'a> {
        self.database_url = url.to_owned();
        self
    }

    /// This `RUST_LOG` filter instead of `info`.
    pub fn log_filter(mut self, filter: &str) -> AppBuilder<'a> {
        self.log_filter = filter.to_owned();
        self
    }

    /// Configuration by environment variables (as systemd's EnvironmentFile gives it); the
    /// harness's flags (database, journal, random ports) still win.
    pub fn env(mut self, env: &[(String, String)]) -> AppBuilder<'a> {
        self.env.extend_from_slice(env);
        self
    }

    /// Start the process and wait for its "clicktrack ready" line (30 s at most).
    pub fn start(self) -> TestApp {
        let db = self.db;
        let mut args: Vec<&str> = Vec::new();
        if self.allow_test_host {
            args.extend(["--allow-host", ALLOWED_HOST]);
        }
        args.extend(self.args.iter().map(String::as_str));
        let args = args.as_slice();
        let database_url = self.database_url.as_str();
        let log_filter = self.log_filter.as_str();
        let env = self.env.as_slice();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--database-url",
            database_url,
            "--log-format",
            "json",
        ]);
        if !args.contains(&"--spool-path") {
            cmd.args(["--spool-path", &db.spool_path()]);
        }
        if !args.contains(&"--ack") {
            cmd.args(["--ack", &ack_mode()]);
        }
        // Most tests send the same click many times on purpose, to prove the counts exact;
        // de-duplication would (rightly) count those once. Its own tests turn it on.
        if !args.contains(&"--dedup-window-ms") {
            cmd.args(["--dedup-window-ms", "0"]);
        }
        if !args.contains(&"--max-apply-lag") {
            cmd.args(NO_STEPPING_ASIDE);
        }
        // Random ports, unless the test needs a fixed one (a restart on the same address).
        for flag in ["--listen", "--admin-listen"] {
            if !args.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        let mut child = cmd
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", log_filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn clicktrack serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let ready = ready_addresses(&line);
                    // Logged before `spawn` returns, so tests can count lines from there.
                    logs.lock().expect("log lock").push(line);
                    if let Some(addrs) = ready {
                        let _ = ready_tx.send(addrs);
                    }
                }
            });
        }
        let (addr, admin_addr) = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "clicktrack did not become ready:\n{}",
                    logs.lock().expect("log lock").join("\n")
                );
            }
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(BROWSER_UA)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        db.apps.lock().expect("apps").push(admin_addr);
        TestApp {
            addr,
            admin_addr,
            client,
            child,
            logs,
        }
    }
}

impl TestApp {
    /// A builder for an app on `db` (see `AppBuilder`).
    pub fn on(db: &TestDb) -> AppBuilder<'_> {
        AppBuilder {
            db,
            database_url: db.url.clone(),
            allow_test_host: true,
            args: Vec::new(),
            log_filter: "info".to_owned(),
            env: Vec::new(),
        }
    }

    /// Serve `db` allowing `ALLOWED_HOST`, with extra flags.
    pub fn spawn(db: &TestDb, extra: &[&str]) -> TestApp {
        TestApp::on(db).args(extra).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// `GET /__track?{query}`.
    pub async fn track(&self, query: impl AsRef<str>) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/__track?{}", query.as_ref())))
            .send()
            .await
            .expect("request /__track")
    }

    /// `/metrics` once the journal is applied (or the store is down): what every click sent so
    /// far did, including its store outcome.
    ///
    /// The scrape returned is the one after the scrape that showed the journal empty. A
    /// scrape reads its series one after another, not as one snapshot: the one that showed a
    /// depth of 0 may have read `track_clicks_recorded_total` before the applier counted its
    /// last batch and `track_journal_depth` after it removed that batch (the applier counts
    /// before it removes). Everything counted before the empty journal was seen is in the
    /// next scrape.
    pub async fn metrics(&self) -> String {
        wait_until(self, "the journal is applied", async || {
            settled(&self.metrics_now().await)
        })
        .await;
        self.metrics_now().await
    }

    /// `/metrics` as it is at this moment.
    pub async fn metrics_now(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.admin_addr))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Wait until this app's journal is empty or its store is down (30 s at most).
    pub async fn settled(&self) {
        self.metrics().await;
    }

    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "clicktrack did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then expect the drain and exit 0 within 15 s (failing with the app's logs).
    pub fn terminate(&mut self) {
        signal(self.pid(), "TERM");
        assert!(
            self.wait(Duration::from_secs(15)).success(),
            "{}",
            self.logs()
        );
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    /// The log lines so far, parsed (the app logs JSON).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let lines = self.logs.lock().expect("log lock").clone();
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// `kill -9`: no drain, no goodbye.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// The value of one series on this app's `/metrics` at this moment (for polling; use
    /// `metrics` for what the clicks sent so far did in the store).
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics_now().await, series)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tests run many at once on two cores, so the CPU pressure is always high and the applier
/// would step aside for up to `--max-apply-lag` (30 s): tests that wait for the store want
/// it at once. The test of stepping aside gives a lag and a pressure file of its own.
pub const NO_STEPPING_ASIDE: [&str; 2] = ["--max-apply-lag", "0"];

/// `clicktrack serve` against `db`, logging JSON; the caller adds the listen addresses.
pub fn serve_command(db: &TestDb) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--database-url", &db.url, "--log-format", "json"]);
    cmd.args(NO_STEPPING_ASIDE);
    cmd
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

fn ready_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "clicktrack ready" {
        return None;
    }
    Some((
        v.get("public_addr")?.as_str()?.parse().ok()?,
        v.get("admin_addr")?.as_str()?.parse().ok()?,
    ))
}

/// An app's scrape shows nothing left to apply.
fn settled(metrics: &str) -> bool {
    metric(metrics, "track_journal_depth") == 0.0
}

/// The value of one series in a Prometheus text exposition (`name{labels}` exactly as printed).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("series {series} not found in:\n{text}"))
}

/// A click as the pipeline carries it, for tests that drive the store or the spool directly.
pub fn click_record(uid: &str, tag: &str) -> clicktrack::domain::Record {
    clicktrack::domain::Record::Click(clicktrack::domain::Click {
        click_id: uuid::Uuid::now_v7(),
        received_at: time::OffsetDateTime::now_utc(),
        uid: Some(clicktrack::domain::LineUid::parse(uid).expect("valid uid")),
        campaign_id: clicktrack::domain::CampaignId::new(123).expect("positive"),
        source_campaign_id: 1,
        interaction_type: clicktrack::domain::InteractionType::ImageClick,
        target: format!("https://{ALLOWED_HOST}/"),
        tags: vec![tag.to_owned()],
        user_agent: None,
    })
}

/// A `/__track` query string for an allowed target.
pub fn link(cid: i64, uid: &str, src: i64, tag: &str) -> String {
    format!(
        "cid={cid}&uid={uid}&type=image_click&to=https%3A%2F%2F{ALLOWED_HOST}%2Flanding&src={src}&tag={tag}"
    )
}

/// Poll `check` until it holds (30 s at most; then fail with the app's logs).
pub async fn wait_until(app: &TestApp, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The Redis the de-duplication tests share (CI: the local one), or `None` (with the reason
/// printed) when it is unreachable outside CI.
pub async fn test_redis() -> Option<SocketAddr> {
    let addr: SocketAddr = std::env::var("CLICKTRACK_TEST_REDIS")
        .unwrap_or_else(|_| "127.0.0.1:6379".into())
        .parse()
        .expect("CLICKTRACK_TEST_REDIS is HOST:PORT");
    let answer = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 7];
        conn.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(Duration::from_secs(2), answer).await {
        Ok(Ok(buf)) if &buf == b"+PONG\r\n" => Some(addr),
        other => {
            skip(
                "Redis",
                &format!("Redis not reachable at {addr} ({other:?}); set CLICKTRACK_TEST_REDIS"),
            );
            None
        }
    }
}

/// A Redis key prefix of this test's own, so tests sharing the server never see each other.
pub fn redis_prefix() -> String {
    format!(
        "ct_test:{}:",
        &uuid::Uuid::now_v7().simple().to_string()[16..]
    )
}

/// Tests skipped for want of a service or tool, by what they needed (outside CI only).
static SKIPPED: Mutex<BTreeMap<&'static str, usize>> = Mutex::new(BTreeMap::new());

/// A test cannot run here for want of `needs` (a service or a tool). Under CI (`CI=true`)
/// that is a failure: CI installs and starts everything. Elsewhere the test returns early,
/// and when the test binary exits one line says what was skipped, so a green local run is not
/// mistaken for a full one.
pub fn skip(needs: &'static str, reason: &str) {
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{reason} (under CI every test must run: .ci/run installs and starts what they need)"
    );
    eprintln!("SKIPPED: {reason}");
    let mut skipped = SKIPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if skipped.is_empty() {
        // SAFETY: registers a plain `extern "C" fn` with no preconditions.
        unsafe { libc::atexit(print_skipped) };
    }
    *skipped.entry(needs).or_default() += 1;
}

extern "C" fn print_skipped() {
    let skipped = SKIPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let list: Vec<String> = skipped
        .iter()
        .map(|(needs, n)| format!("{n} needing {needs}"))
        .collect();
    eprintln!(
        "SKIPPED outside CI: {} (these fail under CI=true)",
        list.join(", ")
    );
}

/// A local port nobody listens on now (for a process the test starts on a port of its own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Wait until a load test's `sent` counter reaches `n`: fails if the clicks stop flowing for
/// 30 s.
pub async fn sent_at_least(sent: &std::sync::atomic::AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "clicks stopped flowing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
