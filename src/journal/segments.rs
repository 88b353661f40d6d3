//! The local journal's segment files and what this process knows of them: which exist, where
//! the oldest waiting record is, which records were removed, and what the files cost.
//!
//! Records are applied nearly in append order, so "removed" is mostly a moving head: every
//! seq below `head_seq` is applied. A segment wholly behind the head is deleted, so disk use
//! (and the personal data on it) follows the journal's depth. The head's seq is written to
//! the `applied` file after each step without a sync: a head lost in a crash only replays
//! records the store already holds, which the applier finds by their click ids.
//!
//! Opening scans every segment once (`recover`): a frame that fails its checksum is copied to
//! `unreadable/` and skipped, a torn tail (a group whose write never finished, so was never
//! acknowledged) is copied there too and cut off, so nothing is silently dropped and nothing
//! damaged is read as a click.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::frame::{self, FRAME_HEADER, KIND_RECORD, Parsed, SEGMENT_HEADER};
use crate::telemetry::metrics;

const SEGMENT_SUFFIX: &str = ".seg";
const CURSOR: &str = "applied";
pub const UNREADABLE: &str = "unreadable";
/// Bytes read at a time while walking the frames.
const READ_CHUNK: usize = 256 << 10;

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// Whether `bytes` are all zero: a segment's tail that was never written.
fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Make a directory's entries (a new file, a rename) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segments in `dir`, by first seq.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

fn read_cursor(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(CURSOR))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(dir: &Path, head_seq: u64) -> io::Result<()> {
    let tmp = dir.join(format!("{CURSOR}.tmp"));
    fs::write(&tmp, format!("{head_seq}\n"))?;
    fs::rename(tmp, dir.join(CURSOR))
}

/// Keep damaged bytes in `unreadable/NAME` (synced: the segment they came from may be
/// deleted next).
pub fn set_aside(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let aside = dir.join(UNREADABLE);
    fs::create_dir_all(&aside)?;
    let path = aside.join(name);
    fs::write(&path, bytes)?;
    File::open(&path)?.sync_all()?;
    sync_dir(&aside)?;
    Ok(path)
}

/// How many records were set aside.
pub fn unreadable_count(dir: &Path) -> u64 {
    fs::read_dir(dir.join(UNREADABLE)).map_or(0, |d| d.count() as u64)
}

/// One frame the applier walked past: once everything before and including it is applied,
/// the head moves to its end.
#[derive(Debug)]
struct Passed {
    seq: Option<u64>,
    waiting: bool,
    segment: u64,
    end: u64,
}

#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    /// May delete applied segments and write the cursor (the process holding the lock).
    owner: bool,
    /// Segment first seq → bytes durably written.
    files: BTreeMap<u64, u64>,
    /// Every seq below it is applied.
    head_seq: u64,
    /// Where the walk starts: segment, offset.
    head: (u64, u64),
    /// Seqs at or past the head that are applied or erased (usually the batch just applied).
    removed: BTreeSet<u64>,
    /// The frames the last walk passed, from the head.
    passed: VecDeque<Passed>,
    depth: u64,
    bytes: u64,
    cursor: u64,
}

impl Index {
    pub fn depth(&self) -> u64 {
        self.depth
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The writer synced `frames` more frames; the segment now holds `len` bytes.
    pub fn appended(&mut self, first_seq: u64, len: u64, frames: u64) {
        let before = self.files.insert(first_seq, len).unwrap_or(0);
        self.bytes = self.bytes + len - before.min(len);
        self.depth += frames;
        metrics::journal_bytes(self.bytes);
        // Set here, under the index's lock, like the applier's removal: set after the lock
        // was let go, a preempted appender could put back a depth the applier had already
        // lowered, and show 0 while a newer group waits.
        if self.owner {
            metrics::journal_depth(self.depth);
        }
    }

    /// The writer started a segment.
    pub fn added(&mut self, first_seq: u64, len: u64) {
        self.files.insert(first_seq, len);
        self.bytes += len;
        if !self.files.contains_key(&self.head.0) || self.files.len() == 1 {
            self.head = (first_seq, SEGMENT_HEADER as u64);
        }
        metrics::journal_bytes(self.bytes);
    }

    /// The writer gave up an empty segment.
    pub fn dropped(&mut self, first_seq: u64) {
        if let Some(len) = self.files.remove(&first_seq) {
            self.bytes = self.bytes.saturating_sub(len);
        }
    }

    /// Records applied (or erased): counted out, and the head moves past them.
    pub fn remove(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            if seq >= self.head_seq && self.removed.insert(seq) {
                self.depth = self.depth.saturating_sub(1);
            }
        }
        self.advance();
    }

