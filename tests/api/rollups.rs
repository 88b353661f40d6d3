//! Rollups are exact (docs/rollups.md): every rollup table equals a `GROUP BY` recount of the
//! raw log after a history backfilled in interrupted, concurrent steps, live batches from
//! several writers at once with replays, duplicates and rejects, and rows another program
//! wrote; and the stats API answers random windows exactly as a recount of the raw rows does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::future::join_all;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::*;
use crate::stats::{TOKEN, admin_get};
use clicktrack::domain::{
    CampaignId, Click, InteractionType, LineUid, Record, Reject, RejectReason,
};
use clicktrack::store::{ConnectOptions, DatabaseUrl, Seen, Store, db_time};

/// The 90 days the clicks fall in.
const BASE: OffsetDateTime = datetime!(2026-08-01 00:00:00 UTC);
const DAYS: i64 = 90;
/// Campaigns clicked (999 does not exist: its clicks are set aside).
const CLICKED: [i64; 3] = [123, 456, 999];
const TAGS: [&str; 4] = ["A", "B", "C", "a"];

fn targets() -> Vec<String> {
    vec![
        "https://example.com/A".into(),
        "https://example.com/a".into(),
        "https://example.com/landing?x=1".into(),
        // Longer than the 255 characters a target is grouped by, multi-byte.
        format!("https://example.com/{}", "é".repeat(300)),
        format!("https://example.com/{}x", "é".repeat(300)),
    ]
}

pub struct Mix {
    rng: fastrand::Rng,
    targets: Vec<String>,
}

impl Mix {
    pub fn new(seed: u64) -> Mix {
        Mix {
            rng: fastrand::Rng::with_seed(seed),
            targets: targets(),
        }
    }

    fn time(&mut self) -> OffsetDateTime {
        BASE + Duration::seconds(self.rng.i64(0..DAYS * 86_400))
    }

    fn uid(&mut self) -> Option<String> {
        (self.rng.u8(0..5) > 0).then(|| format!("U{}", self.rng.u8(0..40)))
    }

    fn tags(&mut self) -> Vec<String> {
        TAGS.iter()
            .filter(|_| self.rng.u8(0..3) == 0)
            .map(|t| t.to_string())
            .collect()
    }

    fn kind(&mut self) -> InteractionType {
        InteractionType::ALL[self.rng.usize(0..InteractionType::ALL.len())]
    }

    fn target(&mut self) -> String {
        self.targets[self.rng.usize(0..self.targets.len())].clone()
    }

