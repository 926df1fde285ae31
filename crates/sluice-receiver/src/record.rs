//! What the receiver remembers about individual requests and impressions.

use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use sluice_core::outgoing::OwnedImpression;

/// One impression from a first-time-delivered batch (kept with
/// [`super::ReceiverConfig::keep_impressions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct ReceivedImpression {
    /// The `webhook-id` of the batch it came in.
    pub webhook_id: String,
    /// When the batch was received, ms since the Unix epoch.
    pub received_unix_ms: i64,
    /// When the batch was received, on the monotonic clock.
    #[serde(skip)]
    pub received_at: Instant,
    /// The impression exactly as delivered.
    pub impression: OwnedImpression,
}

/// A sluice operator alert received for the first time (see [`super::ReceiverHandle::alerts`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct ReceivedAlert {
    /// Its `webhook-id` (the event's id).
    pub webhook_id: String,
    pub received_unix_ms: i64,
    /// Whether its signature was checked and matched (`None` without a secret).
    pub signature_ok: Option<bool>,
    pub event: sluice_core::alert::AlertEvent,
}

/// How a request was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A batch of impressions seen for the first time; answered 200.
    Delivered,
    /// A Slack `{"text": ...}` message seen for the first time; answered 200.
    Slack,
    /// A sluice operator alert seen for the first time; answered 200.
    Alert,
    /// A batch whose `webhook-id` was already answered 200; answered 200 again.
    Duplicate,
    /// Missing or wrong signature (or timestamp out of tolerance); answered 401.
    BadSignature,
    /// Not valid gzip, JSON, or the outgoing form; answered 400.
    BadBody,
    /// Missing or malformed `webhook-id` / `webhook-timestamp`; answered 400.
    BadHeaders,
    /// Wrong `Content-Type` or `Content-Encoding`; answered 415.
    UnsupportedMedia,
    /// Body over the size cap; answered 413.
    TooLarge,
    /// The body could not be read (the client went away or sent a broken body); answered 400.
    ReadError,
    /// Answered a failure status by the fault mode (status, flaky, retry).
    Fault,
    /// Held without an answer by [`super::FaultMode::Hang`].
    Hung,
}

/// One entry of the bounded request log (see [`super::ReceiverHandle::requests`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct RequestRecord {
    /// When the request arrived, on the monotonic clock.
    #[serde(skip)]
    pub received_at: Instant,
    /// When the request arrived, ms since the Unix epoch.
    pub received_unix_ms: i64,
    /// Request method and path.
    pub method: String,
    pub path: String,
    /// The `webhook-id` header.
    pub webhook_id: Option<String>,
    /// The `webhook-timestamp` header, when it is an integer.
    pub webhook_timestamp: Option<i64>,
    /// Whether the `webhook-signature` header was present.
    pub signature_present: bool,
    /// `Some(valid)` when a secret is configured and the signature was checked.
    pub signature_ok: Option<bool>,
    pub user_agent: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Other headers (custom integration headers), lower-case names; at most 32, values
    /// truncated to 256 bytes. Hop-by-hop and standard headers are left out.
    pub other_headers: Vec<(String, String)>,
    /// Body bytes as sent (compressed when gzip).
    pub body_bytes: u64,
    /// Body bytes after decompression, when the body was decoded.
    pub decoded_bytes: Option<u64>,
    /// Impressions in the body, when it was a valid impressions batch.
    pub impressions: Option<u64>,
    /// Status answered; `None` while hung.
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// Time from arrival to the answer (to the start of a hang).
    #[serde(serialize_with = "duration_ms")]
    pub handling_time: Duration,
}

fn duration_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
