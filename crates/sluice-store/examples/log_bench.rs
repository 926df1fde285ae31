//! Micro-benchmark of the embedded segment log's group commit.
//!
//! `cargo run --release -p sluice-store --example log_bench -- [seconds] [tasks] [envs] [dir]`
//!
//! Appends entries of 1000 records (~100 KB payload) from concurrent tasks for a few
//! seconds and prints entries/s, MB/s, fsyncs/s and append latency percentiles.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use sluice_store::embedded::log::{LogOptions, SegmentLog};
use sluice_store::{AppendEntry, ImpressionLog};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let tasks: usize = args.next().map_or(Ok(16), |s| s.parse())?;
    let envs: usize = args.next().map_or(Ok(4), |s| s.parse())?;
    let dir = match args.next() {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let mut opts = LogOptions::default();
    if let Some(n) = std::env::var("BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.writer_threads = n;
    }
    let writers = opts.writer_threads;
    let log = Arc::new(SegmentLog::open(dir.path(), opts)?);
    let payload: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (log, payload) = (log.clone(), payload.clone());
        handles.push(tokio::spawn(async move {
            let env = format!("bench-{}", t % envs.max(1));
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let entry = AppendEntry {
                    payload: payload.clone(),
                    count: 1000,
                    min_time: 0,
                    max_time: 1,
                };
                let t0 = Instant::now();
                log.append(&env, entry).await?;
                latencies.push(t0.elapsed());
            }
            Ok::<_, sluice_store::StoreError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = log.stats();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
    };
    println!(
        "{tasks} tasks, {envs} environments, {writers} writer threads, {secs} s, 1000-record entries of {} bytes",
        payload.len()
    );
    println!(
        "entries/s {:.0}   records/s {:.0}   MB/s {:.1}   fsyncs/s {:.0}   rounds/s {:.0}   entries/fsync {:.1}",
        stats.entries_appended as f64 / elapsed,
        stats.entries_appended as f64 * 1000.0 / elapsed,
        stats.bytes_appended as f64 / elapsed / 1e6,
        stats.fsyncs as f64 / elapsed,
        stats.rounds as f64 / elapsed,
        stats.entries_appended as f64 / stats.fsyncs.max(1) as f64,
    );
    println!(
        "append latency p50 {:?}  p99 {:?}  max {:?}",
        pct(0.5).copied().unwrap_or_default(),
        pct(0.99).copied().unwrap_or_default(),
        latencies.last().copied().unwrap_or_default()
    );
    drop(log);
    Ok(())
}
