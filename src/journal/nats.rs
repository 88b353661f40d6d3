//! The journal on NATS JetStream (`--nats-url`): a replicated log shared by every instance, so
//! losing an instance's disk loses no acknowledged click, and any instance applies any click.
//!
//! - Append: one message per record (the local journal's versioned JSON, docs/journal-format.md),
//!   `Nats-Msg-Id` = click_id, all of a group published at once and the group durable when
//!   every PubAck is in. A publisher retry of the same click is dropped by the stream's
//!   de-duplication window.
//! - Apply: every instance fetches from one durable pull consumer, writes the store exactly as
//!   from the local journal (idempotent by click_id), then acks. A message fetched by an
//!   instance that dies is redelivered to another after `--nats-ack-wait-ms`; if the dead one
//!   had committed it, the store finds its click_id and counts nothing twice.
//! - The stream keeps only what is not applied yet (work-queue retention), so its message
//!   count is the journal's depth and its first message's time the apply lag.
//!
//! At start the stream is created, or checked: a stream that could drop an acknowledged click
//! (memory storage, an age or size limit that discards old messages, a retention other than
//! work queue, fewer replicas than asked, a de-duplication window shorter than clicktrack's
//! retry horizon) is refused with exit 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as ConsumerConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType, Stream,
};
use async_nats::jetstream::{self, AckKind, Message};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::format;
use super::{JournalError, Journaled, RecordUnreadable, StoreIdentity};
use crate::domain::Record;
use crate::telemetry::{Event, metrics};

/// The durable consumer every instance applies from.
const CONSUMER: &str = "clicktrack-applier";
/// The shortest de-duplication window accepted: longer than any publisher retry of one click
/// (a request waits at most --ack-timeout-ms, 5 s by default, for its group).
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long an append waits for every PubAck of its group before it counts as failed (the
/// group then goes to the store directly, as with any journal failure).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fetch waits for messages when none are ready.
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// How often the stream's depth and oldest message are read (`track_journal_depth`, lag).
const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// `--nats-*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URLs (a cluster: several). Credentials in them are never printed.
    pub urls: Vec<String>,
    pub stream: String,
    pub subject: String,
    pub replicas: usize,
    /// How long a fetched message may stay unacked before another instance gets it.
    pub ack_wait: Duration,
}

impl NatsSettings {
    /// The servers and stream for log lines: no user, password or token.
    pub fn display(&self) -> String {
        let hosts: Vec<String> = self
            .urls
            .iter()
            .map(|u| match url::Url::parse(u) {
                Ok(url) => format!(
                    "{}://{}:{}",
                    url.scheme(),
                    url.host_str().unwrap_or("?"),
                    url.port().unwrap_or(4222)
                ),
                Err(_) => "(unparsable URL)".to_owned(),
            })
            .collect();
        format!("{} stream {}", hosts.join(","), self.stream)
    }
}

/// What the refresher last read from the stream.
#[derive(Debug, Default)]
struct StreamState {
    depth: AtomicU64,
    /// Unix nanoseconds of the first message's arrival in the stream; 0 when empty.
    oldest_ns: AtomicU64,
}

#[derive(Debug)]
pub struct NatsJournal {
    js: jetstream::Context,
    consumer: PullConsumer,
    subject: String,
    /// For log lines (`Journal::path`): servers and stream, no credentials.
    display: PathBuf,
    /// Fetched, not yet acked, by stream sequence, each with its record (decoded once, when
    /// fetched): what a store failure leaves for next time.
    inflight: Mutex<BTreeMap<u64, (Message, Record)>>,
    state: Arc<StreamState>,
    refresher: JoinHandle<()>,
}

/// `operation` failed with `error`, for `map_err` (as `store::sqlx_error` is for the stores).
fn nats_err<E: std::fmt::Display>(operation: &'static str) -> impl FnOnce(E) -> JournalError {
    move |error| JournalError::Nats {
        operation,
        message: error.to_string(),
    }
}

