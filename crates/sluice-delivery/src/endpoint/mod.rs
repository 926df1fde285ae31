//! The seam for sending: an [`Endpoint`] takes one prepared request and answers one
//! [`Outcome`]; a [`Connector`] makes an integration's endpoint. Production uses
//! [`HttpConnector`] (one reqwest client and pool per integration, SSRF-guarded, see
//! [`crate::http`]); tests use [`scripted::ScriptedEndpoint`].
//!
//! An endpoint never retries and never decides what a failure means; lanes and replays do.

pub mod scripted;

use crate::http::{ClientOptions, HttpError, Outcome, PreparedRequest, build_client, send};
use crate::request::user_agent;
use sluice_core::address::AddressPolicy;
use sluice_core::model::Integration;
use std::sync::Arc;
use std::time::Duration;

/// Where an integration's batches go.
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync {
    /// One attempt.
    async fn send(&self, req: &PreparedRequest) -> Outcome;
}

/// Makes the endpoint of an integration (its own client and pool).
pub trait Connector: Send + Sync {
    fn connect(&self, integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError>;
}

/// Endpoints over HTTP: one reqwest client per integration.
pub struct HttpConnector {
    policy: Arc<AddressPolicy>,
    tls: Arc<rustls::ClientConfig>,
    max_response_bytes: usize,
}

impl HttpConnector {
    pub fn new(
        policy: Arc<AddressPolicy>,
        tls: Arc<rustls::ClientConfig>,
        max_response_bytes: usize,
    ) -> HttpConnector {
        HttpConnector {
            policy,
            tls,
            max_response_bytes,
        }
    }

    fn client_options(&self, integ: &Integration) -> ClientOptions {
        ClientOptions {
            policy: self.policy.clone(),
            connect_timeout: Duration::from_millis(integ.protection.connect_timeout_ms),
            request_timeout: Duration::from_millis(integ.protection.request_timeout_ms),
            user_agent: user_agent(),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 2,
        }
    }
}

impl Connector for HttpConnector {
    fn connect(&self, integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError> {
        let client = build_client(&self.client_options(integ), self.tls.clone())?;
        Ok(Arc::new(HttpEndpoint {
            client,
            policy: self.policy.clone(),
            max_response_bytes: self.max_response_bytes,
        }))
    }
}

/// One integration's HTTP endpoint.
pub struct HttpEndpoint {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_response_bytes: usize,
}

#[async_trait::async_trait]
impl Endpoint for HttpEndpoint {
    async fn send(&self, req: &PreparedRequest) -> Outcome {
        send(&self.client, &self.policy, req, self.max_response_bytes).await
    }
}
