//! What one run found: per kind of destination, requests, failed attempts, pauses, states,
//! losses and duplicates; and the run's figures as a whole.

use std::collections::BTreeMap;

use serde_json::Value;

use super::heal::Snapshot;
use super::ingest::IngestResult;
use super::integration_id;
use super::kinds::Kind;
use super::measure::{Idle, Peaks};
use super::receivers::Table;
use super::server::Server;
use super::stats::{Pcts, min_med_max, missing_at};

pub(super) struct KindReport {
    pub(super) kind: Kind,
    pub(super) count: usize,
    /// Requests the destination received while failing (a refusing one receives none).
    pub(super) requests: (u64, u64, u64),
    /// sluice's `failedAttempts` while failing.
    pub(super) failed_attempts: (u64, u64, u64),
    pub(super) paused: usize,
    pub(super) states: BTreeMap<String, usize>,
    /// After healing.
    pub(super) lost: u64,
    pub(super) duplicates: u64,
    pub(super) duplicate_batches: u64,
    pub(super) integrations_with_loss: usize,
    /// Seconds from the start of ingest to the first pause (min / median / max), over the
    /// integrations that paused.
    pub(super) first_pause: Option<(f64, f64, f64)>,
    /// Seconds from each integration's first failed attempt (its end) to its first pause:
    /// (median, max) over the integrations that paused.
    pub(super) pause_after_failure: Option<(f64, f64)>,
}

pub(super) struct RunResult {
    pub(super) label: &'static str,
    pub(super) healthy: usize,
    pub(super) ingest: IngestResult,
    pub(super) ingest_secs: f64,
    pub(super) impressions: u64,
    pub(super) lag: Pcts,
    /// Flaky integrations' lag, and when they had caught up after the end of ingest.
    pub(super) flaky_lag: Option<Pcts>,
    pub(super) flaky_caught_up: Option<f64>,
    /// Healthy lag p99 per 10 s of send time.
    pub(super) timeline: Vec<u32>,
    /// Healthy endpoints' requests received (min, median, max).
    pub(super) healthy_requests: (u64, u64, u64),
    /// Seconds after the end of ingest until every healthy integration had everything
    /// (None: not within the wait).
    pub(super) healthy_caught_up: Option<f64>,
    pub(super) healthy_missing_then: u64,
    pub(super) sluice_cpu_pct: f64,
    pub(super) bench_cpu_pct: f64,
    /// All processes on the machine, and those other than sluice and this bench.
    pub(super) machine_cpu_pct: f64,
    pub(super) others_cpu_pct: f64,
    pub(super) peaks: Peaks,
    pub(super) rss_end: u64,
    pub(super) hwm_before_heal: u64,
    pub(super) kinds: Vec<KindReport>,
    /// Seconds from healing until everything had arrived.
    pub(super) drain_secs: Option<f64>,
    pub(super) lost_total: u64,
    pub(super) duplicates_total: u64,
    pub(super) log_lines: (u64, u64),
    /// Creating the integrations (bulk), and until all had started.
    pub(super) create_secs: f64,
    pub(super) started_secs: f64,
    /// sluice idle before ingest (integrations started, nothing ingested).
    pub(super) idle: Idle,
    /// Open fds after the drain plus `--idle-close-seconds` of idleness.
    pub(super) fds_after_idle: u64,
    /// The protection settings the integrations had (sluice's defaults).
    pub(super) protection: Value,
    pub(super) flush_interval_ms: u64,
}

/// One [`KindReport`] per kind of destination present, from the receivers' records and the
/// statuses taken before healing.
pub(super) fn kind_reports(
    table: &Table,
    snapshot: &Snapshot,
    ing: &IngestResult,
    per_request: usize,
    start_ms: i64,
) -> Vec<KindReport> {
    let mut present: Vec<Kind> = table.eps.iter().map(|e| e.kind).collect();
    present.sort();
    present.dedup();
    present
        .into_iter()
        .map(|kind| {
            let idx: Vec<usize> = (0..table.eps.len())
                .filter(|&i| table.eps[i].kind == kind)
                .collect();
            kind_report(table, snapshot, ing, per_request, start_ms, kind, &idx)
        })
        .collect()
}

