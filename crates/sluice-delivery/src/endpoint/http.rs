//! Endpoints over HTTP: every integration's attempts go through **one shared client per
//! connect timeout** (reqwest sets that per client; almost every integration has the
//! default, so in practice one client), with the integration's own total request timeout
//! set per attempt.
//!
//! Why shared (issue 9): a client per integration meant a connection pool, resolver and
//! TLS configuration per integration, and one idle keep-alive socket per integration —
//! 10,000 integrations held 10,000 file descriptors and their buffers whether or not they
//! had anything to send. The shared pool keys connections by destination (scheme, host,
//! port): integrations that deliver to the same host reuse each other's idle connections,
//! and an idle connection is closed after [`PoolOptions::idle_timeout`], so open sockets
//! follow the requests in flight, not the number of integrations.
//!
//! What stays per integration, so sharing never lets one destination take another's
//! capacity: a request checks out a connection of its own (HTTP/1.1) or a stream (HTTP/2);
//! the pool never limits the connections per host, so a hanging destination's requests
//! never queue another's behind them; the time an attempt may take (its integration's
//! `requestTimeoutMs`, which bounds the sockets a failing destination holds, together with
//! at most `maxInFlight` attempts per integration); the address policy (checked per
//! request and in the shared guarded resolver).

use super::{Connector, Endpoint};
use crate::http::{ClientOptions, HttpError, Outcome, PreparedRequest, build_client, send_within};
use crate::request::user_agent;
use sluice_core::address::AddressPolicy;
use sluice_core::model::Integration;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How the shared pool keeps idle connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// Idle connections kept per destination host at most (more are closed at once).
    pub max_idle_per_host: usize,
}

impl Default for PoolOptions {
    /// 15 s: longer than the default 10 s flush interval, so an integration sending every
    /// flush reuses its connection (no new TCP/TLS handshake per batch), yet sockets are
    /// released within 15 s once nothing is sent. 64 idle per host: enough to absorb the
    /// concurrent batches of many integrations that share a host.
    fn default() -> Self {
        PoolOptions {
            idle_timeout: Duration::from_secs(15),
            max_idle_per_host: 64,
        }
    }
}

/// Makes [`HttpEndpoint`]s that share clients (see the module documentation).
pub struct HttpConnector {
    policy: Arc<AddressPolicy>,
    tls: Arc<rustls::ClientConfig>,
    max_response_bytes: usize,
    pool: PoolOptions,
    /// One client per connect timeout (ms).
    clients: Mutex<HashMap<u64, reqwest::Client>>,
}

impl HttpConnector {
    pub fn new(
        policy: Arc<AddressPolicy>,
        tls: Arc<rustls::ClientConfig>,
        max_response_bytes: usize,
        pool: PoolOptions,
    ) -> HttpConnector {
        HttpConnector {
            policy,
            tls,
            max_response_bytes,
            pool,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The shared client for `connect_timeout_ms`, built on first use.
    fn client(&self, connect_timeout_ms: u64) -> Result<reqwest::Client, HttpError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&connect_timeout_ms) {
            return Ok(c.clone());
        }
        let opts = ClientOptions {
            policy: self.policy.clone(),
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            // Every attempt sets its integration's own timeout; this only backs it up.
            request_timeout: MAX_REQUEST_TIMEOUT,
            user_agent: user_agent(),
            pool_idle_timeout: self.pool.idle_timeout,
            pool_max_idle_per_host: self.pool.max_idle_per_host,
        };
        let client = build_client(&opts, self.tls.clone())?;
        clients.insert(connect_timeout_ms, client.clone());
        Ok(client)
    }

    /// Clients built so far (one per distinct connect timeout).
    pub fn clients(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The client-level bound behind every attempt's own timeout: the longest one allowed.
const MAX_REQUEST_TIMEOUT: Duration =
    Duration::from_millis(sluice_core::limits::settings::REQUEST_TIMEOUT_MS.max);

impl Connector for HttpConnector {
    fn connect(&self, integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError> {
        Ok(Arc::new(HttpEndpoint {
            client: self.client(integ.protection.connect_timeout_ms)?,
            policy: self.policy.clone(),
            max_response_bytes: self.max_response_bytes,
            request_timeout: Duration::from_millis(integ.protection.request_timeout_ms),
        }))
    }
}

/// One integration's HTTP endpoint: the shared client and its own request timeout.
pub struct HttpEndpoint {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_response_bytes: usize,
    request_timeout: Duration,
}

#[async_trait::async_trait]
impl Endpoint for HttpEndpoint {
    async fn send(&self, req: &PreparedRequest) -> Outcome {
        send_within(
            &self.client,
            &self.policy,
            req,
            self.max_response_bytes,
            self.request_timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client_tls_config;

    fn integration(id: &str, connect_ms: u64, request_ms: u64) -> Integration {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "url": "http://127.0.0.1:9/h", "environments": ["e"],
            "protection": {"connectTimeoutMs": connect_ms, "requestTimeoutMs": request_ms},
        }))
        .unwrap()
    }

    #[test]
    fn integrations_share_one_client_per_connect_timeout() {
        let c = HttpConnector::new(
            Arc::new(AddressPolicy::default()),
            client_tls_config(),
            1024,
            PoolOptions::default(),
        );
        for i in 0..100 {
            c.connect(&integration(&format!("i{i}"), 5000, 1000 + i))
                .unwrap();
        }
        assert_eq!(c.clients(), 1, "a hundred integrations, one client");
        c.connect(&integration("other", 2000, 1000)).unwrap();
        assert_eq!(c.clients(), 2);
    }
}
