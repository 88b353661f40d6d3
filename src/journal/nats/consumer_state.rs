//! What the journal reports about the shared consumer: its depth (`track_journal_depth`), the
//! age of the oldest click not yet applied (the apply lag), and takeovers of another
//! instance's clicks. Read from the consumer rather than from the stream's message count: a
//! replica that comes back with a stale copy can report messages the others already removed,
//! the consumer does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::Stream;

use crate::telemetry::{Event, metrics};

/// How often the consumer's depth and oldest message are read.
const REFRESH_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest gap between two readings: an ack asks for one, but under load the appliers
/// ack many times a second, and each reading is two requests to the servers' leaders.
const MIN_GAP: Duration = Duration::from_millis(50);

/// What the refresher last read from the consumer, and what this instance published since.
#[derive(Debug, Default)]
pub(super) struct ConsumerState {
    /// Messages the consumer still has to deliver or have acknowledged, at the last reading,
    /// plus what this instance published after that reading was asked for. It never counts
    /// less than what waits (a test or an operator waiting for 0 cannot be misled); an ack
    /// lowers it at the next reading, which the ack asks for at once.
    pub depth: AtomicU64,
    /// Messages this instance has published since it started.
    pub published: AtomicU64,
    /// Unix nanoseconds of the oldest unapplied message's arrival in the stream; 0 when none.
    pub oldest_ns: AtomicU64,
    /// Clicks redelivered to this instance since the last takeover was reported.
    pub taken_over: AtomicU64,
}

/// Clicks another instance had fetched and not acknowledged in time, now applied here: one
/// log line per takeover, once the redeliveries stop.
pub(super) fn report_takeover(state: &ConsumerState) {
    let count = state.taken_over.swap(0, Ordering::Relaxed);
    if count > 0 {
        tracing::info!(
            operation = "spool",
            clicks = count,
            "took over clicks fetched by an instance that did not acknowledge them within \
             --nats-ack-wait-ms (it stopped or stalled); applied here, each once"
        );
    }
}

/// Reads the consumer's state every `REFRESH_INTERVAL`, or at once when woken.
pub(super) struct Refresher {
    pub stream: Stream,
    pub consumer: PullConsumer,
    pub subject: String,
    pub state: Arc<ConsumerState>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl Refresher {
    pub async fn run(mut self) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH_INTERVAL) => {}
                () = self.wake.notified() => tokio::time::sleep(MIN_GAP).await,
            }
            self.read_once(&mut failing).await;
        }
    }

    /// Depth: what the consumer has not delivered plus what it delivered and has no ack for
    /// (the consumer is shared, so this is every instance's backlog). Lag: the arrival of the
    /// first message after the consumer's acknowledgement floor.
    pub async fn read_once(&mut self, failing: &mut bool) {
        let published_before = self.state.published.load(Ordering::Relaxed);
        let (pending, ack_pending, floor) = match self.consumer.info().await {
            Ok(info) => (
                info.num_pending,
                info.num_ack_pending,
                info.ack_floor.stream_sequence,
            ),
            Err(e) => {
                ConsumerUnreadable {
                    error: &e,
                    first: !*failing,
                }
                .emit();
                *failing = true;
                return;
            }
        };
        if *failing {
            tracing::info!(
                operation = "spool",
                "the consumer's state can be read again"
            );
            *failing = false;
        }
        metrics::nats_consumer(pending, ack_pending);
        let owed = pending + ack_pending as u64;
        let published_since = self
            .state
            .published
            .load(Ordering::Relaxed)
            .saturating_sub(published_before);
        let depth = owed + published_since;
        self.state.depth.store(depth, Ordering::Relaxed);
        metrics::journal_depth(depth);
        if owed == 0 {
            report_takeover(&self.state);
        }
        let oldest = if owed == 0 {
            0
        } else {
            self.oldest_after(floor).await
        };
        self.state.oldest_ns.store(oldest, Ordering::Relaxed);
    }

    /// Unix nanoseconds of the first message after `floor` (0 if none or unreadable: the
    /// next reading tries again).
    async fn oldest_after(&self, floor: u64) -> u64 {
        let first = self
            .stream
            .raw_message_builder()
            .sequence(floor + 1)
            .next_by_subject(self.subject.clone())
            .send()
            .await;
        match first {
            Ok(message) => u64::try_from(message.time.unix_timestamp_nanos()).unwrap_or(0),
            Err(e) => {
                tracing::debug!(error = %e, floor, "cannot read the oldest unapplied message");
                self.state.oldest_ns.load(Ordering::Relaxed)
            }
        }
    }
}

/// The consumer's state could not be read: counted every time, logged once per outage.
struct ConsumerUnreadable<'a> {
    error: &'a dyn std::fmt::Display,
    first: bool,
}

impl Event for ConsumerUnreadable<'_> {
    fn emit(self) {
        if self.first {
            tracing::warn!(operation = "spool", error = %self.error, "cannot read the consumer's state");
        }
        metrics::error("spool", "unavailable");
    }
}
