//! A client for sluice's admin HTTP API (SPEC §4).
//!
//! One [`AdminClient`] serves the `sluice env` / `sluice integration` / `sluice export`
//! commands, the demo, the bench and the integration tests, so the way a request is
//! authenticated, how a server address is read and how an error answer becomes an error is
//! written once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_client::ClientError> {
//! use serde_json::json;
//! let admin = sluice_client::AdminClient::new("localhost:8080", "the-admin-token")?;
//! admin.create_environment(&json!({ "id": "prod", "name": "Production" })).await?;
//! let status = admin.integration_status("hook").await?;
//! # let _ = status;
//! # Ok(()) }
//! ```

mod base;
mod client;
mod error;

pub use base::server_url;
pub use client::{AdminClient, Answer};
pub use error::ClientError;

/// Installs ring as the process-wide rustls provider, once. reqwest is built here without a
/// default provider, so every plain `reqwest::Client` (this crate's, tests', the bench's) needs
/// it before it is built; delivery clients carry their own configuration.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
