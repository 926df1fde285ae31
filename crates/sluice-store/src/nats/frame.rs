//! How log entries are laid out in JetStream messages.
//!
//! A message is either **packed** — one or more whole entries (a group commit) — or one
//! **part** of a single entry too large for one message (`max_payload`). Headers carry
//! what readers need without decoding bodies:
//!
//! | header | value |
//! |---|---|
//! | `Sluice-Offset` | offset of the message's first impression (a part: its entry's) |
//! | `Sluice-Count` | impressions in the message (a part: its entry's) |
//! | `Sluice-Ingest` | ingest time (ms); never decreases along an environment's stream |
//! | `Sluice-Min` / `Sluice-Max` | smallest / largest impression `time` in the message |
//! | `Sluice-Part` | `i/n` on parts only |
//!
//! A packed body is `u8 version (1)` then, per entry, little-endian
//! `u32 count | i64 min_time | i64 max_time | u32 len | payload`. The parts of an entry,
//! concatenated, are a packed body holding that entry alone. Parts are stored at
//! consecutive stream sequences; a run broken by a failed writer is *torn*: readers skip it
//! and the next message reuses its offset. After a message, the log's committed end is
//! `offset + count`, except after a non-final part, where it is still `offset`.

use crate::error::{Corruption, StoreError};
use crate::log::AppendEntry;
use async_nats::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};

pub const H_OFFSET: &str = "Sluice-Offset";
pub const H_COUNT: &str = "Sluice-Count";
pub const H_INGEST: &str = "Sluice-Ingest";
pub const H_MIN: &str = "Sluice-Min";
pub const H_MAX: &str = "Sluice-Max";
pub const H_PART: &str = "Sluice-Part";

const VERSION: u8 = 1;
const ENTRY_HEAD: usize = 4 + 8 + 8 + 4;

/// Bytes a packed body needs for `entry`.
pub fn packed_len(entry: &AppendEntry) -> usize {
    ENTRY_HEAD + entry.payload.len()
}

/// An empty packed body (version byte only); entries are added with [`push_entry`].
pub fn new_body(capacity: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(capacity + 1);
    b.put_u8(VERSION);
    b
}

pub fn push_entry(body: &mut BytesMut, entry: &AppendEntry) {
    body.put_u32_le(entry.count);
    body.put_i64_le(entry.min_time);
    body.put_i64_le(entry.max_time);
    body.put_u32_le(entry.payload.len() as u32);
    body.put_slice(&entry.payload);
}

/// One entry decoded from a packed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyEntry {
    pub count: u32,
    pub min_time: i64,
    pub max_time: i64,
    pub payload: Bytes,
}

/// Decodes a packed body (zero-copy: payloads share `body`). Never panics.
pub fn decode_body(body: &Bytes) -> Result<Vec<BodyEntry>, StoreError> {
    let corrupt =
        |what: &'static str| StoreError::corrupt("JetStream log message", Corruption::Field(what));
    if body.first() != Some(&VERSION) {
        return Err(corrupt("body version"));
    }
    let mut pos = 1;
    let mut out = Vec::new();
    while pos < body.len() {
        let head = body
            .get(pos..pos + ENTRY_HEAD)
            .ok_or_else(|| corrupt("entry header (truncated)"))?;
        let count = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default());
        let min_time = i64::from_le_bytes(head[4..12].try_into().unwrap_or_default());
        let max_time = i64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[20..24].try_into().unwrap_or_default()) as usize;
        pos += ENTRY_HEAD;
        if body.len() - pos < len {
            return Err(corrupt("entry payload (truncated)"));
        }
        out.push(BodyEntry {
            count,
            min_time,
            max_time,
            payload: body.slice(pos..pos + len),
        });
        pos += len;
    }
    Ok(out)
}

/// The facts in a message's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgMeta {
    pub offset: u64,
    pub count: u32,
    pub ingest_ms: i64,
    pub min_time: i64,
    pub max_time: i64,
    /// `(i, n)`: part `i` (1-based) of `n`; `None` for a packed message.
    pub part: Option<(u32, u32)>,
}

impl MsgMeta {
    /// The committed end of the log right after this message.
    pub fn end_after(&self) -> u64 {
        match self.part {
            Some((i, n)) if i < n => self.offset,
            _ => self.offset + u64::from(self.count),
        }
    }

    pub fn is_part_head(&self) -> bool {
        matches!(self.part, Some((1, _)))
    }

