//! `sluice receiver`: a webhook receiver for trying sluice out and for tests (SPEC §5).
//!
//! It accepts what sluice delivers (SPEC §3) on any path: a `POST` of a JSON array of impressions
//! in the exact outgoing form (or a Slack `{"text": ...}` message), gzip or plain, and sluice's
//! operator alerts (SPEC §4, `{type, timestamp, data}`). It verifies
//! Standard Webhooks signatures when given a secret, validates every impression, counts and
//! deduplicates batches by `webhook-id`, and can be told to fail in the ways real endpoints fail
//! (see [`FaultMode`]).
//!
//! In-process use (integration tests):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sluice_receiver::{FaultMode, ReceiverConfig};
//! let rx = sluice_receiver::start(ReceiverConfig::default()).await?;
//! let url = rx.url("/hook"); // give this to a sluice integration
//! rx.set_mode(FaultMode::Status(503)); // …and later heal it
//! rx.set_mode(FaultMode::Ok);
//! let stats = rx
//!     .wait_until(std::time::Duration::from_secs(10), |s| s.unique_impressions >= 100)
//!     .await;
//! # let _ = (url, stats);
//! rx.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Control endpoints on the same port (everything else that is a `POST` is a delivery):
//!
//! - `GET /stats` — [`Stats`] as JSON (snake_case field names).
//! - `GET /mode`, `POST /mode` — read or switch the [`FaultMode`], e.g.
//!   `{"mode":"status","status":500}`, `{"mode":"ok"}`, `{"mode":"hang"}`,
//!   `{"mode":"slow","ms":2000}`, `{"mode":"flaky","percent":30,"status":503}`,
//!   `{"mode":"huge","bytes":100000000}`, `{"mode":"retry","status":429,"after_secs":5}`.
//! - `GET /impressions?limit=N` — the most recent kept impressions (only with
//!   [`ReceiverConfig::keep_impressions`]).
//! - `GET /requests?limit=N` — the most recent entries of the request log.
//! - `GET /alerts` — the sluice operator alerts received (`{type, timestamp, data}` bodies).
//!
//! Answers to deliveries: 200 delivered (also for a duplicate `webhook-id`), 400 invalid body or
//! missing `webhook-id`/`webhook-timestamp`, 401 missing or bad signature (when a secret is set),
//! 413 body over [`ReceiverConfig::max_body_bytes`] (compressed or decompressed), 415 wrong
//! `Content-Type` or `Content-Encoding`, or whatever the fault mode says.

mod cli;
mod decode;
mod faults;
mod record;
mod server;
mod stats;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use cli::{ReceiverArgs, run};
pub use decode::check_body;
pub use faults::FaultMode;
pub use record::{Outcome, ReceivedAlert, ReceivedImpression, RequestRecord};
pub use server::ReceiverHandle;
pub use stats::Stats;

/// How a receiver is set up. `Default` listens on `127.0.0.1:0` (an ephemeral port) with no
/// secret, [`FaultMode::Ok`], and impressions not kept.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Address to listen on; port 0 picks a free port (see [`ReceiverHandle::addr`]).
    pub listen: SocketAddr,
    /// When set, every delivery must carry a valid `webhook-signature` for this secret
    /// (Standard Webhooks; a `whsec_` prefix means base64 key bytes), else it gets 401.
    pub secret: Option<String>,
    /// How deliveries are answered at start; change it later with [`ReceiverHandle::set_mode`].
    pub mode: FaultMode,
    /// Keep every first-time-delivered impression in memory (see
    /// [`ReceiverHandle::impressions`]), at most [`ReceiverConfig::max_kept_impressions`].
    pub keep_impressions: bool,
    /// Log rejected and failed deliveries at `debug` instead of `info`/`warn`.
    pub quiet: bool,
    /// Largest request body accepted, both as sent and after gzip decompression (413 above).
    pub max_body_bytes: usize,
    /// How many recent requests [`ReceiverHandle::requests`] remembers.
    pub request_log_capacity: usize,
    /// How many recent delivered `webhook-id`s are remembered for deduplication.
    pub dedupe_capacity: usize,
    /// How many kept impressions are held at most; the oldest are dropped beyond that.
    pub max_kept_impressions: usize,
    /// When set, a delivery whose `webhook-timestamp` is further than this from the receiver's
    /// clock is rejected like a bad signature (401). Only checked when a secret is set.
    pub max_timestamp_skew: Option<Duration>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            secret: None,
            mode: FaultMode::Ok,
            keep_impressions: false,
            quiet: false,
            max_body_bytes: 64 << 20,
            request_log_capacity: 10_000,
            dedupe_capacity: 1_000_000,
            max_kept_impressions: 2_000_000,
            max_timestamp_skew: None,
        }
    }
}

/// Namespace for receiver helpers that need no running receiver.
#[derive(Debug, Clone, Copy)]
pub struct Receiver;

impl Receiver {
    /// Starts a receiver; the same as [`start`].
    pub async fn start(cfg: ReceiverConfig) -> anyhow::Result<ReceiverHandle> {
        start(cfg).await
    }

    /// A `127.0.0.1` address where nothing listens, to model an endpoint that refuses
    /// connections: it binds an ephemeral port and closes it again, so connecting to the address
    /// gets "connection refused" — unless some other program happens to bind that port in the
    /// meantime (the OS hands out ephemeral ports round-robin, so that is unlikely soon after).
    pub fn refusing_addr() -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.local_addr()
    }
}

/// Starts a receiver on its own tokio task and returns once it is listening.
pub async fn start(cfg: ReceiverConfig) -> anyhow::Result<ReceiverHandle> {
    server::start(cfg).await
}
