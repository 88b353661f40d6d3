//! Members the store already knows: LINE uid → member id and display name.
//!
//! Every click of a known member needed an `INSERT IGNORE` and a `SELECT` of its row in each
//! batch; the seed's traffic is a few thousand members clicking again and again, so those two
//! statements were pure repetition. Members found here skip both. A member is remembered only
//! after the transaction that created or read it committed (a rolled-back insert must not
//! leave an id behind), and forgotten after `TTL`, so a display name the marketing app sets
//! later reaches the summaries within a minute.

use std::collections::HashMap;
use std::time::Duration;

/// How long a member is trusted without reading it again.
const TTL: Duration = Duration::from_secs(60);
/// Most members kept (a few hundred bytes each).
const CAPACITY: u64 = 200_000;

/// One row of `members`, as a batch needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: i64,
    pub display_name: Option<String>,
}

/// A batch's members, by uid.
pub type Members = HashMap<String, Member>;

#[derive(Debug, Clone)]
pub struct MemberCache {
    cache: moka::sync::Cache<String, Member>,
}

impl Default for MemberCache {
    fn default() -> MemberCache {
        MemberCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
        }
    }
}

impl MemberCache {
    /// The members of `uids` already known, and the uids still to create or read.
    pub fn split<'u>(&self, uids: &[&'u str]) -> (Members, Vec<&'u str>) {
        let mut known = Members::with_capacity(uids.len());
        let mut unknown = Vec::new();
        for uid in uids {
            match self.cache.get(*uid) {
                Some(member) => {
                    known.insert((*uid).to_owned(), member);
                }
                None => unknown.push(*uid),
            }
        }
        (known, unknown)
    }

    /// Remember `members` (call after their transaction committed).
    pub fn remember(&self, members: &Members) {
        for (uid, member) in members {
            if !self.cache.contains_key(uid) {
                self.cache.insert(uid.clone(), member.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_members_are_split_from_the_rest() {
        let cache = MemberCache::default();
        let alice = Member {
            id: 7,
            display_name: Some("Alice".into()),
        };
        cache.remember(&Members::from([("U1".to_owned(), alice.clone())]));
        let (known, unknown) = cache.split(&["U1", "U2"]);
        assert_eq!(known.get("U1"), Some(&alice));
        assert_eq!(unknown, ["U2"]);
    }
}
