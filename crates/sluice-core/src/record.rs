//! The compact binary form in which impressions are stored in the log.
//!
//! One log entry holds the impressions of one ingest request for one environment. Facts
//! shared by the whole request (environment name, SDK, machine) are written once as a
//! *context*; each record names its context by index. Layout (all integers little-endian,
//! `varint` = LEB128, `str` = varint length + UTF-8 bytes, `opt` = varint(len + 1) + bytes
//! with 0 meaning null):
//!
//! ```text
//! varint n_contexts
//!   n × { str environment_name, str sdk, str sdk_version, opt machine_name, opt machine_ip }
//! varint n_records
//!   n × { varint ctx, str key, str split, str treatment, i64 time, opt bucketing_key,
//!         opt label, i64 change_number, opt properties }
//! ```
//!
//! Integrity (checksums, lengths) is the log's job; this codec still never panics on
//! arbitrary bytes and reports [`RecordError`] instead.

use crate::impression::{Context, ImpressionIn};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("corrupt record payload: {0}")]
pub struct RecordError(pub &'static str);

/// An encoded log entry: the payload bytes plus the facts the log indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEntry {
    pub payload: Vec<u8>,
    pub count: u32,
    pub min_time: i64,
    pub max_time: i64,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_opt(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            put_varint(buf, s.len() as u64 + 1);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// Encodes impressions with their contexts. `items` pairs each impression with the index
/// of its context in `contexts`.
///
/// # Panics
/// Never for indices produced by the caller's own context table; an out-of-range index
/// is a programming error and is clamped to 0 in release builds.
pub fn encode_entry<'a, I>(contexts: &[Context<'_>], items: I) -> EncodedEntry
where
    I: IntoIterator<Item = (usize, &'a ImpressionIn<'a>)>,
    I::IntoIter: ExactSizeIterator,
{
    let items = items.into_iter();
    let n = items.len();
    let mut buf = Vec::with_capacity(64 + n * 96);
    put_varint(&mut buf, contexts.len() as u64);
    for c in contexts {
        put_str(&mut buf, &c.environment_name);
        put_str(&mut buf, &c.sdk);
        put_str(&mut buf, &c.sdk_version);
        put_opt(&mut buf, c.machine_name.as_deref());
        put_opt(&mut buf, c.machine_ip.as_deref());
    }
    put_varint(&mut buf, n as u64);
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for (ctx, imp) in items {
        debug_assert!(ctx < contexts.len());
        let ctx = if ctx < contexts.len() { ctx } else { 0 };
        put_varint(&mut buf, ctx as u64);
        put_str(&mut buf, &imp.key);
        put_str(&mut buf, &imp.split);
        put_str(&mut buf, &imp.treatment);
        buf.extend_from_slice(&imp.time.to_le_bytes());
        put_opt(&mut buf, imp.bucketing_key.as_deref());
        put_opt(&mut buf, imp.label.as_deref());
        buf.extend_from_slice(&imp.change_number.to_le_bytes());
        put_opt(&mut buf, imp.properties.as_deref());
        min_time = min_time.min(imp.time);
        max_time = max_time.max(imp.time);
    }
    if n == 0 {
        (min_time, max_time) = (0, 0);
    }
    EncodedEntry {
        payload: buf,
        count: n as u32,
        min_time,
        max_time,
    }
}

/// A stored context, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextRef<'a> {
    pub environment_name: &'a str,
    pub sdk: &'a str,
    pub sdk_version: &'a str,
    pub machine_name: Option<&'a str>,
    pub machine_ip: Option<&'a str>,
}

/// A stored impression, borrowed from the payload; `ctx` indexes [`DecodedEntry::contexts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub ctx: usize,
    pub key: &'a str,
    pub split: &'a str,
    pub treatment: &'a str,
    pub time: i64,
    pub bucketing_key: Option<&'a str>,
    pub label: Option<&'a str>,
    pub change_number: i64,
    pub properties: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEntry<'a> {
    pub contexts: Vec<ContextRef<'a>>,
    pub records: Vec<RecordRef<'a>>,
}

