//! The local journal's bytes on disk: segment files of checksummed frames, one frame a record.
//!
//! A segment starts with a 16-byte header (`MAGIC`, then the format's version as a
//! little-endian u32) and holds frames back to back:
//!
//! ```text
//! len u32 | crc u32 | kind u8 | reason u8 | seq u64 | appended_at_ms i64 | payload (len bytes)
//! ```
//!
//! All integers little-endian; `crc` is CRC-32C of everything after it (kind to the payload's
//! end), so a torn or damaged frame is recognised instead of read as a record. `kind` 1 is a
//! record (its payload the versioned JSON of `format.rs`), 0 a record erased in place (payload
//! zeroed, `store/erase.rs`); `reason` is the `AppendReason`; `seq` is the record's position,
//! dense and never reused. A frame is never longer than `MAX_PAYLOAD` plus its header.

use super::AppendReason;

/// What every segment file starts with; the version is bumped when the frame layout changes,
/// and a reader refuses a version it does not know.
pub const MAGIC: &[u8; 12] = b"clicktrackJ\0";
pub const VERSION: u32 = 1;
pub const SEGMENT_HEADER: usize = 16;
/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 4 + 4 + 1 + 1 + 8 + 8;
/// A record's JSON is a few hundred bytes (its fields are capped in `domain/click.rs`); a
/// length past this is damage, not a record.
pub const MAX_PAYLOAD: usize = 1 << 20;

pub const KIND_RECORD: u8 = 1;
pub const KIND_ERASED: u8 = 0;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The header of a new segment file.
pub fn segment_header() -> [u8; SEGMENT_HEADER] {
    let mut header = [0u8; SEGMENT_HEADER];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// Why a segment's header is not one this release reads.
pub fn check_segment_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < SEGMENT_HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a clicktrack journal segment (bad header)".into());
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[MAGIC.len()..SEGMENT_HEADER]);
    match u32::from_le_bytes(version) {
        VERSION => Ok(()),
        v => Err(format!(
            "journal segment format {v} is newer than this clicktrack understands"
        )),
    }
}

pub fn reason_code(reason: AppendReason) -> u8 {
    match reason {
        AppendReason::Journal => 0,
        AppendReason::StoreUnavailable => 1,
        AppendReason::Overflow => 2,
    }
}

/// Start a frame in `out` whose payload the caller then appends; `seq` and the checksum are
/// written by `seal` once the writer knows the position.
pub fn begin(out: &mut Vec<u8>, kind: u8, reason: u8, appended_at_ms: i64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.push(kind);
    out.push(reason);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&appended_at_ms.to_le_bytes());
    start
}

/// Finish the frame at `out[start..end]`: its length, `seq` and checksum. `false` if its
/// payload is over `MAX_PAYLOAD` (the frame is then left unsealed and must not be written).
pub fn seal(out: &mut [u8], start: usize, end: usize, seq: u64) -> bool {
    let frame = &mut out[start..end];
    let payload = frame.len() - FRAME_HEADER;
    if payload > MAX_PAYLOAD {
        return false;
    }
    frame[..4].copy_from_slice(&(payload as u32).to_le_bytes());
    frame[10..18].copy_from_slice(&seq.to_le_bytes());
    let crc = CRC.checksum(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    true
}

/// A whole, checksummed frame read back.
#[derive(Debug)]
pub struct Frame<'a> {
    pub kind: u8,
    pub reason: u8,
    pub seq: u64,
    pub appended_at_ms: i64,
    pub payload: &'a [u8],
    /// Bytes the frame takes, header included.
    pub size: usize,
}

/// What the bytes at the start of a buffer are.
#[derive(Debug)]
pub enum Parsed<'a> {
    Frame(Frame<'a>),
    /// Fewer bytes than the frame says it has (the buffer ends, or the file does).
    Short,
    /// A frame whose checksum fails or whose length is impossible. `size` is what it claims,
    /// if that is plausible (the bytes after it may still be frames).
    Damaged {
        size: Option<usize>,
    },
}

pub fn parse(bytes: &[u8]) -> Parsed<'_> {
    if bytes.len() < FRAME_HEADER {
        return Parsed::Short;
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Parsed::Damaged { size: None };
    }
    let size = FRAME_HEADER + len;
    if bytes.len() < size {
        return Parsed::Short;
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if CRC.checksum(&bytes[8..size]) != crc {
        return Parsed::Damaged { size: Some(size) };
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[10..18]);
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[18..26]);
    Parsed::Frame(Frame {
        kind: bytes[8],
        reason: bytes[9],
        seq: u64::from_le_bytes(seq),
        appended_at_ms: i64::from_le_bytes(at),
        payload: &bytes[FRAME_HEADER..size],
        size,
    })
}

/// The bytes that replace a frame of `size` bytes when its record is erased: same length and
/// position, kind 0, payload zeroed, checksum valid.
pub fn erased(seq: u64, reason: u8, appended_at_ms: i64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let start = begin(&mut out, KIND_ERASED, reason, appended_at_ms);
    out.resize(size, 0);
    seal(&mut out, start, size, seq);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let start = begin(&mut out, KIND_RECORD, 2, 1_700_000_000_123);
        out.extend_from_slice(payload);
        let end = out.len();
        assert!(seal(&mut out, start, end, seq));
        out
    }

    #[test]
    fn a_frame_reads_back_as_written() {
        let bytes = frame(42, b"{\"kind\":\"click\"}");
        let Parsed::Frame(f) = parse(&bytes) else {
            panic!("not a frame")
        };
        assert_eq!(
            (f.kind, f.reason, f.seq, f.appended_at_ms, f.payload, f.size),
            (
                KIND_RECORD,
                2,
                42,
                1_700_000_000_123,
                &b"{\"kind\":\"click\"}"[..],
                bytes.len()
            )
        );
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_seen() {
        let bytes = frame(7, b"payload of a click");
        for i in 4..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    !matches!(parse(&damaged), Parsed::Frame(_)),
                    "byte {i} bit {bit}"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse(&bytes[..cut]), Parsed::Short),
                "cut at {cut}"
            );
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&huge), Parsed::Damaged { size: None }));
    }

    #[test]
    fn an_erased_frame_keeps_its_place_and_loses_its_payload() {
        let bytes = frame(9, b"U_SECRET and more");
        let erased = erased(9, 2, 5, bytes.len());
        let Parsed::Frame(f) = parse(&erased) else {
            panic!("not a frame")
        };
        assert_eq!((f.kind, f.seq, f.size), (KIND_ERASED, 9, bytes.len()));
        assert!(f.payload.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_segment_header_of_another_version_is_refused() {
        assert!(check_segment_header(&segment_header()).is_ok());
        let mut newer = segment_header();
        newer[12] = 2;
        assert!(check_segment_header(&newer).unwrap_err().contains("newer"));
        assert!(check_segment_header(b"SQLite format 3\0").is_err());
    }
}
