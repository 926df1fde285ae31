//! Delivery: one independent task per integration reads the shared per-environment logs
//! with its own cursor, batches, encodes (JSON / Slack, gzip, Standard Webhooks
//! signature) and sends, with retry, pause and probe per integration.
//!
//! This crate must never block ingest (it only reads the log) and never let one
//! integration take another's capacity (see `worker` and `engine` docs).

pub mod attempts;
pub mod cursor;
pub mod encode;
pub mod engine;
pub mod gaps;
pub mod health;
pub mod http;
pub mod replay;
pub mod request;
pub mod shared;
mod worker;

pub use engine::{
    DeliveryEngine, EngineOptions, IntegrationStatus, ReplayError, ReplayRequest, TestResult,
};
