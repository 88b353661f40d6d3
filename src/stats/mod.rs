//! Campaign results for the people who read them: what the admin API, the dashboard and
//! `clicktrack stats` show. Campaign figures come from the rollups (whole hours) and the raw
//! log (the window's edges), so their cost follows the window, not every click ever recorded;
//! a member's clicks and the CSV export list single clicks from the raw log.
//!
//! Reads go through their own small pool (`READ_CONNECTIONS`), never the writer's: a slow
//! report must not hold a connection a batch of clicks is waiting for. SQLite readers open the
//! file read-only and, in WAL mode, never block the writer. Each request's queries run at once
//! on that pool, so a campaign's page costs its slowest query, not their sum.

pub mod export;
mod member_cache;
mod members;
pub mod report;
pub mod sql;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use time::OffsetDateTime;

use crate::db::{DatabaseUrl, ErrorKind, classify, sqlite_reader};
use crate::domain::InteractionType;
use crate::telemetry::{Event, metrics};
use member_cache::{Found, MemberCache, Settled};
use window::{Split, Window, api_time, rfc3339};

/// Members in a campaign's top list.
const TOP_MEMBERS: usize = 10;

/// Connections of the read pool: one request's four queries run side by side.
pub const READ_CONNECTIONS: u32 = 4;
/// A stats query taking longer than this is abandoned (503): better an error than a page that
/// never loads while it holds a read connection.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The read side of the store.
#[derive(Debug, Clone)]
pub struct StatsReader {
    pool: ReadPool,
    /// Counted members of windows shown before (`member_cache.rs`).
    members: MemberCache,
}

#[derive(Debug, Clone)]
enum ReadPool {
    Sqlite(SqlitePool),
    Mysql(MySqlPool),
    Postgres(PgPool),
}

/// Run `$body` with `$pool` bound to the pool in use and `$sql` to its dialect's
/// statements (`crate::db::on_pool!`).
macro_rules! on_pool {
    ($reader:expr, $pool:ident, $sql:ident => $body:expr) => {
        crate::db::on_pool!($reader.pools(), $pool, $sql in (&sql::SQLITE, &sql::MYSQL, &sql::POSTGRES) => $body)
    };
}
pub(crate) use on_pool;

impl StatsReader {
    /// The pool in use, for `on_pool!`.
    pub(crate) fn pools(&self) -> crate::db::PoolRef<'_> {
        match &self.pool {
            ReadPool::Sqlite(pool) => crate::db::PoolRef::Sqlite(pool),
            ReadPool::Mysql(pool) => crate::db::PoolRef::Mysql(pool),
            ReadPool::Postgres(pool) => crate::db::PoolRef::Postgres(pool),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("no campaign {0}")]
    UnknownCampaign(i64),
    #[error("no member {0:?}: no clicks and no members row")]
    UnknownMember(String),
    #[error("{operation}: {source}")]
    Store {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{operation}: no answer within {} s", QUERY_TIMEOUT.as_secs())]
    TimedOut { operation: &'static str },
    /// The backfill has not rolled up every log row older than the rollups: the figures
    /// would be short, so none are given.
    #[error(
        "campaign history is still being built from the interaction log ({left} log ids to go); \
         `clicktrack migrate` builds it, and `serve` continues it"
    )]
    HistoryIncomplete { left: i64 },
    /// A member pack that cannot be read, or a member number without its uid: the member
    /// figures cannot be given (docs/rollups.md "Member packs" says how to rebuild them).
    #[error("member packs: {0}")]
    MemberPacks(String),
}

impl StatsError {
    /// `error_type` label of `track_errors_total{operation="stats"}`; `None` for answers that
    /// are not failures (an unknown id).
    pub fn error_type(&self) -> Option<&'static str> {
        match self {
            StatsError::UnknownCampaign(_)
            | StatsError::UnknownMember(_)
            | StatsError::HistoryIncomplete { .. } => None,
            // A read is not retried, so only "the database is not there" is told apart.
            StatsError::Store { source, .. } => match classify(source).0 {
                ErrorKind::Unavailable => Some("unavailable"),
                _ => Some("other"),
            },
            StatsError::TimedOut { .. } => Some("timeout"),
            StatsError::MemberPacks(_) => Some("other"),
        }
    }
}

