//! Figures from the receivers' records: percentiles, spreads, what is missing, waiting until
//! nothing is, and sluice's log warnings and errors.

use std::time::{Duration, Instant};

use super::receivers::{Endpoint, Table};

#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Pcts {
    pub(super) n: usize,
    pub(super) p50: u32,
    pub(super) p99: u32,
    pub(super) p999: u32,
    pub(super) max: u32,
}

pub(super) fn pcts(sorted: &[u32]) -> Pcts {
    let at = |p: f64| {
        if sorted.is_empty() {
            0
        } else {
            sorted[((sorted.len() - 1) as f64 * p).round() as usize]
        }
    };
    Pcts {
        n: sorted.len(),
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

pub(super) fn min_med_max(mut v: Vec<u64>) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// "Not received" in a lag table.
pub(super) const MISSING: u32 = u32::MAX;

/// Missing acknowledged impressions at one endpoint.
pub(super) fn missing_at(ep: &Endpoint, acked: &[bool], per_request: usize) -> u64 {
    let r = ep.received.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    for (seq, a) in acked.iter().enumerate() {
        if !a {
            continue;
        }
        for i in 0..per_request {
            if r.lags
                .get(seq * per_request + i)
                .is_none_or(|l| *l == MISSING)
            {
                n += 1;
            }
        }
    }
    n
}

/// Waits until every endpoint picked by `pick` has every acknowledged impression, or
/// `limit` passes. Returns the time it took, or None.
pub(super) async fn wait_complete(
    table: &Table,
    acked: &[bool],
    per_request: usize,
    limit: Duration,
    pick: impl Fn(&Endpoint) -> bool,
) -> Option<Duration> {
    let expected = acked.iter().filter(|a| **a).count() as u64 * per_request as u64;
    let t0 = Instant::now();
    loop {
        let mut done = true;
        for ep in table.eps.iter().filter(|e| pick(e)) {
            let unique = ep.received.lock().unwrap_or_else(|e| e.into_inner()).unique;
            // Cheap test first; the exact one only once the count says so.
            if unique < expected || missing_at(ep, acked, per_request) > 0 {
                done = false;
                break;
            }
        }
        if done {
            return Some(t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) fn count_log_lines(path: &std::path::Path) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, 0);
    };
    let (mut warn, mut err) = (0, 0);
    for l in text.lines() {
        if l.contains(" WARN ") {
            warn += 1;
        } else if l.contains(" ERROR ") {
            err += 1;
        }
    }
    (warn, err)
}
