//! `DELETE /api/members/{uid}[?dry_run=true]`: erase one person (`pipeline/erasure.rs`,
//! docs/privacy.md), the same as `clicktrack member erase`. This process owns its journal, so
//! the member's waiting records are removed from it too.
//!
//! ```text
//! DELETE /api/members/U4af4980629/
//! → 200 {"uid_hash": "3f0c...", "dry_run": false,
//!        "deleted": {"members": 1, "messages": 4, "ryan_click_demo": 1, "track_rejects": 0},
//!        "pseudonymized": {"component_interaction_logs": 4, "rollups": 2},
//!        "journal_records": 2, "redis_keys": 1, ...}
//! ```

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::pipeline::erasure::{self, JournalAccess, check_uid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseParams {
    #[serde(default)]
    dry_run: bool,
}

pub async fn erase(
    State(state): State<ApiState>,
    uid: Result<Path<String>, PathRejection>,
    params: Result<Query<EraseParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(uid) = uid.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(problem) = check_uid(&uid) {
        return Err(ApiError::BadRequest(problem));
    }
    let report = erasure::erase_member(
        &state.erasure.store,
        JournalAccess::Owned(&state.erasure.journal),
        state.erasure.dedup.as_deref(),
        &uid,
        params.dry_run,
    )
    .await
    .map_err(|error| {
        // Counted in `track_errors_total{operation="erase"}` by `erase_member`.
        tracing::error!(operation = "erase", %error, "member erasure failed");
        ApiError::Unavailable(error.to_string())
    })?;
    let table_counts =
        |rows: &[(&'static str, u64)]| -> serde_json::Map<String, serde_json::Value> {
            rows.iter()
                .map(|(table, n)| ((*table).to_owned(), (*n).into()))
                .collect()
        };
    Ok(Json(serde_json::json!({
        "uid_hash": report.uid_hash,
        "dry_run": report.dry_run,
        "deleted": table_counts(&report.deleted),
        "pseudonymized": table_counts(&report.pseudonymized),
        "journal_records": report.journal_records,
        "redis_keys": report.redis_keys,
        "note": "campaign counters and statistics keep their counts",
    }))
    .into_response())
}
