//! Every metric clicktrack exports: names, labels, help texts, and the one function that
//! changes each. Everything is registered at start-up with its known label values, so a
//! counter at 0 is visible before its first event (README, "Metrics").
//!
//! Labels are bounded sets: interaction types, statuses, reasons, operations and error kinds.
//! No campaign id, uid or target ever becomes a label.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::signature::SignatureError;
use crate::domain::{InteractionType, RejectReason};

pub const REQUESTS: &str = "track_requests_total";
pub const REQUEST_DURATION: &str = "track_request_duration_seconds";
pub const ERRORS: &str = "track_errors_total";
pub const REJECTS: &str = "track_rejects_total";
pub const REFUSED_TARGETS: &str = "track_refused_targets_total";
pub const CLICKS_RECORDED: &str = "track_clicks_recorded_total";
pub const CLICKS_ALREADY_RECORDED: &str = "track_clicks_already_recorded_total";
pub const CLICKS_NOT_WRITTEN: &str = "track_clicks_not_written_total";
pub const TAGS_DROPPED: &str = "track_tags_dropped_total";
pub const QUEUE_DEPTH: &str = "track_queue_depth";
pub const QUEUE_CAPACITY: &str = "track_queue_capacity";
pub const QUEUE_FULL: &str = "track_queue_full_total";
pub const BATCH_SIZE: &str = "track_batch_size";
pub const BATCH_COMMIT: &str = "track_batch_commit_seconds";
pub const BATCH_RETRIES: &str = "track_batch_retries_total";
pub const BATCH_BISECTIONS: &str = "track_batch_bisections_total";
pub const ACKS_UNDELIVERED: &str = "track_acks_undelivered_total";
pub const STORE_READY: &str = "track_store_ready";
pub const SPOOL_READY: &str = "track_spool_ready";
pub const SPOOL_DEPTH: &str = "track_spool_depth";
pub const SPOOLED: &str = "track_spooled_total";
pub const SPOOL_REPLAYED: &str = "track_spool_replayed_total";
pub const JOURNAL_DEPTH: &str = "track_journal_depth";
pub const JOURNAL_BYTES: &str = "track_journal_bytes";
pub const JOURNAL_APPEND: &str = "track_journal_append_seconds";
pub const JOURNAL_APPLIED: &str = "track_journal_applied_total";
pub const JOURNAL_APPLY_BATCH: &str = "track_journal_apply_batch_size";
pub const JOURNAL_APPLY_LAG: &str = "track_journal_apply_lag_seconds";
pub const APPLIER_ASIDE: &str = "track_applier_aside";
pub const APPLIER_ASIDE_SECONDS: &str = "track_applier_aside_seconds_total";
pub const DB_POOL: &str = "db_pool_connections";
pub const DUPLICATES: &str = "track_duplicates_total";
pub const DEDUP_FALLBACKS: &str = "track_dedup_fallbacks_total";
pub const DEDUP_REDIS_READY: &str = "track_dedup_redis_ready";
pub const BOT_HITS: &str = "track_bot_hits_total";
pub const SIGNATURE_FAILURES: &str = "track_signature_failures_total";
pub const ADMIN_AUTH_FAILURES: &str = "track_admin_auth_failures_total";
pub const NATS_CONSUMER_PENDING: &str = "track_nats_consumer_pending";
pub const NATS_ACK_PENDING: &str = "track_nats_consumer_ack_pending";
pub const NATS_REDELIVERED: &str = "track_nats_redelivered_total";
pub const ROLLUP_BACKFILLED: &str = "track_rollup_backfilled_rows_total";
pub const ROLLUP_HISTORY_LEFT: &str = "track_rollup_history_left";
pub const MEMBER_HOURS_PACKED: &str = "track_rollup_member_hours_packed_total";
pub const MEMBER_CACHE: &str = "track_stats_member_cache_total";
pub const PURGED: &str = "track_purged_rows_total";
pub const ERASURES: &str = "track_erasures_total";
pub const CLICKS_ERASED: &str = "track_clicks_erased_total";
/// `table` values of `track_purged_rows_total`.
pub const PURGED_TABLES: [&str; 3] = [
    "component_interaction_logs",
    "track_click_tags",
    "track_rejects",
];
/// `result` values of `track_stats_member_cache_total`.
pub const MEMBER_CACHE_RESULTS: [&str; 4] = ["hit", "extended", "stale", "miss"];
/// `source` values of `track_rollup_backfilled_rows_total`.
pub const BACKFILL_SOURCES: [&str; 2] = ["history", "foreign"];
/// `reason` values of `track_admin_auth_failures_total`.
pub const ADMIN_AUTH_FAILURE_REASONS: [&str; 2] = ["missing", "wrong"];

