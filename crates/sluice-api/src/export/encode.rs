//! Export encoders: rows of the outgoing form (SPEC §1) as NDJSON, one streamed JSON
//! array, or CSV; and the transfer framing (identity, or gzip flushed per chunk).
//!
//! Everything here writes into caller-owned buffers, so the export stream decides when a
//! chunk is complete and memory stays bounded by one chunk.

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use sluice_core::outgoing::OutImpression;
use std::io::{self, Write};

/// The 14 fields of the outgoing form, in SPEC order: the CSV header row.
pub use sluice_core::outgoing::FIELDS;

/// An export format (`format=` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per line (`application/x-ndjson`). The default.
    #[default]
    Ndjson,
    /// One JSON array, one object per line inside it (`application/json`).
    Json,
    /// RFC 4180 CSV with a header row (`text/csv`).
    Csv,
}

impl Format {
    /// Parses a `format=` value (case-insensitive); `jsonl` is accepted for NDJSON.
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8; header=present",
        }
    }

    /// File name extension for `Content-Disposition`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// Writes the rows of one format: [`RowWriter::start`], any number of
/// [`RowWriter::row`], then [`RowWriter::end`].
#[derive(Debug)]
pub struct RowWriter {
    format: Format,
    rows: u64,
}

impl RowWriter {
    pub fn new(format: Format) -> RowWriter {
        RowWriter { format, rows: 0 }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// What precedes the first row: the CSV header, or the JSON array's `[`.
    pub fn start(&self, out: &mut Vec<u8>) {
        match self.format {
            Format::Ndjson => {}
            Format::Json => out.push(b'['),
            Format::Csv => {
                out.extend_from_slice(FIELDS.join(",").as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// One impression.
    pub fn row(&mut self, out: &mut Vec<u8>, imp: &OutImpression<'_>) {
        match self.format {
            Format::Ndjson => {
                json_object(out, imp);
                out.push(b'\n');
            }
            Format::Json => {
                out.extend_from_slice(if self.rows == 0 { b"\n" } else { b",\n" });
                json_object(out, imp);
            }
            Format::Csv => csv_row(out, imp),
        }
        self.rows += 1;
    }

    /// What follows the last row: the JSON array's `]`.
    pub fn end(&self, out: &mut Vec<u8>) {
        if self.format == Format::Json {
            out.extend_from_slice(b"\n]\n");
        }
    }
}

fn json_object(out: &mut Vec<u8>, imp: &OutImpression<'_>) {
    // Serializing strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, imp);
}

/// One CSV record (RFC 4180, CRLF). A null is an empty field; an empty string is `""`, so
/// the two stay distinguishable. A field holding a comma, quote, CR or LF is quoted, with
/// quotes doubled.
fn csv_row(out: &mut Vec<u8>, imp: &OutImpression<'_>) {
    let mut int = itoa_buf();
    csv_str(out, imp.key);
    out.push(b',');
    csv_str(out, imp.split);
    out.push(b',');
    csv_str(out, imp.environment_id);
    out.push(b',');
    csv_str(out, imp.environment_name);
    out.push(b',');
    csv_str(out, imp.treatment);
    out.push(b',');
    out.extend_from_slice(int.format(imp.time));
    out.push(b',');
    csv_opt(out, imp.bucketing_key);
    out.push(b',');
    csv_opt(out, imp.label);
    out.push(b',');
    csv_opt(out, imp.machine_name);
    out.push(b',');
    csv_opt(out, imp.machine_ip);
    out.push(b',');
    out.extend_from_slice(int.format(imp.split_version_number));
    out.push(b',');
    csv_str(out, imp.sdk);
    out.push(b',');
    csv_str(out, imp.sdk_version);
    out.push(b',');
    csv_opt(out, imp.properties);
    out.extend_from_slice(b"\r\n");
}

fn csv_opt(out: &mut Vec<u8>, v: Option<&str>) {
    if let Some(s) = v {
        csv_str(out, s);
    }
}

fn csv_str(out: &mut Vec<u8>, s: &str) {
    let needs_quotes = s.is_empty() || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs_quotes {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for part in s.split_inclusive('"') {
        out.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// A small integer formatter (no allocation per field).
struct IntBuf([u8; 20]);

fn itoa_buf() -> IntBuf {
    IntBuf([0; 20])
}

impl IntBuf {
    fn format(&mut self, v: i64) -> &[u8] {
        let mut n = v.unsigned_abs();
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            // Twenty digits hold u64::MAX; i64's magnitude is at most 19 digits, so there is room.
            i -= 1;
            self.0[i] = b'-';
        }
        &self.0[i..]
    }
}

/// The transfer framing of the body: identity, or gzip with a sync flush after every chunk
/// so that the client can decode each chunk as it arrives.
pub enum Framer {
    Identity,
    Gzip(Box<GzEncoder<Vec<u8>>>),
}

impl Framer {
    pub fn new(gzip: bool) -> Framer {
        if gzip {
            // Level 1, like delivery: export rows are very repetitive, so the fast level
            // already shrinks them several times at a fraction of the CPU.
            Framer::Gzip(Box::new(GzEncoder::new(
                Vec::with_capacity(32 << 10),
                Compression::fast(),
            )))
        } else {
            Framer::Identity
        }
    }

    /// Turns the rows in `raw` into one body chunk and empties `raw`. May be empty (gzip
    /// holding back a little), in which case it need not be sent.
    pub fn chunk(&mut self, raw: &mut Vec<u8>) -> io::Result<Bytes> {
        match self {
            Framer::Identity => {
                let cap = raw.capacity();
                Ok(Bytes::from(std::mem::replace(raw, Vec::with_capacity(cap))))
            }
            Framer::Gzip(enc) => {
                enc.write_all(raw)?;
                raw.clear();
                enc.flush()?;
                Ok(Bytes::from(std::mem::take(enc.get_mut())))
            }
        }
    }

    /// The last chunk: the rows left in `raw` and, for gzip, the stream's trailer.
    pub fn finish(self, raw: &mut Vec<u8>) -> io::Result<Bytes> {
        match self {
            Framer::Identity => Ok(Bytes::from(std::mem::take(raw))),
            Framer::Gzip(mut enc) => {
                enc.write_all(raw)?;
                raw.clear();
                Ok(Bytes::from(enc.finish()?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use sluice_core::outgoing::OwnedImpression;
    use std::io::Read;

    fn sample<'a>() -> OutImpression<'a> {
        OutImpression {
            key: "u,1",
            split: "flag",
            environment_id: "env1",
            environment_name: "Prod \"EU\"",
            treatment: "on",
            time: 1_700_000_000_123,
            bucketing_key: None,
            label: Some(""),
            machine_name: Some("host\nname"),
            machine_ip: None,
            split_version_number: -42,
            sdk: "python",
            sdk_version: "10.7.0",
            properties: Some(r#"{"a":"b,c"}"#),
        }
    }

    #[test]
    fn csv_quotes_per_rfc4180_and_keeps_null_apart_from_empty() {
        let mut w = RowWriter::new(Format::Csv);
        let mut out = Vec::new();
        w.start(&mut out);
        w.row(&mut out, &sample());
        w.end(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "key,split,environmentId,environmentName,treatment,time,bucketingKey,label,machineName,machineIp,splitVersionNumber,sdk,sdkVersion,properties\r\n\
             \"u,1\",flag,env1,\"Prod \"\"EU\"\"\",on,1700000000123,,\"\",\"host\nname\",,-42,python,10.7.0,\"{\"\"a\"\":\"\"b,c\"\"}\"\r\n"
        );
        assert_eq!(w.rows(), 1);
    }

    #[test]
    fn json_array_and_ndjson_round_trip() {
        for (format, n) in [
            (Format::Json, 0),
            (Format::Json, 1),
            (Format::Json, 3),
            (Format::Ndjson, 3),
        ] {
            let mut w = RowWriter::new(format);
            let mut out = Vec::new();
            w.start(&mut out);
            for _ in 0..n {
                w.row(&mut out, &sample());
            }
            w.end(&mut out);
            let rows: Vec<OwnedImpression> = match format {
                Format::Json => serde_json::from_slice(&out).unwrap(),
                _ => out
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect(),
            };
            assert_eq!(rows.len(), n, "{format:?}");
            if n > 0 {
                assert_eq!(rows[0].key, "u,1");
                assert_eq!(rows[0].machine_name.as_deref(), Some("host\nname"));
            }
        }
    }

    #[test]
    fn integers_format_like_display() {
        let mut b = itoa_buf();
        for v in [0, 7, -7, 10, 1_700_000_000_000, i64::MAX, i64::MIN] {
            assert_eq!(b.format(v), v.to_string().as_bytes());
        }
    }

    #[test]
    fn gzip_chunks_decode_as_they_arrive_and_as_a_whole() {
        let mut f = Framer::new(true);
        let mut all = Vec::new();
        let mut raw = b"first chunk\n".to_vec();
        let c1 = f.chunk(&mut raw).unwrap();
        assert!(raw.is_empty());
        // A sync-flushed prefix already decodes to everything written so far.
        let mut partial = Vec::new();
        let _ = GzDecoder::new(&c1[..]).read_to_end(&mut partial);
        assert_eq!(partial, b"first chunk\n");
        all.extend_from_slice(&c1);
        raw.extend_from_slice(b"second\n");
        all.extend_from_slice(&f.finish(&mut raw).unwrap());
        let mut out = Vec::new();
        GzDecoder::new(&all[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"first chunk\nsecond\n");

        let mut id = Framer::new(false);
        let mut raw = b"abc".to_vec();
        assert_eq!(&id.chunk(&mut raw).unwrap()[..], b"abc");
        raw.extend_from_slice(b"d");
        assert_eq!(&id.finish(&mut raw).unwrap()[..], b"d");
    }
}
