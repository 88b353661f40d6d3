//! `/healthz` (the process answers) and `/readyz` (a click arriving now would be made durable),
//! on both listeners. `/readyz`'s body names the store's and the journal's state separately.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::pipeline::Health;

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    let state = |ok| if ok { "ok" } else { "down" };
    let body = format!(
        "{}\nack: {}\nstore: {}\njournal: {}\n",
        if health.is_ready() {
            "ready"
        } else {
            "not ready: a click now could not be made durable, it could be lost"
        },
        health.mode().as_str(),
        state(health.store_ok()),
        state(health.journal_ok()),
    );
    let code = if health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}
