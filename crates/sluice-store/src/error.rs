use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot accept writes right now (disk full, I/O error, over its size
    /// limit, replica quorum lost). Ingest answers 503 with Retry-After.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A compare-and-swap found another revision.
    #[error("conflict: {0} was changed concurrently")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored bytes failed their checksum or could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store error: {0}")]
    Meta(String),
}