/// `status` values of `track_requests_total`.
/// `outcome` values of `track_journal_applied_total` (and, but for `REFUSED`, of
/// `track_spool_replayed_total`).
pub mod outcome {
    pub const RECORDED: &str = "recorded";
    pub const ALREADY_RECORDED: &str = "already_recorded";
    pub const REJECTED: &str = "rejected";
    /// Its member was erased after the click was made: not written.
    pub const ERASED: &str = "erased";
    /// The database refused even the reject row: not written.
    pub const REFUSED: &str = "refused";
}

pub mod status {
    /// 302, click durable: in the journal (`--ack journal`) or committed (`--ack store`).
    pub const REDIRECTED: &str = "redirected";
    /// 302, click set aside in `track_rejects`.
    pub const REJECTED: &str = "rejected";
    /// 302 for a HEAD request, not a click.
    pub const HEAD: &str = "head";
    /// 400, target refused by the redirect policy.
    pub const REFUSED_TARGET: &str = "refused_target";
    /// 302 with `--ack store`, click durable in the journal because the store was down or the
    /// queue full; applied later.
    pub const SPOOLED: &str = "spooled";
    /// 302 sent before the click was durable: journal and store both failed, the ack timed out
    /// (it may still be written), or the writer stopped.
    pub const NOT_DURABLE: &str = "not_durable";
    /// 302, a repeat of a click within the de-duplication window: not recorded.
    pub const DUPLICATE: &str = "duplicate";
    /// 302 to a preview fetcher, crawler or HTTP client: not a click.
    pub const BOT: &str = "bot";
    /// 403: a bad, expired or (with --require-signature) missing signature.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// 414: a query string too long to be a link of ours.
    pub const TOO_LONG: &str = "too_long";
    /// 400 or 431 from the HTTP parser, before any handler: a raw non-UTF-8 or control byte in
    /// the request line, headers past its limits.
    pub const UNPARSABLE: &str = "unparsable";

    pub const ALL: [&str; 11] = [
        REDIRECTED,
        REJECTED,
        HEAD,
        REFUSED_TARGET,
        SPOOLED,
        NOT_DURABLE,
        DUPLICATE,
        BOT,
        BAD_SIGNATURE,
        TOO_LONG,
        UNPARSABLE,
    ];
}

/// `interaction_type` label for requests that are not (yet) a typed click.
pub const NO_TYPE: &str = "none";

