//! The per-segment entry index: one [`IndexEntry`] per frame, kept in memory for every
//! segment, and its rebuildable sidecar file (`<base>.idx`) that lets start-up skip
//! reading the payloads of sealed segments.
//!
//! Sidecar layout (little-endian), written without fsync when a segment is sealed:
//!
//! ```text
//! magic b"SLX1" | u32 reserved (0) | u64 segment_base | u64 segment_len | u32 n | u32 reserved
//! n × { u64 pos, u64 base_offset, u32 count, u32 payload_len, i64 ingest_ms, i64 min_time,
//!       i64 max_time }
//! u32 crc32c of everything before it
//! ```
//!
//! A sidecar is only believed if its checksum matches, it describes exactly the segment's
//! current file length, and its entries chain contiguously from the segment's base offset;
//! the caller additionally spot-checks frame headers on disk against it.

use super::frame::{HEADER_LEN, MAX_PAYLOAD};
use crate::embedded::disk::Disk;
use std::path::Path;

/// What the log knows about one stored entry without reading its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte position of the frame's header in its segment file.
    pub pos: u64,
    pub base_offset: u64,
    pub count: u32,
    pub payload_len: u32,
    pub ingest_ms: i64,
    pub min_time: i64,
    pub max_time: i64,
}

impl IndexEntry {
    pub fn end_offset(&self) -> u64 {
        self.base_offset.saturating_add(u64::from(self.count))
    }

    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Position just after the frame.
    pub fn end_pos(&self) -> u64 {
        self.pos + self.frame_len()
    }

    /// Whether the entry may hold impressions with `time` in `[from_ms, to_ms)`.
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        self.min_time < to_ms && self.max_time >= from_ms
    }
}

const MAGIC: [u8; 4] = *b"SLX1";
const HEAD_LEN: usize = 32;
const REC_LEN: usize = 48;

/// Encodes the sidecar for a segment of `segment_len` bytes starting at `segment_base`.
pub fn encode_sidecar(segment_base: u64, segment_len: u64, entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LEN + entries.len() * REC_LEN + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&segment_base.to_le_bytes());
    out.extend_from_slice(&segment_len.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.pos.to_le_bytes());
        out.extend_from_slice(&e.base_offset.to_le_bytes());
        out.extend_from_slice(&e.count.to_le_bytes());
        out.extend_from_slice(&e.payload_len.to_le_bytes());
        out.extend_from_slice(&e.ingest_ms.to_le_bytes());
        out.extend_from_slice(&e.min_time.to_le_bytes());
        out.extend_from_slice(&e.max_time.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes and validates a sidecar against the segment it claims to describe. Returns
/// `None` (rebuild needed) for anything missing, short, damaged or inconsistent.
pub fn decode_sidecar(
    bytes: &[u8],
    segment_base: u64,
    segment_len: u64,
) -> Option<Vec<IndexEntry>> {
    if bytes.len() < HEAD_LEN + 4 || bytes[0..4] != MAGIC {
        return None;
    }
    let body = &bytes[..bytes.len() - 4];
    if crc32c::crc32c(body) != u32_at(bytes, bytes.len() - 4) {
        return None;
    }
    if u64_at(body, 8) != segment_base || u64_at(body, 16) != segment_len {
        return None;
    }
    let n = u32_at(body, 24) as usize;
    if body.len() != HEAD_LEN + n.checked_mul(REC_LEN)? {
        return None;
    }
    let mut entries = Vec::with_capacity(n);
    let (mut pos, mut offset, mut last_ingest) = (0u64, segment_base, i64::MIN);
    for rec in body[HEAD_LEN..].chunks_exact(REC_LEN) {
        let e = IndexEntry {
            pos: u64_at(rec, 0),
            base_offset: u64_at(rec, 8),
            count: u32_at(rec, 16),
            payload_len: u32_at(rec, 20),
            ingest_ms: u64_at(rec, 24) as i64,
            min_time: u64_at(rec, 32) as i64,
            max_time: u64_at(rec, 40) as i64,
        };
        let consistent = e.pos == pos
            && e.base_offset == offset
            && e.count > 0
            && e.payload_len as usize <= MAX_PAYLOAD
            && e.ingest_ms >= last_ingest;
        if !consistent {
            return None;
        }
        pos = e.end_pos();
        offset = e.base_offset.checked_add(u64::from(e.count))?;
        last_ingest = e.ingest_ms;
        entries.push(e);
    }
    if pos != segment_len {
        return None;
    }
    Some(entries)
}

/// Writes a sidecar next to its segment (via a temporary file and a rename, no fsync:
/// it is rebuilt from the segment whenever it does not check out).
pub fn write_sidecar(
    disk: &dyn Disk,
    path: &Path,
    segment_base: u64,
    segment_len: u64,
    entries: &[IndexEntry],
) -> std::io::Result<()> {
    let bytes = encode_sidecar(segment_base, segment_len, entries);
    let tmp = path.with_extension("idx.tmp");
    disk.create(&tmp)?.write_all_at(&bytes, 0)?;
    disk.rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<IndexEntry> {
        let mut v = Vec::new();
        let (mut pos, mut off) = (0u64, 100u64);
        for i in 0..5u32 {
            let e = IndexEntry {
                pos,
                base_offset: off,
                count: i + 1,
                payload_len: 10 * i,
                ingest_ms: 1000 + i64::from(i),
                min_time: 5,
                max_time: 50,
            };
            pos = e.end_pos();
            off = e.end_offset();
            v.push(e);
        }
        v
    }

    #[test]
    fn round_trip_and_rejections() {
        let es = entries();
        let len = es.last().unwrap().end_pos();
        let bytes = encode_sidecar(100, len, &es);
        assert_eq!(decode_sidecar(&bytes, 100, len).unwrap(), es);
        // Wrong segment, wrong length, truncated, flipped.
        assert!(decode_sidecar(&bytes, 101, len).is_none());
        assert!(decode_sidecar(&bytes, 100, len + 1).is_none());
        for cut in 0..bytes.len() {
            assert!(decode_sidecar(&bytes[..cut], 100, len).is_none());
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_sidecar(&bad, 100, len).is_none(), "flip at {i}");
        }
        // An empty segment has an empty index.
        assert_eq!(
            decode_sidecar(&encode_sidecar(7, 0, &[]), 7, 0).unwrap(),
            vec![]
        );
    }

    #[test]
    fn inconsistent_entries_are_rejected() {
        let mut es = entries();
        es[2].base_offset += 1;
        let len = es.last().unwrap().end_pos();
        assert!(decode_sidecar(&encode_sidecar(100, len, &es), 100, len).is_none());
    }
}