impl NatsJournal {
    /// Connect, create or check the stream and the consumer, and start reading the depth.
    pub async fn connect(
        settings: &NatsSettings,
        store: &StoreIdentity,
    ) -> Result<NatsJournal, JournalError> {
        let client = async_nats::ConnectOptions::new()
            .name("clicktrack")
            .connection_timeout(Duration::from_secs(5))
            .connect(settings.urls.join(","))
            .await
            .map_err(|e| JournalError::Nats {
                operation: "connect",
                message: format!("{}: {e}", settings.display()),
            })?;
        let js = jetstream::new(client);
        let stream = ensure_stream(&js, settings, store).await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                ConsumerConfig {
                    durable_name: Some(CONSUMER.to_owned()),
                    description: Some("clicktrack: apply clicks to the store".to_owned()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats_err("consumer"))?;
        let state = Arc::new(StreamState::default());
        let refresher = tokio::spawn(refresh_forever(stream, consumer.clone(), state.clone()));
        Ok(NatsJournal {
            js,
            consumer,
            subject: settings.subject.clone(),
            display: PathBuf::from(settings.display()),
            inflight: Mutex::default(),
            state,
            refresher,
        })
    }

    pub fn path(&self) -> &Path {
        &self.display
    }

    /// Publish every record and wait for all their PubAcks (within `PUBLISH_TIMEOUT`).
    /// (`Journal::append` counts and times it.)
    pub async fn append(&self, records: &[&Record]) -> Result<(), JournalError> {
        let publish = async {
            let mut acks = Vec::new();
            for record in records {
                let message = PublishMessage::build()
                    .payload(format::encode_one(record).into())
                    .message_id(record.click_id().to_string());
                let ack = self
                    .js
                    .send_publish(self.subject.clone(), message)
                    .await
                    .map_err(nats_err("publish"))?;
                acks.push(ack);
            }
            let count = acks.len();
            for ack in acks {
                ack.await.map_err(nats_err("publish ack"))?;
            }
            Ok::<usize, JournalError>(count)
        };
        let count = tokio::time::timeout(PUBLISH_TIMEOUT, publish)
            .await
            .map_err(|_| JournalError::Nats {
                operation: "publish ack",
                message: format!("no PubAck within {} ms", PUBLISH_TIMEOUT.as_millis()),
            })??;
        self.state.depth.fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }

    /// What a store failure left unacked, then up to `limit` more from the consumer.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<Journaled>, JournalError> {
        let held = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if held < limit {
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(limit - held)
                .expires(FETCH_WAIT)
                .messages()
                .await
                .map_err(nats_err("fetch"))?;
            while let Some(message) = batch.next().await {
                let message = message.map_err(nats_err("fetch"))?;
                self.take(message).await;
            }
        }
        let inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inflight
            .iter()
            .take(limit)
            .map(|(seq, (_, record))| Journaled {
                seq: i64::try_from(*seq).unwrap_or(i64::MAX),
                record: record.clone(),
            })
            .collect())
    }

    /// Hold a fetched message until it is applied; one that cannot be decoded is logged in
    /// full (it can be replayed by hand) and taken out of the stream, so it cannot block it.
    async fn take(&self, message: Message) {
        let Ok(info) = message.info() else {
            tracing::warn!(operation = "spool", "a message without JetStream metadata");
            return;
        };
        let (seq, delivered) = (info.stream_sequence, info.delivered);
        if delivered > 1 {
            metrics::nats_redelivered();
        }
        let json = std::str::from_utf8(&message.payload).unwrap_or_default();
        let record = match format::decode(json) {
            Ok(record) => record,
            Err(e) => {
                RecordUnreadable {
                    error: &e,
                    at: format_args!(
                        "stream sequence {seq}, payload {:?}",
                        String::from_utf8_lossy(&message.payload)
                    ),
                    fate: "logged here and removed from the stream",
                }
                .emit();
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::debug!(error = %e, "terminating an unreadable message");
                }
                return;
            }
        };
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seq, (message, record));
    }

    /// Ack what the store now holds. A lost ack means a redelivery, which the store finds
    /// already recorded.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), JournalError> {
        let done: Vec<Message> = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            seqs.iter()
                .filter_map(|s| inflight.remove(&u64::try_from(*s).unwrap_or(0)))
                .map(|(message, _)| message)
                .collect()
        };
        for message in &done {
            message.ack().await.map_err(nats_err("ack"))?;
        }
        let left = self
            .state
            .depth
            .load(Ordering::Relaxed)
            .saturating_sub(done.len() as u64);
        self.state.depth.store(left, Ordering::Relaxed);
        metrics::journal_depth(left);
        Ok(())
    }

    /// Messages in the stream (every instance's), as last read.
    pub fn depth(&self) -> u64 {
        self.state.depth.load(Ordering::Relaxed)
    }

    /// When the stream's oldest message arrived.
    pub fn oldest_received_at(&self) -> Option<OffsetDateTime> {
        match self.state.oldest_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).ok(),
        }
    }

    /// Give back what this instance fetched and did not apply, for another to apply now
    /// rather than after the ack wait; stop reading the stream.
    pub async fn close(&self) {
        let held: Vec<Message> = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *inflight)
                .into_values()
                .map(|(message, _)| message)
                .collect()
        };
        for message in held {
            if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %e, "returning a message at shutdown");
            }
        }
        self.refresher.abort();
    }
}

/// Read the stream's depth and oldest message, and the consumer's lag, every
/// `REFRESH_INTERVAL`.
async fn refresh_forever(mut stream: Stream, mut consumer: PullConsumer, state: Arc<StreamState>) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    let mut failing = false;
    loop {
        tick.tick().await;
        if let Ok(info) = consumer.info().await {
            metrics::nats_consumer(info.num_pending, info.num_ack_pending);
        }
        match stream.info().await {
            Ok(info) => {
                failing = false;
                let depth = info.state.messages;
                state.depth.store(depth, Ordering::Relaxed);
                metrics::journal_depth(depth);
                let oldest = if depth == 0 {
                    0
                } else {
                    u64::try_from(info.state.first_timestamp.unix_timestamp_nanos()).unwrap_or(0)
                };
                state.oldest_ns.store(oldest, Ordering::Relaxed);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(operation = "spool", error = %e, "cannot read the stream's state");
                }
                failing = true;
                metrics::error("spool", "unavailable");
            }
        }
    }
}

