//! One JetStream message per group of clicks, not per click. Every message costs the servers
//! the same (a write, a replication round, with `sync_interval: always` an fsync on each
//! replica, a PubAck), whatever it carries, so a group that became durable together travels
//! together: the payload is the JSON array the local journal also writes (`format.rs`),
//! split only to stay well under the server's message size limit.
//!
//! On the applying side a message is held until every click in it is in the store, then
//! acknowledged once. A click's position (`Journaled::seq`) is its message's stream sequence
//! and its index in the message; the applier needs no more than that to say what it applied.

use std::collections::BTreeMap;

use async_nats::jetstream::Message;
use uuid::Uuid;

use crate::domain::Record;
use crate::journal::{Journaled, format};

/// Largest payload of one message: a quarter of the server's default `max_payload` (1 MiB).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most clicks in one message (well below what a position's index can hold).
const MAX_MESSAGE_RECORDS: usize = 1024;
/// Bits of a position that hold the index in the message.
const INDEX_BITS: u32 = 20;

/// One message to publish: the records' JSON array, and the first record's id, which is the
/// message's `Nats-Msg-Id` (the stream drops a second publish of the same group).
#[derive(Debug)]
pub(super) struct Payload {
    pub first: Uuid,
    pub records: usize,
    pub json: String,
}

/// The messages that carry `records`, in order.
pub(super) fn payloads(records: &[&Record]) -> Vec<Payload> {
    let mut out: Vec<Payload> = Vec::new();
    for record in records {
        let json = format::encode_one(record);
        match out.last_mut() {
            Some(last)
                if last.records < MAX_MESSAGE_RECORDS
                    && last.json.len() + json.len() + 2 <= MAX_MESSAGE_BYTES =>
            {
                last.json.push(',');
                last.json.push_str(&json);
                last.records += 1;
            }
            _ => out.push(Payload {
                first: record.click_id(),
                records: 1,
                json: format!("[{json}"),
            }),
        }
    }
    for payload in &mut out {
        payload.json.push(']');
    }
    out
}

/// A click's position: its message's stream sequence, then its index in the message.
/// `None` past what an i64 holds (2^43 messages: centuries at any rate clicktrack reaches).
fn position(stream_seq: u64, index: usize) -> Option<i64> {
    let seq = i64::try_from(stream_seq).ok()?;
    let index = i64::try_from(index).ok()?;
    Some(seq.checked_mul(1 << INDEX_BITS)? | index)
}

fn split(position: i64) -> (u64, usize) {
    let seq = u64::try_from(position >> INDEX_BITS).unwrap_or(0);
    let index = usize::try_from(position & ((1 << INDEX_BITS) - 1)).unwrap_or(0);
    (seq, index)
}

/// A fetched message, until every click in it is applied.
#[derive(Debug)]
struct Held {
    message: Message,
    /// `None` once applied.
    records: Vec<Option<Record>>,
    left: usize,
}

/// The messages this instance fetched and has not acknowledged, by stream sequence.
#[derive(Debug, Default)]
pub(super) struct HeldMessages {
    by_seq: BTreeMap<u64, Held>,
    /// Clicks held and not applied yet, over every message.
    clicks: usize,
}

/// Why a fetched message cannot be held (it is then logged and taken out of the stream).
#[derive(Debug, thiserror::Error)]
pub(super) enum Unholdable {
    #[error(transparent)]
    Unreadable(#[from] format::DecodeError),
    #[error("{records} clicks in one message, more than a position can number")]
    TooLarge { records: usize },
}

impl HeldMessages {
    pub fn clicks(&self) -> usize {
        self.clicks
    }

    /// Decode `message` (stream sequence `seq`) and hold it; how many clicks it carries. A
    /// redelivered message this instance still holds replaces the old delivery (its ack is
    /// the one the server now waits for), keeping what was applied of it.
    /// A message that cannot be held comes back with the reason.
    pub fn hold(
        &mut self,
        seq: u64,
        message: Message,
    ) -> Result<usize, Box<(Unholdable, Message)>> {
        let json = String::from_utf8_lossy(&message.payload);
        let records = match format::decode_group(&json) {
            Ok(records) => records,
            Err(e) => return Err(Box::new((e.into(), message))),
        };
        let count = records.len();
        if position(seq, count).is_none() || count >= 1 << INDEX_BITS {
            return Err(Box::new((Unholdable::TooLarge { records: count }, message)));
        }
        if let Some(held) = self.by_seq.get_mut(&seq) {
            held.message = message;
            return Ok(count);
        }
        self.clicks += count;
        self.by_seq.insert(
            seq,
            Held {
                message,
                records: records.into_iter().map(Some).collect(),
                left: count,
            },
        );
        Ok(count)
    }

