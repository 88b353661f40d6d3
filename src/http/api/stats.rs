//! Campaign results: `GET /api/campaigns`, `/api/campaigns/{id}/stats`,
//! `/api/campaigns/{id}/clicks.csv` and `/api/members/{uid}/clicks` (what the dashboard reads).
//!
//! ```text
//! GET /api/campaigns/123/stats?from=2026-11-01&to=2026-11-08T00:00:00Z&bucket=day
//! → 200 {"campaign": {...}, "totals": {"clicks": 812, "unique_members": 301, ...},
//!        "by_type": [...], "by_tag": [...], "top_targets": [...], "top_members": [...],
//!        "series": [{"start": "2026-11-01T00:00:00Z", "clicks": 97}, ...]}
//! ```

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{ApiError, ApiState};
use crate::stats::window::{Window, parse_range};
use crate::stats::{StatsError, StatsFailed, export};
use crate::telemetry::Event;

/// `?from=&to=&bucket=`; unknown parameters are refused, so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberParams {
    limit: Option<i64>,
}

/// Header of a CSV export whose window reaches before the purge horizon: its value is the
/// horizon, before which the raw log no longer lists clicks.
const PURGED_BEFORE: &str = "clicktrack-log-purged-before";

/// Clicks `/api/members/{uid}/clicks` lists when no `limit` is given, and the most it lists.
const DEFAULT_MEMBER_CLICKS: i64 = 100;
const MAX_MEMBER_CLICKS: i64 = 1_000;

pub async fn campaigns(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let campaigns = state.stats.campaigns().await?;
    Ok(Json(serde_json::json!({ "campaigns": campaigns })).into_response())
}

pub async fn campaign_stats(
    State(state): State<ApiState>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = campaign_id(id)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let window = Window::parse(
        params.from.as_deref(),
        params.to.as_deref(),
        params.bucket.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(ApiError::BadRequest)?;
    let stats = state.stats.campaign_stats(id, &window).await?;
    Ok(Json(stats).into_response())
}

pub async fn clicks_csv(
    State(state): State<ApiState>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = campaign_id(id)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (from, to) = parse_range(
        params.from.as_deref(),
        params.to.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(ApiError::BadRequest)?;
    // 404 before the 200 starts: once rows stream, the status is sent.
    let (_, purged_before) =
        tokio::try_join!(state.stats.campaign(id), state.stats.log_purged_before())?;
    // Clicks before the purge horizon are counted in the stats but no longer listed: say so.
    let purged = purged_before
        .filter(|horizon| from < *horizon)
        .map(|horizon| (PURGED_BEFORE, crate::stats::window::rfc3339(horizon)));
    let chunks = export::clicks_csv(&state.stats, id, from, to, |error| {
        StatsFailed { error }.emit();
    });
    let body = Body::from_stream(futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    Ok((
        [
            (
                CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present".to_owned(),
            ),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"campaign-{id}-clicks.csv\""),
            ),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
        AppendHeaders(purged),
        body,
    )
        .into_response())
}

pub async fn member_clicks(
    State(state): State<ApiState>,
    uid: Result<Path<String>, PathRejection>,
    params: Result<Query<MemberParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(uid) = uid.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_MEMBER_CLICKS);
    if !(1..=MAX_MEMBER_CLICKS).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_MEMBER_CLICKS}"
        )));
    }
    let member = state.stats.member_clicks(&uid, limit).await?;
    Ok(Json(member).into_response())
}

fn campaign_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::BadRequest("campaign id must be an integer".into()))?;
    Ok(id)
}

/// A stats error's answer: unknown ids are 404, a history still being built is 503 with what
/// is left (not a failure: not logged as one), anything else is logged once (the request's
/// span names the path), counted and answered 503.
impl From<StatsError> for ApiError {
    fn from(error: StatsError) -> ApiError {
        match error {
            StatsError::UnknownCampaign(_) | StatsError::UnknownMember(_) => {
                ApiError::NotFound(error.to_string())
            }
            StatsError::HistoryIncomplete { .. } => ApiError::Unavailable(error.to_string()),
            _ => {
                StatsFailed { error: &error }.emit();
                ApiError::Unavailable(format!("the store did not answer: {error}"))
            }
        }
    }
}
