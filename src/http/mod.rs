//! The two listeners and what each serves.
//!
//! Public (`--listen`): `/__track`, `/healthz`, `/readyz`: what browsers and load balancers
//! see. Admin (`--admin-listen`): `/metrics`, `/healthz`, `/readyz`, the API (`/api/...`) and
//! the campaign dashboard (`/dashboard`):
//! for operators only, so metrics and the API are never exposed on the public port (docs/link-contract.md).

mod admin;
pub mod api;
mod dashboard;
mod health;
mod pages;
mod request_id;
pub mod server;
mod track;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use ipnet::IpNet;

use crate::dedup::Dedup;
use crate::domain::RedirectPolicy;
use crate::domain::signature::Keyring;
use crate::pipeline::{ClickQueue, Health};
use crate::telemetry::Exporter;

/// What the public handlers share. The router holds it in one `Arc`: axum clones the state
/// for every request (twice: the route's service and the `State` extractor), and a clone of
/// this struct field by field touched nine shared counters (two channel senders, five `Arc`s)
/// on and off, from both cores.
pub struct AppState {
    pub queue: ClickQueue,
    pub policy: Arc<RedirectPolicy>,
    pub links: Arc<LinkChecks>,
    /// `None` when de-duplication is off.
    pub dedup: Option<Arc<Dedup>>,
    pub trusted_proxies: Arc<[IpNet]>,
    pub health: Arc<Health>,
    /// `--user-agent-detail`.
    pub user_agent_detail: crate::domain::user_agent::UserAgentDetail,
}

/// How links are authenticated.
pub struct LinkChecks {
    pub keys: Arc<Keyring>,
    pub require_signature: bool,
}

pub fn public_router(state: AppState) -> Router {
    let health = state.health.clone();
    let router = Router::new()
        .route("/__track", get(track::track))
        .with_state(Arc::new(state))
        .merge(health::router(health));
    with_common_layers(router)
}

pub fn admin_router(health: Arc<Health>, metrics: Exporter, api: api::ApiState) -> Router {
    let router = Router::new()
        .route("/", get(admin::index))
        .route("/metrics", get(admin::metrics))
        .with_state(metrics)
        .merge(health::router(health))
        .merge(api::router(api))
        .merge(dashboard::router());
    with_common_layers(router)
}

fn with_common_layers(router: Router) -> Router {
    router
        // Last line of defence: a panic becomes a 500 and a log line, not a dropped connection.
        .layer(CatchPanicLayer::custom(pages::panic_response))
        // Outermost, so that even the panic's log line carries the request id.
        .layer(middleware::from_fn(request_id::assign))
}
