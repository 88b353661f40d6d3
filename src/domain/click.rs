//! What one `/__track` request becomes once its target passed the policy: a `Click` to record
//! in the five tables, or a `Reject` to set aside in `track_rejects` with its reason.
//!
//! A bad tracking field never stops the redirect (the person must reach the page); it only
//! decides which of the two records the request produces.

use super::ids::{CampaignId, LineUid};
use time::OffsetDateTime;
use uuid::Uuid;

use super::interaction::InteractionType;
use super::query::{FieldError, TrackParams};
use super::tags::{TagError, parse_click_tags};
use super::target::Target;

/// Longest user agent kept; longer ones are cut (at a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest raw query string kept on a reject.
pub const MAX_REJECT_QUERY_BYTES: usize = 4096;
/// The longest target a click can hold: its `Location`, the canonical form of a `to` of at
/// most 2048 bytes (`target::MAX_TARGET_BYTES`), which percent-encoding makes at most three
/// times longer.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// The longest reject detail stored (a database's message).
pub const MAX_REJECT_DETAIL_BYTES: usize = 1024;

/// Why a click read back from a journal could not have come from a request, or `None`: the
/// checks of the request path again, so a record another release or producer wrote is set
/// aside identically on every store instead of being stored on one and cut or refused on the
/// other.
pub fn problem_of_decoded(click: &Click) -> Option<RejectReason> {
    if let Some(uid) = &click.uid
        && let Err(reason) = super::LineUid::parse(uid.to_string())
    {
        return Some(reason);
    }
    if click.tags.len() > super::tags::MAX_TAGS_PER_CLICK {
        return Some(RejectReason::TooManyTags);
    }
    if click
        .tags
        .iter()
        .any(|t| t.len() > super::tags::MAX_TAG_BYTES)
    {
        return Some(RejectReason::TagTooLong);
    }
    if click.target.len() > MAX_TARGET_BYTES
        || click
            .user_agent
            .as_ref()
            .is_some_and(|ua| ua.len() > MAX_USER_AGENT_BYTES)
    {
        return Some(RejectReason::ValueTooLong);
    }
    None
}

/// A click accepted for recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub click_id: Uuid,
    pub received_at: OffsetDateTime,
    /// `None` for an anonymous click (no or empty `uid`).
    pub uid: Option<LineUid>,
    pub campaign_id: CampaignId,
    pub source_campaign_id: i64,
    pub interaction_type: InteractionType,
    /// The target as the link gave it.
    pub target: String,
    pub tags: Vec<String>,
    pub user_agent: Option<String>,
}

impl Click {
    /// The click as a query string of the link contract, for a click set aside after parsing
    /// (its original query string is not kept on accepted clicks).
    pub fn canonical_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("cid", &self.campaign_id.to_string());
        if let Some(uid) = &self.uid {
            q.append_pair("uid", uid);
        }
        q.append_pair("type", self.interaction_type.as_str());
        q.append_pair("src", &self.source_campaign_id.to_string());
        if !self.tags.is_empty() {
            q.append_pair("tag", &self.tags.join(","));
        }
        q.append_pair("to", &self.target);
        q.finish()
    }
}

/// Why a request with a good target was not recorded as a click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    MissingCampaign,
    InvalidCampaign,
    UnknownCampaign,
    InvalidUid,
    UidTooLong,
    UnknownType,
    TooManyTags,
    TagTooLong,
    RepeatedParameter,
    BadEncoding,
    /// The database refused the click's rows (found by bisecting a failed batch).
    RefusedByDatabase,
    /// A journal record (another release's, another producer's) holds a value longer than any
    /// request could carry: set aside the same way on every store, never cut to fit.
    ValueTooLong,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::MissingCampaign,
        RejectReason::InvalidCampaign,
        RejectReason::UnknownCampaign,
        RejectReason::InvalidUid,
        RejectReason::UidTooLong,
        RejectReason::UnknownType,
        RejectReason::TooManyTags,
        RejectReason::TagTooLong,
        RejectReason::RepeatedParameter,
        RejectReason::BadEncoding,
        RejectReason::RefusedByDatabase,
        RejectReason::ValueTooLong,
    ];

    /// Stored in `track_rejects.reason` and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MissingCampaign => "missing_cid",
            RejectReason::InvalidCampaign => "invalid_cid",
            RejectReason::UnknownCampaign => "unknown_campaign",
            RejectReason::InvalidUid => "invalid_uid",
            RejectReason::UidTooLong => "uid_too_long",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::TooManyTags => "too_many_tags",
            RejectReason::TagTooLong => "tag_too_long",
            RejectReason::RepeatedParameter => "repeated_parameter",
            RejectReason::BadEncoding => "bad_encoding",
            RejectReason::RefusedByDatabase => "refused_by_database",
            RejectReason::ValueTooLong => "value_too_long",
        }
    }

    /// The reason stored as `as_str` gave it (spooled records are read back this way).
    pub fn parse(value: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// A request set aside in `track_rejects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub click_id: Uuid,
    pub received_at: OffsetDateTime,
    pub reason: RejectReason,
    /// What the database said, for `RefusedByDatabase`.
    pub detail: Option<String>,
    pub query: String,
    pub user_agent: Option<String>,
}

