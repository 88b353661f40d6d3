//! `GET /__track`: check the link, record the click, redirect (docs/link-contract.md).
//!
//! Order matters. A link too long to be ours gets 414, a bad signature 403, a refused target
//! 400, and nothing else happens. A good link always gets its 302, whatever else is true; HEAD
//! requests, bots and repeats of a click within the de-duplication window get it without being
//! recorded, and the tracking fields only decide whether the record is a click or a reject.
//! The 302 is sent once the record is durable (group commit: in the journal, or with
//! `--ack store` in the database), so every such click reaches the database. When neither the
//! journal nor the database takes it, or the ack does not come within --ack-timeout-ms, the
//! person still gets the 302 (the page matters more than the count) and the click is counted
//! `not_durable` (docs/guarantees.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, Uri};
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::AppState;
use super::pages;
use super::request_id::RequestId;
use crate::dedup::Verdict;
use crate::domain::bot::bot_kind;
use crate::domain::click::{Arrival, classify};
use crate::domain::client_addr::client_addr;
use crate::domain::query::{FieldError, TrackParams};
use crate::domain::signature::Signature;
use crate::domain::{CampaignId, Record, Target, TargetError};
use crate::pipeline::{AckWait, Refused, Submission};
use crate::store::Outcome;
use crate::telemetry::metrics::{self, NO_TYPE, status};
use crate::telemetry::{Event, short_uid};

/// Longest query string taken: a link of ours is well under this (the target alone is at
/// most 2 KiB), so anything longer is answered 414 before it is parsed.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub async fn track(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    let received_at = OffsetDateTime::now_utc();
    let raw_query = uri.query().unwrap_or("");
    // An answer that records nothing, counted under its status.
    let unrecorded = |status, page| {
        metrics::request(NO_TYPE, status, started.elapsed());
        page
    };
    if raw_query.len() > MAX_QUERY_BYTES {
        return unrecorded(status::TOO_LONG, pages::too_long());
    }

    let signed = match state
        .links
        .keys
        .verify(raw_query, received_at.unix_timestamp())
    {
        Signature::Valid => true,
        Signature::Unsigned if !state.links.require_signature => false,
        Signature::Unsigned => {
            metrics::signature_failure("unsigned");
            return unrecorded(status::BAD_SIGNATURE, pages::unsigned());
        }
        Signature::Invalid(e) => {
            tracing::debug!(reason = e.code(), "link refused: bad signature");
            metrics::signature_failure(e.code());
            return unrecorded(status::BAD_SIGNATURE, pages::bad_signature(e));
        }
    };

    let params = TrackParams::parse(raw_query);
    let (target, location) = match checked_target(&state, &params, signed) {
        Ok(checked) => checked,
        Err(e) => {
            metrics::refused_target(e.code());
            return unrecorded(status::REFUSED_TARGET, pages::bad_target(e));
        }
    };

    // HEAD requests and bots get the redirect but are not clicks.
    if method == Method::HEAD {
        return unrecorded(status::HEAD, pages::redirect(location));
    }
    let user_agent = headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    if let Some(kind) = bot_kind(user_agent.as_deref()) {
        metrics::bot_hit(kind);
        return unrecorded(status::BOT, pages::redirect(location));
    }

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
    if let (Record::Click(click), Some(dedup)) = (&record, &state.dedup) {
        let forwarded = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let client = client_addr(peer.ip(), forwarded, &state.trusted_proxies);
        if dedup.check(click, client).await == Verdict::Duplicate {
            metrics::duplicate();
            let interaction_type = click.interaction_type.as_str();
            metrics::request(interaction_type, status::DUPLICATE, started.elapsed());
            return pages::redirect(location);
        }
    }

    // Only now: the bot check and de-duplication read the whole header.
    let record = state.user_agent_detail.apply(record);

    // Queued without waiting for room (the common case), the answer is awaited right here. If
    // the client hangs up meanwhile, the handler future is dropped, but a click already queued
    // is still written and must still be counted: `Recording`'s drop hands the wait to a task.
    let count = Count::of(&record, started);
    match state.queue.try_submit(record) {
        Ok(wait) => {
            Recording {
                wait: Some(wait),
                count: Some(count),
            }
            .finish()
            .await
        }
        Err(Refused::Closed) => count.submission(Submission::Closed),
        Err(Refused::Full(record)) => {
            // The queue and the overflow path are full: waiting for room in a task of its own,
            // for the same reason.
            let queue = state.queue.clone();
            let recording = tokio::spawn(
                async move { count.submission(queue.submit_when_room(*record).await) }
                    .in_current_span(),
            );
            if recording.await.is_err() {
                // Only a panic inside the task ends up here; it is a bug, so make it loud.
                pages::Panicked {
                    detail: "recording task failed",
                }
                .emit();
            }
        }
    }
    pages::redirect(location)
}