/// (operation, error_type) pairs of `track_errors_total`, registered at start.
const ERROR_SERIES: [(&str, &str); 43] = [
    ("write_batch", "transient"),
    ("write_batch", "refused"),
    ("write_batch", "unavailable"),
    ("write_batch", "other"),
    ("write_batch", "timeout"),
    ("spool", "unavailable"),
    ("spool", "disk_full"),
    ("spool", "busy"),
    ("spool", "undecodable"),
    ("spool", "full"),
    ("spool", "no_leader"),
    ("probe", "transient"),
    ("probe", "unavailable"),
    ("probe", "timeout"),
    ("ack", "timeout"),
    ("ack", "closed"),
    ("http", "panic"),
    ("signal", "unavailable"),
    ("dedup", "unavailable"),
    ("dedup", "timeout"),
    ("stats", "unavailable"),
    ("stats", "timeout"),
    ("stats", "other"),
    ("backfill", "transient"),
    ("backfill", "refused"),
    ("backfill", "unavailable"),
    ("backfill", "timeout"),
    ("backfill", "other"),
    ("pack", "transient"),
    ("pack", "refused"),
    ("pack", "unavailable"),
    ("pack", "timeout"),
    ("pack", "other"),
    ("purge", "transient"),
    ("purge", "refused"),
    ("purge", "unavailable"),
    ("purge", "timeout"),
    ("purge", "other"),
    ("erase", "transient"),
    ("erase", "refused"),
    ("erase", "unavailable"),
    ("erase", "timeout"),
    ("erase", "other"),
];

