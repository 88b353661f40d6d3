//! The local journal: a directory of segment files on the instance's own disk (`--spool-path`).
//!
//! An append is one write and one `fdatasync` on the journal's own thread (`writer.rs`),
//! shared by every group that arrives meanwhile: when `append` returns, the group survives
//! power loss. Frames are checksummed (`frame.rs`); the applier reads them back oldest first
//! and removes them once the store holds them, and a segment wholly applied is deleted
//! (`segments.rs`). docs/journal.md describes the files.
//!
//! The directory says which store it belongs to (`store`), and refuses to be applied into
//! another one. It is opened lazily: a journal that cannot be opened (a missing directory, a
//! permission) is tried again at the next use, so an operator who fixes it gets it back
//! without a restart. A journal written by an earlier release (an SQLite file at the same
//! path) is converted on the first open (`legacy.rs`).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::frame::{self, KIND_RECORD};
use super::segments::{self, Index, Walk, set_aside, sync_dir};
use super::writer::{Group, SEGMENT_BYTES, Writer};
use super::{
    AppendReason, JournalError, JournalLock, Journaled, RecordUnreadable, StoreIdentity, format,
    legacy,
};
use crate::db::db_time;
use crate::domain::Record;
use crate::telemetry::{Event, metrics};

/// The file naming the store a journal belongs to: its id, then a line for people.
const BINDING: &str = "store";

/// What `clicktrack spool status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    pub depth: u64,
    /// When the oldest record was appended (store time format, UTC).
    pub oldest_spooled_at: Option<String>,
    /// When the oldest record's click arrived.
    pub oldest_received_at: Option<OffsetDateTime>,
    /// Records set aside because they could not be read (`unreadable/`).
    pub unreadable: u64,
    /// The store this journal belongs to, if it has been bound to one.
    pub store: Option<String>,
}

#[derive(Debug)]
pub struct LocalJournal {
    path: PathBuf,
    open: OnceCell<Open>,
    /// The store this process applies the journal to: set for `serve` and `spool replay`,
    /// which lock the directory and bind it to their store when they open it.
    owner: Option<StoreIdentity>,
    lock: Mutex<Option<JournalLock>>,
    /// Held by an apply step from the read of its records to their removal, and by an
    /// erasure: records an applier holds are counted by its step (recorded, then
    /// pseudonymized, or dropped as erased), so an erasure that counted them too would count
    /// them twice (seen in CI: 113 of 100 clicks accounted for).
    steps: tokio::sync::Mutex<()>,
    /// `--journal-max-bytes` (0: no limit).
    max_bytes: u64,
    writer: Writer,
    /// When a segment is closed (`writer::SEGMENT_BYTES`; smaller in tests).
    segment_bytes: u64,
}

#[derive(Debug)]
struct Open {
    index: Arc<Mutex<Index>>,
    /// Held while frames are read or erased in place: an erasure never rewrites a frame the
    /// applier is reading.
    reading: Mutex<()>,
    /// The first position not yet handed out by `oldest` since the open: frames below it
    /// were on disk at the open (a crash may have applied them) or handed out before (an
    /// apply step that failed or ran out of time may have committed them). `u64::MAX` after
    /// a failed append, whose frames may be on disk although their clicks went to the store.
    fresh_from: AtomicU64,
}

impl LocalJournal {
    /// A journal at `path` that is not taken over (tests, tools); nothing is opened until it
    /// is first used.
    pub fn new(path: impl Into<PathBuf>) -> LocalJournal {
        LocalJournal::build(path.into(), None, 0)
    }

    /// The journal of a process that applies it to `store`: opening it takes its lock (one
    /// process per journal) and binds it to `store` (refusing a journal of another store). It
    /// refuses appends once it holds `max_bytes` (0: no limit).
    pub fn owned(path: impl Into<PathBuf>, store: StoreIdentity, max_bytes: u64) -> LocalJournal {
        LocalJournal::build(path.into(), Some(store), max_bytes)
    }

