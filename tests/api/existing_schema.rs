//! The production database already holds the five tables, created by the old app, with rows
//! in them. clicktrack must run on it as it is: add only its own column, index and table,
//! keep every old row, and count new clicks on top of the old figures.

use crate::helpers::{StoreKind, TestApp, TestDb, link, metric};

/// The tables as the old app created them (the seed's DDL; members, messages and campaigns
/// with the columns its SQL uses, plus columns clicktrack does not know about). Note the
/// narrower ENUM, the nullable counter and the 255-character tag column.
pub const OLD_APP_SCHEMA: &str = "
CREATE TABLE campaigns (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    name VARCHAR(255) NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'sent',
    clicked_count INT DEFAULT 0 COMMENT 'total clicks',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE members (
    id INT PRIMARY KEY AUTO_INCREMENT,
    line_uid VARCHAR(64) NOT NULL,
    line_display_name VARCHAR(255),
    email VARCHAR(255),
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY uq_line_uid (line_uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE messages (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    member_id INT NOT NULL,
    direction ENUM('incoming', 'outgoing') NOT NULL,
    message_type VARCHAR(32) NOT NULL,
    content TEXT,
    campaign_id BIGINT,
    created_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE ryan_click_demo (
    id INT PRIMARY KEY AUTO_INCREMENT,
    line_id VARCHAR(64) NOT NULL,
    source_campaign_id INT NOT NULL DEFAULT 0,
    line_display_name VARCHAR(128),
    total_clicks INT NOT NULL DEFAULT 0,
    last_clicked_at DATETIME,
    last_click_tag VARCHAR(255),
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    UNIQUE KEY uq_line_source_campaign (line_id, source_campaign_id),
    KEY idx_source_campaign_id (source_campaign_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE component_interaction_logs (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    line_id VARCHAR(100) NOT NULL,
    campaign_id BIGINT NOT NULL,
    template_id BIGINT,
    carousel_item_id BIGINT,
    interaction_tag_id BIGINT,
    component_slot VARCHAR(50),
    interaction_type ENUM('image_click', 'button_url') NOT NULL,
    interaction_value TEXT,
    triggered_at DATETIME NOT NULL,
    line_event_type VARCHAR(50),
    user_agent TEXT,
    KEY idx_line_id (line_id),
    KEY idx_campaign_id (campaign_id),
    KEY idx_template_id (template_id),
    KEY idx_interaction_type (interaction_type),
    KEY idx_triggered_at (triggered_at),
    FOREIGN KEY (campaign_id) REFERENCES campaigns(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO campaigns (id, name, clicked_count) VALUES (123, 'Autumn', 7), (456, 'Winter', NULL);
INSERT INTO members (line_uid, line_display_name, email) VALUES ('U_OLD', 'Old Guest', 'old@example.com');
INSERT INTO messages (member_id, direction, message_type, content, campaign_id, created_at)
    VALUES (1, 'incoming', 'text', '{\"event\":\"campaign_click\"}', 123, '2025-11-01 10:00:00');
INSERT INTO ryan_click_demo (line_id, source_campaign_id, line_display_name, total_clicks,
        last_clicked_at, last_click_tag, created_at, updated_at)
    VALUES ('U_OLD', 5, 'Old Guest', 3, '2025-11-01 10:00:00', 'X,Y', '2025-11-01', '2025-11-01');
INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, interaction_value, triggered_at)
    VALUES ('U_OLD', 123, 'image_click', 'https://example.com/old', '2025-11-01 10:00:00');
";

/// The same tables as a marketing app on PostgreSQL would have them: `serial` ids, `timestamptz`
/// where the app stores zoned times, the narrower set of types as a CHECK (PostgreSQL's usual
/// spelling of MySQL's ENUM), columns clicktrack does not know, and the same rows.
pub const OLD_APP_SCHEMA_POSTGRES: &str = "
CREATE TABLE campaigns (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'sent',
    clicked_count INT DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE members (
    id SERIAL PRIMARY KEY,
    line_uid VARCHAR(64) NOT NULL,
    line_display_name VARCHAR(255),
    email VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_line_uid UNIQUE (line_uid)
);
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    member_id INT NOT NULL,
    direction VARCHAR(16) NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    message_type VARCHAR(32) NOT NULL,
    content TEXT,
    campaign_id BIGINT,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE ryan_click_demo (
    id SERIAL PRIMARY KEY,
    line_id VARCHAR(64) NOT NULL,
    source_campaign_id INT NOT NULL DEFAULT 0,
    line_display_name VARCHAR(128),
    total_clicks INT NOT NULL DEFAULT 0,
    last_clicked_at TIMESTAMP,
    last_click_tag VARCHAR(255),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT uq_line_source_campaign UNIQUE (line_id, source_campaign_id)
);
CREATE INDEX idx_source_campaign_id ON ryan_click_demo (source_campaign_id);
CREATE TABLE component_interaction_logs (
    id BIGSERIAL PRIMARY KEY,
    line_id VARCHAR(100) NOT NULL,
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    template_id BIGINT,
    carousel_item_id BIGINT,
    interaction_tag_id BIGINT,
    component_slot VARCHAR(50),
    interaction_type VARCHAR(32) NOT NULL
        CHECK (interaction_type IN ('image_click', 'button_url')),
    interaction_value TEXT,
    triggered_at TIMESTAMP NOT NULL,
    line_event_type VARCHAR(50),
    user_agent TEXT
);
CREATE INDEX idx_line_id ON component_interaction_logs (line_id);
CREATE INDEX idx_campaign_id ON component_interaction_logs (campaign_id);
CREATE INDEX idx_triggered_at ON component_interaction_logs (triggered_at);
INSERT INTO campaigns (id, name, clicked_count) VALUES (123, 'Autumn', 7), (456, 'Winter', NULL);
INSERT INTO members (line_uid, line_display_name, email) VALUES ('U_OLD', 'Old Guest', 'old@example.com');
INSERT INTO messages (member_id, direction, message_type, content, campaign_id, created_at)
    VALUES (1, 'incoming', 'text', '{\"event\":\"campaign_click\"}', 123, '2025-11-01 10:00:00');
INSERT INTO ryan_click_demo (line_id, source_campaign_id, line_display_name, total_clicks,
        last_clicked_at, last_click_tag, created_at, updated_at)
    VALUES ('U_OLD', 5, 'Old Guest', 3, '2025-11-01 10:00:00', 'X,Y', '2025-11-01', '2025-11-01');
INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type, interaction_value, triggered_at)
    VALUES ('U_OLD', 123, 'image_click', 'https://example.com/old', '2025-11-01 10:00:00');
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicktrack_runs_on_the_old_apps_database_and_keeps_its_rows() {
    if let Some(db) = TestDb::empty(StoreKind::Mysql).await {
        runs_on_the_old_apps_database(db, OLD_APP_SCHEMA).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicktrack_runs_on_the_old_apps_postgres_database_and_keeps_its_rows() {
    if let Some(db) = TestDb::empty(StoreKind::Postgres).await {
        runs_on_the_old_apps_database(db, OLD_APP_SCHEMA_POSTGRES).await;
    }
}

async fn runs_on_the_old_apps_database(db: TestDb, schema: &str) {
    db.execute(schema).await;
    // `migrate` says what it adds to the old app's tables; the second run changes nothing.
    let first = String::from_utf8_lossy(&db.cli_ok(&["migrate"]).stdout).into_owned();
    assert!(
        first.contains("created tables")
            && first.contains("track_rejects")
            && first.contains("column component_interaction_logs.click_id")
            && first.contains("nothing dropped\n")
            && first.ends_with(
                "rollups: rolled up 1 history row and 0 new rows from other programs; \
                 campaign statistics are complete\n"
            ),
        "{first}"
    );
    let second = String::from_utf8_lossy(&db.cli_ok(&["migrate"]).stdout).into_owned();
    assert!(
        second.ends_with(
            "schema already up to date, nothing changed\n\
             rollups: up to date, campaign statistics are complete\n"
        ),
        "{second}"
    );
    let app = TestApp::spawn(&db, &[]);
    for tag in ["Z", "X"] {
        assert_eq!(app.track(link(123, "U_OLD", 5, tag)).await.status(), 302);
    }
    assert_eq!(app.track(link(456, "U_NEW", 5, "A")).await.status(), 302);
    // A type the old ENUM does not have: the database refuses the row; the click is set aside.
    let carousel = "cid=123&uid=U_OLD&type=carousel_click&src=5&to=https%3A%2F%2Fexample.com%2F";
    assert_eq!(app.track(carousel).await.status(), 302);

    // Old figures kept, new clicks on top.
    assert_eq!(db.campaign_clicks(123).await, 7 + 2, "{}", app.logs());
    assert_eq!(
        db.campaign_clicks(456).await,
        1,
        "a NULL counter starts from 0"
    );
    assert_eq!(
        db.summary("U_OLD", 5).await,
        Some((3 + 2, Some("X,Y,Z".into())))
    );
    assert_eq!(
        db.summary_name("U_OLD", 5).await.as_deref(),
        Some("Old Guest")
    );
    assert_eq!(db.summary("U_NEW", 5).await, Some((1, Some("A".into()))));
    assert_eq!(db.count("members").await, 2);
    assert_eq!(db.members_named("U_OLD").await, 1);
    assert_eq!(db.count("messages").await, 1 + 3);
    assert_eq!(db.count("component_interaction_logs").await, 1 + 3);
    assert_eq!(
        db.interaction("U_OLD").await[0].2,
        "https://example.com/old"
    );
    assert_eq!(
        db.rejects_by_reason().await,
        [("refused_by_database".to_string(), 1)].into()
    );
    // Only clicktrack's additions were made: its column and unique index, its table.
    let pool = db.pool().await;
    let unique_on_click_id = match db.kind {
        StoreKind::Postgres => {
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM pg_indexes \
             WHERE tablename = 'component_interaction_logs' \
               AND indexdef LIKE 'CREATE UNIQUE INDEX % (click_id)'"
        }
        _ => {
            "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'component_interaction_logs' \
               AND column_name = 'click_id' AND non_unique = 0"
        }
    };
    let added: i64 = sqlx::query_scalar(db.sql(unique_on_click_id))
        .fetch_one(&pool)
        .await
        .expect("query");
    assert_eq!(added, 1);
    let email: Option<String> =
        sqlx::query_scalar("SELECT email FROM members WHERE line_uid = 'U_OLD'")
            .fetch_one(&pool)
            .await
            .expect("query");
    assert_eq!(email.as_deref(), Some("old@example.com"));
    pool.close().await;
    let m = app.metrics().await;
    assert_eq!(metric(&m, "track_clicks_recorded_total"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_database_gets_the_five_tables_and_the_foreign_key() {
    let Some(db) = TestDb::new(StoreKind::Mysql).await else {
        return;
    };
    let pool = db.pool().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name IN ('members', 'messages', 'campaigns', \
           'ryan_click_demo', 'component_interaction_logs', 'track_rejects')",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(tables, 6);
    let fks: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS SIGNED INTEGER) FROM information_schema.referential_constraints \
         WHERE constraint_schema = DATABASE() AND table_name = 'component_interaction_logs' \
           AND referenced_table_name = 'campaigns'",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(fks, 1);
    pool.close().await;
}

// An old column clicktrack does not fill and that has no default (MySQL error 1364): every
// click that needs such a row is set aside with the database's reason, the others recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_clicktrack_cannot_fill_sets_clicks_aside_instead_of_failing_batches() {
    let Some(db) = TestDb::new(StoreKind::Mysql).await else {
        return;
    };
    db.execute("ALTER TABLE messages ADD COLUMN channel VARCHAR(16) NOT NULL")
        .await;
    let app = TestApp::spawn(&db, &["--batch-max-delay-ms", "20"]);
    let anonymous = "cid=456&to=https%3A%2F%2Fexample.com%2F";
    let responses = futures_util::future::join_all([
        app.track(link(123, "U_A", 1, "")),
        app.track(link(123, "U_B", 1, "")),
        app.track(anonymous.to_string()),
    ])
    .await;
    assert!(responses.iter().all(|r| r.status() == 302));
    assert_eq!(
        db.rejects_by_reason().await,
        [("refused_by_database".to_string(), 2)].into()
    );
    assert_eq!(db.campaign_clicks(123).await, 0);
    assert_eq!(db.campaign_clicks(456).await, 1);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "track_clicks_not_written_total"), 0.0);
}

// A database migrated by the release before the uid joined the time index: `migrate` rebuilds
// the index once under its name and says so (it used to say "nothing changed"), then it is
// up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_rebuilds_the_previous_releases_time_index_and_says_so() {
    let Some(db) = TestDb::new(StoreKind::Mysql).await else {
        return;
    };
    db.execute(
        "ALTER TABLE component_interaction_logs DROP KEY idx_cil_campaign_time, \
         ADD KEY idx_cil_campaign_time (campaign_id, triggered_at, interaction_type, target_key)",
    )
    .await;
    let first = String::from_utf8_lossy(&db.cli_ok(&["migrate"]).stdout).into_owned();
    assert!(
        first.contains(
            "rebuilt index component_interaction_logs.idx_cil_campaign_time \
             (campaign_id,triggered_at,interaction_type,target_key,line_id); nothing dropped\n"
        ),
        "{first}"
    );
    let second = String::from_utf8_lossy(&db.cli_ok(&["migrate"]).stdout).into_owned();
    assert!(
        second.contains("schema already up to date, nothing changed\n"),
        "{second}"
    );
}