    /// Up to `limit` unapplied clicks, oldest message first.
    pub fn oldest(&self, limit: usize) -> Vec<Journaled> {
        self.by_seq
            .iter()
            .flat_map(|(seq, held)| {
                held.records.iter().enumerate().filter_map(|(i, r)| {
                    Some(Journaled {
                        seq: position(*seq, i)?,
                        record: r.as_ref()?.clone(),
                        // Another instance may have applied it before it came back.
                        fresh: false,
                    })
                })
            })
            .take(limit)
            .collect()
    }

    /// Mark `positions` applied; the messages now applied in full, to acknowledge.
    pub fn applied(&mut self, positions: &[i64]) -> Vec<Message> {
        let mut done = Vec::new();
        for &p in positions {
            let (seq, index) = split(p);
            let Some(held) = self.by_seq.get_mut(&seq) else {
                continue;
            };
            if held.records.get_mut(index).and_then(Option::take).is_none() {
                continue;
            }
            held.left -= 1;
            self.clicks -= 1;
            if held.left == 0
                && let Some(held) = self.by_seq.remove(&seq)
            {
                done.push(held.message);
            }
        }
        done
    }

    /// Every held message, given up (at shutdown: for another instance to apply).
    pub fn release(&mut self) -> Vec<Message> {
        self.clicks = 0;
        std::mem::take(&mut self.by_seq)
            .into_values()
            .map(|held| held.message)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CampaignId, Click, InteractionType};

    fn click(target_len: usize) -> Record {
        Record::Click(Click {
            click_id: Uuid::now_v7(),
            received_at: time::OffsetDateTime::now_utc(),
            uid: None,
            campaign_id: CampaignId::new(1).expect("positive"),
            source_campaign_id: 0,
            interaction_type: InteractionType::ImageClick,
            target: format!("https://example.com/{}", "a".repeat(target_len)),
            tags: vec![],
            user_agent: None,
        })
    }

    #[test]
    fn a_group_travels_in_as_few_messages_as_the_size_limit_allows() {
        let small: Vec<Record> = (0..300).map(|_| click(10)).collect();
        let refs: Vec<&Record> = small.iter().collect();
        let one = payloads(&refs);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].records, 300);
        assert_eq!(one[0].first, small[0].click_id());
        let back = format::decode_group(&one[0].json).expect("decodes");
        assert_eq!(back.len(), 300);
        assert_eq!(back[299].click_id(), small[299].click_id());

        // 10 KB targets: split near 256 KiB, nothing lost, order kept.
        let large: Vec<Record> = (0..100).map(|_| click(10_000)).collect();
        let refs: Vec<&Record> = large.iter().collect();
        let parts = payloads(&refs);
        assert!(parts.len() >= 4, "{}", parts.len());
        assert!(parts.iter().all(|p| p.json.len() <= MAX_MESSAGE_BYTES));
        assert_eq!(parts.iter().map(|p| p.records).sum::<usize>(), 100);
        let ids: Vec<Uuid> = parts
            .iter()
            .flat_map(|p| format::decode_group(&p.json).expect("decodes"))
            .map(|r| r.click_id())
            .collect();
        let sent: Vec<Uuid> = large.iter().map(Record::click_id).collect();
        assert_eq!(ids, sent);
    }

    #[test]
    fn positions_keep_the_message_and_the_index_apart() {
        for (seq, index) in [(1, 0), (7, 1023), (1 << 40, 5)] {
            let p = position(seq, index).expect("fits");
            assert_eq!(split(p), (seq, index));
        }
        assert!(position(1 << 45, 0).is_none());
        assert!(position(1, 3) < position(2, 0));
    }
}
