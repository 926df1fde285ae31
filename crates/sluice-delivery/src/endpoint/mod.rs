//! The seam for sending: an [`Endpoint`] takes one prepared request and answers one
//! [`Outcome`]; a [`Connector`] makes an integration's endpoint. Production uses
//! [`HttpConnector`] (`http.rs`: one shared, SSRF-guarded client whose pool keeps idle
//! connections per destination host for a bounded time, see [`crate::http`]); tests use
//! [`scripted::ScriptedEndpoint`].
//!
//! An endpoint never retries and never decides what a failure means; lanes and replays do.

mod http;
pub mod scripted;

pub use http::{HttpConnector, PoolOptions};

use crate::http::{HttpError, Outcome, PreparedRequest};
use sluice_core::model::Integration;
use std::sync::Arc;

/// Where an integration's batches go.
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync {
    /// One attempt.
    async fn send(&self, req: &PreparedRequest) -> Outcome;
}

/// Makes the endpoint of an integration.
pub trait Connector: Send + Sync {
    fn connect(&self, integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError>;
}
