//! A request id for every request on both listeners: a fresh uuid v7, opened as a tracing
//! span so that every log line the request causes carries it (including the lines of the task
//! that records its click), and returned in `X-Request-Id`.
//!
//! On `/__track` the same id becomes the click's `click_id`: the response header a user can
//! show, the log lines about the click and its database row share one id. An incoming
//! `X-Request-Id` is not reused: click ids must be unique, and the header comes from anyone.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::click::truncate_utf8;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Paths longer than this are cut in log lines (the request line limit is larger).
const LOGGED_PATH_BYTES: usize = 128;

#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub Uuid);

pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    request.extensions_mut().insert(RequestId(id));
    // The path only: the query holds uids and targets, which are logged (shortened) only
    // where an error needs them.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = truncate_utf8(request.uri().path(), LOGGED_PATH_BYTES),
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    // Not at the default level: no log line per successful click.
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request done"
        );
    });
    let mut buf = Uuid::encode_buffer();
    if let Ok(value) = HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