/// Histogram buckets: from 100 µs (a redirect) to 10 s (a stuck database).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_SIZE_BUCKETS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// Install the process-wide Prometheus recorder and register every series.
pub fn install(queue_capacity: usize) -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_COMMIT.into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &BATCH_SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(JOURNAL_APPEND.into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(JOURNAL_APPLY_BATCH.into()),
            &BATCH_SIZE_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    register(queue_capacity);
    Ok(handle)
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "Requests to /__track by interaction type and outcome."
    );
    describe_histogram!(
        REQUEST_DURATION,
        "Time from request to response on /__track, seconds."
    );
    describe_counter!(
        ERRORS,
        "Errors by operation and kind; every error path counts here."
    );
    describe_counter!(REJECTS, "Clicks set aside in track_rejects, by reason.");
    describe_counter!(
        REFUSED_TARGETS,
        "Requests answered 400 because of the target, by reason."
    );
    describe_counter!(CLICKS_RECORDED, "Clicks committed to the five tables.");
    describe_counter!(
        CLICKS_ERASED,
        "Clicks not written because their member was erased after they were made (they were \
         still in a journal)."
    );
    describe_counter!(
        ERASURES,
        "Members erased (clicktrack member erase, DELETE /api/members/{uid})."
    );
    describe_counter!(
        CLICKS_ALREADY_RECORDED,
        "Records whose click_id was already stored (replays)."
    );
    describe_counter!(
        CLICKS_NOT_WRITTEN,
        "Records whose batch failed after all retries."
    );
    describe_counter!(
        TAGS_DROPPED,
        "New tags left out of last_click_tag because it was full."
    );
    describe_gauge!(QUEUE_DEPTH, "Records waiting for the appender.");
    describe_gauge!(
        QUEUE_CAPACITY,
        "Capacity of the in-memory queue (--queue-capacity)."
    );
    describe_counter!(
        QUEUE_FULL,
        "Requests that found the queue full (their clicks overflow into the journal)."
    );
    describe_histogram!(BATCH_SIZE, "Records per group taken from the queue.");
    describe_histogram!(
        BATCH_COMMIT,
        "Duration of one store transaction (live or applied batch), seconds."
    );
    describe_counter!(
        BATCH_RETRIES,
        "Batch retries after a transient error, by error code."
    );
    describe_counter!(
        BATCH_BISECTIONS,
        "Batch splits made to isolate a refused row."
    );
    describe_counter!(
        ACKS_UNDELIVERED,
        "Clicks written after their request stopped waiting (ack timeout)."
    );
    describe_gauge!(STORE_READY, "1 when the store accepts writes, else 0.");
    describe_gauge!(SPOOL_READY, "1 when the journal accepts writes, else 0.");
    describe_gauge!(
        SPOOL_DEPTH,
        "Records in the journal waiting to be applied (same as track_journal_depth)."
    );
    describe_counter!(
        SPOOLED,
        "Records appended to the journal, by reason (journal, store_unavailable, overflow)."
    );
    describe_gauge!(
        JOURNAL_DEPTH,
        "Records in the journal waiting to be applied to the store."
    );
    describe_gauge!(
        JOURNAL_BYTES,
        "Bytes the journal's segment files hold, measured against --journal-max-bytes."
    );
    describe_histogram!(
        JOURNAL_APPEND,
        "Duration of one durable journal append (a group commit), seconds."
    );
    describe_counter!(
        JOURNAL_APPLIED,
        "Journal records applied to the store, by outcome (recorded, already_recorded, rejected, refused)."
    );
    describe_histogram!(
        JOURNAL_APPLY_BATCH,
        "Records per store transaction of the applier."
    );
    describe_gauge!(
        JOURNAL_APPLY_LAG,
        "Seconds since the oldest click still waiting in the journal arrived (0: none waits)."
    );
    describe_gauge!(
        APPLIER_ASIDE,
        "1 while the applier steps aside for the redirects (CPU saturated, lag below --max-apply-lag)."
    );
    describe_counter!(
        APPLIER_ASIDE_SECONDS,
        "Seconds the applier has stepped aside for the redirects."
    );
    describe_gauge!(
        DB_POOL,
        "Connections of the store's pool by state (idle, in_use, max), read at each scrape."
    );
    describe_counter!(
        DUPLICATES,
        "Clicks repeated within --dedup-window-ms of the first: redirected, not recorded."
    );
    describe_counter!(
        DEDUP_FALLBACKS,
        "Clicks de-duplicated by this instance alone because Redis did not answer."
    );
    describe_gauge!(
        DEDUP_REDIS_READY,
        "1 when Redis answered the last de-duplication call, else 0 (also without --redis-url)."
    );
    describe_counter!(
        BOT_HITS,
        "Requests from preview fetchers, crawlers and HTTP clients: redirected, not recorded."
    );
    describe_counter!(
        SIGNATURE_FAILURES,
        "Links refused with 403 because of their signature, by reason."
    );
    describe_gauge!(
        NATS_CONSUMER_PENDING,
        "With --nats-url: messages in the stream the shared consumer has not delivered yet \
         (its num_pending, the consumer lag)."
    );
    describe_gauge!(
        NATS_ACK_PENDING,
        "With --nats-url: messages delivered to some instance and not acked yet (num_ack_pending)."
    );
    describe_counter!(
        NATS_REDELIVERED,
        "With --nats-url: messages this instance received again (another delivery was not acked \
         in time: an instance died or was slow)."
    );
    describe_counter!(
        ADMIN_AUTH_FAILURES,
        "Admin API requests refused with 401: no bearer token (missing) or a wrong one (wrong)."
    );
    describe_counter!(
        ROLLUP_BACKFILLED,
        "Log rows rolled up by a backfill step: history (older than the rollups) or foreign \
         (written by another program since)."
    );
    describe_gauge!(
        ROLLUP_HISTORY_LEFT,
        "Log ids of the history not rolled up yet (0: the statistics are complete)."
    );
    describe_counter!(
        MEMBER_HOURS_PACKED,
        "Campaign-hours whose members the packer wrote as one pack (new hours, and hours a late \
         click or the backfill changed), read by unique and top members of a window."
    );
    describe_counter!(
        MEMBER_CACHE,
        "Stats requests whose settled hours' members were counted before: kept count used \
         (hit), a count of the same hours but the last few used and extended (extended), \
         outgrown by new clicks (stale), none kept (miss)."
    );
    describe_counter!(
        PURGED,
        "Raw rows deleted by retention (clicktrack purge, --log-retention), by table; the \
         rollups keep their counts."
    );
    describe_counter!(
        SPOOL_REPLAYED,
        "Journal records applied to the store, by outcome (recorded, already_recorded, rejected); kept for dashboards of earlier releases."
    );
}

