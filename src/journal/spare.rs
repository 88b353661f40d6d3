//! The next journal segment, zero-filled and synced before it is needed.
//!
//! An `fdatasync` after an append that grows a file must also commit the file's new size and
//! blocks (a metadata journal commit on ext4); after an overwrite of blocks that are already
//! allocated and written, it flushes the data alone (docs/journal.md has the figures). Every
//! acknowledgement waits for that sync, so the writer appends into a segment written full of
//! zeros ahead of time, as databases do with their write-ahead logs (PostgreSQL's
//! `wal_init_zero`).
//!
//! A helper thread makes the spare once the active segment is half full (a journal that sees
//! little traffic never makes one), under a temporary name, then renames it to `SPARE`; the
//! writer links it under the new segment's name when it rotates. Neither name ends in
//! `.seg`, so recovery never reads a spare as a segment; a spare left by a crash is deleted at
//! the next open. When the spare is not ready in time, the writer creates the segment as
//! before: the spare only ever makes a sync cheaper. A segment's zero tail is where its frames
//! end (`segments::recover`).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

pub(super) const SPARE: &str = "segment.spare";
const MAKING: &str = "segment.spare.tmp";
/// Zeros written at a time.
const CHUNK: usize = 1 << 20;

/// The spare segment of one journal directory.
#[derive(Debug)]
pub struct Spare {
    dir: PathBuf,
    bytes: u64,
    making: Option<JoinHandle<io::Result<()>>>,
    ready: bool,
}

impl Spare {
    /// Forget any spare an earlier process left (it may be half made).
    pub fn open(dir: &Path, bytes: u64) -> Spare {
        for name in [SPARE, MAKING] {
            match fs::remove_file(dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), file = name, error = %e, "cannot remove a spare journal segment left by an earlier run");
                }
            }
        }
        Spare {
            dir: dir.to_path_buf(),
            bytes,
            making: None,
            ready: false,
        }
    }

    /// Start making the spare in the background, unless one is ready or being made.
    pub fn prepare(&mut self) {
        if self.ready || self.making.is_some() {
            return;
        }
        let (dir, bytes) = (self.dir.clone(), self.bytes);
        let started = std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || make(&dir, bytes));
        match started {
            Ok(handle) => self.making = Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that makes a spare journal segment; segments are created when needed")
            }
        }
    }

    /// Move the spare to `path` if it is ready (a zero-filled file of the segment size, synced),
    /// without waiting for one being made. `false`: the caller creates `path` itself.
    pub fn take_as(&mut self, path: &Path) -> bool {
        if self.making.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(handle) = self.making.take()
        {
            match handle.join() {
                Ok(Ok(())) => self.ready = true,
                Ok(Err(e)) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot make a spare journal segment; segments are created when needed");
                }
                Err(_) => tracing::warn!("the thread making a spare journal segment panicked"),
            }
        }
        if !self.ready {
            return false;
        }
        self.ready = false;
        // A link, not a rename: it never replaces a file already at `path`.
        let spare = self.dir.join(SPARE);
        if let Err(e) = fs::hard_link(&spare, path) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot use the spare journal segment; creating the segment instead");
            return false;
        }
        if let Err(e) = fs::remove_file(&spare) {
            // The segment is in place; the old name goes at the next spare or the next open.
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the spare journal segment's old name");
        }
        true
    }
}

fn make(dir: &Path, bytes: u64) -> io::Result<()> {
    let making = dir.join(MAKING);
    let file = File::create(&making)?;
    let zeros = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < bytes {
        let n = usize::try_from(bytes - at).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    fs::rename(&making, dir.join(SPARE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_zeros_of_the_segment_size_and_used_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spare = Spare::open(dir.path(), 3 * CHUNK as u64 + 5);
        spare.prepare();
        let target = dir.path().join("1.seg");
        let waited = std::time::Instant::now();
        while !spare.take_as(&target) {
            assert!(waited.elapsed() < std::time::Duration::from_secs(30));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let bytes = fs::read(&target).expect("read");
        assert_eq!(bytes.len(), 3 * CHUNK + 5);
        assert!(bytes.iter().all(|&b| b == 0));
        assert!(!spare.take_as(&dir.path().join("2.seg")), "used once");
    }

    #[test]
    fn a_spare_left_by_an_earlier_run_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(SPARE), b"junk").expect("write");
        fs::write(dir.path().join(MAKING), b"junk").expect("write");
        let mut spare = Spare::open(dir.path(), 16);
        assert!(!dir.path().join(SPARE).exists());
        assert!(!dir.path().join(MAKING).exists());
        assert!(!spare.take_as(&dir.path().join("1.seg")));
    }
}
