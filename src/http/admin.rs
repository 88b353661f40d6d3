//! The admin listener's own endpoints: Prometheus metrics, and an index of the listener at `/`
//! (someone who opens the admin address in a browser learns where to go).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::telemetry::Exporter;

pub async fn metrics(State(exporter): State<Exporter>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        exporter.render(),
    )
}

/// `/`: what this listener serves.
pub async fn index() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "clicktrack admin listener\n\
         /dashboard   campaign results in the browser (needs the admin token)\n\
         /metrics     Prometheus metrics\n\
         /api/...     the admin API (Authorization: Bearer <admin token>)\n\
         /healthz     the process answers\n\
         /readyz      a click arriving now would be made durable\n",
    )
}
