//! One run: receivers, a fresh sluice with the integrations, steady ingest, then what the
//! receivers got, healing, and losses — each step in its own function.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;

use super::kinds::{FAILURES, Kind};
use super::lag::{CaughtUp, FlakyLag, HealthyLag};
use super::outcome::{KindReport, RunResult, kind_reports, show_losses};
use super::receivers::{Receivers, Table};
use super::report::mib;
use super::server::Server;
use super::stats::count_log_lines;
use super::{PostmortemArgs, SLOW_PAST_TIMEOUT_MS, configure, heal, measure};

/// How much one run ingests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) per_request: usize,
    pub(super) requests: u64,
    pub(super) expected: usize,
}

impl Plan {
    fn new(args: &PostmortemArgs) -> Plan {
        let requests = (args.seconds as f64 * f64::from(args.rate) / f64::from(args.per_request))
            .round() as u64;
        let per_request = args.per_request as usize;
        Plan {
            per_request,
            requests,
            expected: requests as usize * per_request,
        }
    }
}

fn announce(kinds: &[Kind], failing: bool) {
    let n = kinds.len();
    let how = if failing {
        let f = kinds.iter().filter(|k| FAILURES.contains(k)).count();
        let flaky = kinds.iter().filter(|k| **k == Kind::Flaky).count();
        format!("{f} failing: hang / refuse / 500 / slow; {flaky} flaky")
    } else {
        "none failing".to_owned()
    };
    let what = if failing {
        "with failing destinations"
    } else {
        "all healthy"
    };
    println!();
    println!("== run: {what} ({n} integrations, {how}) ==");
}

/// Run 1 (`failing == false`: every destination healthy) or run 2.
pub(super) async fn run_once(
    args: &PostmortemArgs,
    kinds: &[Kind],
    failing: bool,
) -> anyhow::Result<RunResult> {
    let label = if failing { "failing" } else { "baseline" };
    let plan = Plan::new(args);
    announce(kinds, failing);
    let table = Arc::new(Table::new(kinds, failing, plan.expected, args.per_request));
    let receivers = Receivers::start(args.receivers, &table).await?;
    let server = Server::start(args, label).await?;
    println!(
        "  sluice pid {} at {} (log: {})",
        server.pid,
        server.addr,
        server.log.display()
    );
    let configured = configure::integrations(&server, args, &receivers.url_of).await?;
    let timeout_ms = configured.protection["requestTimeoutMs"]
        .as_u64()
        .context("the created integrations show no protection.requestTimeoutMs")?;
    table
        .slow_ms
        .store(timeout_ms + SLOW_PAST_TIMEOUT_MS, Ordering::Relaxed);
    let idle = measure::idle(server.pid, args.idle_settle_seconds, args.idle_seconds).await;
    println!(
        "  idle (nothing ingested): sluice CPU {:.1}% of a core in the first {} s, then {:.1}% over {} s; RSS {}, {} fds, {} threads",
        idle.settle_cpu_pct,
        idle.settle_secs,
        idle.cpu_pct,
        idle.secs,
        mib(idle.rss),
        idle.fds,
        idle.threads
    );

    let (measured, watch) = measure::steady_ingest(&server, args, &table, plan.requests).await;
    let ing = &measured.ingest;
    let caught = CaughtUp::healthy(&table, ing, plan.per_request).await;
    let flaky = FlakyLag::collect(&table, ing, plan.per_request).await;
    let healthy = HealthyLag::collect(&table, args, plan, caught);
    let snapshot = heal::Snapshot::take(&server, &table).await;
    // Peak memory so far: ingest and the failing period, before any drain.
    let hwm_before_heal = crate::proc::light(Some(server.pid)).hwm_bytes;
    let healing = heal::heal_and_drain(&table, &receivers, ing, args, &snapshot.failing).await?;
    let (peaks, rss_end) = watch.finish(hwm_before_heal).await;
    // Idle connections are closed after sluice's idle timeout: the fds fall back.
    tokio::time::sleep(Duration::from_secs(args.idle_close_seconds)).await;
    let fds_after_idle = crate::proc::light(Some(server.pid)).fds;
    println!(
        "  {} s after the drain: {fds_after_idle} open fds",
        args.idle_close_seconds
    );

    let kinds_out: Vec<KindReport> =
        kind_reports(&table, &snapshot, ing, plan.per_request, measured.start_ms);
    let lost_total: u64 = kinds_out.iter().map(|k| k.lost).sum();
    let duplicates_total: u64 = kinds_out.iter().map(|k| k.duplicates).sum();
    if lost_total > 0 {
        show_losses(&server, &table, ing, plan.per_request).await;
    }
    table.closing.store(true, Ordering::Relaxed);
    let log = server.log.clone();
    server.stop().await;
    let log_lines = count_log_lines(&log);
    receivers.stop(healing.listeners);
    let impressions = ing.acked_impressions(args.per_request.into());
    Ok(RunResult {
        label,
        healthy: healthy.count,
        ingest_secs: measured.ingest_secs,
        impressions,
        lag: healthy.lag,
        flaky_lag: flaky.lag,
        flaky_caught_up: flaky.caught_up,
        timeline: healthy.timeline,
        healthy_requests: healthy.requests,
        healthy_caught_up: healthy.caught_up,
        healthy_missing_then: healthy.missing_then,
        sluice_cpu_pct: measured.cpu.sluice,
        bench_cpu_pct: measured.cpu.bench,
        machine_cpu_pct: measured.cpu.machine,
        others_cpu_pct: measured.cpu.others,
        peaks,
        rss_end,
        hwm_before_heal,
        kinds: kinds_out,
        drain_secs: healing.drain_secs,
        lost_total,
        duplicates_total,
        log_lines,
        ingest: measured.ingest,
        create_secs: configured.create_secs,
        started_secs: configured.started_secs,
        idle,
        fds_after_idle,
        protection: configured.protection,
        flush_interval_ms: configured.flush_interval_ms,
    })
}
