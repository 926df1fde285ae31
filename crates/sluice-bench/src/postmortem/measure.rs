//! Steady ingest, measured: sluice's and this process's CPU over the ingest, the whole
//! machine's, sluice's peaks (RSS, threads, fds) sampled every 250 ms, and a progress line
//! every 10 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ingest::{IngestResult, ingest};
use super::receivers::Table;
use super::server::Server;
use super::{PostmortemArgs, now_ms};
use crate::proc;

/// Peaks of a process over a run, sampled every 250 ms.
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct Peaks {
    pub(super) rss: u64,
    pub(super) threads: u64,
    pub(super) fds: u64,
}

/// Samples a process's peaks until [`PeakWatch::finish`].
pub(super) struct PeakWatch {
    pid: u32,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Peaks>,
}

impl PeakWatch {
    fn start(pid: u32) -> PeakWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut p = Peaks::default();
                while !stop.load(Ordering::Relaxed) {
                    let s = proc::light(Some(pid));
                    p.rss = p.rss.max(s.hwm_bytes).max(s.rss_bytes);
                    p.threads = p.threads.max(s.threads);
                    p.fds = p.fds.max(s.fds);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                p
            }
        });
        PeakWatch { pid, stop, task }
    }

    /// The peaks (RSS at least `hwm_before`) and the process's RSS now.
    pub(super) async fn finish(self, hwm_before: u64) -> (Peaks, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut peaks = self.task.await.unwrap_or_default();
        let end = proc::light(Some(self.pid));
        peaks.rss = peaks.rss.max(end.hwm_bytes).max(hwm_before);
        (peaks, end.rss_bytes)
    }
}

/// CPU over the ingest, in percent of one core.
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct Cpu {
    pub(super) sluice: f64,
    pub(super) bench: f64,
    /// All processes on the machine, and those other than sluice and this bench.
    pub(super) machine: f64,
    pub(super) others: f64,
}

pub(super) struct Measured {
    pub(super) ingest: IngestResult,
    pub(super) ingest_secs: f64,
    pub(super) cpu: Cpu,
    /// Wall clock (ms since the epoch) when ingest started.
    pub(super) start_ms: i64,
}

/// sluice left alone for a while: no ingest (delivery tasks started, nothing to send).
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct Idle {
    /// The first seconds after every integration started (start-up work finishing: the
    /// blocking pool's threads, the first dashboard sample), and sluice's CPU in them.
    pub(super) settle_secs: u64,
    pub(super) settle_cpu_pct: f64,
    /// The steady idle period after that, and sluice's CPU in it (percent of one core).
    pub(super) secs: u64,
    pub(super) cpu_pct: f64,
    pub(super) rss: u64,
    pub(super) fds: u64,
    pub(super) threads: u64,
}

/// Measures sluice's CPU over `settle` seconds after start-up, then over `secs` seconds of
/// steady idleness, then its RSS, fds and threads.
pub(super) async fn idle(pid: u32, settle: u64, secs: u64) -> Idle {
    let cpu_over = |secs: u64| async move {
        let s0 = proc::light(Some(pid));
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let s1 = proc::light(Some(pid));
        let elapsed = t0.elapsed().as_secs_f64().max(0.001);
        s1.cpu.saturating_sub(s0.cpu).as_secs_f64() / elapsed * 100.0
    };
    let settle_cpu_pct = cpu_over(settle).await;
    let cpu_pct = cpu_over(secs).await;
    let s = proc::light(Some(pid));
    Idle {
        settle_secs: settle,
        settle_cpu_pct,
        secs,
        cpu_pct,
        rss: s.rss_bytes,
        fds: s.fds,
        threads: s.threads,
    }
}

/// Ingests `requests` requests at the configured rate while measuring.
pub(super) async fn steady_ingest(
    server: &Server,
    args: &PostmortemArgs,
    table: &Arc<Table>,
    requests: u64,
) -> (Measured, PeakWatch) {
    let watch = PeakWatch::start(server.pid);
    let (s0, b0, t0) = (
        proc::light(Some(server.pid)),
        proc::light(None),
        Instant::now(),
    );
    let start_ms = now_ms();
    let m0 = proc::machine_cpu();
    let progress = progress(table.clone(), args.seconds, t0);
    let ing = ingest(server, args, requests).await;
    let ingest_secs = t0.elapsed().as_secs_f64();
    let (s1, b1) = (proc::light(Some(server.pid)), proc::light(None));
    progress.abort();
    let pct = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() / ingest_secs * 100.0;
    let sluice = pct(s0.cpu, s1.cpu);
    let bench = pct(b0.cpu, b1.cpu);
    let machine = match (m0, proc::machine_cpu()) {
        (Some(a), Some(b)) => {
            b.0.saturating_sub(a.0) as f64 / proc::clk_tck() / ingest_secs * 100.0
        }
        _ => 0.0,
    };
    let others = (machine - sluice - bench).max(0.0);
    println!(
        "  ingest done in {ingest_secs:.1} s: {} requests, {} failed; sluice CPU {sluice:.0}%, bench CPU {bench:.0}%, other processes {others:.0}% (of one core)",
        ing.requests, ing.failed
    );
    let measured = Measured {
        ingest: ing,
        ingest_secs,
        cpu: Cpu {
            sluice,
            bench,
            machine,
            others,
        },
        start_ms,
    };
    (measured, watch)
}

/// Prints what has been delivered in all, every 10 s of the run.
fn progress(table: Arc<Table>, secs: u64, t0: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0u64;
        for s in (10..=secs).step_by(10) {
            tokio::time::sleep_until((t0 + Duration::from_secs(s)).into()).await;
            let total = table.delivered();
            println!(
                "  t={s:>4}s delivered {total:>10} impressions in all (+{}/s)",
                (total - last) / 10
            );
            last = total;
        }
    })
}