/// What the pipeline carries and a store writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Click(Click),
    Reject(Reject),
}

impl Record {
    pub fn click_id(&self) -> Uuid {
        match self {
            Record::Click(c) => c.click_id,
            Record::Reject(r) => r.click_id,
        }
    }

    /// The campaign of a click; a reject has none it could be trusted with.
    pub fn campaign_id(&self) -> Option<CampaignId> {
        match self {
            Record::Click(c) => Some(c.campaign_id),
            Record::Reject(_) => None,
        }
    }

    pub fn uid(&self) -> Option<&str> {
        match self {
            Record::Click(c) => c.uid.as_deref(),
            Record::Reject(_) => None,
        }
    }

    pub fn received_at(&self) -> OffsetDateTime {
        match self {
            Record::Click(c) => c.received_at,
            Record::Reject(r) => r.received_at,
        }
    }

    /// The uids this record holds: a click's member, or every uid a reject's raw query names
    /// (what an erasure must find).
    pub fn member_uids(&self) -> Vec<String> {
        match self {
            Record::Click(c) => c.uid.iter().map(|u| u.to_string()).collect(),
            Record::Reject(r) => super::query::uids_in(&r.query),
        }
    }

    /// Turn a click into a reject, keeping its identity and arrival time (a reject stays as is).
    pub fn into_reject(self, reason: RejectReason, detail: Option<String>) -> Reject {
        match self {
            Record::Click(c) => Reject {
                query: c.canonical_query(),
                click_id: c.click_id,
                received_at: c.received_at,
                reason,
                detail,
                user_agent: c.user_agent,
            },
            Record::Reject(r) => r,
        }
    }
}

/// The request facts that are not in the query string.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    pub click_id: Uuid,
    pub received_at: OffsetDateTime,
    pub user_agent: Option<&'a str>,
    pub raw_query: &'a str,
}

/// Build the record for a request whose target passed the policy.
pub fn classify(params: &TrackParams<'_>, target: &Target, arrival: Arrival<'_>) -> Record {
    let user_agent = arrival
        .user_agent
        .map(|ua| truncate_utf8(ua, MAX_USER_AGENT_BYTES).to_owned());
    match tracking_fields(params) {
        Ok(fields) => Record::Click(Click {
            click_id: arrival.click_id,
            received_at: arrival.received_at,
            uid: fields.uid,
            campaign_id: fields.campaign_id,
            source_campaign_id: fields.source_campaign_id,
            interaction_type: fields.interaction_type,
            target: target.location.clone(),
            tags: fields.tags,
            user_agent,
        }),
        Err(reason) => Record::Reject(Reject {
            click_id: arrival.click_id,
            received_at: arrival.received_at,
            reason,
            detail: None,
            query: truncate_utf8(arrival.raw_query, MAX_REJECT_QUERY_BYTES).to_owned(),
            user_agent,
        }),
    }
}

pub(crate) struct TrackingFields {
    uid: Option<LineUid>,
    campaign_id: CampaignId,
    source_campaign_id: i64,
    interaction_type: InteractionType,
    tags: Vec<String>,
}

