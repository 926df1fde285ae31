//! An integration's counters for the per-integration metrics: read from its shared state
//! in memory (no store I/O), so a scrape can ask for every integration's.

use super::DeliveryEngine;
use std::collections::BTreeMap;

/// Counted since this process started (or the integration was created).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrationCounters {
    /// Failed attempts by [`crate::metrics::failure_reason`].
    pub failed_by_reason: BTreeMap<&'static str, u64>,
    /// Automatic pauses (by protection, including failed probes).
    pub pauses: u64,
    pub gaps: u64,
    pub gap_impressions: u64,
}

impl DeliveryEngine {
    /// The integration's counters (all zero for one that has not run in this process).
    pub fn counters(&self, id: &str) -> IntegrationCounters {
        self.get_shared(id)
            .map(|s| {
                s.with(|st| IntegrationCounters {
                    failed_by_reason: st.failed_by_reason.clone(),
                    pauses: u64::from(st.health.pause_count()),
                    gaps: st.gaps,
                    gap_impressions: st.gap_impressions,
                })
            })
            .unwrap_or_default()
    }
}