    fn build(path: PathBuf, owner: Option<StoreIdentity>, max_bytes: u64) -> LocalJournal {
        LocalJournal {
            path,
            open: OnceCell::new(),
            owner,
            lock: Mutex::new(None),
            steps: tokio::sync::Mutex::new(()),
            max_bytes,
            writer: Writer::spawn(),
            segment_bytes: SEGMENT_BYTES,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, operation: &'static str) -> impl FnOnce(io::Error) -> JournalError + '_ {
        move |source| JournalError::Io {
            operation,
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Open the directory (creating it if needed) and count what it holds.
    pub async fn open(&self) -> Result<(), JournalError> {
        self.opened().await.map(|_| ())
    }

    async fn opened(&self) -> Result<&Open, JournalError> {
        // A failed open leaves the cell empty: the next use tries again.
        self.open.get_or_try_init(|| self.open_now()).await
    }

    async fn open_now(&self) -> Result<Open, JournalError> {
        self.take_lock()?;
        if let Some(moved) = legacy::upgrade(&self.path).await? {
            tracing::info!(
                path = %self.path.display(),
                records = moved,
                "journal of an earlier release (an SQLite file) converted to segment files"
            );
        }
        match fs::create_dir(&self.path) {
            Ok(()) => {
                if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent).map_err(self.io("create"))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.path.is_dir() => {}
            Err(e) => return Err(self.io("create")(e)),
        }
        let recovered = segments::recover(&self.path, true).map_err(self.io("open"))?;
        for (path, why) in &recovered.set_aside {
            RecordUnreadable {
                error: why,
                at: format_args!("{}", self.path.display()),
                fate: &format!("copied to {}", path.display()),
            }
            .emit();
        }
        if let Some(store) = &self.owner {
            self.bind(store, recovered.index.depth())?;
        }
        let depth = recovered.index.depth();
        metrics::journal_depth(depth);
        metrics::journal_bytes(recovered.index.bytes());
        let index = Arc::new(Mutex::new(recovered.index));
        self.writer
            .open(
                &self.path,
                recovered.active,
                recovered.next_seq,
                index.clone(),
                self.segment_bytes,
            )
            .map_err(self.io("start the writer"))?;
        Ok(Open {
            index,
            reading: Mutex::new(()),
            fresh_from: AtomicU64::new(recovered.next_seq),
        })
    }

    /// Hold the journal's lock (kept until the process exits).
    fn take_lock(&self) -> Result<(), JournalError> {
        if self.owner.is_none() {
            return Ok(());
        }
        let mut held = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.is_none() {
            *held = Some(JournalLock::acquire(&self.path)?);
        }
        Ok(())
    }

    /// Make sure this journal belongs to `store`: claim it if it belongs to none or holds
    /// nothing; refuse it if it holds records for another store.
    fn bind(&self, store: &StoreIdentity, depth: u64) -> Result<(), JournalError> {
        match read_binding(&self.path) {
            Some((id, _)) if id == store.id => return Ok(()),
            Some((id, display)) if depth > 0 => {
                return Err(JournalError::OtherStore {
                    path: self.path.display().to_string(),
                    depth,
                    journal_store: StoreIdentity { id, display }.to_string(),
                    this_store: store.to_string(),
                });
            }
            Some((_, previous)) => tracing::info!(
                path = %self.path.display(),
                previous_store = %previous,
                store = %store,
                "empty journal now belongs to this store"
            ),
            None => {}
        }
        write_binding(&self.path, &store.id, &store.display).map_err(self.io("bind"))
    }

    fn index(&self) -> Option<std::sync::MutexGuard<'_, Index>> {
        self.open.get().map(|o| {
            o.index
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }

    /// Records in the journal, as this process knows.
    pub fn depth(&self) -> u64 {
        self.index().map_or(0, |ix| ix.depth())
    }

    /// Append `records` with one sync. When this returns `Ok`, they are on disk.
    /// (`Journal::append` counts and times it.)
    pub async fn append(
        &self,
        records: &[&Record],
        reason: AppendReason,
    ) -> Result<(), JournalError> {
        self.opened().await?;
        if self.max_bytes > 0 {
            let used = self.index().map_or(0, |ix| ix.bytes());
            if used >= self.max_bytes {
                return Err(JournalError::Full {
                    path: self.path.display().to_string(),
                    used,
                    limit: self.max_bytes,
                });
            }
        }
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(0);
        let mut group = Group {
            bytes: Vec::with_capacity(records.len() * 400),
            starts: Vec::with_capacity(records.len()),
        };
        let reason = frame::reason_code(reason);
        for record in records {
            group
                .starts
                .push(frame::begin(&mut group.bytes, KIND_RECORD, reason, now_ms));
            format::encode_into(record, &mut group.bytes).map_err(self.io("encode"))?;
        }
        let appended = self.writer.append(group).await;
        if appended.is_err()
            && let Some(open) = self.open.get()
        {
            open.fresh_from.store(u64::MAX, Ordering::Relaxed);
        }
        appended.map_err(self.io("append"))
    }

    /// Up to `limit` of the oldest records. A record that cannot be decoded (damage, a newer
    /// format) is copied to `unreadable/`, logged and counted, so it can neither block the
    /// records behind it nor vanish.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<Journaled>, JournalError> {
        let open = self.opened().await?;
        let _reading = open
            .reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut damaged = Vec::new();
        let waiting = segments::walk(&open.index, limit, Walk::Apply, &mut damaged)
            .map_err(self.io("read"))?;
        for (path, why) in &damaged {
            RecordUnreadable {
                error: why,
                at: format_args!("{}", self.path.display()),
                fate: &format!("copied to {}", path.display()),
            }
            .emit();
        }
        let mut records = Vec::with_capacity(waiting.len());
        let mut unreadable = Vec::new();
        // Under `reading`: one caller at a time hands frames out.
        let fresh_from = open.fresh_from.load(Ordering::Relaxed);
        if let Some(last) = waiting.last() {
            open.fresh_from
                .fetch_max(last.seq.saturating_add(1), Ordering::Relaxed);
        }
        let store_unavailable = frame::reason_code(AppendReason::StoreUnavailable);
        for w in waiting {
            match format::decode_bytes(&w.payload) {
                Ok(record) => records.push(Journaled {
                    seq: i64::try_from(w.seq).unwrap_or(i64::MAX),
                    record,
                    fresh: w.seq >= fresh_from && w.reason != store_unavailable,
                }),
                Err(e) => {
                    let name = format!("record{:020}.json", w.seq);
                    let aside =
                        set_aside(&self.path, &name, &w.payload).map_err(self.io("set aside"))?;
                    RecordUnreadable {
                        error: &e,
                        at: format_args!("record {} of {}", w.seq, self.path.display()),
                        fate: &format!("copied to {}", aside.display()),
                    }
                    .emit();
                    unreadable.push(w.seq);
                }
            }
        }
        if !unreadable.is_empty()
            && let Some(mut ix) = self.index()
        {
            ix.remove(unreadable);
        }
        Ok(records)
    }

    /// When the oldest record's click arrived.
    pub async fn oldest_received_at(&self) -> Result<Option<OffsetDateTime>, JournalError> {
        let open = self.opened().await?;
        let oldest =
            segments::walk(&open.index, 1, Walk::Look, &mut Vec::new()).map_err(self.io("read"))?;
        Ok(oldest
            .first()
            .and_then(|w| format::decode_bytes(&w.payload).ok())
            .map(|r| r.received_at()))
    }

    /// Held for an apply step, from `oldest` to `remove`: an erasure waits for the step.
    pub async fn hold_step(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.steps.lock().await
    }

    /// Forget records the store now holds (after their store transaction committed).
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), JournalError> {
        self.opened().await?;
        if let Some(mut ix) = self.index() {
            ix.remove(seqs.iter().filter_map(|&s| u64::try_from(s).ok()));
        }
        Ok(())
    }

    /// Erase every waiting record that names `uid` (a click of that member, a reject whose
    /// query names it): part of an erasure (`store/erase.rs`). Each is overwritten in place
    /// (kind "erased", payload zeroed) and synced, so the person's data leaves the disk now,
    /// not when the segment is applied. With `dry_run`, only look. Records set aside as
    /// unreadable are not searched. Returns the click ids of the records erased (or found).
    pub async fn erase(&self, uid: &str, dry_run: bool) -> Result<Vec<Uuid>, JournalError> {
        let step = self.hold_step().await;
        self.erase_in_step(&step, uid, dry_run).await
    }

    /// `erase` for a caller that holds the step lock already (`hold_step`), and waits for
    /// what else must end before the records are read (`pipeline/erasure.rs`).
    pub async fn erase_in_step(
        &self,
        _step: &tokio::sync::MutexGuard<'_, ()>,
        uid: &str,
        dry_run: bool,
    ) -> Result<Vec<Uuid>, JournalError> {
        let open = self.opened().await?;
        let _reading = open
            .reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let waiting = segments::walk(&open.index, usize::MAX, Walk::Look, &mut Vec::new())
            .map_err(self.io("erase"))?;
        let (naming, ids): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .filter_map(|w| {
                let record = format::decode_bytes(&w.payload).ok()?;
                let names = record.member_uids().iter().any(|u| u == uid);
                names.then(|| (w, record.click_id()))
            })
            .unzip();
        if dry_run || naming.is_empty() {
            return Ok(ids);
        }
        let mut files = std::collections::BTreeMap::new();
        for w in &naming {
            let file = match files.entry(w.segment) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(
                    OpenOptions::new()
                        .write(true)
                        .open(segments::segment_path(&self.path, w.segment))
                        .map_err(self.io("erase"))?,
                ),
            };
            let erased = frame::erased(w.seq, w.reason, w.appended_at_ms, w.size);
            file.write_all_at(&erased, w.offset)
                .map_err(self.io("erase"))?;
        }
        for file in files.values() {
            file.sync_data().map_err(self.io("erase"))?;
        }
        if let Some(mut ix) = self.index() {
            ix.remove(naming.iter().map(|w| w.seq));
        }
        Ok(ids)
    }

    /// What `spool status` prints. Reads the files without opening the journal (a running
    /// `serve` may own it).
    pub async fn status(&self) -> Result<JournalStatus, JournalError> {
        if self.path.is_file() {
            return legacy::status(&self.path).await;
        }
        let recovered = segments::recover(&self.path, false).map_err(self.io("status"))?;
        let depth = recovered.index.depth();
        let index = Mutex::new(recovered.index);
        let oldest =
            segments::walk(&index, 1, Walk::Look, &mut Vec::new()).map_err(self.io("status"))?;
        let (oldest_spooled_at, oldest_received_at) = match oldest.first() {
            Some(w) => {
                let appended = OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(w.appended_at_ms) * 1_000_000,
                )
                .ok()
                .map(db_time);
                let received = format::decode_bytes(&w.payload)
                    .ok()
                    .map(|r| r.received_at());
                (appended, received)
            }
            None => (None, None),
        };
        Ok(JournalStatus {
            depth,
            oldest_spooled_at,
            oldest_received_at,
            unreadable: segments::unreadable_count(&self.path),
            store: read_binding(&self.path).map(|(_, display)| display),
        })
    }

    /// No more appends (what was handed over is still written).
    pub async fn close(&self) {
        self.writer.close();
    }
}

/// The store a journal directory belongs to: (id, display).
fn read_binding(dir: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(dir.join(BINDING)).ok()?;
    let mut lines = text.lines();
    let id = lines.next().filter(|id| !id.is_empty())?.to_owned();
    Some((id, lines.next().unwrap_or("?").to_owned()))
}

/// Record the store a journal directory belongs to, durably (written aside, synced, renamed).
pub(super) fn write_binding(dir: &Path, id: &str, display: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{BINDING}.tmp"));
    fs::write(&tmp, format!("{id}\n{display}\n"))?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, dir.join(BINDING))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_click as click;

