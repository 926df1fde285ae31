//! One segment: a file of frames named after the offset of its first impression
//! (`00000000000000000042.log`), its in-memory index, and the positional reads that turn
//! index entries back into [`StoredEntry`]s (checksums verified on every read).

use super::frame::{FrameHeader, HEADER_LEN};
use super::index::IndexEntry;
use crate::embedded::disk::DiskFile;
use crate::error::{Corruption, StoreError};
use crate::log::StoredEntry;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};

/// Largest single positional read issued while scanning or reading.
const READ_CHUNK: usize = 1 << 20;

/// File name of the segment starting at `base`.
pub fn log_file_name(base: u64) -> String {
    format!("{base:020}.log")
}

pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(log_file_name(base))
}

/// Path of the sidecar index of the segment starting at `base`.
pub fn idx_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// The base offset encoded in a segment file name, if `name` is one.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The base offset encoded in a sidecar index name, if `name` is one.
pub fn parse_idx_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".idx")?;
    parse_log_name(&format!("{digits}.log"))
}

/// The in-memory view of one segment: its committed length and one index entry per frame.
#[derive(Debug)]
pub struct Segment {
    pub base: u64,
    /// Committed (fsynced) length of the file; nothing past it is ever read.
    pub len: u64,
    pub entries: Vec<IndexEntry>,
    /// Smallest `min_time` / largest `max_time` over the entries (for skipping).
    pub min_time: i64,
    pub max_time: i64,
}

impl Segment {
    pub fn new(base: u64) -> Segment {
        Segment {
            base,
            len: 0,
            entries: Vec::new(),
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }

    pub fn from_entries(base: u64, len: u64, entries: Vec<IndexEntry>) -> Segment {
        let mut s = Segment::new(base);
        s.len = len;
        for e in &entries {
            s.min_time = s.min_time.min(e.min_time);
            s.max_time = s.max_time.max(e.max_time);
        }
        s.entries = entries;
        s
    }

    /// Adds a committed entry (the caller keeps positions and offsets contiguous).
    pub fn push(&mut self, e: IndexEntry) {
        self.min_time = self.min_time.min(e.min_time);
        self.max_time = self.max_time.max(e.max_time);
        self.len = e.end_pos();
        self.entries.push(e);
    }

    /// Offset after the segment's last entry (its base when empty).
    pub fn end_offset(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.base, IndexEntry::end_offset)
    }

    pub fn first_ingest(&self) -> Option<i64> {
        self.entries.first().map(|e| e.ingest_ms)
    }

    pub fn last_ingest(&self) -> Option<i64> {
        self.entries.last().map(|e| e.ingest_ms)
    }

    /// Whether any entry may hold impressions with `time` in `[from_ms, to_ms)`.
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        !self.entries.is_empty() && self.min_time < to_ms && self.max_time >= from_ms
    }
}

