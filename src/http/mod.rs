//! The two listeners and what each serves.
//!
//! Public (`--listen`): `/__track`, `/healthz`, `/readyz`: what browsers and load balancers
//! see. Admin (`--admin-listen`): `/metrics`, `/healthz`, `/readyz`: for operators only, so
//! metrics are never exposed on the public port (SPEC §4a).

mod admin;
mod health;
mod pages;
mod track;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;

use crate::domain::RedirectPolicy;
use crate::pipeline::{ClickQueue, Health};

/// What the public handlers share.
#[derive(Clone)]
pub struct AppState {
    pub queue: ClickQueue,
    pub policy: Arc<RedirectPolicy>,
    pub health: Arc<Health>,
}

pub fn public_router(state: AppState) -> Router {
    let health = state.health.clone();
    Router::new()
        .route("/__track", get(track::track))
        .with_state(state)
        .merge(health::router(health))
        // Last line of defence: a panic becomes a 500 and a log line, not a dropped connection.
        .layer(CatchPanicLayer::custom(pages::panic_response))
}

pub fn admin_router(health: Arc<Health>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(admin::metrics))
        .with_state(metrics)
        .merge(health::router(health))
        .layer(CatchPanicLayer::custom(pages::panic_response))
}
