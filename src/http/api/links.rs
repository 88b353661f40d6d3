//! `POST /api/links`: mint a signed tracking link, like `clicktrack link`.
//!
//! ```text
//! {"base_url": "https://t.example.com", "to": "https://shop.example.com/x", "cid": 123,
//!  "uid": "U4af4980629", "src": 456, "type": "button_url", "tag": "A,B", "expires_in": "30d"}
//! → 201 {"expires_at": "2026-12-25T08:00:00Z", "url": "https://t.example.com/__track?...&sig=k1.…"}
//! ```

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ApiError, ApiState};
use crate::config::parse_span;
use crate::domain::link::{LinkError, LinkSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    base_url: String,
    to: String,
    cid: i64,
    uid: Option<String>,
    src: Option<i64>,
    #[serde(rename = "type")]
    interaction_type: Option<String>,
    tag: Option<String>,
    /// `90s`, `30m`, `12h`, `30d`, `2w`.
    expires_in: Option<String>,
}

pub async fn create(
    State(state): State<ApiState>,
    body: Result<Json<NewLink>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(new) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let expires_at = match &new.expires_in {
        None => None,
        Some(span) => {
            let span =
                parse_span(span).map_err(|e| ApiError::BadRequest(format!("expires_in: {e}")))?;
            // Whole seconds: the signature holds a Unix second, and so does the answer.
            Some((OffsetDateTime::now_utc() + span).unix_timestamp())
        }
    };
    let spec = LinkSpec {
        to: new.to,
        cid: new.cid,
        uid: new.uid,
        src: new.src,
        interaction_type: new.interaction_type,
        tag: new.tag,
        expires_at,
    };
    let url = spec
        .signed_url(&new.base_url, &state.keys)
        .map_err(|e| match e {
            LinkError::NoSigningKey => ApiError::Unavailable(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        })?;
    let expires_at = expires_at
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "url": url, "expires_at": expires_at })),
    ))
}
