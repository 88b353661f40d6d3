//! `DELETE /api/members/{uid}[?dry_run=true]`: erase one person (`pipeline/erasure.rs`,
//! docs/privacy.md), the same as `clicktrack member erase`. This process owns its journal, so
//! the member's waiting records are removed from it too.
//!
//! ```text
//! DELETE /api/members/U4af4980629/
//! → 200 {"uid_hash": "3f0c...", "dry_run": false,
//!        "removed": {"members": 1, "messages": 4, ..., "journal_records": 2, "redis_keys": 1}}
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
    let mut removed = serde_json::Map::new();
    for (table, rows) in &report.tables {
        removed.insert((*table).to_owned(), (*rows).into());
    }
    removed.insert("journal_records".into(), report.journal_records.into());
    removed.insert("redis_keys".into(), report.redis_keys.into());
    Ok(Json(serde_json::json!({
        "uid_hash": report.uid_hash,
        "dry_run": report.dry_run,
        "removed": removed,
        "note": "campaign counters and statistics keep their counts",
    }))
    .into_response())
}
