//! One process per journal: an exclusive lock on a file next to it, held while it is used.
//!
//! Two processes applying one journal would each believe they own its oldest records; two
//! instances started from one folder once shared a spool, and one replayed the other's clicks
//! into the wrong database. The lock is an OS file lock (`flock`), so it is released by the
//! kernel when the process dies, even by `kill -9`: a stale lock file never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held for as long as the process uses the journal; dropping it releases the lock.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "journal {journal} is in use by another clicktrack process (lock {lock} is held): \
         give each instance its own --spool-path"
    )]
    Held { journal: String, lock: String },
    #[error("cannot lock journal {journal} ({lock}): {source}")]
    Io {
        journal: String,
        lock: String,
        #[source]
        source: std::io::Error,
    },
}

impl JournalLock {
    /// The lock file of the journal at `journal`: `<journal>.lock`.
    pub fn path_for(journal: &Path) -> PathBuf {
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Take the lock without waiting.
    pub fn acquire(journal: &Path) -> Result<JournalLock, LockError> {
        let path = JournalLock::path_for(journal);
        let describe = || (journal.display().to_string(), path.display().to_string());
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| {
                let (journal, lock) = describe();
                LockError::Io {
                    journal,
                    lock,
                    source,
                }
            })?;
        match file.try_lock() {
            Ok(()) => Ok(JournalLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let (journal, lock) = describe();
                Err(LockError::Held { journal, lock })
            }
            Err(TryLockError::Error(source)) => {
                let (journal, lock) = describe();
                Err(LockError::Io {
                    journal,
                    lock,
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = dir.path().join("j.db");
        let first = JournalLock::acquire(&journal).expect("first");
        let second = JournalLock::acquire(&journal).expect_err("held");
        assert!(matches!(second, LockError::Held { .. }), "{second}");
        assert!(second.to_string().contains("j.db"), "{second}");
        drop(first);
        JournalLock::acquire(&journal).expect("free again");
    }
}
