//! What can go wrong talking to a sluice server.

/// An admin API call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address cannot be used (see [`crate::server_url`]).
    #[error("--server {server} is not a usable address: {reason}")]
    InvalidServer { server: String, reason: String },
    /// No admin token was given.
    #[error("an admin token is needed: --token or SLUICE_ADMIN_TOKEN")]
    MissingToken,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// The request did not get an answer (connection refused, timeout, reset…).
    #[error("cannot reach {server} ({method} {path})")]
    Unreachable {
        server: String,
        method: reqwest::Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status other than 2xx; `detail` is its error's `detail`
    /// (SPEC: every error is `{"error","detail"}`), else the body as text.
    #[error("{method} {path}: {status}: {detail}")]
    Status {
        method: reqwest::Method,
        path: String,
        status: reqwest::StatusCode,
        detail: String,
        body: serde_json::Value,
    },
}

impl ClientError {
    /// The HTTP status of an error answer, if the server answered.
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