    /// Move the head past every frame that no longer waits; delete the segments behind it.
    fn advance(&mut self) {
        while let Some(p) = self.passed.front() {
            let gone = !p.waiting || p.seq.is_some_and(|s| self.removed.contains(&s));
            if !gone {
                break;
            }
            if let Some(seq) = p.seq {
                self.removed.remove(&seq);
                self.head_seq = self.head_seq.max(seq + 1);
            }
            self.head = (p.segment, p.end);
            self.passed.pop_front();
        }
        loop {
            let Some(&len) = self.files.get(&self.head.0) else {
                if let Some(&first) = self.files.keys().next() {
                    self.head = (first, SEGMENT_HEADER as u64);
                    continue;
                }
                break;
            };
            let next = self.files.range(self.head.0 + 1..).next().map(|(&f, _)| f);
            let Some(next) = next.filter(|_| self.head.1 >= len) else {
                break;
            };
            if self.owner
                && let Err(e) = fs::remove_file(segment_path(&self.dir, self.head.0))
                && e.kind() != io::ErrorKind::NotFound
            {
                // Kept for now: the next step tries again.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot delete an applied journal segment");
                break;
            }
            self.files.remove(&self.head.0);
            self.bytes = self.bytes.saturating_sub(len);
            self.head = (next, SEGMENT_HEADER as u64);
        }
        let head_seq = self.head_seq;
        self.removed = self.removed.split_off(&head_seq);
        if self.owner && self.cursor != head_seq {
            match write_cursor(&self.dir, head_seq) {
                Ok(()) => self.cursor = head_seq,
                Err(e) => tracing::debug!(error = %e, "cannot write the journal's applied cursor"),
            }
        }
        metrics::journal_bytes(self.bytes);
        if self.owner {
            metrics::journal_depth(self.depth);
        }
    }
}

/// What opening found.
pub struct Recovered {
    pub index: Index,
    /// The last segment (first seq, durable length): the writer continues it.
    pub active: Option<(u64, u64)>,
    pub next_seq: u64,
    /// Damaged pieces copied to `unreadable/` (and where).
    pub set_aside: Vec<(PathBuf, String)>,
}

/// Scan `dir`'s segments. An `owner` sets damaged bytes aside, cuts torn tails and deletes
/// segments the cursor has passed; a reader only counts.
pub fn recover(dir: &Path, owner: bool) -> io::Result<Recovered> {
    let cursor = read_cursor(dir);
    let firsts = list_segments(dir)?;
    let mut files = BTreeMap::new();
    let mut depth = 0u64;
    let mut next_seq = cursor.max(1);
    let mut set_aside_list = Vec::new();
    let mut aside = |name: String, bytes: &[u8], why: String| -> io::Result<()> {
        if owner {
            set_aside_list.push((set_aside(dir, &name, bytes)?, why));
        }
        Ok(())
    };
    for (i, &first) in firsts.iter().enumerate() {
        let path = segment_path(dir, first);
        let last = i + 1 == firsts.len();
        let bytes = fs::read(&path)?;
        next_seq = next_seq.max(first);
        if let Err(why) = frame::check_segment_header(&bytes) {
            if is_zeros(&bytes) && last && owner {
                // Created (or a spare linked in), never written: the crash came before its
                // header was synced.
                fs::remove_file(&path)?;
                continue;
            }
            aside(format!("{first:020}.seg"), &bytes, why)?;
            if owner {
                fs::remove_file(&path)?;
            }
            continue;
        }
        let mut pos = SEGMENT_HEADER;
        let mut waiting = 0u64;
        while pos < bytes.len() {
            match frame::parse(&bytes[pos..]) {
                Parsed::Frame(f) => {
                    if f.kind == KIND_RECORD && f.seq >= cursor {
                        waiting += 1;
                    }
                    next_seq = next_seq.max(f.seq + 1);
                    pos += f.size;
                }
                Parsed::Damaged { size: Some(size) }
                    if matches!(frame::parse(&bytes[pos + size..]), Parsed::Frame(_)) =>
                {
                    let why = "a frame's checksum does not match".to_string();
                    aside(
                        format!("{first:020}-at-{pos}"),
                        &bytes[pos..pos + size],
                        why,
                    )?;
                    pos += size;
                }
                _ if is_zeros(&bytes[pos..]) => {
                    // The zero-filled rest of a segment made ahead of time (`spare.rs`): the
                    // frames end here, and the writer goes on here.
                    break;
                }
                _ => {
                    // A group whose write was never finished (so never acknowledged), or
                    // damage that leaves no frame boundary to resume from. Cut off, so no
                    // stale bytes are left past the frames the writer appends next.
                    let why = "the segment ends in an incomplete or damaged frame".to_string();
                    let end = bytes.iter().rposition(|&b| b != 0).map_or(pos, |at| at + 1);
                    aside(
                        format!("{first:020}-at-{pos}"),
                        &bytes[pos..end.max(pos)],
                        why,
                    )?;
                    if owner {
                        fs::OpenOptions::new()
                            .write(true)
                            .open(&path)?
                            .set_len(pos as u64)?;
                    }
                    break;
                }
            }
        }
        let len = pos.min(bytes.len()) as u64;
        if waiting == 0 && !last && owner {
            fs::remove_file(&path)?;
            continue;
        }
        depth += waiting;
        files.insert(first, len);
    }
    let head = files
        .keys()
        .next()
        .map_or((0, 0), |&f| (f, SEGMENT_HEADER as u64));
    let active = files.iter().next_back().map(|(&f, &len)| (f, len));
    let bytes = files.values().sum();
    Ok(Recovered {
        index: Index {
            dir: dir.to_path_buf(),
            owner,
            files,
            head_seq: cursor,
            head,
            removed: BTreeSet::new(),
            passed: VecDeque::new(),
            depth,
            bytes,
            cursor,
        },
        active,
        next_seq,
        set_aside: set_aside_list,
    })
}

