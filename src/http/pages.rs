//! The responses a person may see instead of a redirect: short, fixed, human-readable pages.
//!
//! Their text comes from fixed messages only, never from the request, so nothing a link
//! contains can end up in the page or in a header.

use std::any::Any;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;

use crate::domain::TargetError;
use crate::domain::signature::SignatureError;
use crate::telemetry::{Event, metrics};

/// 302 to a checked target; never cached (a cached redirect is a lost click).
pub fn redirect(location: HeaderValue) -> Response<Body> {
    (
        StatusCode::FOUND,
        [
            (LOCATION, location),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// 400 for a target the policy refused.
pub fn bad_target(error: TargetError) -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        "This link cannot be opened",
        &error.to_string(),
    )
}

/// 403 for a link whose signature is wrong, unknown or expired.
pub fn bad_signature(error: SignatureError) -> Response<Body> {
    let title = match error {
        SignatureError::Expired => "This link has expired",
        _ => "This link is not valid",
    };
    page(StatusCode::FORBIDDEN, title, &error.to_string())
}

/// 403 for an unsigned link when signatures are required.
pub fn unsigned() -> Response<Body> {
    page(
        StatusCode::FORBIDDEN,
        "This link is not valid",
        "The link is not signed",
    )
}

/// 414 for a query string too long to be a tracking link.
pub fn too_long() -> Response<Body> {
    page(
        StatusCode::URI_TOO_LONG,
        "This link is too long",
        "The address is longer than any tracking link",
    )
}

fn page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    // The reasons are error messages (lower-case, for logs and the CLI); a page shows a sentence.
    let mut chars = message.chars();
    let message: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body style=\"font-family:sans-serif;max-width:32rem;\
         margin:3rem auto;padding:0 1rem\"><h1>{title}</h1>\n<p>{message}.</p>\n\
         <p>Please contact the sender of the message.</p></body></html>\n"
    );
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

/// What a handler panic turns into (CatchPanicLayer).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    Panicked { detail }.emit();
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The service could not handle this request",
    )
}

/// A panic while handling a request: a bug, so one error line and
/// `track_errors_total{operation="http",error_type="panic"}`.
pub struct Panicked<'a> {
    pub detail: &'a str,
}

impl Event for Panicked<'_> {
    fn emit(self) {
        tracing::error!(operation = "http", error = self.detail, "handler panicked");
        metrics::error("http", "panic");
    }
}
