//! Erasure: one person removed from every table clicktrack writes or reads (`clicktrack member
//! erase`, `DELETE /api/members/{uid}`, docs/privacy.md).
//!
//! One transaction per person, run the same way on every store (a backend supplies its SQL as
//! an `EraseTx`). It deletes the member, its messages and summaries, and the rejects whose raw
//! query names the uid; in the interaction log and the rollups it replaces the uid by a
//! pseudonym (and drops the log rows' User-Agent), so every count (clicks, unique and top
//! members, over any window) stays what it was and nothing identifies the person.
//!
//! The uid also goes on the **erasure list** (`track_erasures`, a hash and the time): every
//! batch reads the list first, and a click of that uid made before the erasure is dropped
//! (`Outcome::Erased`) instead of written. That is what removes the clicks still waiting in a
//! journal, on this instance or any other, including a NATS stream shared by a fleet; a click
//! made after the erasure is a new click and is recorded. On MySQL a batch takes the list's
//! lock row shared before anything else and an erasure takes it exclusively, so a batch that
//! read the list before an erasure commits before the erasure deletes, and one that starts
//! later sees the new entry.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{StoreError, StoreTx};
use crate::domain::query::uids_in;

/// The list's lock row: `uid_hash = '*'`, created with the table.
pub(super) const LOCK_ROW: &str = "*";

/// What one erasure removed (or, with `--dry-run`, would remove), per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Rows deleted.
    pub members: u64,
    pub messages: u64,
    pub ryan_click_demo: u64,
    pub track_rejects: u64,
    /// Log rows kept without identity: the uid replaced by the erasure's pseudonym, the
    /// User-Agent removed (every count, and the per-click tags, stay what they were).
    pub component_interaction_logs: u64,
    /// Rollup rows whose uid was replaced by the same pseudonym.
    pub rollups: u64,
}

