//! Delivery: one independent task per integration reads the shared per-environment logs
//! with its own cursor, batches, encodes (JSON / Slack, gzip, Standard Webhooks
//! signature) and sends, with retry, pause and probe per integration.
//!
//! Layout (dependencies point down the list; nothing imports [`engine`]):
//!
//! - [`engine`]: supervises — one integration task per enabled integration, restarted
//!   with backoff if it ends; replay tasks; answers the admin API.
//! - `integration`: one integration's task — its endpoint, cursor record and one
//!   supervised lane per environment.
//! - `lane`: one environment — read → pin → send → commit.
//! - [`replay`]: replay requests (validation), jobs, and their runner.
//! - [`ownership`]: which integrations this node delivers (rendezvous hashing over the
//!   live nodes of a cluster; fencing is in [`cursor`]).
//! - [`context`]: shared handles and the clock; [`endpoint`]: the seam for sending
//!   (HTTP, or a scripted fake); [`supervise`]: restart with backoff.
//! - [`batch`], [`cursor`], [`gaps`], [`health`], [`pace`], [`encode`], [`request`],
//!   [`http`], [`attempts`], [`shared`]: the pieces they are made of; [`metrics`]: the
//!   aggregate Prometheus series.
//!
//! This crate must never block ingest (it only reads the log) and never let one
//! integration take another's capacity.

pub mod alerts;
pub mod attempts;
pub mod batch;
pub mod context;
pub mod cursor;
pub mod encode;
pub mod endpoint;
pub mod engine;
pub mod events;
pub mod gaps;
pub mod health;
pub mod http;
mod integration;
mod lane;
pub mod metrics;
pub mod ownership;
pub mod pace;
pub mod replay;
pub mod request;
pub mod shared;
pub mod supervise;

pub use context::{DeliveryCtx, EngineOptions};
pub use engine::{
    DeliveryEngine, IntegrationCounters, IntegrationState, IntegrationStatus, TestResult,
};
pub use ownership::Ownership;
pub use replay::{ReplayError, ReplayRequest};

#[cfg(test)]
mod testing;