fn store_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StatsError {
    move |source| StatsError::Store { operation, source }
}

/// `work` within `QUERY_TIMEOUT`.
async fn timed<T>(
    operation: &'static str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StatsError> {
    match tokio::time::timeout(QUERY_TIMEOUT, work).await {
        Ok(result) => result.map_err(store_err(operation)),
        Err(_) => Err(StatsError::TimedOut { operation }),
    }
}

/// A window's member rows (`Dialect::members`) counted as the database returns them, within
/// `QUERY_TIMEOUT`: decoding a pack (microseconds) overlaps reading the next, so a 90-day
/// window costs the longer of the two, not their sum.
async fn count_while_reading(
    rows: impl futures_util::Stream<Item = Result<members::MemberRow, sqlx::Error>>,
) -> Result<members::Tally, StatsError> {
    const OPERATION: &str = "read members";
    let count = async {
        let mut rows = std::pin::pin!(rows);
        let mut tally = members::Tally::default();
        while let Some(row) = rows.try_next().await.map_err(store_err(OPERATION))? {
            tally
                .add_row(row)
                .map_err(|e| StatsError::MemberPacks(e.to_string()))?;
        }
        Ok(tally)
    };
    tokio::time::timeout(QUERY_TIMEOUT, count)
        .await
        .unwrap_or(Err(StatsError::TimedOut {
            operation: OPERATION,
        }))
}

/// One row of `GET /api/campaigns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignSummary {
    pub id: i64,
    pub name: String,
    /// The campaign's counter (`campaigns.clicked_count`), all time.
    pub clicked_count: i64,
    /// Distinct LINE members in its interaction logs, all time.
    pub unique_members: i64,
    pub last_click_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignInfo {
    pub id: i64,
    pub name: String,
    pub clicked_count: i64,
    pub created_at: String,
}

/// A name and its clicks: an interaction type, a tag or a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub name: String,
    pub clicks: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberCount {
    pub uid: String,
    pub display_name: Option<String>,
    pub clicks: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub clicks: i64,
    pub unique_members: i64,
    /// Clicks without a uid (links sent outside LINE).
    pub anonymous_clicks: i64,
}

/// One bucket of the time series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    pub start: String,
    pub clicks: i64,
}

/// `GET /api/campaigns/{id}/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignStats {
    pub campaign: CampaignInfo,
    pub from: String,
    pub to: String,
    pub bucket: window::Bucket,
    /// Raw log rows before this time were purged (retention): the window's edges before it
    /// were widened to whole hours (`from` and `to` are the window counted). `null`: nothing
    /// was purged.
    pub log_purged_before: Option<String>,
    pub totals: Totals,
    /// Every interaction type, most clicked first.
    pub by_type: Vec<Count>,
    /// Tags of the window's clicks (a click with two tags counts for both), most used first.
    pub by_tag: Vec<Count>,
    pub top_targets: Vec<Count>,
    pub top_members: Vec<MemberCount>,
    /// Every bucket of the window, zero-filled.
    pub series: Vec<Point>,
}

/// One click of `GET /api/members/{uid}/clicks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberClick {
    pub click_id: Option<String>,
    pub clicked_at: String,
    pub campaign_id: i64,
    pub campaign_name: Option<String>,
    pub interaction_type: String,
    pub target: Option<String>,
    pub tags: Vec<String>,
}

/// One `ryan_click_demo` row of the member: clicks and merged tags per source campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberSummary {
    pub source_campaign_id: i64,
    pub total_clicks: i64,
    pub last_clicked_at: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberClicks {
    pub uid: String,
    pub display_name: Option<String>,
    /// Newest first, at most the requested limit.
    pub clicks: Vec<MemberClick>,
    pub summaries: Vec<MemberSummary>,
}

