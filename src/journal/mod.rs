//! The journal: where a click becomes durable before its 302, and where the applier reads it
//! back, oldest first, to write it into the store.
//!
//! With `--ack journal` (the default) every click is appended here in group commits and
//! answered as soon as its group is on disk; with `--ack store` only what the store cannot take
//! right now comes here (the old "spool"). Either way the applier moves records into the store
//! idempotently by `click_id` and only then removes them, so a crash between the two replays a
//! record as "already recorded", never twice.
//!
//! `Journal` is the interface the pipeline uses, with two implementations: the local segment
//! files (`local.rs`, one directory per process; `frame.rs` the bytes, `segments.rs` the
//! files, `writer.rs` the appending thread, `legacy.rs` the SQLite file of earlier releases)
//! and a NATS JetStream stream shared by every instance
//! (`nats.rs`, `--nats-url`). Both have the same five operations: append, oldest, remove,
//! depth, close.

mod format;
mod frame;
mod legacy;
mod local;
mod lock;
mod nats;
mod paths;
mod segments;
mod spare;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use format::DecodeError;
pub use local::{JournalStatus, LocalJournal};
pub use lock::{JournalLock, LockError};
pub use nats::{NatsJournal, NatsSettings};
pub use paths::default_path;

use crate::db::{ErrorKind, classify, sqlite_primary_code};
use crate::domain::Record;
use crate::telemetry::{Event, metrics};

/// Why records were appended (`track_spooled_total{reason}`, and the `reason` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendReason {
    /// The normal path of `--ack journal`.
    Journal,
    /// The store failed or was known to be down (`--ack store`).
    StoreUnavailable,
    /// The in-memory queue was full.
    Overflow,
}

/// `track_spooled_total{reason}` for every reason, at 0 from start-up.
pub fn register_metrics() {
    crate::telemetry::metrics::register_labels(
        crate::telemetry::metrics::SPOOLED,
        "reason",
        AppendReason::ALL.map(AppendReason::as_str),
    );
}

impl AppendReason {
    pub const ALL: [AppendReason; 3] = [
        AppendReason::Journal,
        AppendReason::StoreUnavailable,
        AppendReason::Overflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppendReason::Journal => "journal",
            AppendReason::StoreUnavailable => "store_unavailable",
            AppendReason::Overflow => "overflow",
        }
    }
}

/// A record read back from the journal, with its position.
#[derive(Debug, Clone)]
pub struct Journaled {
    pub seq: i64,
    pub record: Record,
    /// The store cannot hold it yet: this process appended it as a new click (not after a
    /// store failure, not before a failed append) and hands it out for the first time. The
    /// applier then skips looking its id up (`Seen::Never`); a wrong `true` would still be
    /// caught by the unique index on `click_id` (the batch is refused and retried with the
    /// lookup), so this only saves work. Always `false` from a shared (NATS) stream, whose
    /// messages another instance may have applied.
    pub fresh: bool,
}

/// The store a journal belongs to: the store's own id (`track_store_identity`) and a
/// description for messages (the database URL without its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    pub id: String,
    pub display: String,
}

impl fmt::Display for StoreIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (store id {})", self.display, self.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {operation} ({path}): {source}")]
    Io {
        operation: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {operation} ({path}): {source}")]
    Sqlite {
        operation: &'static str,
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "journal {path} is full: {used} bytes in use, --journal-max-bytes is {limit}; \
         clicks go to the store directly until the applier makes room"
    )]
    Full { path: String, used: u64, limit: u64 },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(
        "journal {path} holds {depth} records for {journal_store}, not for this store \
         {this_store}: apply them there (`clicktrack spool replay --spool-path {path} \
         --database-url <that database>`), or give this store its own --spool-path"
    )]
    OtherStore {
        path: String,
        depth: u64,
        journal_store: String,
        this_store: String,
    },
    #[error("NATS {operation}: {message}")]
    Nats {
        operation: &'static str,
        message: String,
    },
    #[error(
        "NATS: no server answered for subject {subject}: the stream's leader is being elected \
         (a server of the cluster stopped), or no server holding the stream is up; clicks go \
         to the store directly meanwhile"
    )]
    NatsNoLeader { subject: String },
    #[error(
        "NATS stream is full ({message}; --journal-max-bytes sets its limit): clicks go to the \
         store directly until the appliers make room"
    )]
    NatsFull { message: String },
    #[error(
        "NATS stream {stream} could lose acknowledged clicks or mix stores: {problems} \
         (docs/scale-out.md)"
    )]
    UnsafeStream { stream: String, problems: String },
    #[error(
        "NATS stream {stream} cannot take subject {subject}: stream {holder} already has it; \
         give this stream a subject of its own with --nats-subject (e.g. {stream}.clicks), or \
         use --nats-stream {holder}"
    )]
    SubjectTaken {
        stream: String,
        subject: String,
        holder: String,
    },
}