    /// A live record: mostly clicks on 123 and 456, some on the unknown 999, some rejects.
    pub fn record(&mut self) -> Record {
        if self.rng.u8(0..40) == 0 {
            return Record::Reject(Reject {
                click_id: Uuid::now_v7(),
                received_at: self.time(),
                reason: RejectReason::InvalidCampaign,
                detail: None,
                query: "cid=x".into(),
                user_agent: None,
            });
        }
        let cid = CLICKED[[0, 0, 0, 1, 1, 2][self.rng.usize(0..6)]];
        Record::Click(Click {
            click_id: Uuid::now_v7(),
            received_at: self.time(),
            uid: self.uid().map(|u| LineUid::parse(&u).expect("valid uid")),
            campaign_id: CampaignId::new(cid).expect("positive"),
            source_campaign_id: 0,
            interaction_type: self.kind(),
            target: self.target(),
            tags: self.tags(),
            user_agent: None,
        })
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Log rows written outside clicktrack's batches: `with_ids` of them with a click id and tags
/// (an earlier clicktrack), the rest without (the old endpoint).
pub async fn insert_raw_rows(db: &TestDb, mix: &mut Mix, rows: usize, with_ids: bool) {
    let mut logs = Vec::new();
    let mut tags = Vec::new();
    for _ in 0..rows {
        let at = db_time(mix.time());
        let cid = [123, 123, 456][mix.rng.usize(0..3)];
        let uid = mix.uid().unwrap_or_default();
        let kind = mix.kind().as_str();
        let target = mix.target();
        let click_id = if with_ids {
            let id = Uuid::now_v7().to_string();
            for tag in mix.tags() {
                tags.push(format!(
                    "({}, {cid}, {}, {})",
                    quote(&id),
                    quote(&tag),
                    quote(&at)
                ));
            }
            quote(&id)
        } else {
            "NULL".to_owned()
        };
        logs.push((
            cid,
            format!(
                "({}, {cid}, {}, {}, {}, {click_id})",
                quote(&uid),
                quote(kind),
                quote(&target),
                quote(&at)
            ),
        ));
    }
    // By campaign, as every writer locks them (the foreign key's lock on each campaign row):
    // rows in any other order deadlock with clicktrack's batches, and PostgreSQL then cancels
    // this statement rather than retrying it as the applier would.
    logs.sort_by_key(|(cid, _)| *cid);
    let logs: Vec<String> = logs.into_iter().map(|(_, row)| row).collect();
    for chunk in logs.chunks(200) {
        db.execute(&format!(
            "INSERT INTO component_interaction_logs \
                 (line_id, campaign_id, interaction_type, interaction_value, triggered_at, click_id) \
             VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
    for chunk in tags.chunks(200) {
        db.execute(&format!(
            "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at) VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
}

/// Every row of the log predates the rollups, as `migrate` records it when it creates them on
/// a database with history.
async fn mark_as_history(db: &TestDb) {
    db.execute(
        "UPDATE track_rollup_state SET \
             backfill_start_id = (SELECT MIN(id) FROM component_interaction_logs), \
             backfill_end_id = (SELECT MAX(id) FROM component_interaction_logs), \
             backfill_next_id = (SELECT MIN(id) FROM component_interaction_logs) WHERE id = 1",
    )
    .await;
}

/// Each rollup table and the recount of the raw log it must equal, as `|`-joined text rows
/// (a day table: the recount of its hour table, which is checked against the log).
fn rollup_checks(kind: StoreKind) -> Vec<(&'static str, &'static str, &'static str)> {
    match kind {
        StoreKind::Sqlite => vec![
            (
                "track_rollup_hours",
                "SELECT campaign_id || '|' || hour || '|' || interaction_type || '|' || clicks \
                     || '|' || member_clicks || '|' || last_click_at FROM track_rollup_hours",
                "SELECT campaign_id || '|' || substr(triggered_at, 1, 13) || ':00:00|' \
                     || interaction_type || '|' || COUNT(*) || '|' || SUM(line_id <> '') \
                     || '|' || MAX(triggered_at) \
                 FROM component_interaction_logs \
                 GROUP BY campaign_id, substr(triggered_at, 1, 13), interaction_type",
            ),
            (
                "track_rollup_targets",
                "SELECT campaign_id || '|' || hour || '|' || target_key || '|' || clicks \
                 FROM track_rollup_targets",
                "SELECT campaign_id || '|' || substr(triggered_at, 1, 13) || ':00:00|' \
                     || substr(COALESCE(interaction_value, ''), 1, 255) || '|' || COUNT(*) \
                 FROM component_interaction_logs \
                 GROUP BY campaign_id, substr(triggered_at, 1, 13), \
                     substr(COALESCE(interaction_value, ''), 1, 255)",
            ),
            (
                "track_rollup_tags",
                "SELECT campaign_id || '|' || hour || '|' || tag || '|' || clicks \
                 FROM track_rollup_tags",
                "SELECT l.campaign_id || '|' || substr(l.triggered_at, 1, 13) || ':00:00|' \
                     || t.tag || '|' || COUNT(*) \
                 FROM component_interaction_logs l JOIN track_click_tags t ON t.click_id = l.click_id \
                 GROUP BY l.campaign_id, substr(l.triggered_at, 1, 13), t.tag",
            ),
            (
                "track_rollup_days",
                "SELECT campaign_id || '|' || day || '|' || interaction_type || '|' || clicks \
                     || '|' || member_clicks || '|' || last_click_at FROM track_rollup_days",
                "SELECT campaign_id || '|' || substr(hour, 1, 10) || ' 00:00:00|' \
                     || interaction_type || '|' || SUM(clicks) || '|' || SUM(member_clicks) \
                     || '|' || MAX(last_click_at) \
                 FROM track_rollup_hours \
                 GROUP BY campaign_id, substr(hour, 1, 10), interaction_type",
            ),
            (
                "track_rollup_day_targets",
                "SELECT campaign_id || '|' || day || '|' || target_key || '|' || clicks \
                 FROM track_rollup_day_targets",
                "SELECT campaign_id || '|' || substr(hour, 1, 10) || ' 00:00:00|' || target_key \
                     || '|' || SUM(clicks) \
                 FROM track_rollup_targets GROUP BY campaign_id, substr(hour, 1, 10), target_key",
            ),
            (
                "track_rollup_day_tags",
                "SELECT campaign_id || '|' || day || '|' || tag || '|' || clicks \
                 FROM track_rollup_day_tags",
                "SELECT campaign_id || '|' || substr(hour, 1, 10) || ' 00:00:00|' || tag \
                     || '|' || SUM(clicks) \
                 FROM track_rollup_tags GROUP BY campaign_id, substr(hour, 1, 10), tag",
            ),
            (
                "track_rollup_members",
                "SELECT campaign_id || '|' || hour || '|' || line_id || '|' || clicks \
                 FROM track_rollup_members",
                "SELECT campaign_id || '|' || substr(triggered_at, 1, 13) || ':00:00|' \
                     || line_id || '|' || COUNT(*) \
                 FROM component_interaction_logs WHERE line_id <> '' \
                 GROUP BY campaign_id, substr(triggered_at, 1, 13), line_id",
            ),
            (
                "track_rollup_campaign_members",
                "SELECT campaign_id || '|' || line_id FROM track_rollup_campaign_members",
                "SELECT DISTINCT campaign_id || '|' || line_id \
                 FROM component_interaction_logs WHERE line_id <> ''",
            ),
            (
                "track_rollup_campaigns",
                "SELECT campaign_id || '|' || unique_members || '|' || last_click_at \
                 FROM track_rollup_campaigns",
                "SELECT campaign_id || '|' || COUNT(DISTINCT NULLIF(line_id, '')) || '|' \
                     || MAX(triggered_at) \
                 FROM component_interaction_logs GROUP BY campaign_id",
            ),
        ],
        StoreKind::Mysql => vec![
            (
                "track_rollup_hours",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(hour, '%Y-%m-%d %H:%i:%s'), \
                     interaction_type, clicks, member_clicks, \
                     DATE_FORMAT(last_click_at, '%Y-%m-%d %H:%i:%s')) FROM track_rollup_hours",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:00:00'), \
                     CAST(interaction_type AS CHAR), COUNT(*), SUM(line_id <> ''), \
                     DATE_FORMAT(MAX(triggered_at), '%Y-%m-%d %H:%i:%s')) \
                 FROM component_interaction_logs \
                 GROUP BY campaign_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:00:00'), \
                     interaction_type",
            ),
            (
                "track_rollup_targets",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(hour, '%Y-%m-%d %H:%i:%s'), \
                     target_key, clicks) FROM track_rollup_targets",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:00:00'), \
                     k, COUNT(*)) \
                 FROM (SELECT campaign_id, triggered_at, CONVERT(LEFT(COALESCE(interaction_value, ''), \
                     255) USING utf8mb4) COLLATE utf8mb4_bin AS k FROM component_interaction_logs) l \
                 GROUP BY campaign_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:00:00'), k",
            ),
            (
                "track_rollup_tags",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(hour, '%Y-%m-%d %H:%i:%s'), tag, \
                     clicks) FROM track_rollup_tags",
                "SELECT CONCAT_WS('|', l.campaign_id, \
                     DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:00:00'), t.tag, COUNT(*)) \
                 FROM component_interaction_logs l JOIN track_click_tags t ON t.click_id = l.click_id \
                 GROUP BY l.campaign_id, DATE_FORMAT(l.triggered_at, '%Y-%m-%d %H:00:00'), t.tag",
            ),
            (
                "track_rollup_days",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(day, '%Y-%m-%d %H:%i:%s'), \
                     interaction_type, clicks, member_clicks, \
                     DATE_FORMAT(last_click_at, '%Y-%m-%d %H:%i:%s')) FROM track_rollup_days",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(DATE(hour), '%Y-%m-%d 00:00:00'), \
                     interaction_type, SUM(clicks), SUM(member_clicks), \
                     DATE_FORMAT(MAX(last_click_at), '%Y-%m-%d %H:%i:%s')) \
                 FROM track_rollup_hours GROUP BY campaign_id, DATE(hour), interaction_type",
            ),
            (
                "track_rollup_day_targets",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(day, '%Y-%m-%d %H:%i:%s'), \
                     target_key, clicks) FROM track_rollup_day_targets",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(DATE(hour), '%Y-%m-%d 00:00:00'), \
                     target_key, SUM(clicks)) \
                 FROM track_rollup_targets GROUP BY campaign_id, DATE(hour), target_key",
            ),
            (
                "track_rollup_day_tags",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(day, '%Y-%m-%d %H:%i:%s'), tag, \
                     clicks) FROM track_rollup_day_tags",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(DATE(hour), '%Y-%m-%d 00:00:00'), \
                     tag, SUM(clicks)) \
                 FROM track_rollup_tags GROUP BY campaign_id, DATE(hour), tag",
            ),
            (
                "track_rollup_members",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(hour, '%Y-%m-%d %H:%i:%s'), line_id, \
                     clicks) FROM track_rollup_members",
                "SELECT CONCAT_WS('|', campaign_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:00:00'), \
                     line_id COLLATE utf8mb4_bin, COUNT(*)) \
                 FROM component_interaction_logs WHERE line_id <> '' \
                 GROUP BY campaign_id, DATE_FORMAT(triggered_at, '%Y-%m-%d %H:00:00'), \
                     line_id COLLATE utf8mb4_bin",
            ),
            (
                "track_rollup_campaign_members",
                "SELECT CONCAT_WS('|', campaign_id, line_id) FROM track_rollup_campaign_members",
                "SELECT DISTINCT CONCAT_WS('|', campaign_id, line_id COLLATE utf8mb4_bin) \
                 FROM component_interaction_logs WHERE line_id <> ''",
            ),
            (
                "track_rollup_campaigns",
                "SELECT CONCAT_WS('|', campaign_id, unique_members, \
                     DATE_FORMAT(last_click_at, '%Y-%m-%d %H:%i:%s')) FROM track_rollup_campaigns",
                "SELECT CONCAT_WS('|', campaign_id, \
                     COUNT(DISTINCT NULLIF(line_id COLLATE utf8mb4_bin, '')), \
                     DATE_FORMAT(MAX(triggered_at), '%Y-%m-%d %H:%i:%s')) \
                 FROM component_interaction_logs GROUP BY campaign_id",
            ),
        ],
        StoreKind::Postgres => vec![
            (
                "track_rollup_hours",
                "SELECT concat_ws('|', campaign_id, to_char(hour, 'YYYY-MM-DD HH24:MI:SS'), \
                     interaction_type, clicks, member_clicks, \
                     to_char(last_click_at, 'YYYY-MM-DD HH24:MI:SS')) FROM track_rollup_hours",
                "SELECT concat_ws('|', campaign_id, \
                     to_char(date_trunc('hour', triggered_at), 'YYYY-MM-DD HH24:MI:SS'), \
                     interaction_type, COUNT(*), SUM(CASE WHEN line_id <> '' THEN 1 ELSE 0 END), \
                     to_char(MAX(triggered_at), 'YYYY-MM-DD HH24:MI:SS')) \
                 FROM component_interaction_logs \
                 GROUP BY campaign_id, date_trunc('hour', triggered_at), interaction_type",
            ),
            (
                "track_rollup_targets",
                "SELECT concat_ws('|', campaign_id, to_char(hour, 'YYYY-MM-DD HH24:MI:SS'), \
                     target_key, clicks) FROM track_rollup_targets",
                "SELECT concat_ws('|', campaign_id, \
                     to_char(date_trunc('hour', triggered_at), 'YYYY-MM-DD HH24:MI:SS'), \
                     LEFT(COALESCE(interaction_value, ''), 255), COUNT(*)) \
                 FROM component_interaction_logs \
                 GROUP BY campaign_id, date_trunc('hour', triggered_at), \
                     LEFT(COALESCE(interaction_value, ''), 255)",
            ),
            (
                "track_rollup_tags",
                "SELECT concat_ws('|', campaign_id, to_char(hour, 'YYYY-MM-DD HH24:MI:SS'), tag, \
                     clicks) FROM track_rollup_tags",
                "SELECT concat_ws('|', l.campaign_id, \
                     to_char(date_trunc('hour', l.triggered_at), 'YYYY-MM-DD HH24:MI:SS'), t.tag, \
                     COUNT(*)) \
                 FROM component_interaction_logs l JOIN track_click_tags t ON t.click_id = l.click_id \
                 GROUP BY l.campaign_id, date_trunc('hour', l.triggered_at), t.tag",
            ),
            (
                "track_rollup_days",
                "SELECT concat_ws('|', campaign_id, to_char(day, 'YYYY-MM-DD HH24:MI:SS'), \
                     interaction_type, clicks, member_clicks, \
                     to_char(last_click_at, 'YYYY-MM-DD HH24:MI:SS')) FROM track_rollup_days",
                "SELECT concat_ws('|', campaign_id, \
                     to_char(date_trunc('day', hour), 'YYYY-MM-DD HH24:MI:SS'), \
                     interaction_type, SUM(clicks), SUM(member_clicks), \
                     to_char(MAX(last_click_at), 'YYYY-MM-DD HH24:MI:SS')) \
                 FROM track_rollup_hours \
                 GROUP BY campaign_id, date_trunc('day', hour), interaction_type",
            ),
            (
                "track_rollup_day_targets",
                "SELECT concat_ws('|', campaign_id, to_char(day, 'YYYY-MM-DD HH24:MI:SS'), \
                     target_key, clicks) FROM track_rollup_day_targets",
                "SELECT concat_ws('|', campaign_id, \
                     to_char(date_trunc('day', hour), 'YYYY-MM-DD HH24:MI:SS'), target_key, \
                     SUM(clicks)) \
                 FROM track_rollup_targets GROUP BY campaign_id, date_trunc('day', hour), target_key",
            ),
            (
                "track_rollup_day_tags",
                "SELECT concat_ws('|', campaign_id, to_char(day, 'YYYY-MM-DD HH24:MI:SS'), tag, \
                     clicks) FROM track_rollup_day_tags",
                "SELECT concat_ws('|', campaign_id, \
                     to_char(date_trunc('day', hour), 'YYYY-MM-DD HH24:MI:SS'), tag, SUM(clicks)) \
                 FROM track_rollup_tags GROUP BY campaign_id, date_trunc('day', hour), tag",
            ),
            (
                "track_rollup_members",
                "SELECT concat_ws('|', campaign_id, to_char(hour, 'YYYY-MM-DD HH24:MI:SS'), line_id, \
                     clicks) FROM track_rollup_members",
                "SELECT concat_ws('|', campaign_id, \
                     to_char(date_trunc('hour', triggered_at), 'YYYY-MM-DD HH24:MI:SS'), line_id, \
                     COUNT(*)) \
                 FROM component_interaction_logs WHERE line_id <> '' \
                 GROUP BY campaign_id, date_trunc('hour', triggered_at), line_id",
            ),
            (
                "track_rollup_campaign_members",
                "SELECT concat_ws('|', campaign_id, line_id) FROM track_rollup_campaign_members",
                "SELECT DISTINCT concat_ws('|', campaign_id, line_id) \
                 FROM component_interaction_logs WHERE line_id <> ''",
            ),
            (
                "track_rollup_campaigns",
                "SELECT concat_ws('|', campaign_id, unique_members, \
                     to_char(last_click_at, 'YYYY-MM-DD HH24:MI:SS')) FROM track_rollup_campaigns",
                "SELECT concat_ws('|', campaign_id, COUNT(DISTINCT NULLIF(line_id, '')), \
                     to_char(MAX(triggered_at), 'YYYY-MM-DD HH24:MI:SS')) \
                 FROM component_interaction_logs GROUP BY campaign_id",
            ),
        ],
    }
}

/// Every rollup table equals its recount from the raw log, row for row.
pub async fn assert_rollups_match_log(db: &TestDb) {
    let pool = db.pool().await;
    let text_rows = async |sql: &str| -> BTreeSet<String> {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.try_get::<String, _>(0).expect("text"))
            .collect()
    };
    for (table, rollup, recount) in rollup_checks(db.kind) {
        let (held, counted) = (text_rows(rollup).await, text_rows(recount).await);
        let missing: Vec<_> = counted.difference(&held).take(5).collect();
        let extra: Vec<_> = held.difference(&counted).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{table} ({} rows) differs from the log's recount ({} rows): missing {missing:?}, \
             extra {extra:?}",
            held.len(),
            counted.len()
        );
        assert!(
            !held.is_empty() || table.ends_with("_tags"),
            "{table} is empty"
        );
    }
    pool.close().await;
}