/// A queued click whose acknowledgement the request waits for.
struct Recording {
    wait: Option<AckWait>,
    /// Taken once the outcome is counted.
    count: Option<Count>,
}

impl Recording {
    async fn finish(mut self) {
        let Some(wait) = self.wait.as_mut() else {
            return;
        };
        let submission = wait.outcome().await;
        if let Some(count) = self.count.take() {
            count.submission(submission);
        }
    }
}

impl Drop for Recording {
    /// Dropped before the answer came (the client hung up): wait for it on a task.
    fn drop(&mut self) {
        let (Some(count), Some(mut wait)) = (self.count.take(), self.wait.take()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime
                    .spawn(async move { count.submission(wait.outcome().await) }.in_current_span());
            }
            // Handlers run on the runtime; should one not, the outcome is unknown.
            Err(_) => count.submission(Submission::Closed),
        }
    }
}

/// The target, checked by the host allow-list, or only structurally for a signed link.
fn checked_target(
    state: &AppState,
    params: &TrackParams<'_>,
    signed: bool,
) -> Result<(Target, HeaderValue), TargetError> {
    let raw = match params.to.decode_target() {
        Ok(Some(raw)) => raw,
        Ok(None) => return Err(TargetError::Missing),
        Err(FieldError::Repeated) => return Err(TargetError::Repeated),
        Err(FieldError::BadEncoding) => return Err(TargetError::BadEncoding),
    };
    let target = if signed {
        state.policy.check_signed(raw)?
    } else {
        state.policy.check(raw)?
    };
    // The serialization is ASCII without controls; should that ever not hold, refuse.
    let location = HeaderValue::from_str(&target.location).map_err(|_| TargetError::Malformed)?;
    Ok((target, location))
}

/// What the request's line in `track_requests_total` needs once the outcome is known.
struct Count {
    interaction_type: &'static str,
    /// For the error lines below (the request span already carries the click id).
    campaign_id: Option<CampaignId>,
    uid: String,
    is_reject: bool,
    started: Instant,
}

impl Count {
    fn of(record: &Record, started: Instant) -> Count {
        Count {
            interaction_type: match record {
                Record::Click(c) => c.interaction_type.as_str(),
                Record::Reject(_) => NO_TYPE,
            },
            campaign_id: record.campaign_id(),
            uid: short_uid(record.uid()),
            is_reject: matches!(record, Record::Reject(_)),
            started,
        }
    }

    /// Count what became of the record.
    fn submission(self, submission: Submission) {
        let outcome = match submission {
            Submission::Durable(Outcome::Recorded | Outcome::AlreadyRecorded | Outcome::Erased) => {
                status::REDIRECTED
            }
            Submission::Durable(Outcome::Rejected(_)) => status::REJECTED,
            // In the journal; a reject is known as one before it is applied.
            Submission::Journaled if self.is_reject => status::REJECTED,
            Submission::Journaled => status::REDIRECTED,
            Submission::Spooled => status::SPOOLED,
            // Journal and store both failed; logged and counted where they failed.
            Submission::Failed => status::NOT_DURABLE,
            Submission::TimedOut => {
                NotAcknowledged {
                    campaign_id: self.campaign_id,
                    uid: &self.uid,
                    error_type: "timeout",
                    error: "no acknowledgement within --ack-timeout-ms",
                    message: "click not acknowledged in time; redirecting anyway",
                }
                .emit();
                status::NOT_DURABLE
            }
            Submission::Closed => {
                NotAcknowledged {
                    campaign_id: self.campaign_id,
                    uid: &self.uid,
                    error_type: "closed",
                    error: "appender stopped",
                    message: "appender stopped before the click was made durable",
                }
                .emit();
                status::NOT_DURABLE
            }
        };
        metrics::request(self.interaction_type, outcome, self.started.elapsed());
    }
}

/// A click redirected without knowing it is durable (the ack did not come): one error line,
/// counted in `track_errors_total{operation="ack"}`.
struct NotAcknowledged<'a> {
    campaign_id: Option<CampaignId>,
    uid: &'a str,
    error_type: &'static str,
    error: &'static str,
    message: &'static str,
}

impl Event for NotAcknowledged<'_> {
    fn emit(self) {
        tracing::error!(
            operation = "ack",
            campaign_id = self.campaign_id.map(CampaignId::get),
            uid = self.uid,
            error = self.error,
            "{}",
            self.message
        );
        metrics::error("ack", self.error_type);
    }
}
