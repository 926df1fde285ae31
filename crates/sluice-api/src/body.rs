//! Reading request bodies within bounds: the wire size is capped while reading, gzip is
//! inflated with a cap on the inflated size, and JSON decoding errors become 400s.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use bytes::Bytes;
use flate2::read::GzDecoder;
use http_body_util::BodyExt;
use std::io::Read;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes on the wire (compressed or not).
    pub max_wire_bytes: usize,
    /// Bytes after gzip inflation.
    pub max_decoded_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_wire_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Reads the whole body, refusing more than the limits allow, and inflates gzip.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limits.max_wire_bytes
    {
        return Err(ApiError::too_large(format!(
            "body of {len} bytes exceeds {} bytes",
            limits.max_wire_bytes
        )));
    }
    let limited = http_body_util::Limited::new(body, limits.max_wire_bytes);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(ApiError::too_large(format!(
                "body exceeds {} bytes",
                limits.max_wire_bytes
            )));
        }
        Err(e) => return Err(ApiError::bad_request(format!("could not read body: {e}"))),
    };
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(bytes),
        Some("gzip") | Some("x-gzip") => {
            inflate_gzip(&bytes, limits.max_decoded_bytes).map(Bytes::from)
        }
        Some(other) => Err(ApiError::unsupported_type(format!(
            "Content-Encoding {other} is not supported (use gzip or none)"
        ))),
    }
}

/// Inflates a gzip body, refusing more than `max_decoded` bytes of output (413) and
/// invalid gzip (400) — the bounded inflate path of every ingest request (fuzzed by
/// `fuzz/fuzz_targets/gzip_inflate.rs`).
pub fn inflate_gzip(bytes: &[u8], max_decoded: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max_decoded));
    let limit = u64::try_from(max_decoded)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut dec = GzDecoder::new(bytes).take(limit);
    dec.read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("invalid gzip body: {e}")))?;
    if out.len() > max_decoded {
        return Err(ApiError::too_large(format!(
            "inflated body exceeds {max_decoded} bytes"
        )));
    }
    Ok(out)
}

/// The request's media type, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Requires a JSON body (or no Content-Type at all, as some SDKs send).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers).as_deref() {
        None | Some("") | Some("application/json") | Some("text/plain") => Ok(()),
        Some(t) if t.ends_with("+json") => Ok(()),
        Some(t) => Err(ApiError::unsupported_type(format!(
            "Content-Type {t} is not accepted here; send application/json"
        ))),
    }
}

/// Decodes a JSON admin body strictly: a field the type does not know is refused, and
/// a value of the wrong type or out of its type's range is refused naming its path (both
/// 400, see [`ApiError::invalid_field`]).
pub fn json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    require_json(headers)?;
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    strict(value)
}

/// Decodes `value` as [`json`] does.
pub fn strict<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    let mut unknown: Option<String> = None;
    let mut track = serde_path_to_error::Track::new();
    let decoded = {
        let mut note = |path: serde_ignored::Path| {
            unknown.get_or_insert_with(|| path.to_string());
        };
        let ignored = serde_ignored::Deserializer::new(value, &mut note);
        T::deserialize(serde_path_to_error::Deserializer::new(ignored, &mut track))
    };
    match decoded {
        Err(e) => {
            let path = track.path().to_string();
            Err(if path == "." {
                ApiError::bad_request(format!("invalid body: {e}"))
            } else {
                ApiError::invalid_field(path, e)
            })
        }
        Ok(t) => match unknown {
            Some(field) => Err(ApiError::invalid_field(field, "unknown field")),
            None => Ok(t),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_core::model::Integration;

    fn integ(extra: serde_json::Value) -> Result<Integration, ApiError> {
        let mut v = json!({"id": "i", "name": "n", "url": "https://e.com/", "environments": ["e"]});
        for (k, x) in extra.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        strict(v)
    }

    #[test]
    fn strict_names_unknown_fields_by_path() {
        let e = integ(json!({"flushIntervalMS": 100})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("flushIntervalMS"));
        assert_eq!(e.detail, "flushIntervalMS: unknown field");
        let e = integ(json!({"protection": {"windw": 3}})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("protection.windw"));
    }

    #[test]
    fn strict_names_fields_of_the_wrong_type_or_range() {
        let e = integ(json!({"maxBatchImpressions": u64::MAX})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("maxBatchImpressions"), "{e:?}");
        let e = integ(json!({"protection": {"window": -1}})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("protection.window"), "{e:?}");
        let e = integ(json!({"format": "xml"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("format"), "{e:?}");
        assert!(integ(json!({})).is_ok());
    }

    #[test]
    fn json_refuses_numbers_beyond_u64_naming_the_field() {
        let body = br#"{"id": "i", "name": "n", "url": "https://e.com/", "environments": ["e"],
                        "maxBacklogAgeMs": 18446744073709551616}"#;
        let e = json::<Integration>(&HeaderMap::new(), body).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("maxBacklogAgeMs"), "{e:?}");
        let e = json::<Integration>(&HeaderMap::new(), b"{").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.field.is_none());
    }
}