impl Erased {
    /// `(table, rows)` deleted, in the order they are reported.
    pub fn deleted(&self) -> [(&'static str, u64); 4] {
        [
            ("members", self.members),
            ("messages", self.messages),
            ("ryan_click_demo", self.ryan_click_demo),
            ("track_rejects", self.track_rejects),
        ]
    }

    /// `(table, rows)` whose uid was replaced by a pseudonym.
    pub fn pseudonymized(&self) -> [(&'static str, u64); 2] {
        [
            (
                "component_interaction_logs",
                self.component_interaction_logs,
            ),
            ("rollups", self.rollups),
        ]
    }
}

/// The hash that stands for a uid on the erasure list and in log lines: SHA-256 over a fixed
/// prefix and the uid, in hex. LINE uids are 128-bit random ids, so it cannot be reversed by
/// guessing.
pub fn uid_hash(uid: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"clicktrack erasure\0");
    h.update(uid.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Times on the erasure list: `db_time` with microseconds, so a click in the same second as
/// the erasure is on the right side of it.
pub fn list_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{}.{:06}", super::db_time(t), t.microsecond())
}

/// The erasure list as a batch reads it: uid hash → erased at (`list_time`).
pub type ErasureList = std::collections::HashMap<String, String>;

/// One dialect's SQL for an erasure, inside one transaction. Statements that bind only the uid
/// are written once below (both dialects take `?`); a backend runs them.
pub(super) trait EraseTx: StoreTx {
    /// Take the erasure list's lock row exclusively (MySQL); SQLite's `BEGIN IMMEDIATE` already
    /// excludes every other writer.
    async fn lock_erasure_list(&mut self) -> Result<(), StoreError>;
    /// Put `uid_hash` on the list, erased at `at` (a later erasure moves the time forward).
    async fn add_to_erasure_list(&mut self, uid_hash: &str, at: &str) -> Result<(), StoreError>;
    /// Run `sql` with `binds` as its parameters; the rows it changed.
    async fn run(
        &mut self,
        sql: &'static str,
        binds: &[&str],
        operation: &'static str,
    ) -> Result<u64, StoreError>;
    /// `(id, text)` rows of `sql`, whose one parameter is `bind`.
    async fn id_text_rows(
        &mut self,
        sql: &'static str,
        bind: &str,
        operation: &'static str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError>;
    async fn delete_rejects(&mut self, ids: &[i64]) -> Result<u64, StoreError>;
    /// Undo everything (`--dry-run`).
    async fn rollback(self) -> Result<(), StoreError>;
}

/// Erase `uid` through `tx`: commit, or roll back when `dry_run` (the counts are the same).
pub(super) async fn run<T: EraseTx>(
    mut tx: T,
    uid: &str,
    dry_run: bool,
    now: OffsetDateTime,
) -> Result<Erased, StoreError> {
    tx.lock_erasure_list().await?;
    tx.add_to_erasure_list(&uid_hash(uid), &list_time(now))
        .await?;
    let mut erased = Erased::default();

    // One pseudonym per erasure: the person's clicks across hours and campaigns still count as
    // one member in every figure, and nothing links them to the uid any more.
    let pseudonym = format!(
        "erased-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    erased.component_interaction_logs = tx
        .run(
            "UPDATE component_interaction_logs SET line_id = ?, user_agent = NULL \
             WHERE line_id = ?",
            &[&pseudonym, uid],
            "pseudonymize log rows",
        )
        .await?;

    erased.messages = tx
        .run(
            "DELETE FROM messages WHERE member_id IN \
             (SELECT id FROM members WHERE line_uid = ?)",
            &[uid],
            "erase messages",
        )
        .await?;
    erased.ryan_click_demo = tx
        .run(
            "DELETE FROM ryan_click_demo WHERE line_id = ?",
            &[uid],
            "erase summaries",
        )
        .await?;
    erased.members = tx
        .run(
            "DELETE FROM members WHERE line_uid = ?",
            &[uid],
            "erase member",
        )
        .await?;

    // A reject keeps the raw query; find the ones that name the uid (in any spelling) by
    // decoding them. The LIKE only narrows the search: an encoded uid may not contain itself.
    let pattern = if uid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        format!("%{uid}%")
    } else {
        "%uid=%".to_owned()
    };
    let rejects: Vec<i64> = tx
        .id_text_rows(
            "SELECT id, query_string FROM track_rejects WHERE query_string LIKE ?",
            &pattern,
            "find the member's rejects",
        )
        .await?
        .into_iter()
        .filter(|(_, query)| {
            query
                .as_deref()
                .is_some_and(|q| uids_in(q).iter().any(|u| u == uid))
        })
        .map(|(id, _)| id)
        .collect();
    if !rejects.is_empty() {
        erased.track_rejects = tx.delete_rejects(&rejects).await?;
    }

    erased.rollups = tx
        .run(
            "UPDATE track_rollup_members SET line_id = ? WHERE line_id = ? AND campaign_id IN \
             (SELECT campaign_id FROM track_rollup_campaign_members WHERE line_id = ?)",
            &[&pseudonym, uid, uid],
            "pseudonymize member rollups",
        )
        .await?;
    erased.rollups += tx
        .run(
            "UPDATE track_rollup_campaign_members SET line_id = ? WHERE line_id = ?",
            &[&pseudonym, uid],
            "pseudonymize campaign members",
        )
        .await?;
    // Packs name members by number: renaming the number's row keeps them valid.
    erased.rollups += tx
        .run(
            "UPDATE track_rollup_member_ids SET line_id = ? WHERE line_id = ?",
            &[&pseudonym, uid],
            "pseudonymize member numbers",
        )
        .await?;

    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(erased)
}

/// Whether the list says `uid` was erased after `received_at`: such a click was made before
/// its member's erasure and must not be written.
pub fn erased_before(list: &ErasureList, uid: &str, received_at: OffsetDateTime) -> bool {
    list.get(&uid_hash(uid))
        .is_some_and(|erased_at| list_time(received_at) < *erased_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_before_the_erasure_is_dropped_one_after_is_kept() {
        let at = time::macros::datetime!(2026-12-04 10:00:00.5 UTC);
        let list = ErasureList::from([(uid_hash("UX"), list_time(at))]);
        let before = at - time::Duration::milliseconds(1);
        let after = at + time::Duration::milliseconds(1);
        assert!(erased_before(&list, "UX", before));
        assert!(!erased_before(&list, "UX", after));
        assert!(!erased_before(&list, "UY", before));
        assert_eq!(list_time(at), "2026-12-04 10:00:00.500000");
        assert_ne!(uid_hash("UX"), uid_hash("UY"));
        assert_eq!(uid_hash("UX").len(), 64);
    }
}