impl JournalError {
    /// `error_type` label of `track_errors_total{operation="spool"}`.
    pub fn kind(&self) -> &'static str {
        match self {
            // SQLITE_FULL told apart: a full disk needs an operator, not a retry.
            JournalError::Sqlite { source, .. } if sqlite_primary_code(source) == Some(13) => {
                "disk_full"
            }
            JournalError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(28) =>
            {
                "disk_full"
            }
            JournalError::Io { .. } => "unavailable",
            JournalError::Sqlite { source, .. } => match classify(source).0 {
                ErrorKind::Transient => "busy",
                _ => "unavailable",
            },
            JournalError::Full { .. } => "full",
            JournalError::Locked(LockError::Held { .. }) => "locked",
            JournalError::Locked(LockError::Io { .. }) => "unavailable",
            JournalError::OtherStore { .. } => "other_store",
            JournalError::Nats { .. } => "unavailable",
            JournalError::NatsNoLeader { .. } => "no_leader",
            JournalError::NatsFull { .. } => "full",
            JournalError::UnsafeStream { .. } => "unsafe_stream",
            JournalError::SubjectTaken { .. } => "subject_taken",
        }
    }

    /// A configuration problem the operator must fix before the service can start (exit 2).
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            JournalError::Locked(LockError::Held { .. })
                | JournalError::OtherStore { .. }
                | JournalError::UnsafeStream { .. }
                | JournalError::SubjectTaken { .. }
        )
    }
}

/// The journal the pipeline appends to and applies from.
#[derive(Debug)]
// One per process, behind an Arc: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Journal {
    Local(LocalJournal),
    Nats(NatsJournal),
}

impl Journal {
    /// Where it is, for log lines and messages.
    pub fn path(&self) -> &Path {
        match self {
            Journal::Local(j) => j.path(),
            Journal::Nats(j) => j.path(),
        }
    }