/// Create the stream, or check that the one there keeps every acknowledged click.
async fn ensure_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
    store: &StoreIdentity,
) -> Result<Stream, JournalError> {
    let owner = format!("clicktrack journal of store {}", store.id);
    let wanted = StreamConfig {
        name: settings.stream.clone(),
        description: Some(owner.clone()),
        subjects: vec![settings.subject.clone()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: settings.replicas,
        duplicate_window: MIN_DUPLICATE_WINDOW,
        discard: DiscardPolicy::New,
        ..Default::default()
    };
    let mut stream = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| nats_err("stream")(format!("{}: {e}", settings.stream)))?;
    let info = stream.info().await.map_err(nats_err("stream"))?;
    let problems = unsafe_settings(&info.config, settings, &owner);
    if problems.is_empty() {
        Ok(stream)
    } else {
        Err(JournalError::UnsafeStream {
            stream: settings.stream.clone(),
            problems: problems.join("; "),
        })
    }
}

/// What in a stream's configuration could lose an acknowledged click, or mix stores.
fn unsafe_settings(config: &StreamConfig, settings: &NatsSettings, owner: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if config.storage != StorageType::File {
        problems.push("memory storage (a server restart loses it): use file storage".to_owned());
    }
    if config.retention != RetentionPolicy::WorkQueue {
        problems.push(format!(
            "retention {:?}: clicktrack needs work-queue retention",
            config.retention
        ));
    }
    if !config.max_age.is_zero() {
        problems.push(format!(
            "max_age {:?} would expire clicks not applied yet",
            config.max_age
        ));
    }
    let limited =
        config.max_messages > 0 || config.max_bytes > 0 || config.max_messages_per_subject > 0;
    if limited && config.discard == DiscardPolicy::Old {
        problems.push(
            "a size limit with discard=old would delete clicks not applied yet (use discard=new)"
                .to_owned(),
        );
    }
    if config.num_replicas < settings.replicas {
        problems.push(format!(
            "{} replica(s), --nats-replicas asks for {}",
            config.num_replicas, settings.replicas
        ));
    }
    if config.duplicate_window < MIN_DUPLICATE_WINDOW {
        problems.push(format!(
            "duplicate window {:?} is shorter than {:?} (a retried publish could count twice)",
            config.duplicate_window, MIN_DUPLICATE_WINDOW
        ));
    }
    if !config.subjects.contains(&settings.subject) {
        problems.push(format!(
            "subjects {:?} do not include --nats-subject {}",
            config.subjects, settings.subject
        ));
    }
    match config.description.as_deref() {
        Some(d) if d == owner => {}
        Some(d) if d.starts_with("clicktrack journal of store ") => problems.push(format!(
            "it is the journal of another store ({d}); give this store its own --nats-stream"
        )),
        _ => problems.push(format!(
            "it was not created by clicktrack (description {:?}); give clicktrack a stream of its own",
            config.description
        )),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NatsSettings {
        NatsSettings {
            urls: vec!["nats://user:secret@127.0.0.1:4222".into()],
            stream: "clicktrack".into(),
            subject: "clicktrack.clicks".into(),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
        }
    }

    fn good(owner: &str) -> StreamConfig {
        StreamConfig {
            name: "clicktrack".into(),
            description: Some(owner.into()),
            subjects: vec!["clicktrack.clicks".into()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: 1,
            duplicate_window: MIN_DUPLICATE_WINDOW,
            discard: DiscardPolicy::New,
            ..Default::default()
        }
    }

    #[test]
    fn a_stream_that_could_lose_clicks_is_refused_with_every_reason() {
        let owner = "clicktrack journal of store S1";
        assert!(unsafe_settings(&good(owner), &settings(), owner).is_empty());
        let bad = StreamConfig {
            storage: StorageType::Memory,
            retention: RetentionPolicy::Limits,
            max_age: Duration::from_secs(60),
            max_messages: 1_000,
            discard: DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(2),
            description: Some("clicktrack journal of store S2".into()),
            ..good(owner)
        };
        let problems = unsafe_settings(
            &bad,
            &NatsSettings {
                replicas: 3,
                ..settings()
            },
            owner,
        );
        let text = problems.join("\n");
        for needle in [
            "memory",
            "retention",
            "max_age",
            "discard=old",
            "replica",
            "duplicate window",
            "another store",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn the_display_never_shows_credentials() {
        let shown = settings().display();
        assert_eq!(shown, "nats://127.0.0.1:4222 stream clicktrack");
    }
}
