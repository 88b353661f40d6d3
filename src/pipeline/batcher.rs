//! Collecting queued records into one batch.
//!
//! A batch closes when it holds `max_rows` records or `max_delay` has passed since its first
//! record was taken. While the appender commits one batch the next one fills up in the queue, so
//! under load batches grow by themselves and the delay is rarely waited in full.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Job;

#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max_rows: usize,
    pub max_delay: Duration,
    pub queue_capacity: usize,
    pub ack_timeout: Duration,
    /// How long a group may try the store before it goes to the journal (`--ack store`).
    pub spill_after: Duration,
}

/// Wait for the first record (at most `idle`), then fill the batch. `None`: idle timeout with
/// nothing queued. `Some(empty)`: the queue is closed and drained.
pub async fn next_batch(
    rx: &mut mpsc::Receiver<Job>,
    settings: &BatchSettings,
    idle: Duration,
) -> Option<Vec<Job>> {
    let mut batch = Vec::with_capacity(settings.max_rows);
    // recv_many is cancel-safe: a timeout never loses a record.
    match tokio::time::timeout(idle, rx.recv_many(&mut batch, settings.max_rows)).await {
        Err(_) => return None,
        Ok(0) => return Some(batch),
        Ok(_) => {}
    }
    let deadline = Instant::now() + settings.max_delay;
    while batch.len() < settings.max_rows {
        let room = settings.max_rows - batch.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Record, Reject, RejectReason};

    fn job() -> Job {
        let (ack, _rx) = tokio::sync::oneshot::channel();
        Job {
            record: Record::Reject(Reject {
                click_id: uuid::Uuid::now_v7(),
                received_at: time::OffsetDateTime::UNIX_EPOCH,
                reason: RejectReason::MissingCampaign,
                detail: None,
                query: String::new(),
                user_agent: None,
            }),
            ack,
        }
    }

    fn settings(max_rows: usize) -> BatchSettings {
        BatchSettings {
            max_rows,
            max_delay: Duration::from_millis(5),
            queue_capacity: 100,
            ack_timeout: Duration::from_secs(1),
            spill_after: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn batches_close_at_max_rows_and_drain_on_close() {
        let (tx, mut rx) = mpsc::channel(100);
        for _ in 0..25 {
            tx.send(job()).await.expect("open");
        }
        drop(tx);
        let s = settings(10);
        let idle = Duration::from_secs(1);
        let mut sizes = Vec::new();
        while let Some(batch) = next_batch(&mut rx, &s, idle).await {
            if batch.is_empty() {
                break;
            }
            sizes.push(batch.len());
        }
        assert_eq!(sizes, [10, 10, 5]);
    }

    #[tokio::test]
    async fn an_idle_queue_times_out_without_a_batch() {
        let (_tx, mut rx) = mpsc::channel::<Job>(1);
        let got = next_batch(&mut rx, &settings(10), Duration::from_millis(5)).await;
        assert!(got.is_none());
    }
}
