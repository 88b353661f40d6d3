//! The local journal's one writing thread: it appends groups of frames to the active segment
//! and makes them durable with one `fdatasync` for everything that arrived meanwhile.
//!
//! A thread of its own rather than a task: `fdatasync` blocks for as long as the disk takes,
//! and every group waiting behind it joins the next sync instead of paying its own. The
//! appenders (the queue's and the overflow's) hand over one buffer per group and wait for one
//! answer; nothing per click crosses a thread.
//!
//! After a failed write or sync the segment is cut back to its last durable length and never
//! written again: the next group starts a new segment (a failed `fsync` may have dropped pages
//! the kernel still shows, so the old file is trusted only up to what was synced before).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::frame;
use super::segments::{Index, segment_path, sync_dir};
use super::spare::Spare;

/// A segment is closed once it holds this much; the applier deletes it when it has applied
/// everything in it, so the journal's disk use follows its depth.
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// Frames built by an appender (`frame::begin` + payload), unsealed.
pub struct Group {
    pub bytes: Vec<u8>,
    pub starts: Vec<usize>,
}

struct Job {
    group: Group,
    done: oneshot::Sender<io::Result<()>>,
}

enum Message {
    /// The journal was opened: continue its last segment.
    Start(Thread),
    Append(Job),
}

/// The handle appenders use; dropping the last one ends the thread.
#[derive(Debug)]
pub struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Message>>>,
}

/// The segment being appended to.
struct Active {
    file: File,
    first_seq: u64,
    len: u64,
}

impl Writer {
    /// Start the thread, idle until `open`. Started when the journal is made, on the thread
    /// that makes it, not when it is first used: a thread inherits its starter's CPU priority,
    /// and the first user may be the applier, which runs lowered (`--apply-nice`), while every
    /// acknowledgement waits for this thread.
    pub fn spawn() -> Writer {
        let (tx, rx) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run(rx));
        if let Err(e) = &started {
            tracing::error!(error = %e, "cannot start the journal's writer thread");
        }
        Writer {
            jobs: Mutex::new(started.ok().map(|_| tx)),
        }
    }

    /// The journal is open: continue the last segment (`active`: its first seq and durable
    /// length) and number frames from `next_seq`.
    pub fn open(
        &self,
        dir: &Path,
        active: Option<(u64, u64)>,
        next_seq: u64,
        index: Arc<Mutex<Index>>,
        segment_bytes: u64,
    ) -> io::Result<()> {
        let active = match active {
            Some((first_seq, len)) => Some(Active {
                file: OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, first_seq))?,
                first_seq,
                len,
            }),
            None => None,
        };
        self.send(Message::Start(Thread {
            dir: dir.to_path_buf(),
            active,
            next_seq,
            index,
            segment_bytes,
            spare: Spare::open(dir, segment_bytes),
        }))
    }

    fn send(&self, message: Message) -> io::Result<()> {
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|jobs| jobs.send(message).is_ok());
        match sent {
            Some(true) => Ok(()),
            _ => Err(io::Error::other(
                "the journal is closed, or its writer thread could not start",
            )),
        }
    }

    /// Append `group` durably: when this returns `Ok`, its frames survive a crash.
    pub async fn append(&self, group: Group) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        self.send(Message::Append(Job { group, done }))?;
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the journal's writer stopped")))
    }

    /// No more appends; the thread ends once the groups it has are written.
    pub fn close(&self) {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

struct Thread {
    dir: PathBuf,
    active: Option<Active>,
    next_seq: u64,
    index: Arc<Mutex<Index>>,
    /// `SEGMENT_BYTES` (smaller in tests).
    segment_bytes: u64,
    /// The next segment, zero-filled ahead of time (`spare.rs`).
    spare: Spare,
}

fn run(messages: mpsc::Receiver<Message>) {
    let mut thread: Option<Thread> = None;
    let mut pending = Vec::new();
    while let Ok(first) = messages.recv() {
        // Everything already waiting shares this write and this sync.
        for message in std::iter::once(first).chain(messages.try_iter()) {
            match message {
                Message::Start(opened) => thread = Some(opened),
                Message::Append(job) => pending.push(job),
            }
        }
        if pending.is_empty() {
            continue;
        }
        let result = match thread.as_mut() {
            Some(t) => t.write(&mut pending),
            None => Err(io::Error::other("the journal is not open")),
        };
        for job in pending.drain(..) {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            if job.done.send(answer).is_err() {
                // An appender that stopped waiting (shutting down): nobody to tell.
                tracing::debug!("a journal group's appender stopped waiting for its answer");
            }
        }
    }
}

impl Thread {
    fn write(&mut self, batch: &mut [Job]) -> io::Result<()> {
        if self
            .active
            .as_ref()
            .is_none_or(|a| a.len >= self.segment_bytes)
        {
            self.rotate()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no journal segment"));
        };
        let mut seq = self.next_seq;
        let mut frames = 0u64;
        for job in batch.iter_mut() {
            let bytes = &mut job.group.bytes;
            let ends: Vec<usize> = job.group.starts[1..]
                .iter()
                .copied()
                .chain([bytes.len()])
                .collect();
            for (&start, end) in job.group.starts.iter().zip(ends) {
                if !frame::seal(bytes, start, end, seq) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a journal record is over 1 MiB",
                    ));
                }
                seq += 1;
                frames += 1;
            }
        }
        let mut len = active.len;
        let written = batch.iter().try_for_each(|job| {
            active.file.write_all_at(&job.group.bytes, len)?;
            len += job.group.bytes.len() as u64;
            Ok(())
        });
        if let Err(e) = written.and_then(|()| active.file.sync_data()) {
            // Best effort: recovery would set the torn tail aside anyway.
            if let Err(cut) = active.file.set_len(active.len) {
                tracing::warn!(dir = %self.dir.display(), error = %cut, "cannot cut a failed write off the journal segment; the next start sets it aside");
            }
            if active.len == frame::SEGMENT_HEADER as u64 {
                // Nothing in it: out of the way of the next segment, which starts at the same seq.
                let first_seq = active.first_seq;
                if std::fs::remove_file(segment_path(&self.dir, first_seq)).is_ok() {
                    self.index
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .dropped(first_seq);
                }
            }
            self.active = None;
            return Err(e);
        }
        active.len = len;
        self.next_seq = seq;
        if len >= self.segment_bytes / 2 {
            self.spare.prepare();
        }
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .appended(active.first_seq, len, frames);
        Ok(())
    }

    /// Start a new segment at `next_seq` (the spare if it is ready), durable (header synced,
    /// directory entry synced) before anything is appended to it.
    fn rotate(&mut self) -> io::Result<()> {
        let path = segment_path(&self.dir, self.next_seq);
        let file = if self.spare.take_as(&path) {
            OpenOptions::new().read(true).write(true).open(&path)?
        } else {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?
        };
        file.write_all_at(&frame::segment_header(), 0)?;
        file.sync_data()?;
        sync_dir(&self.dir)?;
        let len = frame::SEGMENT_HEADER as u64;
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .added(self.next_seq, len);
        self.active = Some(Active {
            file,
            first_seq: self.next_seq,
            len,
        });
        Ok(())
    }
}