    fn journal(dir: &Path, segment_bytes: u64) -> LocalJournal {
        let mut j = LocalJournal::new(dir.join("journal"));
        j.segment_bytes = segment_bytes;
        j
    }

    async fn append(j: &LocalJournal, records: &[Record]) {
        let refs: Vec<&Record> = records.iter().collect();
        j.append(&refs, AppendReason::Journal)
            .await
            .expect("append");
    }

    fn uids(records: &[Journaled]) -> Vec<String> {
        records
            .iter()
            .flat_map(|j| j.record.member_uids())
            .collect()
    }

    fn segment_files(path: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn records_come_back_in_order_and_only_the_unapplied_ones_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = journal(dir.path(), SEGMENT_BYTES);
        append(&j, &[click("U1"), click("U2")]).await;
        append(&j, &[click("U3")]).await;
        append(&j, &[click("U4"), click("U5")]).await;
        assert_eq!(j.depth(), 5);
        let first = j.oldest(3).await.expect("oldest");
        assert_eq!(uids(&first), ["U1", "U2", "U3"]);
        // The second and third applied, the first not yet (its batch failed): it comes back.
        j.remove(&[first[1].seq, first[2].seq])
            .await
            .expect("remove");
        assert_eq!(
            uids(&j.oldest(10).await.expect("oldest")),
            ["U1", "U4", "U5"]
        );
        j.remove(&[first[0].seq]).await.expect("remove");
        assert_eq!(j.depth(), 2);
        j.close().await;

        // A restart applies what was not removed, and numbers new records after the old.
        let again = journal(dir.path(), SEGMENT_BYTES);
        again.open().await.expect("open");
        assert_eq!(again.depth(), 2);
        append(&again, &[click("U6")]).await;
        let left = again.oldest(10).await.expect("oldest");
        assert_eq!(uids(&left), ["U4", "U5", "U6"]);
        assert!(left.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(left[0].seq > first[2].seq);
    }

    fn fresh(records: &[Journaled]) -> Vec<(String, bool)> {
        records
            .iter()
            .map(|j| (j.record.member_uids().concat(), j.fresh))
            .collect()
    }

    #[tokio::test]
    async fn only_new_clicks_handed_out_for_the_first_time_are_fresh() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = journal(dir.path(), SEGMENT_BYTES);
        append(&j, &[click("U1"), click("U2")]).await;
        let yes = |uid: &str| (uid.to_owned(), true);
        let no = |uid: &str| (uid.to_owned(), false);
        assert_eq!(
            fresh(&j.oldest(10).await.expect("oldest")),
            [yes("U1"), yes("U2")]
        );
        // Handed out before (that apply step may have committed them): no longer fresh.
        append(&j, &[click("U3")]).await;
        let spilled = click("U4");
        j.append(&[&spilled], AppendReason::StoreUnavailable)
            .await
            .expect("append");
        let overflow = click("U5");
        j.append(&[&overflow], AppendReason::Overflow)
            .await
            .expect("append");
        // A spilled click's commit may have gone through late; an overflow never reached
        // the store.
        assert_eq!(
            fresh(&j.oldest(10).await.expect("oldest")),
            [no("U1"), no("U2"), yes("U3"), no("U4"), yes("U5")]
        );
        j.close().await;

        // After a restart nothing waiting is fresh (a crash may have come after its commit);
        // what the new process appends is.
        let again = journal(dir.path(), SEGMENT_BYTES);
        append(&again, &[click("U6")]).await;
        assert_eq!(
            fresh(&again.oldest(10).await.expect("oldest")),
            [no("U1"), no("U2"), no("U3"), no("U4"), no("U5"), yes("U6")]
        );
    }

