//! The journal on NATS JetStream (`--nats-url`): a replicated log shared by every instance, so
//! losing an instance's disk loses no acknowledged click, and any instance applies any click.
//!
//! - Append: one message per group of clicks (`group.rs`: the local journal's versioned JSON
//!   array, docs/scale-out.md), `Nats-Msg-Id` = the group's first click_id, the group durable
//!   when every PubAck is in. A publisher retry of the same group is dropped by the stream's
//!   de-duplication window.
//! - Apply: every instance fetches from one durable pull consumer, writes the store exactly as
//!   from the local journal (idempotent by click_id), then acks each message once all its
//!   clicks are in. A message fetched by an instance that dies is redelivered to another after
//!   `--nats-ack-wait-ms`; what the dead one had committed, the store finds by click_id and
//!   counts nothing twice.
//! - Depth and lag come from the shared consumer (`consumer_state.rs`).
//! - Servers: every `--nats-url` is tried at connect (any that answers will do); afterwards
//!   the client fails over between them and the servers the cluster announces.
//! - At start the stream is created, or checked (`stream.rs`): one that could drop an
//!   acknowledged click is refused with exit 2.

mod consumer_state;
mod group;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as ConsumerConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind, Message};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{JournalError, Journaled, RecordUnreadable, StoreIdentity};
use crate::domain::Record;
use crate::telemetry::{Event, metrics};
use consumer_state::{ConsumerState, Refresher, report_takeover};
use group::HeldMessages;

/// The durable consumer every instance applies from.
const CONSUMER: &str = "clicktrack-applier";
/// How long an append waits for every PubAck of its group before it counts as failed (the
/// group then goes to the store directly, as with any journal failure).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fetch waits for messages when none are ready.
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// Most messages one fetch asks for. A message holds 1 to 1,024 clicks (a group), so this
/// bounds what one fetch brings in without a byte limit: a request that reaches a byte limit
/// ends with an error status, and messages the server sent after it would be dropped by the
/// client and wait out the ack wait (30 s) before anyone applies them.
const FETCH_MAX_MESSAGES: usize = 256;

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
    /// The stream's size limit (`--journal-max-bytes`, 0: none), discard-new: a full stream
    /// refuses a publish, and the group goes to the store directly.
    pub max_bytes: u64,
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