fn status_u64(snapshot: &Snapshot, i: usize, field: &str) -> u64 {
    snapshot
        .statuses
        .get(&i)
        .and_then(|v| v[field].as_u64())
        .unwrap_or(0)
}

fn kind_report(
    table: &Table,
    snapshot: &Snapshot,
    ing: &IngestResult,
    per_request: usize,
    start_ms: i64,
    kind: Kind,
    idx: &[usize],
) -> KindReport {
    let mut k = KindReport {
        kind,
        count: idx.len(),
        requests: min_med_max(idx.iter().map(|&i| snapshot.requests[i]).collect()),
        failed_attempts: min_med_max(
            idx.iter()
                .map(|&i| status_u64(snapshot, i, "failedAttempts"))
                .collect(),
        ),
        paused: idx
            .iter()
            .filter(|&&i| status_u64(snapshot, i, "pauseCount") >= 1)
            .count(),
        states: BTreeMap::new(),
        lost: 0,
        duplicates: 0,
        duplicate_batches: 0,
        integrations_with_loss: 0,
        first_pause: first_pause(snapshot, idx, start_ms),
        pause_after_failure: pause_after_failure(snapshot, idx),
    };
    for &i in idx {
        if let Some(st) = snapshot.statuses.get(&i).and_then(|v| v["state"].as_str()) {
            *k.states.entry(st.to_owned()).or_default() += 1;
        }
        let m = missing_at(&table.eps[i], &ing.acked, per_request);
        k.lost += m;
        k.integrations_with_loss += usize::from(m > 0);
        let r = table.eps[i]
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        k.duplicates += r.duplicates;
        k.duplicate_batches += r.duplicate_batches;
        if r.foreign > 0 {
            eprintln!(
                "  {}: {} impressions with keys this bench did not send",
                integration_id(i),
                r.foreign
            );
        }
    }
    k
}

/// Seconds from the start of ingest to each integration's first pause: (min, median, max).
fn first_pause(snapshot: &Snapshot, idx: &[usize], start_ms: i64) -> Option<(f64, f64, f64)> {
    let mut firsts: Vec<f64> = idx
        .iter()
        .filter_map(|&i| Some((first_paused_at(snapshot, i)? - start_ms) as f64 / 1000.0))
        .collect();
    firsts.sort_by(f64::total_cmp);
    (!firsts.is_empty()).then(|| {
        (
            firsts[0],
            firsts[firsts.len() / 2],
            firsts[firsts.len() - 1],
        )
    })
}

/// Each integration's first pause time (ms since the epoch), if it paused.
fn first_paused_at(snapshot: &Snapshot, i: usize) -> Option<i64> {
    let h = snapshot.statuses.get(&i)?["pauseHistory"].as_array()?;
    h.iter().filter_map(|p| p["pausedAt"].as_i64()).min()
}

/// Seconds from the first failed attempt to the first pause: (median, max).
fn pause_after_failure(snapshot: &Snapshot, idx: &[usize]) -> Option<(f64, f64)> {
    let mut secs: Vec<f64> = idx
        .iter()
        .filter_map(|&i| {
            let paused = first_paused_at(snapshot, i)?;
            let failed = *snapshot.first_failure_ms.get(&i)?;
            Some((paused - failed).max(0) as f64 / 1000.0)
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    (!secs.is_empty()).then(|| (secs[secs.len() / 2], secs[secs.len() - 1]))
}

/// A few integrations that lost impressions, with sluice's view of them.
pub(super) async fn show_losses(
    server: &Server,
    table: &Table,
    ing: &IngestResult,
    per_request: usize,
) {
    let mut shown = 0;
    for (i, ep) in table.eps.iter().enumerate() {
        let m = missing_at(ep, &ing.acked, per_request);
        if m == 0 || shown >= 5 {
            continue;
        }
        shown += 1;
        let st = server.status(i).await.unwrap_or(Value::Null);
        println!(
            "  LOST {m} at {} ({}): state {} lag {} delivered {} cursors {} pending {}",
            integration_id(i),
            ep.kind.label(),
            st["state"],
            st["lagImpressions"],
            st["deliveredImpressions"],
            st["cursors"],
            st["pendingBatch"]
        );
    }
}
