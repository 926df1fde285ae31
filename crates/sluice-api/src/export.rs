//! `GET /v1/environments/{id}/impressions` — export (SPEC §4).
//!
//! Query parameters, all optional:
//!
//! - `from`, `to` — milliseconds since the epoch: impressions whose `time` is in
//!   `[from, to)`. `from` defaults to 0 and `to` to the end of time. Each must be a
//!   non-negative integer and `from < to`, else 400.
//! - `split`, `key` — exact-match filters on the flag name and the matching key.
//! - `format` — `ndjson` (default, `application/x-ndjson`), `json` (one JSON array) or
//!   `csv` (RFC 4180, header row with the 14 field names in SPEC order; null is an empty
//!   field, an empty string is `""`).
//!
//! Rows are the outgoing form (exactly what webhooks receive), in **log order**: the order
//! in which sluice stored them (per environment), not sorted by `time`. The export covers
//! what was stored when the request arrived: impressions stored while it streams are not
//! included, so an export of a busy environment still ends. Impressions already removed by
//! retention are not returned.
//!
//! The body is streamed in chunks of about [`CHUNK_BYTES`]: the log is read with
//! successive time-index scans ([`ImpressionLog::scan_time`], which skips segments and
//! entries outside the window, so a narrow window does not read the whole log) of at most
//! [`SCAN_RECORDS`] impressions each, and the next chunk is produced only when hyper asks
//! for it. Memory per export is therefore bounded by one scan batch plus one chunk,
//! whatever the window, and a slow client slows the export down instead of growing a
//! buffer. With `Accept-Encoding: gzip` the body is gzip-compressed, flushed per chunk.
//!
//! A storage failure after the response has started aborts the body (the client sees a
//! truncated transfer, never a silently shortened export).

mod encode;

pub use encode::{FIELDS, Format, Framer, RowWriter};

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use sluice_core::outgoing::OutImpression;
use sluice_core::record::decode_entry;
use sluice_store::ImpressionLog;
use std::io;
use std::sync::Arc;

/// Uncompressed bytes gathered into one body chunk.
pub const CHUNK_BYTES: usize = 64 << 10;
/// Impressions asked of the log per scan (the store also caps a scan's bytes).
pub const SCAN_RECORDS: usize = 4096;

/// A parsed, validated export query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    /// Inclusive lower bound of `time` (ms).
    pub from: i64,
    /// Exclusive upper bound of `time` (ms).
    pub to: i64,
    pub split: Option<String>,
    pub key: Option<String>,
    pub format: Format,
}

impl Default for ExportQuery {
    fn default() -> Self {
        ExportQuery {
            from: 0,
            to: i64::MAX,
            split: None,
            key: None,
            format: Format::Ndjson,
        }
    }
}

impl ExportQuery {
    /// Parses a raw query string (`from=…&to=…`). Unknown or repeated parameters, bad
    /// numbers, an empty range and unknown formats are 400s with a JSON error.
    pub fn parse(raw: Option<&str>) -> Result<ExportQuery, ApiError> {
        let mut q = ExportQuery::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if seen.iter().any(|s| *s == name) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name} is given more than once"
                )));
            }
            seen.push(name.to_string());
            match &*name {
                "from" => q.from = millis("from", &value)?,
                "to" => q.to = millis("to", &value)?,
                "split" => q.split = Some(non_empty("split", &value)?),
                "key" => q.key = Some(non_empty("key", &value)?),
                "format" => {
                    q.format = Format::parse(&value).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "format {value:?} is not supported; use ndjson, json or csv"
                        ))
                    })?
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?}; expected from, to, split, key, format"
                    )));
                }
            }
        }
        if q.from >= q.to {
            return Err(ApiError::bad_request(format!(
                "empty time range: from ({}) must be less than to ({})",
                q.from, q.to
            )));
        }
        Ok(q)
    }

    /// Whether an impression passes the time window and the filters.
    fn matches(&self, time: i64, split: &str, key: &str) -> bool {
        time >= self.from
            && time < self.to
            && self.split.as_deref().is_none_or(|s| s == split)
            && self.key.as_deref().is_none_or(|k| k == key)
    }
}

fn millis(name: &str, value: &str) -> Result<i64, ApiError> {
    match value.trim().parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v),
        Ok(_) => Err(ApiError::bad_request(format!(
            "{name} must not be negative (milliseconds since the epoch)"
        ))),
        Err(_) => Err(ApiError::bad_request(format!(
            "{name} must be an integer: milliseconds since the epoch (got {value:?})"
        ))),
    }
}

fn non_empty(name: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{name} must not be empty when given"
        )));
    }
    Ok(value.to_owned())
}

/// Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*` with a non-zero q).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let coding_ok = ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c));
            let q_zero = parts.any(|p| {
                let p = p.trim();
                p.get(..2).is_some_and(|n| n.eq_ignore_ascii_case("q="))
                    && p.get(2..)
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            coding_ok && !q_zero
        })
}

/// The download's file name: `sluice-<env>-<from>-<to>.<ext>` (`to` is `end` when open).
fn file_name(env: &str, q: &ExportQuery) -> String {
    let env: String = env
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let to = if q.to == i64::MAX {
        "end".to_owned()
    } else {
        q.to.to_string()
    };
    format!("sluice-{env}-{}-{to}.{}", q.from, q.format.extension())
}