impl<'a> DecodedEntry<'a> {
    /// The context of a record (records are validated at decode time, so this cannot fail).
    pub fn context(&self, r: &RecordRef<'a>) -> &ContextRef<'a> {
        &self.contexts[r.ctx]
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, RecordError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(RecordError("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError("varint too long"))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if n > self.buf.len() {
            return Err(RecordError("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn str_of(&mut self, n: usize) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.bytes(n)?).map_err(|_| RecordError("invalid UTF-8"))
    }
    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.varint()?;
        self.str_of(usize::try_from(n).map_err(|_| RecordError("length overflow"))?)
    }
    fn opt(&mut self) -> Result<Option<&'a str>, RecordError> {
        match self.varint()? {
            0 => Ok(None),
            n => Ok(Some(self.str_of(
                usize::try_from(n - 1).map_err(|_| RecordError("length overflow"))?,
            )?)),
        }
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
}

/// Decodes a payload written by [`encode_entry`].
pub fn decode_entry(payload: &[u8]) -> Result<DecodedEntry<'_>, RecordError> {
    let mut r = Reader { buf: payload };
    let n_ctx = r.varint()? as usize;
    // Each context takes at least 5 bytes; refuse counts the payload cannot hold.
    if n_ctx > payload.len() / 5 + 1 {
        return Err(RecordError("context count exceeds payload"));
    }
    let mut contexts = Vec::with_capacity(n_ctx);
    for _ in 0..n_ctx {
        contexts.push(ContextRef {
            environment_name: r.str()?,
            sdk: r.str()?,
            sdk_version: r.str()?,
            machine_name: r.opt()?,
            machine_ip: r.opt()?,
        });
    }
    let n = r.varint()? as usize;
    // Each record takes at least 24 bytes.
    if n > payload.len() / 24 + 1 {
        return Err(RecordError("record count exceeds payload"));
    }
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let ctx = r.varint()? as usize;
        if ctx >= contexts.len() {
            return Err(RecordError("context index out of range"));
        }
        records.push(RecordRef {
            ctx,
            key: r.str()?,
            split: r.str()?,
            treatment: r.str()?,
            time: r.i64()?,
            bucketing_key: r.opt()?,
            label: r.opt()?,
            change_number: r.i64()?,
            properties: r.opt()?,
        });
    }
    if !r.buf.is_empty() {
        return Err(RecordError("trailing bytes"));
    }
    Ok(DecodedEntry { contexts, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::borrow::Cow;

    fn opt_str() -> impl Strategy<Value = Option<String>> {
        prop::option::of(".{0,20}")
    }

    prop_compose! {
        fn imp()(key in ".{1,30}", split in "[a-z_]{1,10}", treatment in ".{1,8}", time in any::<i64>(),
                 b in opt_str(), l in opt_str(), c in any::<i64>(), p in opt_str(), ctx in 0usize..3)
                -> (usize, ImpressionIn<'static>) {
            (ctx, ImpressionIn { key: Cow::Owned(key), split: Cow::Owned(split), treatment: Cow::Owned(treatment),
              time, bucketing_key: b.map(Cow::Owned), label: l.map(Cow::Owned), change_number: c,
              properties: p.map(Cow::Owned) })
        }
    }

    prop_compose! {
        fn ctx()(e in ".{0,10}", s in "[a-z]{0,8}", v in "[0-9.]{0,8}", n in opt_str(), ip in opt_str()) -> Context<'static> {
            Context { environment_name: Cow::Owned(e), sdk: Cow::Owned(s), sdk_version: Cow::Owned(v),
                      machine_name: n.map(Cow::Owned), machine_ip: ip.map(Cow::Owned) }
        }
    }

    proptest! {
        #[test]
        fn roundtrip(ctxs in prop::collection::vec(ctx(), 3), imps in prop::collection::vec(imp(), 0..40)) {
            let enc = encode_entry(&ctxs, imps.iter().map(|(c, i)| (*c, i)));
            prop_assert_eq!(enc.count as usize, imps.len());
            let dec = decode_entry(&enc.payload).unwrap();
            prop_assert_eq!(dec.records.len(), imps.len());
            for ((c, i), r) in imps.iter().zip(&dec.records) {
                prop_assert_eq!(r.ctx, *c);
                prop_assert_eq!(r.key, &*i.key);
                prop_assert_eq!(r.split, &*i.split);
                prop_assert_eq!(r.treatment, &*i.treatment);
                prop_assert_eq!(r.time, i.time);
                prop_assert_eq!(r.bucketing_key, i.bucketing_key.as_deref());
                prop_assert_eq!(r.label, i.label.as_deref());
                prop_assert_eq!(r.change_number, i.change_number);
                prop_assert_eq!(r.properties, i.properties.as_deref());
                let cx = dec.context(r);
                prop_assert_eq!(cx.environment_name, &*ctxs[*c].environment_name);
                prop_assert_eq!(cx.machine_ip, ctxs[*c].machine_ip.as_deref());
            }
            if !imps.is_empty() {
                prop_assert_eq!(enc.min_time, imps.iter().map(|x| x.1.time).min().unwrap());
                prop_assert_eq!(enc.max_time, imps.iter().map(|x| x.1.time).max().unwrap());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_entry(&bytes);
        }

        #[test]
        fn truncation_is_an_error(imps in prop::collection::vec(imp(), 1..5), cut in 1usize..50) {
            let ctxs = vec![Context::default(); 3];
            let enc = encode_entry(&ctxs, imps.iter().map(|(c, i)| (*c, i)));
            let cut = cut.min(enc.payload.len());
            prop_assert!(decode_entry(&enc.payload[..enc.payload.len() - cut]).is_err());
        }
    }
}
