//! The two identifiers every click carries, as types of their own: a campaign id is not a
//! count or a source id, and a LINE uid is not any string (it passed the link contract's
//! checks: 1 to 64 printable ASCII characters), so neither can be passed where the other, or
//! an unchecked value, is meant.

use std::fmt;

use super::click::RejectReason;

/// Longest accepted `uid` (the `line_id` columns are VARCHAR(64)).
pub const MAX_UID_CHARS: usize = 64;

/// A campaign's id: `campaigns.id`, the link's `cid`. Always positive: made only by `new`,
/// wherever the number comes from (a link, the journal, the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CampaignId(i64);

impl CampaignId {
    /// `None` for 0 and below: no link of the contract names such a campaign.
    pub fn new(id: i64) -> Option<CampaignId> {
        (id > 0).then_some(CampaignId(id))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A LINE user id as a link carries it (`uid`): `members.line_uid`, `line_id` in the logs and
/// summaries. Made by `parse`, or by the journal's decoder from what was parsed before it was
/// written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct LineUid(String);

impl LineUid {
    /// A non-empty uid from a link, or why the link contract refuses it.
    pub fn parse(uid: impl Into<String>) -> Result<LineUid, RejectReason> {
        let uid = uid.into();
        if uid.chars().count() > MAX_UID_CHARS {
            Err(RejectReason::UidTooLong)
        } else if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_graphic()) {
            Err(RejectReason::InvalidUid)
        } else {
            Ok(LineUid(uid))
        }
    }

    /// One that was parsed before (the journal holds only parsed uids).
    pub(crate) fn parsed_before(uid: String) -> LineUid {
        LineUid(uid)
    }
}

/// Read as the string it is (a uid is written, compared and logged as text).
impl std::ops::Deref for LineUid {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LineUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