/// The export handler (admin route; see the module documentation).
pub async fn export(
    State(state): State<AppState>,
    Path(env_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = ExportQuery::parse(raw.as_deref())?;
    if !state.catalog.snapshot().environments.contains_key(&env_id) {
        return Err(ApiError::not_found(format!(
            "environment {env_id} not found"
        )));
    }
    let end = state.log.bounds(&env_id).await?.next;
    let gzip = accepts_gzip(&headers);
    let disposition = format!("attachment; filename=\"{}\"", file_name(&env_id, &q));
    let format = q.format;
    let body = Body::from_stream(export_stream(state.log.clone(), env_id, q, end, gzip));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    metrics::counter!("sluice_exports_total").increment(1);
    Ok(resp)
}

/// The body of an export of `env`'s impressions stored below offset `end`: successive
/// time scans, decoded, filtered and encoded into chunks of about [`CHUNK_BYTES`]. Lazy:
/// nothing is read before the first poll, and each chunk is produced only when the
/// previous one has been taken.
pub fn export_stream(
    log: Arc<dyn ImpressionLog>,
    env: String,
    q: ExportQuery,
    end: u64,
    gzip: bool,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    async_stream::try_stream! {
        let mut rows = RowWriter::new(q.format);
        let mut framer = Framer::new(gzip);
        let mut raw: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + (16 << 10));
        rows.start(&mut raw);
        let mut cursor = 0u64;
        let mut reported = 0u64;
        'scan: loop {
            let entries = log
                .scan_time(&env, q.from, q.to, cursor, SCAN_RECORDS)
                .await
                .map_err(|e| {
                    tracing::error!(env = %env, offset = cursor, error = %e, "export aborted: log scan failed");
                    io::Error::other(e.to_string())
                })?;
            if entries.is_empty() {
                break;
            }
            let mut progressed = false;
            for entry in &entries {
                if entry.base_offset >= end {
                    break 'scan;
                }
                let first = cursor;
                if entry.end_offset() <= first {
                    continue;
                }
                cursor = entry.end_offset();
                progressed = true;
                let decoded = match decode_entry(&entry.payload) {
                    Ok(d) => d,
                    Err(e) => {
                        // Checksums make this all but impossible; like delivery, skip it loudly.
                        tracing::error!(env = %env, offset = entry.base_offset, error = %e, "export skips an undecodable log entry");
                        continue;
                    }
                };
                for (i, r) in decoded.records.iter().enumerate() {
                    if entry.base_offset + (i as u64) < first || !q.matches(r.time, r.split, r.key) {
                        continue;
                    }
                    rows.row(&mut raw, &OutImpression::new(&env, decoded.context(r), r));
                    if raw.len() >= CHUNK_BYTES {
                        let chunk = framer.chunk(&mut raw)?;
                        metrics::counter!("sluice_exported_impressions_total").increment(rows.rows() - reported);
                        reported = rows.rows();
                        if !chunk.is_empty() {
                            yield chunk;
                        }
                    }
                }
            }
            if !progressed {
                // Cannot happen with a log that honours `after`; never loop forever on one
                // that does not, and never end such an export as if it were complete.
                tracing::error!(env = %env, offset = cursor, "export aborted: the log scan did not advance");
                Err::<(), _>(io::Error::other("the log scan did not advance"))?;
            }
        }
        rows.end(&mut raw);
        metrics::counter!("sluice_exported_impressions_total").increment(rows.rows() - reported);
        yield framer.finish(&mut raw)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ExportQuery, u16> {
        ExportQuery::parse(Some(s)).map_err(|e| e.status.as_u16())
    }

    #[test]
    fn query_defaults_and_values() {
        assert_eq!(ExportQuery::parse(None).unwrap(), ExportQuery::default());
        let q = parse("from=10&to=20&split=a%20b&key=k%2C1&format=CSV").unwrap();
        assert_eq!((q.from, q.to), (10, 20));
        assert_eq!(q.split.as_deref(), Some("a b"));
        assert_eq!(q.key.as_deref(), Some("k,1"));
        assert_eq!(q.format, Format::Csv);
        assert_eq!(parse("to=1").unwrap().from, 0);
        assert_eq!(parse("from=5").unwrap().to, i64::MAX);
    }

    #[test]
    fn bad_queries_are_400() {
        for bad in [
            "from=5&to=5",
            "from=6&to=5",
            "from=abc",
            "to=1.5",
            "from=-1",
            "to=",
            "from=99999999999999999999",
            "format=xml",
            "split=",
            "from=1&from=2",
            "form=csv",
        ] {
            assert_eq!(parse(bad), Err(400), "{bad}");
        }
    }

    #[test]
    fn gzip_negotiation() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(with("gzip"));
        assert!(with("deflate, GZIP;q=0.5, br"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; q=0.000"));
        assert!(!with("br, deflate"));
        assert!(!with("identity"));
    }

    #[test]
    fn file_names_are_safe() {
        let q = ExportQuery {
            from: 5,
            format: Format::Csv,
            ..ExportQuery::default()
        };
        assert_eq!(file_name("prod", &q), "sluice-prod-5-end.csv");
        let q = ExportQuery {
            to: 9,
            ..ExportQuery::default()
        };
        assert_eq!(file_name("a\"b/c", &q), "sluice-a_b_c-0-9.ndjson");
    }
}