#[derive(Debug)]
pub struct NatsJournal {
    js: jetstream::Context,
    consumer: PullConsumer,
    subject: String,
    /// For log lines (`Journal::path`): servers and stream, no credentials.
    display: PathBuf,
    /// Fetched, not yet acked, each with its records (decoded once, when fetched): what a
    /// store failure leaves for next time.
    held: Mutex<HeldMessages>,
    state: Arc<ConsumerState>,
    /// Wakes the refresher for a reading now (after an ack).
    refresh_now: Arc<tokio::sync::Notify>,
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
        // The list, not one joined string: async-nats tries each server until one answers.
        let client = async_nats::ConnectOptions::new()
            .name("clicktrack")
            .connection_timeout(Duration::from_secs(5))
            .connect(settings.urls.as_slice())
            .await
            .map_err(|e| JournalError::Nats {
                operation: "connect",
                message: format!("{}: {e}", settings.display()),
            })?;
        let js = jetstream::new(client);
        let stream = stream::ensure_stream(&js, settings, store).await?;
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
        let state = Arc::new(ConsumerState::default());
        let refresh_now = Arc::new(tokio::sync::Notify::new());
        let mut refresher = Refresher {
            stream,
            consumer: consumer.clone(),
            subject: settings.subject.clone(),
            state: state.clone(),
            wake: refresh_now.clone(),
        };
        // The first reading before the first answer: the applier starts on a true depth.
        refresher.read_once(&mut false).await;
        let refresher = tokio::spawn(refresher.run());
        Ok(NatsJournal {
            js,
            consumer,
            subject: settings.subject.clone(),
            display: PathBuf::from(settings.display()),
            held: Mutex::default(),
            state,
            refresh_now,
            refresher,
        })
    }

    pub fn path(&self) -> &Path {
        &self.display
    }

    /// Publish the records (one message per group, `group::payloads`) and wait for every
    /// PubAck (within `PUBLISH_TIMEOUT`). (`Journal::append` counts and times it.)
    pub async fn append(&self, records: &[&Record]) -> Result<(), JournalError> {
        let publish = async {
            let mut acks = Vec::new();
            for payload in group::payloads(records) {
                let message = PublishMessage::build()
                    .payload(payload.json.into())
                    .message_id(payload.first.to_string());
                let ack = self
                    .js
                    .send_publish(self.subject.clone(), message)
                    .await
                    .map_err(nats_err("publish"))?;
                acks.push(ack);
            }
            let count = acks.len();
            for ack in acks {
                ack.await.map_err(|e| self.publish_failed(&e))?;
            }
            Ok::<usize, JournalError>(count)
        };
        let messages = tokio::time::timeout(PUBLISH_TIMEOUT, publish)
            .await
            .map_err(|_| JournalError::Nats {
                operation: "publish ack",
                message: format!("no PubAck within {} ms", PUBLISH_TIMEOUT.as_millis()),
            })??;
        let messages = messages as u64;
        self.state.published.fetch_add(messages, Ordering::Relaxed);
        let depth = self.state.depth.fetch_add(messages, Ordering::Relaxed) + messages;
        metrics::journal_depth(depth);
        Ok(())
    }

    /// What a refused PubAck means for the operator: a leader election (or no server holding
    /// the stream) and a full stream are told apart from other failures.
    fn publish_failed(&self, e: &async_nats::jetstream::context::PublishError) -> JournalError {
        use async_nats::jetstream::context::PublishErrorKind;
        let code = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
            .map(async_nats::jetstream::Error::error_code);
        match (e.kind(), code) {
            // The stream existed at start: nobody answering for its subject means no leader.
            (PublishErrorKind::StreamNotFound, _) => JournalError::NatsNoLeader {
                subject: self.subject.clone(),
            },
            (_, Some(async_nats::jetstream::ErrorCode::STREAM_STORE_FAILED)) => {
                JournalError::NatsFull {
                    message: e.to_string(),
                }
            }
            _ => nats_err("publish ack")(e),
        }
    }

    /// What a store failure left unapplied, then up to `limit` clicks more from the consumer.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<Journaled>, JournalError> {
        let held = self.held().clicks();
        if held < limit {
            // At least one click per message: never more messages than clicks wanted.
            let mut batch = self
                .consumer
                .fetch()
                .max_messages((limit - held).min(FETCH_MAX_MESSAGES))
                .expires(FETCH_WAIT)
                .messages()
                .await
                .map_err(nats_err("fetch"))?;
            let mut redelivered = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(nats_err("fetch"))?;
                redelivered += self.take(message).await;
            }
            if redelivered > 0 {
                self.state
                    .taken_over
                    .fetch_add(redelivered, Ordering::Relaxed);
            } else {
                report_takeover(&self.state);
            }
        }
        Ok(self.held().oldest(limit))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HeldMessages> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hold a fetched message until its clicks are applied; one that cannot be decoded is
    /// logged in full (it can be replayed by hand) and taken out of the stream, so it cannot
    /// block it. Returns how many clicks came again (delivered before to an instance that
    /// did not ack them in time).
    async fn take(&self, message: Message) -> u64 {
        let info = match message.info() {
            Ok(info) => info,
            Err(e) => {
                // Not from the stream's consumer as clicktrack reads it: it can be neither
                // placed nor acknowledged by sequence. Left alone it would come back after
                // every ack wait, forever; logged in full, counted and taken out instead.
                RecordUnreadable {
                    error: &e,
                    at: format_args!(
                        "a message without JetStream metadata, subject {}, payload {:?}",
                        message.subject,
                        String::from_utf8_lossy(&message.payload)
                    ),
                    fate: "logged here and removed from the stream",
                }
                .emit();
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::debug!(error = %e, "terminating a message without metadata");
                }
                return 0;
            }
        };
        let (seq, redelivered) = (info.stream_sequence, info.delivered > 1);
        let payload = message.payload.clone();
        let held = self.held().hold(seq, message);
        match held {
            Ok(clicks) if redelivered => {
                metrics::nats_redelivered(clicks);
                clicks as u64
            }
            Ok(_) => 0,
            Err(refused) => {
                let (e, message) = *refused;
                RecordUnreadable {
                    error: &e,
                    at: format_args!(
                        "stream sequence {seq}, payload {:?}",
                        String::from_utf8_lossy(&payload)
                    ),
                    fate: "logged here and removed from the stream",
                }
                .emit();
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::debug!(error = %e, "terminating an unreadable message");
                }
                0
            }
        }
    }

    /// Ack every message whose clicks the store now all holds. A lost ack means a
    /// redelivery, which the store finds already recorded.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), JournalError> {
        let done = self.held().applied(seqs);
        for message in &done {
            message.ack().await.map_err(nats_err("ack"))?;
        }
        self.refresh_now.notify_one();
        Ok(())
    }

    /// Messages still to apply (every instance's; each one group of clicks): the consumer's
    /// last reading plus what this instance published since. 0 when nothing waits.
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
        let held = self.held().release();
        for message in held {
            if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %e, "returning a message at shutdown");
            }
        }
        self.refresher.abort();
    }
}