fn register(queue_capacity: usize) {
    for s in status::ALL {
        counter!(REQUESTS, "interaction_type" => NO_TYPE, "status" => s).absolute(0);
        for t in InteractionType::ALL {
            counter!(REQUESTS, "interaction_type" => t.as_str(), "status" => s).absolute(0);
        }
    }
    for (operation, error_type) in ERROR_SERIES {
        counter!(ERRORS, "operation" => operation, "error_type" => error_type).absolute(0);
    }
    for r in RejectReason::ALL {
        counter!(REJECTS, "reason" => r.as_str()).absolute(0);
    }
    for e in crate::domain::TargetError::ALL {
        counter!(REFUSED_TARGETS, "reason" => e.code()).absolute(0);
    }
    for name in [
        CLICKS_RECORDED,
        CLICKS_ALREADY_RECORDED,
        CLICKS_NOT_WRITTEN,
        CLICKS_ERASED,
        ERASURES,
        TAGS_DROPPED,
        QUEUE_FULL,
        BATCH_BISECTIONS,
        ACKS_UNDELIVERED,
        APPLIER_ASIDE_SECONDS,
    ] {
        counter!(name).absolute(0);
    }
    for outcome in APPLY_OUTCOMES {
        counter!(JOURNAL_APPLIED, "outcome" => outcome).absolute(0);
    }
    for outcome in &APPLY_OUTCOMES[..3] {
        counter!(SPOOL_REPLAYED, "outcome" => *outcome).absolute(0);
    }
    // `code` is the database's error code, or the error kind when there is none; the kinds
    // are registered, codes appear with their first retry.
    for kind in ["transient", "unavailable", "timeout"] {
        counter!(BATCH_RETRIES, "code" => kind).absolute(0);
    }
    // Histograms are exported once registered, with every bucket at 0.
    for name in [
        REQUEST_DURATION,
        BATCH_SIZE,
        BATCH_COMMIT,
        JOURNAL_APPEND,
        JOURNAL_APPLY_BATCH,
    ] {
        drop(histogram!(name));
    }
    for name in [
        QUEUE_DEPTH,
        SPOOL_DEPTH,
        JOURNAL_DEPTH,
        JOURNAL_BYTES,
        JOURNAL_APPLY_LAG,
        APPLIER_ASIDE,
    ] {
        gauge!(name).set(0.0);
    }
    for name in [DUPLICATES, DEDUP_FALLBACKS] {
        counter!(name).absolute(0);
    }
    gauge!(DEDUP_REDIS_READY).set(0.0);
    for kind in crate::domain::bot::kinds() {
        counter!(BOT_HITS, "kind" => kind).absolute(0);
    }
    // The signature errors, and `unsigned` (with --require-signature).
    let reasons = SignatureError::ALL.map(SignatureError::code);
    for reason in std::iter::once("unsigned").chain(reasons) {
        counter!(SIGNATURE_FAILURES, "reason" => reason).absolute(0);
    }
    for reason in ADMIN_AUTH_FAILURE_REASONS {
        counter!(ADMIN_AUTH_FAILURES, "reason" => reason).absolute(0);
    }
    gauge!(NATS_CONSUMER_PENDING).set(0.0);
    gauge!(NATS_ACK_PENDING).set(0.0);
    counter!(NATS_REDELIVERED).absolute(0);
    for state in ["idle", "in_use", "max"] {
        gauge!(DB_POOL, "state" => state).set(0.0);
    }
    gauge!(QUEUE_CAPACITY).set(queue_capacity as f64);
    for source in BACKFILL_SOURCES {
        counter!(ROLLUP_BACKFILLED, "source" => source).absolute(0);
    }
    gauge!(ROLLUP_HISTORY_LEFT).set(0.0);
    counter!(MEMBER_HOURS_PACKED).absolute(0);
    for result in MEMBER_CACHE_RESULTS {
        counter!(MEMBER_CACHE, "result" => result).absolute(0);
    }
    for table in PURGED_TABLES {
        counter!(PURGED, "table" => table).absolute(0);
    }
}

/// A committed purge step: rows deleted from each table.
pub fn purged(logs: u64, tags: u64, rejects: u64) {
    for (table, n) in PURGED_TABLES.into_iter().zip([logs, tags, rejects]) {
        counter!(PURGED, "table" => table).increment(n);
    }
}

