//! The store conformance suite ([`crate::conformance`]) against the embedded store.

use super::log::{LogOptions, SegmentLog};
use super::meta::RedbMeta;
use crate::conformance::log::LogHarness;
use crate::log::{ImpressionLog, MAX_ENTRY_BYTES};
use async_trait::async_trait;
use std::time::Duration;

/// How long entries are kept, as configured; retention is applied explicitly.
const RETENTION_MS: i64 = 60_000;

struct Harness(SegmentLog);

#[async_trait]
impl LogHarness for Harness {
    fn log(&self) -> &dyn ImpressionLog {
        &self.0
    }
    async fn expire_before(&self, _env: &str, cutoff_ms: i64) {
        // A segment goes once its newest entry is older than `now - retention_ms`.
        self.0.enforce_retention(cutoff_ms + RETENTION_MS);
    }
    fn max_entry_bytes(&self) -> usize {
        MAX_ENTRY_BYTES
    }
}

#[tokio::test]
async fn embedded_log_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions {
        // One entry per segment, so that retention can remove any prefix of entries.
        segment_bytes: 1,
        retention_ms: RETENTION_MS,
        retention_interval: Duration::ZERO,
        ..LogOptions::default()
    };
    let log = SegmentLog::open(dir.path(), opts).expect("open");
    crate::conformance::log::run_all(&Harness(log)).await;
}

#[tokio::test]
async fn embedded_meta_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = RedbMeta::open(&dir.path().join("meta.redb")).expect("open");
    crate::conformance::meta::run_all(&meta).await;
}
