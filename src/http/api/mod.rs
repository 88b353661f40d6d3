//! The admin API (`/api/...`, admin listener only: links, campaign results): bearer-token authentication and the one
//! error type every endpoint answers with, as JSON: `{"error": "..."}`.
//!
//! Without `--admin-token` the API is off (403 saying so), never open: an unprotected link
//! minter would be an open redirect with extra steps.

mod links;
mod members;
mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Uri;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use subtle::ConstantTimeEq;

use crate::domain::signature::Keyring;
use crate::stats::StatsReader;
use crate::telemetry::{Event, metrics};

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub admin_token: Option<Arc<str>>,
    pub keys: Arc<Keyring>,
    pub stats: StatsReader,
    pub auth_failures: Arc<AuthFailures>,
    pub erasure: Arc<ErasureParts>,
}

/// What `DELETE /api/members/{uid}` erases from: the store (a connection of the background
/// work, not the applier's), this process's journal, the de-duplication keys.
pub struct ErasureParts {
    pub store: crate::store::Store,
    pub journal: Arc<crate::journal::Journal>,
    pub dedup: Option<Arc<crate::dedup::Dedup>>,
}

/// At most one warning per this interval about refused tokens, however many arrive.
const AUTH_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Refused admin tokens: every one is counted (`track_admin_auth_failures_total`), and a
/// warning names the latest peer and how many were refused since the last warning, at most
/// once a minute, so a guessing attempt shows in the logs without flooding them.
#[derive(Debug, Default)]
pub struct AuthFailures {
    /// Refused since the last warning, and when that warning was written.
    state: Mutex<(u64, Option<Instant>)>,
}

impl AuthFailures {
    fn refused(&self, reason: &'static str, peer: Option<SocketAddr>, path: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 += 1;
        let warn = state
            .1
            .is_none_or(|last| last.elapsed() >= AUTH_WARNING_INTERVAL);
        let refused_since_warning = if warn {
            state.1 = Some(Instant::now());
            Some(std::mem::take(&mut state.0))
        } else {
            None
        };
        drop(state);
        TokenRefused {
            reason,
            peer,
            path,
            refused_since_warning,
        }
        .emit();
    }
}

/// One refused admin request: always counted; a warning only when the minute since the
/// last one has passed (`refused_since_warning` is then how many it covers).
struct TokenRefused<'a> {
    reason: &'static str,
    peer: Option<SocketAddr>,
    path: &'a str,
    refused_since_warning: Option<u64>,
}

impl Event for TokenRefused<'_> {
    fn emit(self) {
        metrics::admin_auth_failure(self.reason);
        if let Some(refused) = self.refused_since_warning {
            tracing::warn!(
                reason = self.reason,
                peer = self.peer.map(|p| p.to_string()),
                path = self.path,
                refused,
                "admin API request with a missing or wrong bearer token refused \
                 (at most one such line a minute; every one is counted)"
            );
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/links", post(links::create))
        .route("/api/campaigns", get(stats::campaigns))
        .route("/api/campaigns/{id}/stats", get(stats::campaign_stats))
        .route("/api/campaigns/{id}/clicks.csv", get(stats::clicks_csv))
        .route("/api/members/{uid}/clicks", get(stats::member_clicks))
        .route("/api/members/{uid}", delete(members::erase))
        .route("/api/{*rest}", any(no_such_endpoint))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Unknown `/api/...` paths answer like the rest of the API: JSON, after the token check.
async fn no_such_endpoint(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

/// Every API error, mapped to its status and a JSON body naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the admin API is off: start clicktrack with --admin-token")]
    Disabled,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Disabled => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.admin_token else {
        return ApiError::Disabled.into_response();
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    // Constant time: the comparison says nothing about how much of a guess was right.
    let reason = match given {
        None => Some("missing"),
        Some(given) if !bool::from(given.ct_eq(expected.as_bytes())) => Some("wrong"),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        state
            .auth_failures
            .refused(reason, peer, request.uri().path());
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}
