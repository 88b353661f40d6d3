//! How a record is written into the spool file, and read back.
//!
//! The spool outlives the process that wrote it: a spool written by one version is replayed by
//! the next after an upgrade. So the on-disk form is its own explicit, versioned JSON object
//! rather than whatever the domain types happen to look like today.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Click, InteractionType, Record, Reject, RejectReason};

/// Bumped when a field changes meaning; readers refuse versions they do not know.
const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SpooledRecord {
    Click {
        v: u8,
        click_id: String,
        received_at_ns: i64,
        uid: Option<String>,
        campaign_id: i64,
        source_campaign_id: i64,
        interaction_type: String,
        target: String,
        tags: Vec<String>,
        user_agent: Option<String>,
    },
    Reject {
        v: u8,
        click_id: String,
        received_at_ns: i64,
        reason: String,
        detail: Option<String>,
        query: String,
        user_agent: Option<String>,
    },
}

/// Why a spooled row could not be turned back into a record.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a spooled record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("spool format version {0} is newer than this clicktrack understands")]
    Version(u8),
    #[error("bad {field}: {value:?}")]
    Field { field: &'static str, value: String },
}

/// The spool's JSON for `record`.
pub fn encode(record: &Record) -> serde_json::Value {
    let spooled = match record {
        Record::Click(c) => SpooledRecord::Click {
            v: FORMAT_VERSION,
            click_id: c.click_id.to_string(),
            received_at_ns: nanos(c.received_at),
            uid: c.uid.clone(),
            campaign_id: c.campaign_id,
            source_campaign_id: c.source_campaign_id,
            interaction_type: c.interaction_type.as_str().to_owned(),
            target: c.target.clone(),
            tags: c.tags.clone(),
            user_agent: c.user_agent.clone(),
        },
        Record::Reject(r) => SpooledRecord::Reject {
            v: FORMAT_VERSION,
            click_id: r.click_id.to_string(),
            received_at_ns: nanos(r.received_at),
            reason: r.reason.as_str().to_owned(),
            detail: r.detail.clone(),
            query: r.query.clone(),
            user_agent: r.user_agent.clone(),
        },
    };
    // A struct of strings, integers and vectors always serializes.
    serde_json::to_value(spooled).unwrap_or_default()
}

/// The record a spooled row holds.
pub fn decode(json: &str) -> Result<Record, DecodeError> {
    match serde_json::from_str(json)? {
        SpooledRecord::Click {
            v,
            click_id,
            received_at_ns,
            uid,
            campaign_id,
            source_campaign_id,
            interaction_type,
            target,
            tags,
            user_agent,
        } => {
            check_version(v)?;
            Ok(Record::Click(Click {
                click_id: uuid(&click_id)?,
                received_at: time_from(received_at_ns)?,
                uid,
                campaign_id,
                source_campaign_id,
                interaction_type: InteractionType::parse(&interaction_type).ok_or(
                    DecodeError::Field {
                        field: "interaction_type",
                        value: interaction_type,
                    },
                )?,
                target,
                tags,
                user_agent,
            }))
        }
        SpooledRecord::Reject {
            v,
            click_id,
            received_at_ns,
            reason,
            detail,
            query,
            user_agent,
        } => {
            check_version(v)?;
            Ok(Record::Reject(Reject {
                click_id: uuid(&click_id)?,
                received_at: time_from(received_at_ns)?,
                reason: RejectReason::parse(&reason).ok_or(DecodeError::Field {
                    field: "reason",
                    value: reason,
                })?,
                detail,
                query,
                user_agent,
            }))
        }
    }
}

fn check_version(v: u8) -> Result<(), DecodeError> {
    if v > FORMAT_VERSION {
        return Err(DecodeError::Version(v));
    }
    Ok(())
}

fn uuid(value: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(value).map_err(|_| DecodeError::Field {
        field: "click_id",
        value: value.to_owned(),
    })
}

/// Nanoseconds since the epoch; an i64 holds them until the year 2262.
fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn time_from(ns: i64) -> Result<OffsetDateTime, DecodeError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).map_err(|_| DecodeError::Field {
        field: "received_at_ns",
        value: ns.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click() -> Record {
        Record::Click(Click {
            click_id: Uuid::now_v7(),
            received_at: OffsetDateTime::now_utc(),
            uid: Some("U1".into()),
            campaign_id: 7,
            source_campaign_id: 3,
            interaction_type: InteractionType::FlexClick,
            target: "https://example.com/a?b=c".into(),
            tags: vec!["A".into(), "日本".into()],
            user_agent: Some("Line/13.1.0".into()),
        })
    }

    #[test]
    fn records_round_trip_exactly() {
        let reject = Record::Reject(click().into_reject(
            RejectReason::RefusedByDatabase,
            Some("1452: foreign key".into()),
        ));
        for record in [click(), reject] {
            let json = encode(&record).to_string();
            assert_eq!(decode(&json).expect("decodes"), record, "{json}");
        }
    }

    #[test]
    fn unknown_versions_and_values_are_refused() {
        let mut json = encode(&click());
        json["v"] = 2.into();
        assert!(matches!(
            decode(&json.to_string()),
            Err(DecodeError::Version(2))
        ));
        json["v"] = 1.into();
        json["interaction_type"] = "poke".into();
        assert!(matches!(
            decode(&json.to_string()),
            Err(DecodeError::Field {
                field: "interaction_type",
                ..
            })
        ));
        assert!(decode("{").is_err());
    }
}