/// Write `batch` (retrying what a busy database refuses for now), then write it again as a
/// replay: the second write must change nothing.
pub async fn write_twice(store: &Store, batch: &[Record]) {
    let mut seen = Seen::Never;
    for _ in 0..2 {
        let mut attempts = 0;
        loop {
            match store.write_batch(batch, seen).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && attempts < 20 => {
                    attempts += 1;
                    seen = Seen::Maybe;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write_batch: {e}"),
            }
        }
        seen = Seen::Maybe;
    }
}

/// Backfill steps of `chunk` rows until one finds nothing.
async fn backfill_until_idle(store: &Store, chunk: i64) -> u64 {
    let mut rows = 0;
    loop {
        match store.backfill_step(chunk).await {
            Ok(step) if step.idle() => return rows,
            Ok(step) => rows += step.history_rows + step.foreign_rows,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("backfill step: {e}"),
        }
    }
}

pub async fn connect(db: &TestDb) -> Store {
    let url = DatabaseUrl::parse(&db.url).expect("url");
    Store::connect(&url, ConnectOptions { max_connections: 2 })
        .await
        .expect("connect")
}

/// A raw log row of campaign 123 as the recount reads it.
struct RawClick {
    at: String,
    kind: String,
    target: String,
    uid: String,
    tags: Vec<String>,
}