/// Sequential, buffered reader over a file, used to validate segments at start-up.
struct SeqReader<'f> {
    file: &'f dyn DiskFile,
    file_len: u64,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl<'f> SeqReader<'f> {
    fn new(file: &'f dyn DiskFile, file_len: u64) -> Self {
        SeqReader {
            file,
            file_len,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }

    /// Returns bytes `[pos, pos+len)`; the caller checked that they lie within the file.
    fn get(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let buf_end = self.buf_pos + self.buf.len() as u64;
        if pos < self.buf_pos || pos + len as u64 > buf_end {
            let want = (len.max(READ_CHUNK) as u64).min(self.file_len.saturating_sub(pos)) as usize;
            self.buf.resize(want.max(len), 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        Ok(&self.buf[start..start + len])
    }
}

/// Result of validating a segment file frame by frame.
#[derive(Debug)]
pub struct ScanOutcome {
    pub entries: Vec<IndexEntry>,
    /// End of the last good frame.
    pub good_len: u64,
    /// Why scanning stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Reads and checks every frame of a segment file starting at offset `base`: magic,
/// length, checksum, and that offsets continue densely. Stops at the first bad frame.
/// Only I/O errors are errors; bad bytes are reported in [`ScanOutcome::problem`].
pub fn scan_file(file: &dyn DiskFile, base: u64, file_len: u64) -> io::Result<ScanOutcome> {
    let mut rd = SeqReader::new(file, file_len);
    let mut entries = Vec::new();
    let (mut pos, mut expect) = (0u64, base);
    let mut last_ingest = i64::MIN;
    let problem = loop {
        if pos == file_len {
            break None;
        }
        if file_len - pos < HEADER_LEN as u64 {
            break Some(format!("partial frame header at byte {pos}"));
        }
        let hdr_bytes: [u8; HEADER_LEN] = match rd.get(pos, HEADER_LEN)?.try_into() {
            Ok(h) => h,
            Err(_) => break Some(format!("short read at byte {pos}")),
        };
        let h = match FrameHeader::decode(&hdr_bytes) {
            Ok(h) => h,
            Err(e) => break Some(format!("{e} at byte {pos}")),
        };
        if h.frame_len() > file_len - pos {
            break Some(format!("partial frame payload at byte {pos}"));
        }
        let frame = rd.get(pos, h.frame_len() as usize)?;
        if let Err(e) = h.verify(frame) {
            break Some(format!("{e} at byte {pos}"));
        }
        if h.base_offset != expect {
            break Some(format!(
                "frame at byte {pos} has offset {} where {expect} was expected",
                h.base_offset
            ));
        }
        // Ingest times are non-decreasing by construction; clamp defensively so the
        // in-memory index stays sorted for binary search.
        let ingest_ms = h.ingest_ms.max(last_ingest);
        last_ingest = ingest_ms;
        entries.push(IndexEntry {
            pos,
            base_offset: h.base_offset,
            count: h.count,
            payload_len: h.payload_len,
            ingest_ms,
            min_time: h.min_time,
            max_time: h.max_time,
        });
        expect = h.end_offset();
        pos += h.frame_len();
    };
    Ok(ScanOutcome {
        entries,
        good_len: pos,
        problem,
    })
}

/// Whether the frame header on disk at `e.pos` says exactly what the index entry says.
pub fn header_matches(file: &dyn DiskFile, e: &IndexEntry) -> io::Result<bool> {
    let mut hdr = [0u8; HEADER_LEN];
    match file.read_exact_at(&mut hdr, e.pos) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(err) => return Err(err),
    }
    Ok(FrameHeader::decode(&hdr).is_ok_and(|h| {
        h.base_offset == e.base_offset
            && h.count == e.count
            && h.payload_len == e.payload_len
            && h.ingest_ms == e.ingest_ms
            && h.min_time == e.min_time
            && h.max_time == e.max_time
    }))
}

/// Reads the frames of `entries` (consecutive entries of one segment, in order) with one
/// positional read per contiguous run, verifies each against its index entry and
/// checksum, and returns them with zero-copy payload slices.
pub fn read_entries(
    file: &dyn DiskFile,
    path: &Path,
    entries: &[IndexEntry],
    out: &mut Vec<StoredEntry>,
) -> Result<(), StoreError> {
    let mut i = 0;
    while i < entries.len() {
        // Extend the run while frames are adjacent on disk.
        let mut j = i + 1;
        while j < entries.len() && entries[j].pos == entries[j - 1].end_pos() {
            j += 1;
        }
        let run = &entries[i..j];
        let start = run[0].pos;
        let len = (run[run.len() - 1].end_pos() - start) as usize;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, start)?;
        let buf = Bytes::from(buf);
        for e in run {
            let at = (e.pos - start) as usize;
            let frame = buf.slice(at..at + e.frame_len() as usize);
            let corrupt = || {
                StoreError::corrupt(
                    format!(
                        "{}: entry at offset {} (byte {})",
                        path.display(),
                        e.base_offset,
                        e.pos
                    ),
                    Corruption::Checksum,
                )
            };
            let hdr: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().map_err(|_| corrupt())?;
            let h = FrameHeader::decode(&hdr).map_err(|_| corrupt())?;
            if h.base_offset != e.base_offset
                || h.count != e.count
                || h.payload_len != e.payload_len
            {
                return Err(corrupt());
            }
            h.verify(&frame).map_err(|_| corrupt())?;
            out.push(StoredEntry {
                base_offset: h.base_offset,
                count: h.count,
                ingest_ms: h.ingest_ms,
                min_time: h.min_time,
                max_time: h.max_time,
                payload: frame.slice(HEADER_LEN..),
            });
        }
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(log_file_name(42), "00000000000000000042.log");
        assert_eq!(parse_log_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_name(&log_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("0000000000000000004x.log"), None);
        assert_eq!(parse_log_name("00000000000000000042.idx"), None);
        assert_eq!(parse_log_name("99999999999999999999.log"), None);
        assert_eq!(parse_idx_name("00000000000000000042.idx"), Some(42));
    }
}
