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
            let mut out =
                Vec::with_capacity(bytes.len().saturating_mul(4).min(limits.max_decoded_bytes));
            let mut dec = GzDecoder::new(&bytes[..]).take(limits.max_decoded_bytes as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("invalid gzip body: {e}")))?;
            if out.len() > limits.max_decoded_bytes {
                return Err(ApiError::too_large(format!(
                    "inflated body exceeds {} bytes",
                    limits.max_decoded_bytes
                )));
            }
            Ok(out.into())
        }
        Some(other) => Err(ApiError::unsupported_type(format!(
            "Content-Encoding {other} is not supported (use gzip or none)"
        ))),
    }
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

/// Decodes a JSON admin body.
pub fn json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    require_json(headers)?;
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
