//! The MySQL/MariaDB schema: created on an empty database, completed on the production one.
//!
//! Each step checks `information_schema` and only adds what is missing, and tolerates "already
//! exists" errors, so two instances starting at once are safe without a lock (no `GET_LOCK`:
//! the SQL stays usable on TiDB and Vitess). Existing tables and rows are never dropped or
//! rewritten: on the old app's database only clicktrack's own additions are applied.

use sqlx::MySqlPool;

use super::mysql::err;
use super::{ErrorKind, StoreError};

/// The five tables as the seed describes them, for an empty database. `IF NOT EXISTS`: the
/// production tables, created by the old app, are left exactly as they are.
const FIVE_TABLES: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS campaigns (
        id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name          VARCHAR(255) NOT NULL DEFAULT '',
        clicked_count INT          DEFAULT 0,
        created_at    DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
        updated_at    DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS members (
        id                BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
        line_uid          VARCHAR(64)  NOT NULL,
        line_display_name VARCHAR(128) NULL,
        created_at        DATETIME     NOT NULL,
        updated_at        DATETIME     NOT NULL,
        UNIQUE KEY uq_members_line_uid (line_uid)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS messages (
        id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
        member_id    BIGINT      NOT NULL,
        direction    VARCHAR(16) NOT NULL,
        message_type VARCHAR(32) NOT NULL,
        content      TEXT,
        campaign_id  BIGINT      NULL,
        created_at   DATETIME    NOT NULL,
        KEY idx_messages_member_id (member_id),
        KEY idx_messages_campaign_id (campaign_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS ryan_click_demo (
        id                 INT           NOT NULL AUTO_INCREMENT PRIMARY KEY,
        line_id            VARCHAR(64)   NOT NULL COMMENT 'LINE uid',
        source_campaign_id INT           NOT NULL DEFAULT 0,
        line_display_name  VARCHAR(128)  NULL,
        total_clicks       INT           NOT NULL DEFAULT 0,
        last_clicked_at    DATETIME      NULL,
        last_click_tag     VARCHAR(1024) NULL,
        created_at         DATETIME      NOT NULL,
        updated_at         DATETIME      NOT NULL,
        UNIQUE KEY uq_line_source_campaign (line_id, source_campaign_id),
        KEY idx_source_campaign_id (source_campaign_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    // interaction_type: the set in src/domain/interaction.rs (a test inserts every value).
    "CREATE TABLE IF NOT EXISTS component_interaction_logs (
        id                 BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
        line_id            VARCHAR(100) NOT NULL,
        campaign_id        BIGINT      NOT NULL,
        template_id        BIGINT      NULL,
        carousel_item_id   BIGINT      NULL,
        interaction_tag_id BIGINT      NULL,
        component_slot     VARCHAR(50) NULL,
        interaction_type   ENUM('image_click', 'button_url', 'carousel_click', 'imagemap_click',
                                'richmenu_click', 'flex_click', 'text_link') NOT NULL,
        interaction_value  TEXT,
        triggered_at       DATETIME    NOT NULL,
        line_event_type    VARCHAR(50) NULL,
        user_agent         TEXT,
        KEY idx_line_id (line_id),
        KEY idx_campaign_id (campaign_id),
        KEY idx_template_id (template_id),
        KEY idx_interaction_type (interaction_type),
        KEY idx_triggered_at (triggered_at),
        CONSTRAINT fk_component_interaction_logs_campaign
            FOREIGN KEY (campaign_id) REFERENCES campaigns (id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
];

const TRACK_REJECTS: &str = "CREATE TABLE IF NOT EXISTS track_rejects (
        id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
        click_id     CHAR(36)    NOT NULL,
        received_at  DATETIME    NOT NULL,
        reason       VARCHAR(64) NOT NULL,
        detail       TEXT,
        query_string TEXT        NOT NULL,
        user_agent   TEXT,
        UNIQUE KEY uq_track_rejects_click_id (click_id),
        KEY idx_track_rejects_received_at (received_at),
        KEY idx_track_rejects_reason (reason)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

/// Each recorded click's tags (see migrations/sqlite/0003_stats.sql). `utf8mb4_bin`: tags are
/// case-sensitive everywhere else in clicktrack, and "A" and "a" of one click must not collide.
const TRACK_CLICK_TAGS: &str = "CREATE TABLE IF NOT EXISTS track_click_tags (
        click_id     CHAR(36)    NOT NULL,
        campaign_id  BIGINT      NOT NULL,
        tag          VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        triggered_at DATETIME    NOT NULL,
        PRIMARY KEY (click_id, tag),
        KEY idx_track_click_tags_campaign_time (campaign_id, triggered_at, tag)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

/// The store's own id (see migrations/sqlite/0004_store_identity.sql): a journal records it
/// and refuses to be applied into another store.
const TRACK_STORE_IDENTITY: &str = "CREATE TABLE IF NOT EXISTS track_store_identity (
        id         INT      NOT NULL PRIMARY KEY,
        store_id   CHAR(36) NOT NULL,
        created_at DATETIME NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

/// The rollups (see migrations/sqlite/0005_rollups.sql and docs/rollups.md). `utf8mb4_bin`:
/// targets, tags and uids are told apart byte for byte, as on SQLite. Widths are those of the
/// columns they come from (`line_id` 100, tags 64), so no value is ever cut.
const ROLLUP_TABLES: [&str; 13] = [
    "CREATE TABLE IF NOT EXISTS track_rollup_hours (
        campaign_id      BIGINT      NOT NULL,
        hour             DATETIME    NOT NULL,
        interaction_type VARCHAR(32) NOT NULL,
        clicks           BIGINT      NOT NULL,
        member_clicks    BIGINT      NOT NULL,
        last_click_at    DATETIME    NOT NULL,
        PRIMARY KEY (campaign_id, hour, interaction_type)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_targets (
        campaign_id BIGINT       NOT NULL,
        hour        DATETIME     NOT NULL,
        target_key  VARCHAR(255) NOT NULL,
        clicks      BIGINT       NOT NULL,
        PRIMARY KEY (campaign_id, hour, target_key)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_tags (
        campaign_id BIGINT      NOT NULL,
        hour        DATETIME    NOT NULL,
        tag         VARCHAR(64) NOT NULL,
        clicks      BIGINT      NOT NULL,
        PRIMARY KEY (campaign_id, hour, tag)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    // The same sums per day (migrations/sqlite/0009_day_rollups.sql).
    "CREATE TABLE IF NOT EXISTS track_rollup_days (
        campaign_id      BIGINT      NOT NULL,
        day              DATETIME    NOT NULL,
        interaction_type VARCHAR(32) NOT NULL,
        clicks           BIGINT      NOT NULL,
        member_clicks    BIGINT      NOT NULL,
        last_click_at    DATETIME    NOT NULL,
        PRIMARY KEY (campaign_id, day, interaction_type)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_day_targets (
        campaign_id BIGINT       NOT NULL,
        day         DATETIME     NOT NULL,
        target_key  VARCHAR(255) NOT NULL,
        clicks      BIGINT       NOT NULL,
        PRIMARY KEY (campaign_id, day, target_key)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_day_tags (
        campaign_id BIGINT      NOT NULL,
        day         DATETIME    NOT NULL,
        tag         VARCHAR(64) NOT NULL,
        clicks      BIGINT      NOT NULL,
        PRIMARY KEY (campaign_id, day, tag)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_members (
        campaign_id BIGINT       NOT NULL,
        hour        DATETIME     NOT NULL,
        line_id     VARCHAR(100) NOT NULL,
        clicks      BIGINT       NOT NULL,
        PRIMARY KEY (campaign_id, hour, line_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_campaign_members (
        campaign_id BIGINT       NOT NULL,
        line_id     VARCHAR(100) NOT NULL,
        PRIMARY KEY (campaign_id, line_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_campaigns (
        campaign_id    BIGINT   NOT NULL PRIMARY KEY,
        unique_members BIGINT   NOT NULL,
        last_click_at  DATETIME NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_state (
        id                INT      NOT NULL PRIMARY KEY,
        backfill_start_id BIGINT   NOT NULL,
        backfill_end_id   BIGINT   NOT NULL,
        backfill_next_id  BIGINT   NOT NULL,
        purged_before     DATETIME NULL,
        updated_at        DATETIME NOT NULL,
        days_built        TINYINT  NOT NULL DEFAULT 0
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_foreign (
        log_id BIGINT NOT NULL PRIMARY KEY
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    // Member packs (migrations/sqlite/0007_member_packs.sql).
    "CREATE TABLE IF NOT EXISTS track_rollup_member_ids (
        id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
        line_id VARCHAR(100) NOT NULL,
        UNIQUE KEY uq_track_rollup_member_ids_line_id (line_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS track_rollup_member_packs (
        campaign_id   BIGINT   NOT NULL,
        hour          DATETIME NOT NULL,
        member_clicks BIGINT   NOT NULL,
        members       BIGINT   NOT NULL,
        body          LONGBLOB NOT NULL,
        PRIMARY KEY (campaign_id, hour)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
];

/// The packer's sweep sums each hour's member clicks across campaigns, from this index
/// alone (migrations/sqlite/0010_hour_sums_index.sql; a lookup of the row per hour row was
/// 40 ms per day of hours at 10,000,000 clicks, 10 ms without).
const HOURS_INDEX: &str = "ALTER TABLE track_rollup_hours \
    ADD KEY idx_track_rollup_hours_hour_sums (hour, campaign_id, member_clicks)";
/// An earlier release's index on the hour alone (a prefix of `HOURS_INDEX`), replaced in the
/// same statement.
const HOURS_INDEX_REPLACING: &str = "ALTER TABLE track_rollup_hours \
    ADD KEY idx_track_rollup_hours_hour_sums (hour, campaign_id, member_clicks), \
    DROP KEY idx_track_rollup_hours_hour";

/// Whether the day rollups hold every hour rolled up (`build_day_rollups`).
const DAYS_BUILT: &str = "ALTER TABLE track_rollup_state \
    ADD COLUMN days_built TINYINT NOT NULL DEFAULT 0";

/// The day rollups of the hours rolled up before they existed (an earlier release's), added up
/// from the hour rows, once (`days_built`; the statistics read days only after that). Writers
/// of this release add to the days as soon as the tables exist, so the sums are recomputed
/// with every writer held out: the state row (the backfill's first lock), then every campaign
/// row (every batch's first lock) with the gaps between them (REPEATABLE READ: a campaign
/// created meanwhile waits too). Held for as long as the sums take (seconds at millions of
/// hour rows, once): batches wait in the journal. Plain INSERTs: any row a writer could still
/// have added is an error, never a double count.
async fn build_day_rollups(pool: &MySqlPool) -> Result<(), StoreError> {
    const BUILT: &str = "SELECT CAST(days_built AS SIGNED) FROM track_rollup_state WHERE id = 1";
    let built: Option<i64> = sqlx::query_scalar(BUILT)
        .fetch_optional(pool)
        .await
        .map_err(err("migrate"))?;
    if built != Some(0) {
        return Ok(());
    }
    let mut conn = pool.acquire().await.map_err(err("build day rollups"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await
        .map_err(err("build day rollups"))?;
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(err("build day rollups"))?;
    let built: i64 = sqlx::query_scalar(
        "SELECT CAST(days_built AS SIGNED) FROM track_rollup_state WHERE id = 1 FOR UPDATE",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(err("build day rollups"))?;
    if built != 0 {
        return Ok(());
    }
    sqlx::query("SELECT id FROM campaigns ORDER BY id FOR UPDATE")
        .fetch_all(&mut *tx)
        .await
        .map_err(err("build day rollups"))?;
    for sql in [
        "DELETE FROM track_rollup_days",
        "DELETE FROM track_rollup_day_targets",
        "DELETE FROM track_rollup_day_tags",
        "INSERT INTO track_rollup_days \
             (campaign_id, day, interaction_type, clicks, member_clicks, last_click_at) \
         SELECT campaign_id, DATE(hour), interaction_type, SUM(clicks), SUM(member_clicks), \
             MAX(last_click_at) \
         FROM track_rollup_hours GROUP BY campaign_id, DATE(hour), interaction_type",
        "INSERT INTO track_rollup_day_targets (campaign_id, day, target_key, clicks) \
         SELECT campaign_id, DATE(hour), target_key, SUM(clicks) \
         FROM track_rollup_targets GROUP BY campaign_id, DATE(hour), target_key",
        "INSERT INTO track_rollup_day_tags (campaign_id, day, tag, clicks) \
         SELECT campaign_id, DATE(hour), tag, SUM(clicks) \
         FROM track_rollup_tags GROUP BY campaign_id, DATE(hour), tag",
        "UPDATE track_rollup_state SET days_built = 1 WHERE id = 1",
    ] {
        sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .map_err(err("build day rollups"))?;
    }
    tx.commit().await.map_err(err("build day rollups"))
}

/// The erasure list (see migrations/sqlite/0006_erasure.sql and `store/erase.rs`); the row '*'
/// is the lock every batch takes shared and every erasure exclusively.
const TRACK_ERASURES: &str = "CREATE TABLE IF NOT EXISTS track_erasures (
        uid_hash  CHAR(64)    NOT NULL PRIMARY KEY,
        erased_at VARCHAR(26) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin";
const ERASURE_LOCK_ROW: &str = "INSERT INTO track_erasures (uid_hash, erased_at) \
    VALUES ('*', '0000-00-00 00:00:00.000000') ON DUPLICATE KEY UPDATE uid_hash = uid_hash";
const ERASURE_INDEX: &str = "ALTER TABLE track_rollup_campaign_members \
    ADD KEY idx_track_rollup_campaign_members_line_id (line_id)";

/// The backfill's range: every log row that exists when the rollups are created. The first
/// instance to get here decides it; the others find the row there.
const ROLLUP_STATE: &str = "INSERT IGNORE INTO track_rollup_state \
        (id, backfill_start_id, backfill_end_id, backfill_next_id, updated_at) \
    SELECT 1, COALESCE(MIN(id), 1), COALESCE(MAX(id), 0), COALESCE(MIN(id), 1), UTC_TIMESTAMP() \
    FROM component_interaction_logs";

/// What the stats queries read from the interaction logs, so that a campaign's numbers come
/// from one index range and never from the table rows (on InnoDB a row lookup per click made a
/// 500,000-click campaign take seconds; measured). `target_key` is a virtual column (nothing
/// stored) because a TEXT column cannot be part of an index: top targets group by the first
/// 255 characters. The uid is in the index too: a report's members at its window's edges are
/// read from it (an earlier release's index without it is rebuilt under the same name, in one
/// statement, so a running instance that names it never misses it).
const STATS_ADDITIONS: [(Missing, &str); 3] = [
    (
        Missing::Column("target_key"),
        "ALTER TABLE component_interaction_logs \
         ADD COLUMN target_key VARCHAR(255) AS (LEFT(interaction_value, 255)) VIRTUAL",
    ),
    (
        Missing::Index("idx_cil_campaign_time"),
        "ALTER TABLE component_interaction_logs ADD KEY idx_cil_campaign_time \
         (campaign_id, triggered_at, interaction_type, target_key, line_id)",
    ),
    (
        Missing::IndexColumn("idx_cil_campaign_time", "line_id"),
        "ALTER TABLE component_interaction_logs DROP KEY idx_cil_campaign_time, \
         ADD KEY idx_cil_campaign_time \
         (campaign_id, triggered_at, interaction_type, target_key, line_id)",
    ),
];

/// clicktrack's own index that only the stats before the rollups read (members of a window):
/// the rollups answer that now, and it cost the apply rate most (its entries land at random
/// places, by uid). Dropped where an earlier clicktrack created it; never a seed index.
const RETIRED_INDEX: &str = "idx_cil_campaign_member";

/// What an addition to `component_interaction_logs` creates, to check before adding it.
enum Missing {
    Column(&'static str),
    Index(&'static str),
    /// (index, column): the index exists without that column.
    IndexColumn(&'static str, &'static str),
}

/// Errors that mean "someone else already added it" (another instance migrating at once):
/// table exists, duplicate column, duplicate key name.
const ALREADY_THERE: [u16; 3] = [1050, 1060, 1061];

pub async fn migrate(pool: &MySqlPool) -> Result<(), StoreError> {
    for ddl in FIVE_TABLES {
        ddl_step(pool, ddl).await?;
    }
    // Each click's identity: replaying a committed batch changes nothing.
    if !column_exists(pool, "component_interaction_logs", "click_id").await? {
        ddl_step(
            pool,
            "ALTER TABLE component_interaction_logs ADD COLUMN click_id CHAR(36) NULL",
        )
        .await?;
    }
    if !index_exists(
        pool,
        "component_interaction_logs",
        "uq_component_interaction_logs_click_id",
    )
    .await?
    {
        ddl_step(
            pool,
            "ALTER TABLE component_interaction_logs \
             ADD UNIQUE KEY uq_component_interaction_logs_click_id (click_id)",
        )
        .await?;
    }
    // Member auto-create relies on a unique line_uid (ON DUPLICATE KEY); add it if the old schema
    // lacks one. If existing rows already hold duplicates this fails, loudly, with MySQL's reason.
    if !unique_index_on(pool, "members", "line_uid").await? {
        ddl_step(
            pool,
            "ALTER TABLE members ADD UNIQUE KEY uq_members_line_uid (line_uid)",
        )
        .await?;
    }
    ddl_step(pool, TRACK_REJECTS).await?;
    ddl_step(pool, TRACK_CLICK_TAGS).await?;
    ddl_step(pool, TRACK_STORE_IDENTITY).await?;
    if index_exists(pool, "component_interaction_logs", RETIRED_INDEX).await? {
        ddl_step(
            pool,
            "ALTER TABLE component_interaction_logs DROP INDEX idx_cil_campaign_member",
        )
        .await?;
    }
    for ddl in ROLLUP_TABLES {
        ddl_step(pool, ddl).await?;
    }
    // A plain read first: the INSERT's duplicate check would wait for a backfill step that
    // holds the row (another process's `migrate`), and a starting `serve` must not.
    let state_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM track_rollup_state")
        .fetch_one(pool)
        .await
        .map_err(err("migrate"))?;
    if state_rows == 0 {
        ddl_step(pool, ROLLUP_STATE).await?;
    }
    ddl_step(pool, TRACK_ERASURES).await?;
    // A plain read first, as for the state row: a running batch holds the lock row shared.
    let lock_rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM track_erasures WHERE uid_hash = '*'")
            .fetch_one(pool)
            .await
            .map_err(err("migrate"))?;
    if lock_rows == 0 {
        ddl_step(pool, ERASURE_LOCK_ROW).await?;
    }
    if !index_exists(
        pool,
        "track_rollup_campaign_members",
        "idx_track_rollup_campaign_members_line_id",
    )
    .await?
    {
        ddl_step(pool, ERASURE_INDEX).await?;
    }
    if !index_exists(
        pool,
        "track_rollup_hours",
        "idx_track_rollup_hours_hour_sums",
    )
    .await?
    {
        match index_exists(pool, "track_rollup_hours", "idx_track_rollup_hours_hour").await? {
            true => ddl_step(pool, HOURS_INDEX_REPLACING).await?,
            false => ddl_step(pool, HOURS_INDEX).await?,
        }
    }
    if !column_exists(pool, "track_rollup_state", "days_built").await? {
        ddl_step(pool, DAYS_BUILT).await?;
    }
    build_day_rollups(pool).await?;
    for (what, ddl) in STATS_ADDITIONS {
        let present = match what {
            Missing::Column(name) => {
                column_exists(pool, "component_interaction_logs", name).await?
            }
            Missing::Index(name) => index_exists(pool, "component_interaction_logs", name).await?,
            Missing::IndexColumn(index, column) => log_index_has(pool, index, column).await?,
        };
        if !present {
            ddl_step(pool, ddl).await?;
        }
    }
    Ok(())
}

async fn ddl_step(pool: &MySqlPool, ddl: &'static str) -> Result<(), StoreError> {
    match sqlx::query(ddl).execute(pool).await {
        Ok(_) => Ok(()),
        Err(e) if error_number(&e).is_some_and(|n| ALREADY_THERE.contains(&n)) => Ok(()),
        Err(e) => Err(StoreError {
            kind: ErrorKind::Other,
            ..err("migrate")(e)
        }),
    }
}

fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|db| db.number())
}

/// True when `sql` (a COUNT over information_schema with two `?`) counts anything.
async fn schema_has(
    pool: &MySqlPool,
    sql: &'static str,
    a: &str,
    b: &str,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(sql)
        .bind(a)
        .bind(b)
        .fetch_one(pool)
        .await
        .map_err(err("migrate"))?;
    Ok(n > 0)
}

async fn column_exists(pool: &MySqlPool, table: &str, column: &str) -> Result<bool, StoreError> {
    schema_has(
        pool,
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?",
        table,
        column,
    )
    .await
}

async fn index_exists(pool: &MySqlPool, table: &str, index: &str) -> Result<bool, StoreError> {
    schema_has(
        pool,
        "SELECT COUNT(*) FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
        table,
        index,
    )
    .await
}

/// Is `column` part of `index` on the interaction log?
async fn log_index_has(pool: &MySqlPool, index: &str, column: &str) -> Result<bool, StoreError> {
    schema_has(
        pool,
        "SELECT COUNT(*) FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name = 'component_interaction_logs' \
           AND index_name = ? AND column_name = ?",
        index,
        column,
    )
    .await
}

/// Is there a unique index whose only column is `column`?
async fn unique_index_on(pool: &MySqlPool, table: &str, column: &str) -> Result<bool, StoreError> {
    schema_has(
        pool,
        "SELECT COUNT(*) FROM information_schema.statistics s \
         WHERE s.table_schema = DATABASE() AND s.table_name = ? AND s.column_name = ? \
           AND s.non_unique = 0 AND s.seq_in_index = 1 \
           AND NOT EXISTS (SELECT 1 FROM information_schema.statistics o \
               WHERE o.table_schema = s.table_schema AND o.table_name = s.table_name \
                 AND o.index_name = s.index_name AND o.seq_in_index = 2)",
        table,
        column,
    )
    .await
}
