//! `GET /__track`: check the target, record the click, redirect (SPEC §1).
//!
//! Order matters: the target is checked first, because a refused target gets a 400 and nothing
//! else happens. A good target always gets its 302, whatever the tracking fields say; the
//! fields only decide whether the record is a click or a reject. The 302 is sent once the
//! record is durable (group commit), so every redirected click is in the database.

use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, HeaderValue, Method, Response, Uri};
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::AppState;
use super::pages;
use super::request_id::RequestId;
use crate::domain::click::{Arrival, classify};
use crate::domain::query::{FieldError, TrackParams};
use crate::domain::{Record, Target, TargetError};
use crate::pipeline::{ClickQueue, Submission};
use crate::store::Outcome;
use crate::telemetry::metrics::{self, NO_TYPE, status};
use crate::telemetry::short_uid;

pub async fn track(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    let received_at = OffsetDateTime::now_utc();
    let raw_query = uri.query().unwrap_or("");
    let params = TrackParams::parse(raw_query);

    let (target, location) = match checked_target(&state, &params) {
        Ok(checked) => checked,
        Err(e) => {
            metrics::refused_target(e.code());
            metrics::request(NO_TYPE, status::REFUSED_TARGET, started.elapsed());
            return pages::bad_target(e);
        }
    };

    // HEAD (and, later, preview bots) get the redirect but are not clicks.
    if method == Method::HEAD {
        metrics::request(NO_TYPE, status::HEAD, started.elapsed());
        return pages::redirect(location);
    }

    let user_agent = headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let record = classify(
        &params,
        &target,
        Arrival {
            // The request's id (X-Request-Id, every log line of the request) is the click's.
            click_id: request_id.map_or_else(Uuid::now_v7, |Extension(RequestId(id))| id),
            received_at,
            user_agent: user_agent.as_deref(),
            raw_query,
        },
    );
    // Queue, wait and count in a task of its own: if the client hangs up, the handler future
    // is dropped, but a click already queued is still written and must still be counted.
    let recording =
        tokio::spawn(submit_and_count(state.queue.clone(), record, started).in_current_span());
    if recording.await.is_err() {
        // Only a panic inside `submit_and_count` ends up here; it is a bug, so make it loud.
        tracing::error!(operation = "http", "recording task failed");
        metrics::error("http", "panic");
    }
    pages::redirect(location)
}

fn checked_target(
    state: &AppState,
    params: &TrackParams<'_>,
) -> Result<(Target, HeaderValue), TargetError> {
    let raw = match params.to.decode() {
        Ok(Some(raw)) => raw,
        Ok(None) => return Err(TargetError::Missing),
        Err(FieldError::Repeated) => return Err(TargetError::Repeated),
        Err(FieldError::BadEncoding) => return Err(TargetError::BadEncoding),
    };
    let target = state.policy.check(raw)?;
    // The serialization is ASCII without controls; should that ever not hold, refuse.
    let location = HeaderValue::from_str(&target.location).map_err(|_| TargetError::Malformed)?;
    Ok((target, location))
}

/// Submit the record, wait until it is durable, count the outcome.
async fn submit_and_count(queue: ClickQueue, record: Record, started: Instant) {
    let interaction_type = match &record {
        Record::Click(c) => c.interaction_type.as_str(),
        Record::Reject(_) => NO_TYPE,
    };
    // For the error lines below (the request span already carries the click id).
    let campaign_id = record.campaign_id();
    let uid = short_uid(record.uid());
    let outcome = match queue.submit(record).await {
        Submission::Durable(Outcome::Recorded | Outcome::AlreadyRecorded) => status::REDIRECTED,
        Submission::Durable(Outcome::Rejected(_)) => status::REJECTED,
        Submission::Spooled => status::SPOOLED,
        // Store and spool both failed; logged and counted where they failed.
        Submission::Failed => status::NOT_DURABLE,
        Submission::TimedOut => {
            tracing::error!(
                operation = "ack",
                campaign_id,
                uid,
                error = "no acknowledgement within --ack-timeout-ms",
                "click not acknowledged in time; redirecting anyway"
            );
            metrics::error("ack", "timeout");
            status::NOT_DURABLE
        }
        Submission::Closed => {
            tracing::error!(
                operation = "ack",
                campaign_id,
                uid,
                error = "writer stopped",
                "writer stopped before the click was written"
            );
            metrics::error("ack", "closed");
            status::NOT_DURABLE
        }
    };
    metrics::request(interaction_type, outcome, started.elapsed());
}
