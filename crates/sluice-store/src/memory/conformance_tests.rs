//! The store conformance suite ([`crate::conformance`]) against the in-memory fakes.

use super::{MemoryLog, MemoryMeta, SystemClock};
use crate::conformance::log::LogHarness;
use crate::log::ImpressionLog;
use async_trait::async_trait;
use std::sync::Arc;

struct Harness(MemoryLog);

const MAX: usize = 1 << 16;

#[async_trait]
impl LogHarness for Harness {
    fn log(&self) -> &dyn ImpressionLog {
        &self.0
    }
    async fn expire_before(&self, env: &str, cutoff_ms: i64) {
        self.0.remove_ingested_before(env, cutoff_ms);
    }
    fn max_entry_bytes(&self) -> usize {
        MAX
    }
}

#[tokio::test]
async fn memory_log_conforms() {
    let log = MemoryLog::with_clock(Arc::new(SystemClock)).with_max_entry_bytes(MAX);
    crate::conformance::log::run_all(&Harness(log)).await;
}

#[tokio::test]
async fn memory_meta_conforms() {
    crate::conformance::meta::run_all(&MemoryMeta::new()).await;
}