/// A committed backfill step: rows rolled up by source, and the history still left.
pub fn backfilled(history_rows: u64, foreign_rows: u64, history_left: i64) {
    counter!(ROLLUP_BACKFILLED, "source" => BACKFILL_SOURCES[0]).increment(history_rows);
    counter!(ROLLUP_BACKFILLED, "source" => BACKFILL_SOURCES[1]).increment(foreign_rows);
    gauge!(ROLLUP_HISTORY_LEFT).set(history_left as f64);
}

/// A packer step: campaign-hours packed.
/// A stats request's settled hours: counted members kept from an earlier request used
/// (`hit`), used and extended by the hours since (`extended`), outgrown (`stale`) or absent
/// (`miss`).
pub fn member_cache(result: &'static str) {
    counter!(MEMBER_CACHE, "result" => result).increment(1);
}

pub fn member_hours_packed(hours: u64) {
    counter!(MEMBER_HOURS_PACKED).increment(hours);
}

pub fn request(interaction_type: &'static str, status: &'static str, elapsed: Duration) {
    counter!(REQUESTS, "interaction_type" => interaction_type, "status" => status).increment(1);
    histogram!(REQUEST_DURATION).record(elapsed.as_secs_f64());
}

pub fn duplicate() {
    counter!(DUPLICATES).increment(1);
}

pub fn dedup_fallback() {
    counter!(DEDUP_FALLBACKS).increment(1);
}

pub fn dedup_redis_ready(ready: bool) {
    flag(DEDUP_REDIS_READY, ready);
}

pub fn bot_hit(kind: &'static str) {
    counter!(BOT_HITS, "kind" => kind).increment(1);
}

pub fn signature_failure(reason: &'static str) {
    counter!(SIGNATURE_FAILURES, "reason" => reason).increment(1);
}

pub fn nats_consumer(pending: u64, ack_pending: usize) {
    gauge!(NATS_CONSUMER_PENDING).set(pending as f64);
    gauge!(NATS_ACK_PENDING).set(ack_pending as f64);
}

pub fn nats_redelivered(clicks: usize) {
    counter!(NATS_REDELIVERED).increment(clicks as u64);
}

pub fn admin_auth_failure(reason: &'static str) {
    counter!(ADMIN_AUTH_FAILURES, "reason" => reason).increment(1);
}

/// `labels` of `name`'s `label`, at 0 from start-up: for label sets owned by the module that
/// raises the events (the journal's append reasons), so this module names no journal or
/// store type.
pub fn register_labels(
    name: &'static str,
    label: &'static str,
    labels: impl IntoIterator<Item = &'static str>,
) {
    for value in labels {
        counter!(name, label => value).absolute(0);
    }
}

/// The store's connection pool at this moment.
pub fn db_pool(idle: u32, in_use: u32, max: u32) {
    gauge!(DB_POOL, "state" => "idle").set(idle);
    gauge!(DB_POOL, "state" => "in_use").set(in_use);
    gauge!(DB_POOL, "state" => "max").set(max);
}

pub fn refused_target(reason: &'static str) {
    counter!(REFUSED_TARGETS, "reason" => reason).increment(1);
}

pub fn error(operation: &'static str, error_type: &'static str) {
    counter!(ERRORS, "operation" => operation, "error_type" => error_type).increment(1);
}

/// Clicks a committed batch did not write because their member was erased after they were
/// made (they were waiting in a journal).
pub fn clicks_erased(n: u64) {
    counter!(CLICKS_ERASED).increment(n);
}

/// A committed erasure (`clicktrack member erase`, `DELETE /api/members/{uid}`).
pub fn erasure_done() {
    counter!(ERASURES).increment(1);
}

