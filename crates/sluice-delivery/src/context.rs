//! The delivery context: the handles every delivery task shares (the log, the metadata
//! store, the options), the wall clock and the way to reach an endpoint. There is no
//! shared pool of send permits: each integration bounds itself (at most `maxInFlight`
//! requests, one while failing, paused or probing). Built once by the engine; tests build their own around
//! in-memory stores, a paused-time clock and a scripted endpoint.

use crate::endpoint::{Connector, HttpConnector, PoolOptions};
use crate::events::Events;
use crate::http::client_tls_config;
use crate::ownership::Ownership;
use sluice_core::address::AddressPolicy;
use sluice_store::memory::{Clock, SystemClock};
use sluice_store::{ImpressionLog, MetaStore};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub policy: Arc<AddressPolicy>,
    /// Response bytes read from a destination at most.
    pub max_response_bytes: usize,
    /// Wait before the single retry of a failed attempt.
    pub retry_delay: Duration,
    /// Which integrations this node delivers (all of them when alone).
    pub ownership: Ownership,
    /// Idle connections of the shared outbound pool: how long and how many per host.
    pub pool: PoolOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            policy: Arc::new(AddressPolicy::default()),
            max_response_bytes: 64 * 1024,
            retry_delay: Duration::from_millis(300),
            ownership: Ownership::sole("local"),
            pool: PoolOptions::default(),
        }
    }
}

/// Shared handles and the clock. Timers use `tokio::time` (so paused time drives them);
/// wall-clock milliseconds (ingest-time cutoffs, attempt and gap timestamps) come from
/// [`DeliveryCtx::now_ms`].
pub struct DeliveryCtx {
    pub log: Arc<dyn ImpressionLog>,
    pub meta: Arc<dyn MetaStore>,
    pub opts: EngineOptions,
    pub clock: Arc<dyn Clock>,
    pub connector: Arc<dyn Connector>,
    /// State changes: logged, and published to the operator-alert service.
    pub events: Events,
}

impl DeliveryCtx {
    /// The production context: wall clock, HTTP endpoints (reqwest, SSRF-guarded).
    pub fn new(
        log: Arc<dyn ImpressionLog>,
        meta: Arc<dyn MetaStore>,
        opts: EngineOptions,
    ) -> DeliveryCtx {
        let connector = Arc::new(HttpConnector::new(
            opts.policy.clone(),
            client_tls_config(),
            opts.max_response_bytes,
            opts.pool,
        ));
        DeliveryCtx {
            log,
            meta,
            opts,
            clock: Arc::new(SystemClock),
            connector,
            events: Events::default(),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> DeliveryCtx {
        self.clock = clock;
        self
    }

    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> DeliveryCtx {
        self.connector = connector;
        self
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