/// A waiting record as it is on disk.
#[derive(Debug)]
pub struct Waiting {
    pub seq: u64,
    pub appended_at_ms: i64,
    pub payload: Vec<u8>,
    /// Where its frame is: segment, offset, size (an erasure overwrites it there).
    pub segment: u64,
    pub offset: u64,
    pub size: usize,
    pub reason: u8,
}

/// How a walk is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// The applier's: remembers the frames passed, so removing them moves the head.
    Apply,
    /// A look (status, lag, erasure): changes nothing.
    Look,
}

/// Up to `limit` waiting records from the head, oldest first. A frame damaged since the
/// journal was opened is skipped (and, in an `Apply` walk, set aside; `damaged` lists them).
pub fn walk(
    index: &Mutex<Index>,
    limit: usize,
    how: Walk,
    damaged: &mut Vec<(PathBuf, String)>,
) -> io::Result<Vec<Waiting>> {
    let lock = || {
        index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let (dir, files, head, head_seq, removed, owner) = {
        let ix = lock();
        let files: Vec<(u64, u64)> = ix.files.range(ix.head.0..).map(|(&f, &l)| (f, l)).collect();
        (
            ix.dir.clone(),
            files,
            ix.head,
            ix.head_seq,
            ix.removed.clone(),
            ix.owner,
        )
    };
    // A look at the oldest record reads a few KiB, not a whole chunk.
    let chunk = READ_CHUNK.min(limit.saturating_mul(2048)).max(4096);
    let mut out = Vec::new();
    let mut passed = VecDeque::new();
    let mut buf = Vec::new();
    'segments: for (segment, len) in files {
        if out.len() >= limit {
            break;
        }
        let mut pos = if segment == head.0 {
            head.1
        } else {
            SEGMENT_HEADER as u64
        };
        if pos >= len {
            continue;
        }
        let file = File::open(segment_path(&dir, segment))?;
        let mut want = chunk;
        while pos < len && out.len() < limit {
            let n = usize::try_from(len - pos).unwrap_or(usize::MAX).min(want);
            buf.resize(n, 0);
            file.read_exact_at(&mut buf, pos)?;
            let mut at = 0usize;
            while at < buf.len() && out.len() < limit {
                match frame::parse(&buf[at..]) {
                    Parsed::Frame(f) => {
                        let end = pos + (at + f.size) as u64;
                        let waits =
                            f.kind == KIND_RECORD && f.seq >= head_seq && !removed.contains(&f.seq);
                        if waits {
                            out.push(Waiting {
                                seq: f.seq,
                                appended_at_ms: f.appended_at_ms,
                                payload: f.payload.to_vec(),
                                segment,
                                offset: pos + at as u64,
                                size: f.size,
                                reason: f.reason,
                            });
                        }
                        passed.push_back(Passed {
                            seq: Some(f.seq),
                            waiting: waits,
                            segment,
                            end,
                        });
                        at += f.size;
                    }
                    Parsed::Short => break,
                    Parsed::Damaged { size } => {
                        let offset = pos + at as u64;
                        let size = size.filter(|&s| offset + s as u64 <= len);
                        let end = size.map_or(len, |s| offset + s as u64);
                        if how == Walk::Apply && owner {
                            let piece = usize::try_from(end - offset).unwrap_or(0);
                            let mut bytes = vec![0u8; piece];
                            file.read_exact_at(&mut bytes, offset)?;
                            let name = format!("{segment:020}-at-{offset}");
                            let why = "a frame's checksum does not match".to_string();
                            damaged.push((set_aside(&dir, &name, &bytes)?, why));
                        }
                        passed.push_back(Passed {
                            seq: None,
                            waiting: false,
                            segment,
                            end,
                        });
                        if size.is_none() {
                            continue 'segments;
                        }
                        at = usize::try_from(end - pos).unwrap_or(buf.len());
                    }
                }
            }
            if at == 0 {
                // One frame bigger than the buffer: read it whole.
                let declared = buf
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                match declared {
                    Some(d)
                        if d + FRAME_HEADER > want && pos + ((d + FRAME_HEADER) as u64) <= len =>
                    {
                        want = d + FRAME_HEADER;
                        continue;
                    }
                    // Shorter than a frame header, or a length past the durable end: damage
                    // the checksum walk cannot step over.
                    _ => continue 'segments,
                }
            }
            pos += at as u64;
            want = chunk;
        }
    }
    if how == Walk::Apply {
        let mut ix = lock();
        ix.passed = passed;
        ix.advance();
    }
    Ok(out)
}
