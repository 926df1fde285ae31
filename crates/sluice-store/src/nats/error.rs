//! Mapping async-nats errors onto [`StoreError`]: anything the cluster may recover from
//! by itself (timeouts, no leader, no responders, a lost connection) is `Unavailable`
//! with a [`Transient::JetStream`] cause, which ingest answers with 503 + Retry-After.

use crate::error::{StoreError, Transient};
use std::fmt::Display;

/// A transient failure talking to JetStream while doing `what`.
pub fn unavailable(
    what: impl Display,
    err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::unavailable(what.to_string(), Transient::jetstream(err))
}

/// Whether a JetStream API error is "stream not found".
pub fn is_stream_not_found(err: &async_nats::jetstream::Error) -> bool {
    err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
}

/// Whether `err` or one of its causes is JetStream's "wrong last sequence": a lost
/// compare-and-swap. Servers since 2.11 may answer it with code 10164 (a constant
/// message), which async-nats 0.51 does not map to `WrongLastRevision` but to `Other`.
pub fn is_wrong_last_sequence(err: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::ErrorCode;
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>()
            && matches!(
                js.error_code(),
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                    | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            )
        {
            return true;
        }
        cause = e.source();
    }
    false
}
