//! Mapping async-nats errors onto [`StoreError`]: anything the cluster may recover from
//! by itself (timeouts, no leader, no responders, a lost connection) is `Unavailable`,
//! which ingest answers with 503 + Retry-After.

use crate::error::StoreError;
use std::fmt::Display;

/// A transient failure talking to JetStream.
pub fn unavailable(what: impl Display, err: impl Display) -> StoreError {
    StoreError::Unavailable(format!("JetStream: {what}: {err}"))
}

/// Whether a JetStream API error is "stream not found".
pub fn is_stream_not_found(err: &async_nats::jetstream::Error) -> bool {
    err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
}
