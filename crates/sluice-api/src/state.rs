//! What every handler shares.

use crate::auth_limit::AuthFailureLimiter;
use crate::body::BodyLimits;
use crate::history::History;
use crate::peers::PeerStatus;
use crate::rate::RateLimiter;
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_delivery::DeliveryEngine;
use sluice_store::{Catalog, ImpressionLog};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

pub struct ApiConfig {
    /// SHA-256 of the admin token (compared in constant time).
    pub admin_token_digest: [u8; 32],
    pub limits: BodyLimits,
    /// Impressions per second accepted per environment (None: unlimited).
    pub ingest_rate_per_env: Option<u32>,
    /// Failed admin authentications allowed per client address per minute (0: no limit).
    pub auth_failures_per_minute: u32,
    /// `/metrics` has one series per integration (state, lag, delivered, failures, pauses,
    /// gaps); off for very large fleets, leaving the aggregates by state.
    pub per_integration_metrics: bool,
}

pub struct Inner {
    pub catalog: Arc<Catalog>,
    pub log: Arc<dyn ImpressionLog>,
    pub engine: Arc<DeliveryEngine>,
    pub config: ApiConfig,
    pub metrics: Option<PrometheusHandle>,
    pub ready: AtomicBool,
    pub rate: RateLimiter,
    pub auth_failures: AuthFailureLimiter,
    /// The dashboard's charts and fleet summary, filled by [`crate::history::spawn_sampler`].
    pub history: History,
    /// The other nodes of a cluster, asked for the live state of the integrations they
    /// deliver ([`Inner::set_peers`]); unset on a node alone.
    pub peers: OnceLock<Arc<dyn PeerStatus>>,
}

pub type AppState = Arc<Inner>;

impl Inner {
    pub fn new(
        catalog: Arc<Catalog>,
        log: Arc<dyn ImpressionLog>,
        engine: Arc<DeliveryEngine>,
        config: ApiConfig,
        metrics: Option<PrometheusHandle>,
    ) -> AppState {
        let rate = RateLimiter::new(config.ingest_rate_per_env);
        let auth_failures = AuthFailureLimiter::new(config.auth_failures_per_minute);
        let state = Arc::new(Inner {
            catalog,
            log,
            engine,
            config,
            metrics,
            ready: AtomicBool::new(true),
            rate,
            auth_failures,
            history: History::default(),
            peers: OnceLock::new(),
        });
        // Samples for the dashboard's charts while the state lives (needs a runtime).
        crate::history::spawn_sampler(Arc::downgrade(&state));
        state
    }

    /// Makes this node one of a cluster: aggregated routes ask `peers` for the statuses of
    /// the integrations other nodes deliver. Set once, before serving; later calls do
    /// nothing.
    pub fn set_peers(&self, peers: Arc<dyn PeerStatus>) {
        let _ = self.peers.set(peers);
    }
}