pub(crate) fn tracking_fields(params: &TrackParams<'_>) -> Result<TrackingFields, RejectReason> {
    let field_error = |e: FieldError| match e {
        FieldError::Repeated => RejectReason::RepeatedParameter,
        FieldError::BadEncoding => RejectReason::BadEncoding,
    };

    let campaign_id = match params.cid.decode().map_err(field_error)? {
        None => return Err(RejectReason::MissingCampaign),
        Some(s) if s.is_empty() => return Err(RejectReason::MissingCampaign),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .and_then(CampaignId::new)
            .ok_or(RejectReason::InvalidCampaign)?,
    };

    let uid = match params.uid.decode().map_err(field_error)? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => Some(LineUid::parse(s)?),
    };

    let interaction_type = match params.interaction_type.decode().map_err(field_error)? {
        None => InteractionType::DEFAULT,
        Some(s) if s.is_empty() => InteractionType::DEFAULT,
        Some(s) => InteractionType::parse(&s).ok_or(RejectReason::UnknownType)?,
    };

    // As before: a missing or unusable `src` means 0. It lands in an INT column.
    let source_campaign_id = params
        .src
        .decode()
        .ok()
        .flatten()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .map_or(0, i64::from);

    let tags = match params.tag.decode().map_err(field_error)? {
        None => Vec::new(),
        Some(s) => parse_click_tags(&s).map_err(|e| match e {
            TagError::TooMany => RejectReason::TooManyTags,
            TagError::TooLong => RejectReason::TagTooLong,
        })?,
    };

    Ok(TrackingFields {
        uid,
        campaign_id,
        source_campaign_id,
        interaction_type,
        tags,
    })
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A member's click on campaign 7, for the journal's and the pipeline's unit tests.
#[cfg(test)]
pub fn test_click(uid: &str) -> Record {
    Record::Click(Click {
        click_id: Uuid::now_v7(),
        received_at: OffsetDateTime::now_utc(),
        uid: LineUid::parse(uid).ok(),
        campaign_id: CampaignId::new(7).expect("positive"),
        source_campaign_id: 3,
        interaction_type: InteractionType::FlexClick,
        target: "https://example.com/a?b=c".into(),
        tags: vec!["A".into()],
        user_agent: Some("Line/13.1.0".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RedirectPolicy;

    fn record(query: &str) -> Record {
        let params = TrackParams::parse(query);
        let target = RedirectPolicy::new(&[], true)
            .expect("policy")
            .check("https://example.com/".into())
            .expect("target");
        classify(
            &params,
            &target,
            Arrival {
                click_id: Uuid::now_v7(),
                received_at: OffsetDateTime::UNIX_EPOCH,
                user_agent: Some("Mozilla/5.0"),
                raw_query: query,
            },
        )
    }

    fn reason(query: &str) -> Option<RejectReason> {
        match record(query) {
            Record::Reject(r) => Some(r.reason),
            Record::Click(_) => None,
        }
    }

    #[test]
    fn a_full_link_becomes_a_click() {
        let Record::Click(c) = record("cid=123&uid=U1&type=button_url&src=456&tag=A,%20B,A") else {
            panic!("expected a click");
        };
        assert_eq!(c.campaign_id, CampaignId::new(123).expect("positive"));
        assert_eq!(c.uid.as_deref(), Some("U1"));
        assert_eq!(c.interaction_type, InteractionType::ButtonUrl);
        assert_eq!(c.source_campaign_id, 456);
        assert_eq!(c.tags, ["A", "B"]);
        assert_eq!(c.target, "https://example.com/");
        assert_eq!(c.user_agent.as_deref(), Some("Mozilla/5.0"));
    }

    #[test]
    fn defaults_match_the_old_endpoint() {
        let Record::Click(c) = record("cid=1&uid=&type=&src=-4") else {
            panic!("expected a click");
        };
        assert_eq!(c.uid, None);
        assert_eq!(c.interaction_type, InteractionType::ImageClick);
        assert_eq!(c.source_campaign_id, 0);
        for src in ["x", "99999999999", "1.5", ""] {
            let Record::Click(c) = record(&format!("cid=1&src={src}")) else {
                panic!("expected a click for src={src}");
            };
            assert_eq!(c.source_campaign_id, 0);
        }
    }

    #[test]
    fn bad_fields_become_rejects_with_their_reason() {
        let uid65 = "U".repeat(65);
        let tags21: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        let cases = [
            ("uid=U1".to_string(), RejectReason::MissingCampaign),
            ("cid=".to_string(), RejectReason::MissingCampaign),
            ("cid=abc".to_string(), RejectReason::InvalidCampaign),
            ("cid=0".to_string(), RejectReason::InvalidCampaign),
            ("cid=-3".to_string(), RejectReason::InvalidCampaign),
            (
                "cid=99999999999999999999".to_string(),
                RejectReason::InvalidCampaign,
            ),
            (format!("cid=1&uid={uid65}"), RejectReason::UidTooLong),
            ("cid=1&uid=U%201".to_string(), RejectReason::InvalidUid),
            ("cid=1&uid=%E3%81%82".to_string(), RejectReason::InvalidUid),
            (
                "cid=1&type=drop_table".to_string(),
                RejectReason::UnknownType,
            ),
            (
                format!("cid=1&tag={}", tags21.join(",")),
                RejectReason::TooManyTags,
            ),
            (
                format!("cid=1&tag={}", "x".repeat(65)),
                RejectReason::TagTooLong,
            ),
            ("cid=1&cid=2".to_string(), RejectReason::RepeatedParameter),
            ("cid=1&tag=%FF".to_string(), RejectReason::BadEncoding),
            ("cid=1&uid=U%zz".to_string(), RejectReason::BadEncoding),
        ];
        for (query, want) in cases {
            assert_eq!(reason(&query), Some(want), "{query}");
        }
        assert_eq!(reason(&format!("cid=1&uid={}", "U".repeat(64))), None);
    }

    #[test]
    fn reject_keeps_the_raw_query_bounded() {
        let long = format!("cid=x&pad={}", "a".repeat(10_000));
        let Record::Reject(r) = record(&long) else {
            panic!("expected a reject");
        };
        assert_eq!(r.query.len(), MAX_REJECT_QUERY_BYTES);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_utf8("ああ", 4), "あ");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