async fn raw_clicks(db: &TestDb) -> Vec<RawClick> {
    let (at, kind, key) = match db.kind {
        StoreKind::Sqlite => (
            "triggered_at",
            "interaction_type",
            "COALESCE(interaction_value, '')",
        ),
        StoreKind::Mysql => (
            "DATE_FORMAT(triggered_at, '%Y-%m-%d %H:%i:%s')",
            "CAST(interaction_type AS CHAR)",
            "COALESCE(interaction_value, '')",
        ),
        StoreKind::Postgres => (
            "to_char(triggered_at, 'YYYY-MM-DD HH24:MI:SS')",
            "interaction_type::text",
            "COALESCE(interaction_value, '')",
        ),
    };
    let pool = db.pool().await;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {at}, {kind}, {key}, line_id, COALESCE(click_id, '') \
         FROM component_interaction_logs WHERE campaign_id = 123"
    )))
    .fetch_all(&pool)
    .await
    .expect("read the log");
    let tags = sqlx::query("SELECT click_id, tag FROM track_click_tags WHERE campaign_id = 123")
        .fetch_all(&pool)
        .await
        .expect("read the tags");
    pool.close().await;
    let mut tags_of: HashMap<String, Vec<String>> = HashMap::new();
    for row in tags {
        tags_of
            .entry(row.get::<String, _>(0))
            .or_default()
            .push(row.get(1));
    }
    rows.iter()
        .map(|row| {
            let target: String = row.get(2);
            let click_id: String = row.get(4);
            RawClick {
                at: row.get(0),
                kind: row.get(1),
                target: target.chars().take(255).collect(),
                uid: row.get(3),
                tags: tags_of.get(&click_id).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// (name, clicks) most first, then by name; at most `limit`.
fn ranked(counts: BTreeMap<String, i64>, limit: usize) -> Vec<(String, i64)> {
    let mut list: Vec<(String, i64)> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(limit);
    list
}

fn pairs(list: &Value, name: &str, count: &str) -> Vec<(String, i64)> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c[name].as_str().expect("name").to_owned(),
                c[count].as_i64().expect("count"),
            )
        })
        .collect()
}

