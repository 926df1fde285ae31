//! Delivery lag after ingest: the healthy integrations' (the isolation claim) and the
//! flaky ones' (reported apart).

use std::time::Duration;

use super::PostmortemArgs;
use super::ingest::IngestResult;
use super::kinds::Kind;
use super::receivers::Table;
use super::run::Plan;
use super::stats::{MISSING, Pcts, min_med_max, missing_at, pcts, wait_complete};

/// Seconds until every endpoint of `kind` had every acknowledged impression (None: not
/// within 60 s).
async fn complete_within_60s(
    table: &Table,
    ing: &IngestResult,
    per_request: usize,
    kind: Kind,
) -> Option<f64> {
    let limit = Duration::from_secs(60);
    wait_complete(table, &ing.acked, per_request, limit, |e| e.kind == kind)
        .await
        .map(|d| d.as_secs_f64())
}

/// When the healthy integrations had every acknowledged impression after ingest ended.
pub(super) struct CaughtUp {
    /// Seconds after the end of ingest (None: not within 60 s).
    pub(super) secs: Option<f64>,
    /// Acknowledged impressions the healthy ones still missed then.
    pub(super) missing_then: u64,
}

impl CaughtUp {
    pub(super) async fn healthy(table: &Table, ing: &IngestResult, per_request: usize) -> CaughtUp {
        let secs = complete_within_60s(table, ing, per_request, Kind::Healthy).await;
        let missing_then = table
            .eps
            .iter()
            .filter(|e| e.kind == Kind::Healthy)
            .map(|e| missing_at(e, &ing.acked, per_request))
            .sum();
        CaughtUp { secs, missing_then }
    }
}

pub(super) struct HealthyLag {
    pub(super) count: usize,
    pub(super) lag: Pcts,
    /// Lag p99 per 10 s of send time.
    pub(super) timeline: Vec<u32>,
    /// Requests each healthy endpoint received (min, median, max).
    pub(super) requests: (u64, u64, u64),
    pub(super) caught_up: Option<f64>,
    pub(super) missing_then: u64,
}

impl HealthyLag {
    /// The healthy endpoints' lag over all impressions and per 10 s bucket; printed.
    pub(super) fn collect(
        table: &Table,
        args: &PostmortemArgs,
        plan: Plan,
        caught: CaughtUp,
    ) -> HealthyLag {
        let bucket_reqs =
            (10.0 * f64::from(args.rate) / f64::from(args.per_request)).max(1.0) as usize;
        let buckets = (plan.requests as usize).div_ceil(bucket_reqs);
        let mut all = Vec::new();
        let mut per_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets];
        let mut requests = Vec::new();
        for e in table.eps.iter().filter(|e| e.kind == Kind::Healthy) {
            requests.push(e.requests.load(std::sync::atomic::Ordering::Relaxed));
            let r = e.received.lock().unwrap_or_else(|e| e.into_inner());
            for (idx, &l) in r.lags.iter().enumerate() {
                if l != MISSING {
                    all.push(l);
                    if let Some(b) = per_bucket.get_mut(idx / plan.per_request / bucket_reqs) {
                        b.push(l);
                    }
                }
            }
        }
        all.sort_unstable();
        let lag = pcts(&all);
        let timeline = per_bucket
            .into_iter()
            .map(|mut b| {
                b.sort_unstable();
                pcts(&b).p99
            })
            .collect();
        println!(
            "  healthy lag p50 {} ms  p99 {} ms  max {} ms over {} impressions; caught up {}",
            lag.p50,
            lag.p99,
            lag.max,
            lag.n,
            caught.secs.map_or_else(
                || format!("NOT within 60 s ({} missing)", caught.missing_then),
                |s| format!("{s:.1} s after ingest ended")
            )
        );
        HealthyLag {
            count: requests.len(),
            lag,
            timeline,
            requests: min_med_max(requests),
            caught_up: caught.secs,
            missing_then: caught.missing_then,
        }
    }
}

pub(super) struct FlakyLag {
    pub(super) lag: Option<Pcts>,
    /// Seconds after the end of ingest until the flaky ones had everything.
    pub(super) caught_up: Option<f64>,
}

impl FlakyLag {
    /// Waits (up to 60 s) for the flaky integrations, if any, so that their lag is complete.
    pub(super) async fn collect(table: &Table, ing: &IngestResult, per_request: usize) -> FlakyLag {
        if !table.eps.iter().any(|e| e.kind == Kind::Flaky) {
            return FlakyLag {
                lag: None,
                caught_up: None,
            };
        }
        let caught_up = complete_within_60s(table, ing, per_request, Kind::Flaky).await;
        let mut lags: Vec<u32> = Vec::new();
        for e in table.eps.iter().filter(|e| e.kind == Kind::Flaky) {
            let r = e.received.lock().unwrap_or_else(|e| e.into_inner());
            lags.extend(r.lags.iter().copied().filter(|l| *l != MISSING));
        }
        lags.sort_unstable();
        FlakyLag {
            lag: (!lags.is_empty()).then(|| pcts(&lags)),
            caught_up,
        }
    }
}
