//! The store conformance suite, written once and run against every implementation of
//! [`ImpressionLog`](crate::ImpressionLog) and [`MetaStore`](crate::MetaStore): the
//! embedded store, the in-memory fakes and the JetStream store (see the `conformance`
//! tests beside each of them).
//!
//! - [`log`]: append, read, bounds, subscribe, seek by ingest time, scan by event time,
//!   retention, removal, refused entries and environment ids;
//! - [`meta`]: revisions, create-if-absent, compare-and-swap conflicts, deletes, listing
//!   by prefix, watch.
//!
//! A check panics with a message naming what diverged. Compiled for this crate's tests and
//! with the `conformance` feature (for other crates' fakes); not part of the product.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod log;
pub mod meta;

use std::time::Duration;

/// How long a check waits for something the contract says happens eventually (a watch
/// catching up). Only a bound on a hang: a passing run never waits this long.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Waits until the wall clock has passed `ms`, so that the next entry's ingest time is
/// later than an entry ingested at `ms`.
pub async fn wait_past(ms: i64) {
    while now_ms() <= ms {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
