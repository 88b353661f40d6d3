//! Erasing one person (`clicktrack member erase --uid U`, `DELETE /api/members/{uid}`,
//! docs/privacy.md): the store's tables, the journal's waiting records and the
//! de-duplication keys, in that order.
//!
//! The store goes first because its erasure list is what makes the rest safe: once it is
//! committed, no batch on any instance writes a click of that uid made before the erasure,
//! whichever journal it comes from (a NATS stream shared by a fleet, or the journal of a `serve`
//! this command cannot open). The journal's records are then removed where this process can
//! reach them (it owns the local journal), and the member's Redis keys deleted.

use serde::Serialize;

use super::backfill::with_retries;
use super::late_commits;
use crate::dedup::Dedup;
use crate::journal::Journal;
use crate::store::erase::{Erased, uid_hash};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

/// What an erasure removed, per place.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReport {
    /// The first 16 hex digits of the uid's hash: what the logs name instead of the uid.
    pub uid_hash: String,
    pub dry_run: bool,
    /// Rows deleted, per table.
    pub deleted: Vec<(&'static str, u64)>,
    /// Rows kept without identity (the uid replaced by a pseudonym), per table.
    pub pseudonymized: Vec<(&'static str, u64)>,
    /// Records removed from the local journal; `None` when this process cannot reach the
    /// journal's records (a NATS stream, or a local journal another process holds): those are
    /// dropped by every applier as they come (`track_clicks_erased_total`).
    pub journal_records: Option<u64>,
    /// Redis de-duplication keys deleted; `None` without `--redis-url`.
    pub redis_keys: Option<u64>,
}

/// Where the journal's records can be reached from this process.
pub enum JournalAccess<'a> {
    /// This process owns it (`serve`, or the command when no `serve` holds it).
    Owned(&'a Journal),
    /// Out of reach: another process holds it, or it is shared (NATS).
    Elsewhere,
}

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("erasing the member from the store failed: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the member was erased from the store (the erasure list stops its waiting clicks) \
         but its records could not be removed from the journal: {0}"
    )]
    Journal(#[from] crate::journal::JournalError),
}

/// How long an erasure waits for a timed-out batch still running (it has a connection and
/// the store just answered the erasure, so it ends within moments unless the store is lost).
const LATE_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The widest uid column (`component_interaction_logs.line_id`): no longer uid can be stored.
pub const MAX_ERASE_UID_CHARS: usize = 100;

/// Why `uid` cannot be erased, or `None` (the command and the admin API both ask).
pub fn check_uid(uid: &str) -> Option<String> {
    if uid.is_empty() {
        Some("the uid is empty".to_owned())
    } else if uid.chars().count() > MAX_ERASE_UID_CHARS {
        Some(format!(
            "the uid is longer than {MAX_ERASE_UID_CHARS} characters: no table holds one"
        ))
    } else {
        None
    }
}

/// Erase `uid` everywhere this process can reach. Idempotent: a second run finds nothing.
pub async fn erase_member(
    store: &Store,
    journal: JournalAccess<'_>,
    dedup: Option<&Dedup>,
    uid: &str,
    dry_run: bool,
) -> Result<ErasureReport, ErasureError> {
    let hash = uid_hash(uid)[..16].to_owned();
    // Retried failures are counted by `with_retries`; the last one here.
    let erased: Erased = with_retries("erase", || store.erase(uid, dry_run))
        .await
        .inspect_err(|e| metrics::error("erase", e.kind.as_str()))?;
    let journal_records = match journal {
        JournalAccess::Owned(journal) => {
            // No apply step runs meanwhile (a step counts the records it holds), and an
            // attempt that timed out and committed late has said so: its records are still
            // in the journal, but in the store too, where the erasure above counted them.
            // (A NATS journal holds no step and counts nothing.)
            let step = journal.hold_step().await;
            if step.is_some() && !late_commits::settled(LATE_COMMIT_WAIT).await {
                tracing::warn!(uid_hash = %hash, operation = "erase",
                    error_type = "timeout",
                    "a timed-out batch is still running: journal records it may have written are counted twice in this erasure's report");
                metrics::error("erase", "timeout");
            }
            journal
                .erase_in_step(&step, uid, dry_run)
                .await
                .inspect_err(|_| metrics::error("erase", "other"))?
                .map(|ids| {
                    (ids.len() as u64).saturating_sub(late_commits::written_late(&ids, !dry_run))
                })
        }
        JournalAccess::Elsewhere => None,
    };
    let redis_keys = match dedup {
        Some(dedup) if !dry_run => match dedup.erase_member(uid).await {
            Ok(keys) => keys,
            Err(error) => {
                // The keys hold a hash, not the uid, and expire within the dedup window.
                tracing::warn!(uid_hash = %hash, operation = "erase", error_type = "unavailable", %error,
                    "member erased, but Redis did not delete its de-duplication keys (they expire within --dedup-window-ms)");
                metrics::error("erase", "unavailable");
                None
            }
        },
        _ => None,
    };
    let report = ErasureReport {
        uid_hash: hash,
        dry_run,
        deleted: erased.deleted().to_vec(),
        pseudonymized: erased.pseudonymized().to_vec(),
        journal_records,
        redis_keys,
    };
    if !dry_run {
        metrics::erasure_done();
        tracing::info!(
            uid_hash = %report.uid_hash,
            deleted = erased.deleted().iter().map(|(_, n)| n).sum::<u64>(),
            pseudonymized = erased.pseudonymized().iter().map(|(_, n)| n).sum::<u64>(),
            journal_records = report.journal_records,
            redis_keys = report.redis_keys,
            "member erased"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::db::DatabaseUrl;
    use crate::domain::test_click as click;
    use crate::journal::{AppendReason, LocalJournal};
    use crate::store::{ConnectOptions, Outcome};

    /// An apply step gave up on a batch (its time limit) and left the commit running; it
    /// commits one of the member's clicks while the erasure runs. The click is in the store
    /// (the store's erasure counts it) and still in the journal (no step removed it): the
    /// erasure waits for the late commit and counts that journal record no second time.
    #[tokio::test]
    async fn a_click_a_late_commit_wrote_is_counted_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .expect("url");
        let store = Store::connect(&url, ConnectOptions { max_connections: 1 })
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let journal = Journal::Local(LocalJournal::new(dir.path().join("journal")));
        let records = [click("UX"), click("UX"), click("UX"), click("UO")];
        journal
            .append(&records, AppendReason::Journal)
            .await
            .expect("append");

        let in_flight = late_commits::InFlight::begin();
        let first = records[0].clone();
        let late = tokio::spawn(async move {
            // Longer than the store's erasure of an empty table takes.
            tokio::time::sleep(Duration::from_millis(300)).await;
            late_commits::remember(std::slice::from_ref(&first), &[Outcome::Recorded]);
            drop(in_flight);
        });
        let report = erase_member(&store, JournalAccess::Owned(&journal), None, "UX", false)
            .await
            .expect("erase");
        late.await.expect("late commit");
        assert_eq!(report.journal_records, Some(2));
        assert_eq!(journal.depth(), 1, "UO's click stays");
        assert_eq!(
            late_commits::written_late(&[records[0].click_id()], false),
            0,
            "forgotten: no retry comes for a record the journal no longer holds"
        );
    }
}
