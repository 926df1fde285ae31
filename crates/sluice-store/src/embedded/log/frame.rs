//! The on-disk entry ("frame") format of a segment file and its checksum.
//!
//! A segment file is a plain concatenation of frames. Each frame is a fixed 48-byte
//! header followed by the opaque payload (all integers little-endian):
//!
//! ```text
//! off size field
//!   0    4 magic        b"SLG1"
//!   4    4 crc          CRC32C of bytes 8..48 of the header followed by the payload
//!   8    4 payload_len
//!  12    4 count        impressions in the entry (offsets consumed), > 0
//!  16    8 base_offset  offset of the entry's first impression
//!  24    8 ingest_ms    wall clock when appended (non-decreasing within a log)
//!  32    8 min_time     smallest impression time in the entry
//!  40    8 max_time     largest impression time in the entry
//!  48    n payload
//! ```
//!
//! This module only encodes and checks single frames; it never touches files.

/// First four bytes of every frame (the trailing `1` is the format version).
pub const MAGIC: [u8; 4] = *b"SLG1";
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 48;
/// Largest payload accepted on append and believed on recovery. A header claiming more
/// is treated as garbage.
pub const MAX_PAYLOAD: usize = crate::log::MAX_ENTRY_BYTES;

/// The decoded fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub crc: u32,
    pub payload_len: u32,
    pub count: u32,
    pub base_offset: u64,
    pub ingest_ms: i64,
    pub min_time: i64,
    pub max_time: i64,
}

/// Why a header or frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The magic bytes do not match.
    BadMagic,
    /// The header claims a payload larger than [`MAX_PAYLOAD`].
    TooLarge,
    /// The header claims zero impressions.
    ZeroCount,
    /// The checksum does not match the header and payload.
    BadCrc,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::BadMagic => "bad frame magic",
            FrameError::TooLarge => "frame payload length out of range",
            FrameError::ZeroCount => "frame with zero impressions",
            FrameError::BadCrc => "frame checksum mismatch",
        })
    }
}

impl FrameHeader {
    /// Total size of the frame on disk.
    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Offset after the entry's last impression.
    pub fn end_offset(&self) -> u64 {
        self.base_offset.saturating_add(u64::from(self.count))
    }

    /// Parses and sanity-checks a header (not the checksum: that needs the payload).
    pub fn decode(buf: &[u8; HEADER_LEN]) -> Result<FrameHeader, FrameError> {
        if buf[0..4] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let h = FrameHeader {
            crc: u32_at(buf, 4),
            payload_len: u32_at(buf, 8),
            count: u32_at(buf, 12),
            base_offset: u64_at(buf, 16),
            ingest_ms: u64_at(buf, 24) as i64,
            min_time: u64_at(buf, 32) as i64,
            max_time: u64_at(buf, 40) as i64,
        };
        if h.payload_len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLarge);
        }
        if h.count == 0 {
            return Err(FrameError::ZeroCount);
        }
        Ok(h)
    }

    /// Checks the checksum of a whole frame (`frame` = header bytes ++ payload).
    pub fn verify(&self, frame: &[u8]) -> Result<(), FrameError> {
        if frame.len() < HEADER_LEN || frame.len() as u64 != self.frame_len() {
            return Err(FrameError::BadCrc);
        }
        if crc32c::crc32c(&frame[8..]) == self.crc {
            Ok(())
        } else {
            Err(FrameError::BadCrc)
        }
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The fields of a frame to encode (everything but the checksum and length).
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    pub count: u32,
    pub base_offset: u64,
    pub ingest_ms: i64,
    pub min_time: i64,
    pub max_time: i64,
}

/// Appends one encoded frame to `out`. The caller guarantees
/// `payload.len() <= MAX_PAYLOAD` (checked again here: oversized payloads are refused).
pub fn encode(out: &mut Vec<u8>, meta: &FrameMeta, payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge);
    }
    if meta.count == 0 {
        return Err(FrameError::ZeroCount);
    }
    let start = out.len();
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.count.to_le_bytes());
    out.extend_from_slice(&meta.base_offset.to_le_bytes());
    out.extend_from_slice(&meta.ingest_ms.to_le_bytes());
    out.extend_from_slice(&meta.min_time.to_le_bytes());
    out.extend_from_slice(&meta.max_time.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (FrameMeta, Vec<u8>) {
        let meta = FrameMeta {
            count: 3,
            base_offset: 42,
            ingest_ms: 1_700_000_000_000,
            min_time: -5,
            max_time: 9,
        };
        (meta, b"hello payload".to_vec())
    }

    #[test]
    fn round_trip() {
        let (meta, payload) = sample();
        let mut buf = vec![0xAA; 5];
        encode(&mut buf, &meta, &payload).unwrap();
        let frame = &buf[5..];
        assert_eq!(frame.len(), HEADER_LEN + payload.len());
        let hdr: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        let h = FrameHeader::decode(hdr).unwrap();
        assert_eq!(h.count, 3);
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.end_offset(), 45);
        assert_eq!(h.ingest_ms, 1_700_000_000_000);
        assert_eq!((h.min_time, h.max_time), (-5, 9));
        assert_eq!(h.frame_len() as usize, frame.len());
        h.verify(frame).unwrap();
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (meta, payload) = sample();
        let mut buf = Vec::new();
        encode(&mut buf, &meta, &payload).unwrap();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            let hdr: &[u8; HEADER_LEN] = bad[..HEADER_LEN].try_into().unwrap();
            let ok = FrameHeader::decode(hdr).and_then(|h| h.verify(&bad));
            assert!(ok.is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn rejects_garbage_headers() {
        let mut hdr = [0u8; HEADER_LEN];
        assert_eq!(FrameHeader::decode(&hdr), Err(FrameError::BadMagic));
        hdr[..4].copy_from_slice(&MAGIC);
        assert_eq!(FrameHeader::decode(&hdr), Err(FrameError::ZeroCount));
        hdr[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(FrameHeader::decode(&hdr), Err(FrameError::TooLarge));
        let (meta, _) = sample();
        assert!(encode(&mut Vec::new(), &FrameMeta { count: 0, ..meta }, b"x").is_err());
    }
}