/// The API's answer for `[from, to)` equals a recount of `clicks` in that window.
fn check_window(stats: &Value, clicks: &[RawClick], from: &str, to: &str, label_len: usize) {
    let inside: Vec<&RawClick> = clicks
        .iter()
        .filter(|c| c.at.as_str() >= from && c.at.as_str() < to)
        .collect();
    let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
    let (mut targets, mut members, mut tags, mut buckets) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    for c in &inside {
        *by_type.entry(c.kind.clone()).or_default() += 1;
        *targets.entry(c.target.clone()).or_default() += 1;
        if !c.uid.is_empty() {
            *members.entry(c.uid.clone()).or_default() += 1;
        }
        for tag in &c.tags {
            *tags.entry(tag.clone()).or_default() += 1;
        }
        *buckets.entry(c.at[..label_len].to_owned()).or_default() += 1;
    }
    let what = format!("window {from} .. {to}");
    let total = inside.len() as i64;
    let member_clicks: i64 = members.values().sum();
    assert_eq!(stats["totals"]["clicks"], total, "{what}");
    assert_eq!(
        stats["totals"]["unique_members"],
        members.len() as i64,
        "{what}"
    );
    assert_eq!(
        stats["totals"]["anonymous_clicks"],
        total - member_clicks,
        "{what}"
    );
    let api_types: BTreeMap<String, i64> = pairs(&stats["by_type"], "name", "clicks")
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(api_types, by_type, "{what}");
    assert_eq!(
        pairs(&stats["by_tag"], "name", "clicks"),
        ranked(tags, 100),
        "{what}"
    );
    assert_eq!(
        pairs(&stats["top_targets"], "name", "clicks"),
        ranked(targets, 10),
        "{what}"
    );
    assert_eq!(
        pairs(&stats["top_members"], "uid", "clicks"),
        ranked(members, 10),
        "{what}"
    );
    let series: BTreeMap<String, i64> = stats["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|p| p["clicks"].as_i64() != Some(0))
        .map(|p| {
            let start = p["start"].as_str().expect("start").replace('T', " ");
            (
                start[..label_len].to_owned(),
                p["clicks"].as_i64().expect("clicks"),
            )
        })
        .collect();
    assert_eq!(series, buckets, "{what}");
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    db_time(t).replace(' ', "T") + "Z"
}

crate::store_tests! {
async fn rollups_equal_a_recount_of_the_log_and_the_api_answers_any_window_exactly(db) {
    let seed = fastrand::u64(..);
    println!("seed {seed}");
    let mut mix = Mix::new(seed);
    // The history: rows that were in the log before the rollups existed (an earlier
    // clicktrack's with click ids and tags, the old endpoint's without), as migrate records
    // them in the state row.
    insert_raw_rows(&db, &mut mix, 1_200, true).await;
    insert_raw_rows(&db, &mut mix, 300, false).await;
    mark_as_history(&db).await;
    let stats = db.cli(&["stats"]);
    assert_eq!(stats.status.code(), Some(1));
    let said = String::from_utf8_lossy(&stats.stderr);
    assert!(said.contains("history is still being built"), "{said}");

    // An interrupted backfill: three steps committed, then the process is gone.
    let first = connect(&db).await;
    for _ in 0..3 {
        let step = first.backfill_step(97).await.expect("step");
        assert_eq!(step.history_rows, 97);
    }
    first.close().await;

    // Four writers of live batches (each written twice: the replay changes nothing) and two
    // backfills at once, on the same campaigns, hours and members; another program writes
    // rows meanwhile.
    let writers = (0..4u64).map(|w| {
        let db = &db;
        async move {
            let store = connect(db).await;
            let mut mix = Mix::new(seed ^ (w + 1));
            for _ in 0..8 {
                let batch: Vec<Record> = (0..60).map(|_| mix.record()).collect();
                write_twice(&store, &batch).await;
            }
            store.close().await;
            0
        }
    });
    let backfills = (0..2).map(|_| {
        let db = &db;
        async move {
            let store = connect(db).await;
            let rows = backfill_until_idle(&store, 50).await;
            store.close().await;
            rows
        }
    });
    let foreign = async {
        let mut mix = Mix::new(seed ^ 99);
        insert_raw_rows(&db, &mut mix, 150, false).await;
        0
    };
    let (_, backfilled, _) = tokio::join!(join_all(writers), join_all(backfills), foreign);
    let backfilled: u64 = backfilled.iter().sum();
    assert!(backfilled >= 1_500 - 3 * 97, "the two backfills shared the history: {backfilled}");

    // migrate finishes whatever is left (the foreign rows may have come after the backfills
    // went idle) and says so.
    let out = db.cli_ok(&["migrate"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("campaign statistics are complete"), "{said}");
    assert_rollups_match_log(&db).await;
    assert!(db.count("track_rejects").await > 0, "the mix has rejects");
    assert_eq!(
        db.count("track_rollup_foreign").await,
        150,
        "each foreign row rolled up once"
    );

    // The API over random windows: whole hours from the rollups, edges from the raw log.
    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    let clicks = raw_clicks(&db).await;
    let spans = [
        Duration::minutes(37),
        Duration::minutes(90),
        Duration::hours(5),
        Duration::days(2),
        Duration::days(9),
        Duration::days(DAYS),
    ];
    for i in 0..40 {
        let span = spans[i % spans.len()] + Duration::seconds(mix.rng.i64(0..3_600));
        let mut from = BASE + Duration::seconds(mix.rng.i64(-86_400..DAYS * 86_400));
        if i % 4 == 0 {
            from = from.replace_time(time::Time::from_hms(from.hour(), 0, 0).expect("hour"));
        }
        if i % 8 == 4 {
            from = from.replace_time(time::Time::MIDNIGHT); // whole days from the first hour
        }
        let to = from + span;
        let bucket = if span <= Duration::days(2) && mix.rng.bool() { "hour" } else { "day" };
        let path = format!(
            "/api/campaigns/123/stats?from={}&to={}&bucket={bucket}",
            rfc3339(from),
            rfc3339(to)
        );
        let (status, body) = admin_get(&app, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let stats: Value = serde_json::from_str(&body).expect("JSON");
        let label_len = if bucket == "hour" { 13 } else { 10 };
        check_window(&stats, &clicks, &db_time(from), &db_time(to), label_len);
    }
    // The campaign list: distinct members and the last click, all time.
    let (status, body) = admin_get(&app, "/api/campaigns").await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("JSON");
    let c123 = list["campaigns"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["id"] == 123)
        .expect("campaign 123");
    let uids: BTreeSet<&str> = clicks.iter().map(|c| c.uid.as_str()).filter(|u| !u.is_empty()).collect();
    assert_eq!(c123["unique_members"], uids.len() as i64);
    let last = clicks.iter().map(|c| c.at.as_str()).max().expect("clicks");
    assert_eq!(c123["last_click_at"], last.replace(' ', "T") + "Z");
}
}

crate::server_store_tests! {
async fn a_serve_started_during_a_backfill_redirects_and_says_the_history_is_being_built(db) {
    let mut mix = Mix::new(7);
    insert_raw_rows(&db, &mut mix, 500, true).await;
    mark_as_history(&db).await;
    let old = db.count("component_interaction_logs").await;
    // A `migrate` elsewhere is in the middle of a step: it holds the state row, so serve's own
    // backfill steps wait for it.
    sqlx::any::install_default_drivers();
    let mut migrate = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut migrate)
        .await
        .expect("begin");
    sqlx::query("SELECT id FROM track_rollup_state WHERE id = 1 FOR UPDATE")
        .execute(&mut migrate)
        .await
        .expect("hold the backfill's state");

    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    for i in 0..20 {
        let response = app.track(link(123, &format!("U_LIVE_{i}"), 1, "T")).await;
        assert_eq!(
            response.status().as_u16(),
            302,
            "redirects go on during the backfill"
        );
    }
    for path in ["/api/campaigns", "/api/campaigns/123/stats"] {
        let (status, body) = admin_get(&app, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(
            body.contains("history is still being built"),
            "{path}: {body}"
        );
    }
    assert_eq!(
        app.metric(r#"track_errors_total{operation="stats",error_type="other"}"#)
            .await,
        0.0,
        "a history being built is not a failure"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut migrate)
        .await
        .expect("release");
    wait_until(&app, "serve finishes the backfill", async || {
        admin_get(&app, "/api/campaigns").await.0 == 200
    })
    .await;
    assert_eq!(db.count("component_interaction_logs").await, old + 20);
    assert_rollups_match_log(&db).await;
    assert_eq!(app.metric("track_rollup_history_left").await, 0.0);
    assert!(
        app.metric(r#"track_rollup_backfilled_rows_total{source="history"}"#)
            .await
            >= 500.0
    );
}

}

/// Busy hours of campaign 123 (member packs are written for hours with at least 64 member
/// clicks), and a fourth, as rows another program wrote before the rollups existed.
async fn insert_busy_hours(db: &TestDb, rng: &mut fastrand::Rng, hours: &[OffsetDateTime]) {
    let mut rows = Vec::new();
    for hour in hours {
        for _ in 0..240 {
            let at = db_time(*hour + Duration::seconds(rng.i64(0..3_600)));
            let uid = if rng.u8(0..10) == 0 {
                String::new()
            } else {
                format!("U{}", rng.u8(0..60))
            };
            rows.push(format!(
                "({}, 123, 'image_click', 'https://example.com/p{}', {})",
                quote(&uid),
                rng.u8(0..5),
                quote(&at)
            ));
        }
    }
    // An hour too quiet to be packed (60 member clicks, the packs start at 64), where
    // every U member clicks: a window over it reads every member's uid with its rows.
    for n in 0..60 {
        let at = db_time(datetime!(2026-09-02 03:00 UTC) + Duration::seconds(n * 50));
        rows.push(format!(
            "('U{n}', 123, 'image_click', 'https://example.com/p1', '{at}')"
        ));
    }
    // An hour where 1,500 members click once each: the top list is a tie of all of them,
    // broken by uid (more than the stats look up by number: they read uids in order).
    for n in 0..1_500 {
        let at = db_time(datetime!(2026-09-03 08:00 UTC) + Duration::seconds(n * 2));
        rows.push(format!(
            "('V{:04}', 123, 'button_url', 'https://example.com/p9', '{at}')",
            (n * 7) % 1_500
        ));
    }
    for chunk in rows.chunks(200) {
        db.execute(&format!(
            "INSERT INTO component_interaction_logs \
                 (line_id, campaign_id, interaction_type, interaction_value, triggered_at) \
             VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
}

/// The API's answer equals a recount of the raw log for every window of `WINDOWS`.
async fn check_busy_windows(app: &TestApp, db: &TestDb, when: &str) {
    const WINDOWS: [(&str, &str, &str); 7] = [
        ("2026-09-01T00:00:00Z", "2026-09-03T00:00:00Z", "day"),
        ("2026-09-01T10:00:00Z", "2026-09-01T12:00:00Z", "hour"),
        ("2026-09-01T10:17:05Z", "2026-09-02T15:41:00Z", "hour"),
        ("2026-09-01T11:05:00Z", "2026-09-01T11:50:00Z", "hour"),
        ("2026-08-31T23:59:59Z", "2026-09-02T15:00:00Z", "day"),
        ("2026-09-03T08:00:00Z", "2026-09-03T09:00:00Z", "hour"),
        ("2026-09-03T07:30:00Z", "2026-09-03T08:40:00Z", "hour"),
    ];
    check_windows(app, db, when, &WINDOWS).await;
}

/// The API's answer equals a recount of the raw log for each (from, to, bucket).
async fn check_windows(app: &TestApp, db: &TestDb, when: &str, windows: &[(&str, &str, &str)]) {
    let clicks = raw_clicks(db).await;
    for (from, to, bucket) in windows {
        let path = format!("/api/campaigns/123/stats?from={from}&to={to}&bucket={bucket}");
        let (status, body) = admin_get(app, &path).await;
        assert_eq!(status, 200, "{when}: {path}: {body}");
        let stats: Value = serde_json::from_str(&body).expect("JSON");
        let label_len = if *bucket == "hour" { 13 } else { 10 };
        let at = |t: &str| t.replace('T', " ").replace('Z', "");
        check_window(&stats, &clicks, &at(from), &at(to), label_len);
    }
}

crate::store_tests! {
async fn member_packs_answer_as_the_rows_do_when_stale_and_after_an_erasure(db) {
    let seed = fastrand::u64(..);
    println!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let hours = [
        datetime!(2026-09-01 10:00 UTC),
        datetime!(2026-09-01 11:00 UTC),
        datetime!(2026-09-02 15:00 UTC),
    ];
    insert_busy_hours(&db, &mut rng, &hours).await;
    mark_as_history(&db).await;
    let out = db.cli_ok(&["migrate"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("member packs: 4 campaign-hours packed"), "{said}");
    assert_eq!(db.count("track_rollup_member_packs").await, 4);
    assert_rollups_match_log(&db).await;

    let app = TestApp::spawn(&db, &["--admin-token", TOKEN]);
    check_busy_windows(&app, &db, "packed").await;
    // Three of the windows have a day or more of settled hours: their members were counted
    // once and kept (docs/rollups.md "Member packs"); shown again, they are used.
    let cache = |result: &str| format!("track_stats_member_cache_total{{result=\"{result}\"}}");
    assert_eq!(app.metric(&cache("miss")).await, 3.0);
    check_busy_windows(&app, &db, "packed, shown again").await;
    assert_eq!(app.metric(&cache("hit")).await, 3.0);
    // A window whose settled hours end an hour after a kept one's (as a window ending now
    // has every hour): the kept count, and the hour after it counted.
    let an_hour_later = [("2026-09-01T00:00:00Z", "2026-09-02T16:00:00Z", "hour")];
    check_windows(&app, &db, "an hour later", &an_hour_later).await;
    assert_eq!(app.metric(&cache("extended")).await, 1.0);

    // Another program adds a click to a packed hour: serve rolls it up, which leaves that
    // hour's pack short of the hour (stale): its rows answer until it is packed again.
    db.execute(
        "INSERT INTO component_interaction_logs \
             (line_id, campaign_id, interaction_type, interaction_value, triggered_at) \
         VALUES ('U7', 123, 'image_click', 'https://example.com/p1', '2026-09-01 10:30:00'), \
                ('Unew', 123, 'image_click', 'https://example.com/p1', '2026-09-01 10:31:00')",
    )
    .await;
    wait_until(&app, "the foreign rows are rolled up", async || {
        app.metric(r#"track_rollup_backfilled_rows_total{source="foreign"}"#).await >= 2.0
    })
    .await;
    check_busy_windows(&app, &db, "one pack stale").await;
    // The late clicks are in the settled hours of two kept windows: counted again, not used.
    assert_eq!(app.metric(&cache("stale")).await, 2.0);
    // Nor extended: the count kept for the window an hour shorter is short of them too.
    let two_hours_later = [("2026-09-01T00:00:00Z", "2026-09-02T17:00:00Z", "day")];
    check_windows(&app, &db, "two hours later, one pack stale", &two_hours_later).await;
    assert_eq!(app.metric(&cache("extended")).await, 1.0);
    assert_eq!(app.metric(&cache("stale")).await, 3.0);
    let out = db.cli_ok(&["migrate"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("member packs: 1 campaign-hours packed"), "{said}");
    check_busy_windows(&app, &db, "packed again").await;

    // Erasing the most active member: packs name members by number, so the figures stay
    // those of a recount, with the pseudonym in the uid's place.
    let (_, body) = admin_get(
        &app,
        "/api/campaigns/123/stats?from=2026-09-01T00:00:00Z&to=2026-09-03T00:00:00Z",
    )
    .await;
    let stats: Value = serde_json::from_str(&body).expect("JSON");
    let top = stats["top_members"][0]["uid"].as_str().expect("a top member").to_owned();
    db.cli_ok(&["member", "erase", "--uid", &top]);
    check_busy_windows(&app, &db, "after the erasure").await;
    let (_, body) = admin_get(
        &app,
        "/api/campaigns/123/stats?from=2026-09-01T00:00:00Z&to=2026-09-03T00:00:00Z",
    )
    .await;
    assert!(!body.contains(&format!("\"{top}\"")), "{body}");
    // Those answers came from kept counts (an erasure renames uids, not numbers): the uids
    // were read again.
    assert!(app.metric(&cache("hit")).await >= 6.0);
}
}

crate::store_tests! {
async fn migrate_adds_up_the_day_rollups_of_an_earlier_releases_hours(db) {
    let mut mix = Mix::new(fastrand::u64(..));
    insert_raw_rows(&db, &mut mix, 800, true).await;
    mark_as_history(&db).await;
    db.cli_ok(&["migrate"]);
    // The schema of the release before the day rollups: hours only.
    for table in ["track_rollup_days", "track_rollup_day_targets", "track_rollup_day_tags"] {
        db.execute(&format!("DROP TABLE {table}")).await;
    }
    db.execute("ALTER TABLE track_rollup_state DROP COLUMN days_built").await;
    if db.kind == StoreKind::Sqlite {
        db.execute("DELETE FROM _sqlx_migrations WHERE version = 9").await;
    }
    let out = db.cli_ok(&["migrate"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("track_rollup_days"), "{said}");
    assert_rollups_match_log(&db).await;
    if db.kind != StoreKind::Sqlite {
        // Day rows a writer of this release added before they were built are replaced, not
        // added to: the build starts from the hours again.
        db.execute("UPDATE track_rollup_days SET clicks = clicks + 5").await;
        db.execute("UPDATE track_rollup_state SET days_built = 0").await;
        db.cli_ok(&["migrate"]);
        assert_rollups_match_log(&db).await;
    }
}}
