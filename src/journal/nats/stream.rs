//! The stream and its consumer at start: created, or checked so that a stream made by hand
//! or by an older release cannot lose an acknowledged click or mix two stores' journals.
//! `--journal-max-bytes` becomes the stream's size limit (discard new: a full stream refuses
//! a publish, it never drops what it holds).

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType, Stream,
};

use super::{NatsSettings, nats_err};
use crate::journal::{JournalError, StoreIdentity};

/// The shortest de-duplication window accepted: longer than any publisher retry of one click
/// (a request waits at most --ack-timeout-ms, 5 s by default, for its group).
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Create the stream, or check that the one there keeps every acknowledged click.
pub(super) async fn ensure_stream(
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
        max_bytes: size_limit(settings.max_bytes),
        ..Default::default()
    };
    let mut stream = get_or_create(js, wanted, settings).await?;
    let config = stream
        .info()
        .await
        .map_err(nats_err("stream"))?
        .config
        .clone();
    let problems = unsafe_settings(&config, settings, &owner);
    if !problems.is_empty() {
        return Err(JournalError::UnsafeStream {
            stream: settings.stream.clone(),
            problems: problems.join("; "),
        });
    }
    let limit = size_limit(settings.max_bytes);
    if config.max_bytes != limit {
        // The flag is the truth (as it is for the local file): an older stream, or one an
        // instance with another --journal-max-bytes made, takes this instance's limit.
        let was = config.max_bytes;
        js.update_stream(StreamConfig {
            max_bytes: limit,
            ..config
        })
        .await
        .map_err(|e| nats_err("stream")(format!("{}: setting max_bytes: {e}", settings.stream)))?;
        tracing::info!(
            stream = %settings.stream,
            max_bytes = limit,
            was,
            "the stream's size limit set from --journal-max-bytes"
        );
    }
    wait_for_leader(&stream, &settings.stream).await;
    Ok(stream)
}

/// How long start-up keeps asking while JetStream does not answer, or answers that its
/// cluster is not available yet: a fleet started with its NATS servers (a power cut, a
/// reboot of everything) waits for the cluster instead of exiting and being restarted.
const JETSTREAM_START_WAIT: Duration = Duration::from_secs(30);

/// The stream, found or created. A subject already taken by another stream is a
/// configuration mistake (exit 2, saying which stream and which flag); a cluster still
/// electing its leaders is waited for, up to `JETSTREAM_START_WAIT`.
async fn get_or_create(
    js: &jetstream::Context,
    wanted: StreamConfig,
    settings: &NatsSettings,
) -> Result<Stream, JournalError> {
    let deadline = tokio::time::Instant::now() + JETSTREAM_START_WAIT;
    let mut warned = false;
    loop {
        let error = match js.get_or_create_stream(wanted.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        let code = match error.kind() {
            CreateStreamErrorKind::JetStream(e) => Some(e.error_code()),
            _ => None,
        };
        if code == Some(ErrorCode::STREAM_SUBJECT_OVERLAP) {
            let holder = js
                .stream_by_subject(settings.subject.clone())
                .await
                .unwrap_or_else(|_| "another stream".to_owned());
            return Err(JournalError::SubjectTaken {
                stream: settings.stream.clone(),
                subject: settings.subject.clone(),
                holder,
            });
        }
        let not_yet = matches!(error.kind(), CreateStreamErrorKind::TimedOut)
            || code == Some(ErrorCode::CLUSTER_NOT_AVAILABLE);
        if !not_yet || tokio::time::Instant::now() >= deadline {
            return Err(nats_err("stream")(format!("{}: {error}", settings.stream)));
        }
        if !warned {
            warned = true;
            tracing::warn!(
                operation = "spool",
                stream = %settings.stream,
                error = %error,
                "JetStream is not answering yet (a cluster electing its leader, or busy); \
                 trying again for up to {} s",
                JETSTREAM_START_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long start-up waits for a new or restarted replicated stream to elect its leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Until the stream has a leader (a replicated stream just created elects one first): an
/// instance that said "ready" before would send its first clicks to the store directly. Past
/// `LEADER_WAIT` it starts anyway, with a warning: publishes fall back to the store until
/// the cluster has elected one.
async fn wait_for_leader(stream: &Stream, name: &str) {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        match stream.get_info().await {
            // No cluster information: a single server, always its own leader.
            Ok(info) if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) => return,
            _ if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(
                    operation = "spool",
                    stream = %name,
                    "the stream has no leader yet; clicks go to the store directly until it has"
                );
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `--journal-max-bytes` as a stream's `max_bytes` (-1: no limit).
fn size_limit(max_bytes: u64) -> i64 {
    match max_bytes {
        0 => -1,
        n => i64::try_from(n).unwrap_or(i64::MAX),
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
    use std::time::Duration;

    fn settings() -> NatsSettings {
        NatsSettings {
            urls: vec!["nats://user:secret@127.0.0.1:4222".into()],
            stream: "clicktrack".into(),
            subject: "clicktrack.clicks".into(),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
            max_bytes: 0,
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