    /// Append `records` durably: when this returns `Ok`, they survive a crash.
    pub async fn append<'a>(
        &self,
        records: impl IntoIterator<Item = &'a Record>,
        reason: AppendReason,
    ) -> Result<(), JournalError> {
        // Collected first: the caller's iterator is not held across an await.
        let records: Vec<&Record> = records.into_iter().collect();
        if records.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match self {
            Journal::Local(j) => j.append(&records, reason).await?,
            Journal::Nats(j) => j.append(&records).await?,
        }
        metrics::journal_append_duration(started.elapsed());
        metrics::spooled(reason.as_str(), records.len());
        Ok(())
    }

    /// Up to `limit` of the oldest records, in append order.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<Journaled>, JournalError> {
        match self {
            Journal::Local(j) => j.oldest(limit).await,
            Journal::Nats(j) => j.oldest(limit).await,
        }
    }

    /// Held by an apply step from `oldest` to `remove`, so an erasure never counts records a
    /// step holds (the step counts them); `None` for NATS, whose erasures count nothing.
    pub async fn hold_step(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self {
            Journal::Local(j) => Some(j.hold_step().await),
            Journal::Nats(_) => None,
        }
    }

    /// Forget records the store now holds.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), JournalError> {
        match self {
            Journal::Local(j) => j.remove(seqs).await,
            Journal::Nats(j) => j.remove(seqs).await,
        }
    }

    /// Remove the waiting records that name `uid` (an erasure), the caller holding the step
    /// lock (`hold_step`): `Some(their click ids)` from a local journal; `None` from a NATS
    /// stream, whose messages cannot be edited (every applier drops them as they come,
    /// `store/erase.rs`, and the stream deletes them once acknowledged).
    pub async fn erase_in_step(
        &self,
        step: &Option<tokio::sync::MutexGuard<'_, ()>>,
        uid: &str,
        dry_run: bool,
    ) -> Result<Option<Vec<uuid::Uuid>>, JournalError> {
        match (self, step) {
            (Journal::Local(j), Some(step)) => j.erase_in_step(step, uid, dry_run).await.map(Some),
            (Journal::Local(j), None) => j.erase(uid, dry_run).await.map(Some),
            (Journal::Nats(_), _) => Ok(None),
        }
    }

    /// Shared by every instance (NATS): what one instance leaves at shutdown, the others
    /// apply, so a draining instance need not apply it first.
    pub fn is_shared(&self) -> bool {
        matches!(self, Journal::Nats(_))
    }

    /// Records waiting to be applied, as this process last knew.
    pub fn depth(&self) -> u64 {
        match self {
            Journal::Local(j) => j.depth(),
            Journal::Nats(j) => j.depth(),
        }
    }

    /// When the oldest waiting record's click arrived (`None`: nothing waits).
    pub async fn oldest_received_at(&self) -> Result<Option<OffsetDateTime>, JournalError> {
        match self {
            Journal::Local(j) => j.oldest_received_at().await,
            Journal::Nats(j) => Ok(j.oldest_received_at()),
        }
    }

    /// Open again after a failure (a fixed permission, freed disk space); counts what it holds.
    pub async fn reopen(&self) -> Result<(), JournalError> {
        match self {
            Journal::Local(j) => j.open().await,
            // The client reconnects by itself.
            Journal::Nats(_) => Ok(()),
        }
    }

    pub async fn close(&self) {
        match self {
            Journal::Local(j) => j.close().await,
            Journal::Nats(j) => j.close().await,
        }
    }
}

/// The journal path `serve` and the `spool` commands use: `--spool-path`, or the default for
/// this database (which differs between databases, so two stores never share one).
pub fn path_for(given: Option<&Path>, database: &crate::db::DatabaseUrl) -> PathBuf {
    given.map_or_else(|| default_path(database), Path::to_path_buf)
}

/// A journal operation failed: counted in `track_errors_total{operation="spool"}` every time,
/// logged unless an earlier failure of the same outage already was.
pub struct JournalFailed<'a> {
    pub error: &'a JournalError,
    /// The log line's message.
    pub what: &'static str,
    pub already_logged: bool,
    /// What it was appending, if anything: how many records, and the first one's id.
    pub appending: Option<(usize, uuid::Uuid)>,
}

impl Event for JournalFailed<'_> {
    fn emit(self) {
        if !self.already_logged {
            let clicks = self.appending.map(|(n, _)| n);
            let first = self.appending.map(|(_, id)| tracing::field::display(id));
            tracing::error!(
                operation = "spool",
                error = %self.error,
                kind = self.error.kind(),
                clicks,
                first_click_id = first,
                "{}",
                self.what
            );
        }
        metrics::error("spool", self.error.kind());
    }
}

/// A journal record that cannot be decoded (damaged, or written by a newer format): set aside
/// so it neither blocks the records behind it nor is retried forever; one error line with
/// where it was and what became of it, counted as `error_type="undecodable"`.
pub struct RecordUnreadable<'a> {
    pub error: &'a dyn fmt::Display,
    pub at: fmt::Arguments<'a>,
    pub fate: &'a str,
}

impl Event for RecordUnreadable<'_> {
    fn emit(self) {
        tracing::error!(
            operation = "spool",
            error = %self.error,
            at = %self.at,
            "journal record cannot be read: {}",
            self.fate
        );
        metrics::error("spool", "undecodable");
    }
}