    #[tokio::test]
    async fn an_erasure_waits_for_the_apply_step_and_counts_only_what_it_removes() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Arc::new(journal(dir.path(), SEGMENT_BYTES));
        append(&j, &[click("UX"), click("UO"), click("UX")]).await;
        // A step holds the first two records (the applier counts them when it commits).
        let step = j.hold_step().await;
        let held = j.oldest(2).await.expect("oldest");
        let erasing = tokio::spawn({
            let j = j.clone();
            async move { j.erase("UX", false).await }
        });
        tokio::task::yield_now().await;
        assert!(!erasing.is_finished(), "an erasure must wait for the step");
        let seqs: Vec<i64> = held.iter().map(|r| r.seq).collect();
        j.remove(&seqs).await.expect("remove");
        drop(step);
        let erased = erasing.await.expect("task").expect("erase");
        assert_eq!(erased.len(), 1, "only the UX record no step held");
        assert_eq!(j.depth(), 0);
    }

    #[tokio::test]
    async fn applied_segments_are_deleted_and_their_bytes_given_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = journal(dir.path(), 2_000);
        for i in 0..40 {
            append(&j, &[click(&format!("U{i}"))]).await;
        }
        let path = j.path().to_path_buf();
        assert!(segment_files(&path).len() > 5);
        let full = j.index().expect("open").bytes();
        loop {
            let batch = j.oldest(7).await.expect("oldest");
            if batch.is_empty() {
                break;
            }
            let seqs: Vec<i64> = batch.iter().map(|r| r.seq).collect();
            j.remove(&seqs).await.expect("remove");
        }
        assert_eq!(j.depth(), 0);
        // The segment being written stays; every other one is gone.
        assert_eq!(segment_files(&path).len(), 1);
        assert!(j.index().expect("open").bytes() < full / 5);
        j.close().await;
        let again = journal(dir.path(), 2_000);
        again.open().await.expect("open");
        assert_eq!(again.depth(), 0, "the applied cursor survives a restart");
    }

    #[tokio::test]
    async fn a_torn_tail_and_a_damaged_frame_are_set_aside_and_the_rest_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = journal(dir.path(), SEGMENT_BYTES);
        append(&j, &[click("U1"), click("U2"), click("U3")]).await;
        j.close().await;
        let segment = segment_files(j.path()).pop().expect("a segment");
        let mut bytes = fs::read(&segment).expect("read");
        // A bit flipped inside the second record, then half a frame (a write that never
        // finished) at the end.
        let second = bytes
            .windows(2)
            .position(|w| w == b"U2")
            .expect("the second record");
        bytes[second] ^= 0x20;
        let whole = bytes.len();
        bytes.extend_from_within(frame::SEGMENT_HEADER..frame::SEGMENT_HEADER + 40);
        fs::write(&segment, &bytes).expect("write");

        let again = journal(dir.path(), SEGMENT_BYTES);
        again.open().await.expect("open");
        assert_eq!(
            fs::metadata(&segment).expect("stat").len(),
            whole as u64,
            "tail cut"
        );
        assert_eq!(uids(&again.oldest(10).await.expect("oldest")), ["U1", "U3"]);
        let status = again.status().await.expect("status");
        assert_eq!((status.depth, status.unreadable), (2, 2));
        append(&again, &[click("U4")]).await;
        assert_eq!(
            uids(&again.oldest(10).await.expect("oldest")),
            ["U1", "U3", "U4"]
        );
    }

    #[tokio::test]
    async fn a_segment_made_ahead_of_time_ends_where_its_frames_do() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = journal(dir.path(), 2_000);
        let path = j.path().to_path_buf();
        let mut uids_in = Vec::new();
        async fn add(j: &LocalJournal, uids_in: &mut Vec<String>) {
            let uid = format!("U{}", uids_in.len());
            append(j, &[click(&uid)]).await;
            uids_in.push(uid);
        }
        // Past half of the first segment: the spare is made in the background.
        let first_len = |path: &Path| {
            segment_files(path)
                .first()
                .map_or(0, |f| fs::metadata(f).expect("stat").len())
        };
        add(&j, &mut uids_in).await;
        while first_len(&path) < 1_000 {
            add(&j, &mut uids_in).await;
        }
        let waited = std::time::Instant::now();
        while !path.join(super::super::spare::SPARE).exists() {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(30),
                "no spare made"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        while segment_files(&path).len() < 2 {
            add(&j, &mut uids_in).await;
        }
        let active = segment_files(&path).pop().expect("the new segment");
        let bytes = fs::read(&active).expect("read");
        assert_eq!(
            bytes.len(),
            2_000,
            "the spare, zero-filled to the segment size"
        );
        assert!(bytes.ends_with(&[0u8; 500]));
        j.close().await;

        // A restart reads the frames, stops at the zeros and appends after the last frame.
        let again = journal(dir.path(), 2_000);
        again.open().await.expect("open");
        assert_eq!(again.depth(), uids_in.len() as u64);
        add(&again, &mut uids_in).await;
        assert_eq!(uids(&again.oldest(100).await.expect("oldest")), uids_in);
        assert_eq!(again.status().await.expect("status").unreadable, 0);
        again.close().await;

        // Bytes past the last frame (a group that was never synced whole) are set aside and
        // cut off: nothing stale stays where the next frames go.
        let mut bytes = fs::read(&active).expect("read");
        let end = bytes.iter().rposition(|&b| b != 0).expect("frames") + 1;
        assert!(end + 200 < bytes.len(), "room left in the segment");
        bytes[end + 100..end + 140].fill(0x5a);
        fs::write(&active, &bytes).expect("write");
        let third = journal(dir.path(), 2_000);
        third.open().await.expect("open");
        assert_eq!(fs::metadata(&active).expect("stat").len(), end as u64);
        assert_eq!(third.status().await.expect("status").unreadable, 1);
        add(&third, &mut uids_in).await;
        assert_eq!(uids(&third.oldest(100).await.expect("oldest")), uids_in);
    }

    #[tokio::test]
    async fn an_erased_member_leaves_the_disk_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = journal(dir.path(), SEGMENT_BYTES);
        append(&j, &[click("U_GONE"), click("U_KEEP"), click("U_GONE")]).await;
        assert_eq!(j.erase("U_GONE", true).await.expect("dry run").len(), 2);
        assert_eq!(j.depth(), 3, "a dry run changes nothing");
        assert_eq!(j.erase("U_GONE", false).await.expect("erase").len(), 2);
        assert_eq!(j.depth(), 1);
        assert_eq!(uids(&j.oldest(10).await.expect("oldest")), ["U_KEEP"]);
        for segment in segment_files(j.path()) {
            let bytes = fs::read(segment).expect("read");
            assert!(!bytes.windows(6).any(|w| w == b"U_GONE"));
        }
        j.close().await;
        let again = journal(dir.path(), SEGMENT_BYTES);
        again.open().await.expect("open");
        assert_eq!(again.depth(), 1);
        assert_eq!(uids(&again.oldest(10).await.expect("oldest")), ["U_KEEP"]);
    }

    #[tokio::test]
    async fn an_upgrade_cut_short_is_made_again_from_the_old_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("create");
        sqlx::raw_sql(
            "CREATE TABLE spooled_records (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             click_id TEXT NOT NULL, reason TEXT NOT NULL, spooled_at TEXT NOT NULL, \
             record TEXT NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .expect("table");
        for uid in ["U_OLD1", "U_OLD2"] {
            let json = format::encode_one(&click(uid));
            sqlx::query(
                "INSERT INTO spooled_records (click_id, reason, spooled_at, record) \
                 VALUES ('x', 'overflow', '2026-11-30 10:00:00', ?)",
            )
            .bind(json)
            .execute(&mut conn)
            .await
            .expect("row");
        }
        sqlx::Connection::close(conn).await.expect("close");
        // A crash left half a copy beside the old file.
        let staging = legacy::upgrade_dir(&path);
        fs::create_dir(&staging).expect("staging");
        fs::write(segments::segment_path(&staging, 1), b"half").expect("junk");

        let j = journal(dir.path(), SEGMENT_BYTES);
        assert_eq!(j.status().await.expect("status of the old file").depth, 2);
        j.open().await.expect("open");
        assert!(path.is_dir() && !staging.exists());
        assert_eq!(
            uids(&j.oldest(10).await.expect("oldest")),
            ["U_OLD1", "U_OLD2"]
        );
        assert_eq!(segments::unreadable_count(&path), 0);
    }
}
