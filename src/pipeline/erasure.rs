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
        JournalAccess::Owned(journal) => journal
            .erase(uid, dry_run)
            .await
            .inspect_err(|_| metrics::error("erase", "other"))?,
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
