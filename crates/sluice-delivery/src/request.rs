//! Building one delivery request: headers (Standard Webhooks id/timestamp/signature,
//! content type and encoding, user agent, the integration's custom headers) around an
//! encoded body.

use crate::encode::EncodedBody;
use crate::http::PreparedRequest;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use sluice_core::model::Integration;
use sluice_core::signature::sign;

pub fn user_agent() -> String {
    format!("sluice/{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the request for one attempt. The timestamp is the attempt's time; the id is the
/// batch's stable id (the same on every retry and redelivery).
pub fn build_request(
    integ: &Integration,
    batch_id: &str,
    body: &EncodedBody,
    now_unix_s: i64,
) -> PreparedRequest {
    let mut h = HeaderMap::with_capacity(8 + integ.headers.len());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if body.gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Ok(v) = HeaderValue::from_str(&user_agent()) {
        h.insert(USER_AGENT, v);
    }
    if let Ok(v) = HeaderValue::from_str(batch_id) {
        h.insert(HeaderName::from_static("webhook-id"), v);
    }
    h.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(now_unix_s),
    );
    if let Some(secret) = &integ.secret
        && let Ok(v) = HeaderValue::from_str(&sign(secret, batch_id, now_unix_s, &body.raw))
    {
        h.insert(HeaderName::from_static("webhook-signature"), v);
    }
    for (k, v) in &integ.headers {
        // Validated at configuration; anything still unusable is skipped, not sent broken.
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    PreparedRequest {
        url: integ.url.clone(),
        headers: h,
        body: body.wire.clone(),
    }
}
