//! Store errors, split by what a caller can do about them:
//!
//! - [`StoreError::Unavailable`] is the only transient one: retrying later can succeed
//!   (ingest answers 503 with `Retry-After`); its [`Transient`] cause says why;
//! - every other variant is permanent for the same request: an entry over the size limit,
//!   an invalid environment id or key, a compare-and-swap conflict, corrupt stored data,
//!   a value that cannot be encoded, an invalid store configuration.

use crate::meta::Bucket;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// An underlying error kept as the cause (shared, so that one failure can be reported to
/// every waiter of a group commit).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot serve this now (I/O error, disk or size limit full, JetStream
    /// quorum lost or timing out, the store shutting down). Retrying later can succeed.
    #[error("storage unavailable: {what}: {cause}")]
    Unavailable { what: String, cause: Transient },
    /// An entry larger than the log accepts; retrying can never succeed.
    #[error("entry of {size} bytes is larger than the limit of {limit} bytes")]
    EntryTooLarge { size: usize, limit: usize },
    /// Not an environment id sluice issues (see [`crate::validate_env_id`]).
    #[error("invalid environment id {0:?}")]
    InvalidEnvId(String),
    /// A metadata key the store cannot hold (empty).
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    /// A compare-and-swap found another revision.
    #[error("conflict: {bucket}/{key} was changed concurrently")]
    Conflict { bucket: Bucket, key: String },
    /// Stored bytes failed their checksum or could not be decoded.
    #[error("corrupt data in {what}: {cause}")]
    Corrupt { what: String, cause: Corruption },
    /// A value could not be serialized (nothing was stored).
    #[error("cannot encode {what}: {cause}")]
    Encode {
        what: String,
        #[source]
        cause: serde_json::Error,
    },
    /// The store's configuration is invalid (bad `--store` URL, unreadable credentials).
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// Why the store is unavailable for now.
#[derive(Debug, Clone, Error)]
pub enum Transient {
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The log is at its size limit even after retention.
    #[error("storage full")]
    Full,
    /// The store (or its writer) is closed or shutting down.
    #[error("the store is closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("JetStream: {0}")]
    JetStream(Cause),
    #[error("metadata database: {0}")]
    Database(Cause),
    /// A blocking task panicked or was cancelled.
    #[error("a storage task failed: {0}")]
    Task(Cause),
    /// A watcher fell this many changes behind (watch again).
    #[error("a watch fell {0} changes behind")]
    Lagged(u64),
    /// A fault injected by a test ([`crate::memory::Faults`]).
    #[error("injected fault")]
    Injected,
}

/// What was wrong with stored bytes.
#[derive(Debug, Error)]
pub enum Corruption {
    /// A frame failed its checksum or disagrees with its index.
    #[error("checksum or framing mismatch")]
    Checksum,
    /// A field or header is missing or out of range.
    #[error("bad or missing {0}")]
    Field(&'static str),
    /// A message the stream says exists is gone.
    #[error("message {0} is missing")]
    Missing(u64),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    /// A transient failure while doing `what`.
    pub fn unavailable(what: impl Into<String>, cause: Transient) -> StoreError {
        StoreError::Unavailable {
            what: what.into(),
            cause,
        }
    }

    /// Stored bytes of `what` are unusable.
    pub fn corrupt(what: impl Into<String>, cause: impl Into<Corruption>) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            cause: cause.into(),
        }
    }

    /// `what` could not be serialized.
    pub fn encode(what: impl Into<String>, cause: serde_json::Error) -> StoreError {
        StoreError::Encode {
            what: what.into(),
            cause,
        }
    }

    pub fn conflict(bucket: Bucket, key: impl Into<String>) -> StoreError {
        StoreError::Conflict {
            bucket,
            key: key.into(),
        }
    }

    /// Whether retrying the same request later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

impl From<std::io::Error> for StoreError {
    /// An I/O error is transient (disk full, a failing device that is replaced).
    fn from(e: std::io::Error) -> Self {
        StoreError::unavailable("I/O", Transient::Io(Arc::new(e)))
    }
}

impl Transient {
    pub fn io(e: std::io::Error) -> Transient {
        Transient::Io(Arc::new(e))
    }

    pub fn jetstream(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Transient {
        Transient::JetStream(Arc::from(e.into()))
    }

    pub fn task(e: tokio::task::JoinError) -> Transient {
        Transient::Task(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_transient() {
        assert!(StoreError::unavailable("x", Transient::Full).is_transient());
        assert!(StoreError::from(std::io::Error::other("disk")).is_transient());
        let permanent = [
            StoreError::EntryTooLarge { size: 2, limit: 1 },
            StoreError::InvalidEnvId("a/b".into()),
            StoreError::InvalidKey(String::new()),
            StoreError::conflict(Bucket::State, "k"),
            StoreError::corrupt("x", Corruption::Checksum),
            StoreError::Config("bad".into()),
        ];
        assert!(permanent.iter().all(|e| !e.is_transient()));
    }

    #[test]
    fn messages_name_the_cause() {
        let e = StoreError::unavailable(
            "writing cursors/a",
            Transient::Timeout(Duration::from_secs(5)),
        );
        assert_eq!(
            e.to_string(),
            "storage unavailable: writing cursors/a: no answer within 5s"
        );
        let e = StoreError::conflict(Bucket::Cursors, "a");
        assert_eq!(
            e.to_string(),
            "conflict: cursors/a was changed concurrently"
        );
    }
}