    pub fn to_headers(&self, headers: &mut HeaderMap) {
        headers.insert(H_OFFSET, self.offset.to_string().as_str());
        headers.insert(H_COUNT, self.count.to_string().as_str());
        headers.insert(H_INGEST, self.ingest_ms.to_string().as_str());
        headers.insert(H_MIN, self.min_time.to_string().as_str());
        headers.insert(H_MAX, self.max_time.to_string().as_str());
        if let Some((i, n)) = self.part {
            headers.insert(H_PART, format!("{i}/{n}").as_str());
        }
    }

    /// Reads the headers of a stored message (`seq` only for the error message).
    pub fn from_headers(headers: &HeaderMap, seq: u64) -> Result<MsgMeta, StoreError> {
        fn field<T: std::str::FromStr>(
            h: &HeaderMap,
            name: &'static str,
            seq: u64,
        ) -> Result<T, StoreError> {
            h.get(name)
                .and_then(|v| v.as_str().parse().ok())
                .ok_or_else(|| {
                    StoreError::corrupt(
                        format!("JetStream log message {seq}"),
                        Corruption::Field(name),
                    )
                })
        }
        let part = match headers.get(H_PART) {
            None => None,
            Some(v) => {
                let (i, n) = v.as_str().split_once('/').unwrap_or(("", ""));
                match (i.parse::<u32>(), n.parse::<u32>()) {
                    (Ok(i), Ok(n)) if i >= 1 && i <= n => Some((i, n)),
                    _ => {
                        return Err(StoreError::corrupt(
                            format!("JetStream log message {seq}"),
                            Corruption::Field(H_PART),
                        ));
                    }
                }
            }
        };
        Ok(MsgMeta {
            offset: field(headers, H_OFFSET, seq)?,
            count: field(headers, H_COUNT, seq)?,
            ingest_ms: field(headers, H_INGEST, seq)?,
            min_time: field(headers, H_MIN, seq)?,
            max_time: field(headers, H_MAX, seq)?,
            part,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(count: u32, payload: &[u8]) -> AppendEntry {
        AppendEntry {
            payload: payload.to_vec(),
            count,
            min_time: 5,
            max_time: 9,
        }
    }

    #[test]
    fn packed_bodies_round_trip() {
        let a = entry(3, b"abc");
        let b = entry(1, b"");
        let mut body = new_body(packed_len(&a) + packed_len(&b));
        push_entry(&mut body, &a);
        push_entry(&mut body, &b);
        assert_eq!(body.len(), 1 + packed_len(&a) + packed_len(&b));
        let decoded = decode_body(&body.freeze()).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].count, 3);
        assert_eq!(&decoded[0].payload[..], b"abc");
        assert_eq!(
            (decoded[1].count, decoded[1].min_time, decoded[1].max_time),
            (1, 5, 9)
        );
    }

    #[test]
    fn headers_round_trip_and_end_offsets() {
        for part in [None, Some((1, 3)), Some((3, 3))] {
            let meta = MsgMeta {
                offset: 40,
                count: 7,
                ingest_ms: 1_700_000_000_000,
                min_time: -3,
                max_time: 12,
                part,
            };
            let mut h = HeaderMap::new();
            meta.to_headers(&mut h);
            assert_eq!(MsgMeta::from_headers(&h, 1).unwrap(), meta);
        }
        let mut m = MsgMeta {
            offset: 40,
            count: 7,
            ingest_ms: 0,
            min_time: 0,
            max_time: 0,
            part: Some((2, 3)),
        };
        assert_eq!(m.end_after(), 40, "a non-final part commits nothing");
        m.part = Some((3, 3));
        assert_eq!(m.end_after(), 47);
        m.part = None;
        assert_eq!(m.end_after(), 47);
    }

    #[test]
    fn bad_headers_are_corrupt_not_panics() {
        let mut h = HeaderMap::new();
        h.insert(H_OFFSET, "x");
        assert!(matches!(
            MsgMeta::from_headers(&h, 1),
            Err(StoreError::Corrupt { .. })
        ));
        let mut h = HeaderMap::new();
        MsgMeta {
            offset: 1,
            count: 1,
            ingest_ms: 1,
            min_time: 1,
            max_time: 1,
            part: None,
        }
        .to_headers(&mut h);
        h.insert(H_PART, "4/3");
        assert!(matches!(
            MsgMeta::from_headers(&h, 1),
            Err(StoreError::Corrupt { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_body(&Bytes::from(bytes));
        }
    }
}
