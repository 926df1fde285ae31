use thiserror::Error;

/// Why an ingest body was rejected. Every variant maps to a 4xx answer; nothing from a
/// request that produced one of these is stored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("invalid impression at index {index}: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("too many impressions in one request ({count} > {max})")]
    TooMany { count: usize, max: usize },
    #[error("request has no impressions")]
    Empty,
}

/// Why an admin object (project, environment, integration) was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