/// What one committed store batch did: clicks recorded, replays found already there, tags
/// left out for want of room (the rejects are counted one by one, `reject`).
pub fn batch_written(recorded: u64, already_recorded: u64, tags_dropped: u64) {
    counter!(CLICKS_RECORDED).increment(recorded);
    counter!(CLICKS_ALREADY_RECORDED).increment(already_recorded);
    counter!(TAGS_DROPPED).increment(tags_dropped);
}

pub fn reject(reason: RejectReason) {
    counter!(REJECTS, "reason" => reason.as_str()).increment(1);
}

pub fn clicks_not_written(n: usize) {
    counter!(CLICKS_NOT_WRITTEN).increment(n as u64);
}

pub fn batch_size(n: usize) {
    histogram!(BATCH_SIZE).record(n as f64);
}

pub fn batch_commit_duration(elapsed: Duration) {
    histogram!(BATCH_COMMIT).record(elapsed.as_secs_f64());
}

pub fn batch_retry(code: &str) {
    counter!(BATCH_RETRIES, "code" => code.to_owned()).increment(1);
}

pub fn bisection() {
    counter!(BATCH_BISECTIONS).increment(1);
}

pub fn queue_full() {
    counter!(QUEUE_FULL).increment(1);
}

pub fn queue_depth(n: usize) {
    gauge!(QUEUE_DEPTH).set(n as f64);
}

pub fn ack_undelivered() {
    counter!(ACKS_UNDELIVERED).increment(1);
}

/// A 0/1 gauge.
fn flag(name: &'static str, on: bool) {
    gauge!(name).set(if on { 1.0 } else { 0.0 });
}

pub fn store_ready(ready: bool) {
    flag(STORE_READY, ready);
}

/// `outcome` values of `track_journal_applied_total`; the first three also label
/// `track_spool_replayed_total`. `refused`: the database refused even the reject row.
const APPLY_OUTCOMES: [&str; 5] = [
    outcome::RECORDED,
    outcome::ALREADY_RECORDED,
    outcome::REJECTED,
    outcome::REFUSED,
    outcome::ERASED,
];

/// The journal (the spool of earlier releases) accepts writes.
pub fn journal_ready(ready: bool) {
    flag(SPOOL_READY, ready);
}

pub fn journal_depth(depth: u64) {
    gauge!(JOURNAL_DEPTH).set(depth as f64);
    gauge!(SPOOL_DEPTH).set(depth as f64);
}

pub fn journal_bytes(bytes: u64) {
    gauge!(JOURNAL_BYTES).set(bytes as f64);
}

pub fn journal_append_duration(elapsed: Duration) {
    histogram!(JOURNAL_APPEND).record(elapsed.as_secs_f64());
}

pub fn apply_batch_size(n: usize) {
    histogram!(JOURNAL_APPLY_BATCH).record(n as f64);
}

pub fn apply_lag(seconds: f64) {
    gauge!(JOURNAL_APPLY_LAG).set(seconds);
}

/// The applier started (`true`) or stopped stepping aside for the redirects.
pub fn applier_aside(aside: bool) {
    gauge!(APPLIER_ASIDE).set(if aside { 1.0 } else { 0.0 });
}

/// The applier stepped aside for `seconds` more (whole seconds; the caller carries the rest).
pub fn applier_aside_seconds(seconds: u64) {
    counter!(APPLIER_ASIDE_SECONDS).increment(seconds);
}

/// `n` records appended to the journal, for `reason` (one of the labels the journal
/// registered with `register_labels`).
pub fn spooled(reason: &'static str, n: usize) {
    counter!(SPOOLED, "reason" => reason).increment(n as u64);
}

/// A journal record applied with this outcome: `recorded`, `already_recorded`, `rejected`,
/// or `refused` (the database refused even the reject row). The first three are also counted
/// under the spool's old name.
pub fn applied(outcome: &'static str) {
    counter!(JOURNAL_APPLIED, "outcome" => outcome).increment(1);
    if outcome != self::outcome::REFUSED {
        counter!(SPOOL_REPLAYED, "outcome" => outcome).increment(1);
    }
}