/// What the reports need to know of the rollups: how far the backfill is, and before when the
/// raw log may have been purged (`sql.rollup_state`).
#[derive(Debug, sqlx::FromRow)]
struct RollupProgress {
    next_id: i64,
    end_id: i64,
    purged_before: Option<String>,
    /// 1 once the day rollups hold every hour (MySQL builds them after its tables exist).
    days_built: i64,
}

impl RollupProgress {
    /// `HistoryIncomplete` until the backfill has passed the last log id older than the
    /// rollups.
    fn history_complete(&self) -> Result<(), StatsError> {
        if self.next_id > self.end_id {
            Ok(())
        } else {
            Err(StatsError::HistoryIncomplete {
                left: self.end_id - self.next_id + 1,
            })
        }
    }

    /// The purge horizon, if any raw rows were purged.
    fn purged_before(&self) -> Option<OffsetDateTime> {
        self.purged_before
            .as_deref()
            .and_then(window::parse_db_time)
    }
}

fn split_tags(joined: Option<String>) -> Vec<String> {
    joined
        .map(|t| {
            t.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `$query` with the binds of `sql::ROLLED_UP_BINDS`: campaign `$id`, window `$split` (a
/// macro, not a function: each statement decodes into its own row type).
macro_rules! rolled_up {
    ($query:expr, $id:expr, $split:expr) => {
        $query
            .bind($id)
            .bind(&$split.day_from)
            .bind(&$split.day_to)
            .bind($id)
            .bind(&$split.mid_from)
            .bind(&$split.day_from)
            .bind(&$split.day_to)
            .bind(&$split.mid_to)
            .bind($id)
            .bind(&$split.from)
            .bind(&$split.mid_from)
            .bind(&$split.mid_to)
            .bind(&$split.to)
    };
}

impl StatsReader {
    /// A read pool on the store; connections open on first use.
    pub fn connect(url: &DatabaseUrl) -> Result<StatsReader, StatsError> {
        let pool = match url {
            DatabaseUrl::Sqlite(url) => {
                // (sqlx would log every export as a slow statement: it lasts as long as its
                // download.)
                let options = sqlite_reader(
                    SqliteConnectOptions::from_str(url).map_err(store_err("parse database url"))?,
                );
                ReadPool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(READ_CONNECTIONS)
                        .connect_lazy_with(options),
                )
            }
            DatabaseUrl::Mysql(url) => {
                let options = crate::db::mysql_options(
                    MySqlConnectOptions::from_str(url).map_err(store_err("parse database url"))?,
                );
                ReadPool::Mysql(
                    MySqlPoolOptions::new()
                        .max_connections(READ_CONNECTIONS)
                        .min_connections(0)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with(options),
                )
            }
            DatabaseUrl::Postgres(url) => {
                let options = crate::db::postgres_options(
                    PgConnectOptions::from_str(url).map_err(store_err("parse database url"))?,
                );
                ReadPool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(READ_CONNECTIONS)
                        .min_connections(0)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(StatsReader {
            pool,
            members: MemberCache::default(),
        })
    }

    pub async fn close(&self) {
        on_pool!(self, pool, _sql => pool.close().await)
    }

    pub async fn campaigns(&self) -> Result<Vec<CampaignSummary>, StatsError> {
        type Row = (i64, String, i64, Option<String>, i64);
        let (rows, state): (Vec<Row>, RollupProgress) = on_pool!(self, pool, sql => {
            tokio::try_join!(
                timed("list campaigns", sqlx::query_as(sql.campaigns).fetch_all(pool)),
                timed("read rollup state", sqlx::query_as(sql.rollup_state).fetch_one(pool)),
            )?
        });
        state.history_complete()?;
        Ok(rows
            .into_iter()
            .map(
                |(id, name, clicked_count, last, unique_members)| CampaignSummary {
                    id,
                    name,
                    clicked_count,
                    unique_members,
                    last_click_at: last.as_deref().map(api_time),
                },
            )
            .collect())
    }

    /// How far the backfill is and the purge horizon.
    async fn rollup_progress(&self) -> Result<RollupProgress, StatsError> {
        on_pool!(self, pool, sql => {
            timed(
                "read rollup state",
                sqlx::query_as(sql.rollup_state).fetch_one(pool),
            )
            .await
        })
    }

    /// The purge horizon: raw log rows before it may be gone (the CSV export says so).
    pub async fn log_purged_before(&self) -> Result<Option<OffsetDateTime>, StatsError> {
        Ok(self.rollup_progress().await?.purged_before())
    }

    pub async fn campaign(&self, id: i64) -> Result<CampaignInfo, StatsError> {
        type Row = (i64, String, i64, String);
        let row: Option<Row> = on_pool!(self, pool, sql => {
            timed(
                "read campaign",
                sqlx::query_as(sql.campaign).bind(id).fetch_optional(pool),
            )
            .await?
        });
        let (id, name, clicked_count, created_at) = row.ok_or(StatsError::UnknownCampaign(id))?;
        Ok(CampaignInfo {
            id,
            name,
            clicked_count,
            created_at: api_time(&created_at),
        })
    }

    pub async fn campaign_stats(
        &self,
        id: i64,
        window: &Window,
    ) -> Result<CampaignStats, StatsError> {
        let (campaign, state) = tokio::try_join!(self.campaign(id), self.rollup_progress())?;
        state.history_complete()?;
        // The raw log before the purge horizon is gone: a window's edges there are widened
        // to whole hours, which the rollups hold.
        let purged_before = state.purged_before();
        let window = &match purged_before {
            Some(horizon) => window.whole_hours_before(horizon),
            None => *window,
        };
        let split = match state.days_built {
            0 => window.split().without_days(),
            _ => window.split(),
        };
        let hours = split.clone().without_days();
        let settled = MemberCache::settled(id, window, OffsetDateTime::now_utc());
        type Series = Vec<(String, String, i64, i64)>;
        type Pairs = Vec<(String, i64)>;
        let reports = async {
            on_pool!(self, pool, sql => {
                let (series_sql, series_split) = match window.bucket {
                    window::Bucket::Hour => (sql.series_hour, &hours),
                    window::Bucket::Day => (sql.series_day, &split),
                };
                tokio::try_join!(
                    timed(
                        "read clicks over time",
                        rolled_up!(sqlx::query_as(series_sql), id, series_split).fetch_all(pool)
                    ),
                    timed(
                        "read top targets",
                        rolled_up!(sqlx::query_as(sql.top_targets), id, split).fetch_all(pool)
                    ),
                    timed(
                        "read tags",
                        rolled_up!(sqlx::query_as(sql.tags), id, split).fetch_all(pool)
                    ),
                )
            })
        };
        let ((series, targets, tags), tally): ((Series, Pairs, Pairs), members::Tally) = tokio::try_join!(
            reports,
            self.window_members(id, &split, settled, state.days_built != 0)
        )?;
        let (unique_members, members) = self.count_members(tally).await?;

        let mut per_bucket: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_type: BTreeMap<String, i64> = InteractionType::ALL
            .iter()
            .map(|t| (t.as_str().to_owned(), 0))
            .collect();
        let mut member_clicks = 0;
        for (bucket, kind, clicks, of_members) in series {
            *per_bucket.entry(bucket).or_default() += clicks;
            *per_type.entry(kind).or_default() += clicks;
            member_clicks += of_members;
        }
        let clicks: i64 = per_type.values().sum();
        let top_members = self.with_display_names(members).await?;

        let mut by_type: Vec<Count> = per_type
            .into_iter()
            .map(|(name, clicks)| Count { name, clicks })
            .collect();
        by_type.sort_by(|a, b| b.clicks.cmp(&a.clicks).then(a.name.cmp(&b.name)));
        let counts = |pairs: Pairs| -> Vec<Count> {
            pairs
                .into_iter()
                .map(|(name, clicks)| Count { name, clicks })
                .collect()
        };
        Ok(CampaignStats {
            campaign,
            from: rfc3339(window.from),
            to: rfc3339(window.to),
            bucket: window.bucket,
            log_purged_before: purged_before.map(rfc3339),
            totals: Totals {
                clicks,
                unique_members,
                anonymous_clicks: clicks - member_clicks,
            },
            by_type,
            by_tag: counts(tags),
            top_targets: counts(targets),
            top_members,
            series: window
                .buckets()
                .into_iter()
                .map(|(label, start)| Point {
                    start: rfc3339(start),
                    clicks: per_bucket.get(&label).copied().unwrap_or(0),
                })
                .collect(),
        })
    }

    /// The members of a window (`split`): its settled hours from the tally an earlier request
    /// kept while it is current (`member_cache.rs`), else read and kept; the rest read, at
    /// the same time.
    async fn window_members(
        &self,
        id: i64,
        split: &Split,
        settled: Option<Settled>,
        days_built: bool,
    ) -> Result<members::Tally, StatsError> {
        let edges = [&*split.from, &split.mid_from, &split.mid_to, &split.to];
        // (Settled hours start at the window's first whole hour, as `split`'s do.)
        let settled = settled.filter(|s| s.hours.bounds().0 == split.mid_from);
        let Some(settled) = settled else {
            return self
                .read_members(id, (&split.mid_from, &split.mid_to), edges)
                .await;
        };
        let (from, to) = settled.hours.bounds();
        let settled_part = async {
            let found = match self.members.get(&settled) {
                Some(kept) => {
                    if self
                        .still_current(id, &settled.hours, &kept, days_built)
                        .await?
                    {
                        Found::Current.count();
                        return Ok((*kept).clone());
                    }
                    Found::Stale
                }
                None => match self.members.earlier(&settled) {
                    Some((hours, kept)) => {
                        if self.still_current(id, &hours, &kept, days_built).await? {
                            let (_, counted_to) = hours.bounds();
                            let since = self.read_members(id, (&counted_to, &to), [&to; 4]);
                            let mut tally = (*kept).clone();
                            tally.absorb(since.await?);
                            self.members.keep(&settled, &tally);
                            Found::Extended.count();
                            return Ok(tally);
                        }
                        Found::Stale
                    }
                    None => Found::Nothing,
                },
            };
            found.count();
            let tally = self.read_members(id, (&from, &to), [&from; 4]).await?;
            self.members.keep(&settled, &tally);
            Ok::<_, StatsError>(tally)
        };
        let rest = self.read_members(id, (&to, &split.mid_to), edges);
        let (mut tally, rest) = tokio::try_join!(settled_part, rest)?;
        tally.absorb(rest);
        Ok(tally)
    }

    /// `Dialect::members` of campaign `id`: the whole hours `[hours.0, hours.1)` and the
    /// raw edges `[edges[0], edges[1])` and `[edges[2], edges[3])`, counted as they arrive.
    async fn read_members(
        &self,
        id: i64,
        hours: (&str, &str),
        edges: [&str; 4],
    ) -> Result<members::Tally, StatsError> {
        on_pool!(self, pool, sql => {
            let rows = sqlx::query_as::<_, members::MemberRow>(sql.members)
                .bind(id)
                .bind(hours.0)
                .bind(hours.1)
                .bind(id)
                .bind(id)
                .bind(id)
                .bind(edges[0])
                .bind(edges[1])
                .bind(edges[2])
                .bind(edges[3]);
            count_while_reading(rows.fetch(pool)).await
        })
    }

    /// Whether `kept` still counts every member click of campaign `id`'s `hours`: rollups
    /// only grow, so the same sum is the same member rows (`member_cache.rs`).
    async fn still_current(
        &self,
        id: i64,
        hours: &Window,
        kept: &members::Tally,
        days_built: bool,
    ) -> Result<bool, StatsError> {
        let now = self.member_clicks_of(id, hours, days_built).await?;
        Ok(u64::try_from(now).ok() == Some(kept.clicks()))
    }

    /// The member clicks of the whole `hours` of campaign `id` in the rollups (day rows
    /// where `days_built`).
    async fn member_clicks_of(
        &self,
        id: i64,
        hours: &Window,
        days_built: bool,
    ) -> Result<i64, StatsError> {
        let split = match days_built {
            true => hours.split(),
            false => hours.split().without_days(),
        };
        on_pool!(self, pool, sql => {
            timed(
                "read member clicks",
                rolled_up!(sqlx::query_scalar(sql.member_clicks_of_hours), id, split)
                    .fetch_one(pool),
            )
            .await
        })
    }

    /// Unique members and the top ten of a window's tally (`members.rs`): ranked off the
    /// async workers (a long window counts hundreds of thousands of members), then the uids
    /// of the member numbers that rank, by number.
    async fn count_members(
        &self,
        tally: members::Tally,
    ) -> Result<(i64, Vec<(String, i64)>), StatsError> {
        let stopped =
            |e: tokio::task::JoinError| StatsError::MemberPacks(format!("counting stopped: {e}"));
        let (tally, ranking) = tokio::task::spawn_blocking(move || {
            let ranking = tally.rank(TOP_MEMBERS, sql::MEMBER_NAMES_PAGE);
            (tally, ranking)
        })
        .await
        .map_err(stopped)?;
        let members::Ranking {
            unique,
            last_place,
            above_unnamed,
            tied,
        } = ranking;
        let mut names = self.member_names(&above_unnamed).await?;
        match tied {
            Some(tied) => names.extend(self.member_names(&tied).await?),
            None => {
                let is_tied = |number| tally.clicks_of(number) == last_place;
                names.extend(self.first_in_uid_order(is_tied, TOP_MEMBERS).await?);
            }
        }
        let top = tokio::task::spawn_blocking(move || tally.top(TOP_MEMBERS, last_place, &names))
            .await
            .map_err(stopped)?;
        let top = top.map_err(|number| {
            StatsError::MemberPacks(format!("member number {number} has no uid"))
        })?;
        Ok((unique, top))
    }

    /// The uids of member `numbers`.
    async fn member_names(&self, numbers: &[u64]) -> Result<HashMap<u64, String>, StatsError> {
        let mut names = HashMap::with_capacity(numbers.len());
        for chunk in numbers.chunks(sql::MEMBER_NAMES_PAGE) {
            // Numbers are integers this process decoded, never client input.
            let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let rows: Vec<(i64, String)> = on_pool!(self, pool, sql => {
                let statement = format!("{}{})", sql.member_names, list.join(","));
                timed(
                    "read member numbers",
                    sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .persistent(false)
                        .fetch_all(pool),
                )
                .await?
            });
            names.extend(
                rows.into_iter()
                    .filter_map(|(n, uid)| Some((u64::try_from(n).ok()?, uid))),
            );
        }
        Ok(names)
    }

    /// The uids of the first `n` numbers that are `wanted` in uid order, reading the numbers
    /// in that order a page at a time: with a long tie (a large share of all members) that
    /// ends after a few pages, where looking every tied number up would read them all.
    async fn first_in_uid_order(
        &self,
        wanted: impl Fn(u64) -> bool,
        n: usize,
    ) -> Result<HashMap<u64, String>, StatsError> {
        let mut found = HashMap::with_capacity(n);
        let mut after = String::new();
        loop {
            let page: Vec<(i64, String)> = on_pool!(self, pool, sql => {
                timed(
                    "read member numbers in uid order",
                    sqlx::query_as(sql.member_names_after).bind(&after).fetch_all(pool),
                )
                .await?
            });
            let Some((_, last)) = page.last() else {
                return Ok(found);
            };
            after = last.clone();
            let full = page.len() == sql::MEMBER_NAMES_PAGE;
            for (number, uid) in page {
                if let Some(number) = u64::try_from(number).ok().filter(|n| wanted(*n)) {
                    found.insert(number, uid);
                    if found.len() == n {
                        return Ok(found);
                    }
                }
            }
            if !full {
                return Ok(found);
            }
        }
    }

    /// `members` (uid, clicks), most active first, with their display names (one query).
    async fn with_display_names(
        &self,
        members: Vec<(String, i64)>,
    ) -> Result<Vec<MemberCount>, StatsError> {
        let Some((last, _)) = members.last() else {
            return Ok(Vec::new());
        };
        let mut uids: Vec<&str> = members.iter().map(|(uid, _)| uid.as_str()).collect();
        uids.resize(sql::DISPLAY_NAMES_LIST, last.as_str());
        let names: Vec<(String, Option<String>)> = on_pool!(self, pool, sql => {
            let mut query = sqlx::query_as(sql.display_names);
            for uid in &uids {
                query = query.bind(*uid);
            }
            timed("read member names", query.fetch_all(pool)).await?
        });
        let names: BTreeMap<String, Option<String>> = names.into_iter().collect();
        Ok(members
            .into_iter()
            .map(|(uid, clicks)| MemberCount {
                display_name: names.get(&uid).cloned().flatten(),
                uid,
                clicks,
            })
            .collect())
    }

    /// A member's newest `limit` clicks across campaigns, with their tags, and the member's
    /// summaries. `UnknownMember` when the uid has neither clicks nor a members row.
    pub async fn member_clicks(&self, uid: &str, limit: i64) -> Result<MemberClicks, StatsError> {
        let (clicks, summaries, display_name): (Vec<MemberClickRow>, Vec<SummaryRow>, _) = on_pool!(self, pool, sql => {
            tokio::try_join!(
                timed(
                    "read member clicks",
                    sqlx::query_as(sql.member_clicks).bind(uid).bind(limit).fetch_all(pool),
                ),
                timed(
                    "read member summaries",
                    sqlx::query_as(sql.member_summaries).bind(uid).fetch_all(pool),
                ),
                timed(
                    "read member",
                    sqlx::query_scalar::<_, Option<String>>(sql.display_name)
                        .bind(uid)
                        .fetch_optional(pool),
                ),
            )?
        });
        if clicks.is_empty() && summaries.is_empty() && display_name.is_none() {
            return Err(StatsError::UnknownMember(uid.to_owned()));
        }
        Ok(MemberClicks {
            uid: uid.to_owned(),
            display_name: display_name.flatten(),
            clicks: clicks
                .into_iter()
                .map(|row| MemberClick {
                    click_id: row.click_id,
                    clicked_at: api_time(&row.clicked_at),
                    campaign_id: row.campaign_id,
                    campaign_name: row.campaign_name,
                    interaction_type: row.interaction_type,
                    target: row.target,
                    tags: split_tags(row.tags),
                })
                .collect(),
            summaries: summaries
                .into_iter()
                .map(|row| MemberSummary {
                    source_campaign_id: row.source_campaign_id,
                    total_clicks: row.total_clicks,
                    last_clicked_at: row.last_clicked_at.as_deref().map(api_time),
                    tags: split_tags(row.tags),
                })
                .collect(),
        })
    }
}

/// One of a member's clicks as `sql.member_clicks` reads it.
#[derive(sqlx::FromRow)]
struct MemberClickRow {
    /// `None` for clicks the Flask app recorded.
    click_id: Option<String>,
    clicked_at: String,
    campaign_id: i64,
    campaign_name: Option<String>,
    interaction_type: String,
    target: Option<String>,
    tags: Option<String>,
}

/// One of a member's `ryan_click_demo` rows as `sql.member_summaries` reads it.
#[derive(sqlx::FromRow)]
struct SummaryRow {
    source_campaign_id: i64,
    total_clicks: i64,
    last_clicked_at: Option<String>,
    tags: Option<String>,
}

/// A report the store could not give: one error line (in the request's span), counted in
/// `track_errors_total{operation="stats"}`.
pub struct StatsFailed<'a> {
    pub error: &'a StatsError,
}

impl Event for StatsFailed<'_> {
    fn emit(self) {
        let error_type = self.error.error_type().unwrap_or("other");
        tracing::error!(operation = "stats", error_type, error = %self.error, "stats query failed");
        metrics::error("stats", error_type);
    }
}
