//! Benchmark of the JetStream log's acknowledged ingest on a local cluster it starts
//! (sluice-testkit; needs nats-server >= 2.10, see `.ci/run`).
//!
//! `cargo run --release -p sluice-store --example nats_bench -- [seconds] [tasks] [envs]
//!  [impressions-per-entry] [nodes]`
//!
//! Each task appends entries of N impressions (~60 bytes each, about what
//! `sluice_core::record` stores for an SDK impression) to one of the environments and
//! waits for the acknowledgement, like concurrent ingest requests. Prints impressions/s
//! acknowledged, MB/s, messages and rounds per second and append latency percentiles.
//! `SYNC=default` runs the servers without `sync_interval: always`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use sluice_store::nats::{JetStreamLog, LogConfig, NatsConfig};
use sluice_store::{AppendEntry, ImpressionLog};
use sluice_testkit::nats::{ClusterOptions, NatsCluster, find_binary};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BYTES_PER_IMPRESSION: usize = 60;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    let tasks: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    let envs: usize = args.next().map_or(Ok(4), |s| s.parse())?;
    let per_entry: u32 = args.next().map_or(Ok(100), |s| s.parse())?;
    let nodes: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let bin = find_binary()?;
    let mut opts = ClusterOptions::nodes(nodes);
    opts.sync_always = std::env::var("SYNC").map_or(true, |v| v != "default");
    println!(
        "nats-server {} × {nodes} (sync_interval: {}), R{nodes}, {tasks} tasks, {envs} envs, \
         {per_entry} impressions/entry ({} bytes), {secs} s",
        bin.version,
        if opts.sync_always {
            "always"
        } else {
            "default"
        },
        per_entry as usize * BYTES_PER_IMPRESSION
    );
    let cluster = NatsCluster::start_with(&bin, opts).await?;
    let mut cfg = NatsConfig::from_url(&cluster.urls())?;
    cfg.replicas = nodes;
    let log = Arc::new(
        JetStreamLog::open(
            cfg.connect().await?,
            LogConfig {
                retention_interval: Duration::ZERO,
                ..LogConfig::default()
            },
        )
        .await?,
    );
    let payload: Vec<u8> = (0..per_entry as usize * BYTES_PER_IMPRESSION)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    for e in 0..envs {
        // Create the streams before timing.
        log.append(&format!("bench{e}"), entry(&payload, per_entry))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (log, payload) = (log.clone(), payload.clone());
        let env = format!("bench{}", t % envs);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match log.append(&env, entry(&payload, per_entry)).await {
                    Ok(_) => lat.push(t0.elapsed().as_micros() as u64),
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for h in handles {
        let (l, f) = h.await?;
        lat.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let impressions = lat.len() as f64 * f64::from(per_entry);
    let c = log.counters();
    println!(
        "{:.0} impressions/s acknowledged ({:.0} appends/s, {:.1} MB/s), {} failed",
        impressions / elapsed,
        lat.len() as f64 / elapsed,
        impressions * BYTES_PER_IMPRESSION as f64 / elapsed / 1e6,
        failed
    );
    println!(
        "{:.0} messages/s, {:.0} rounds/s, {} retries",
        c.messages.load(Ordering::Relaxed) as f64 / elapsed,
        c.rounds.load(Ordering::Relaxed) as f64 / elapsed,
        c.retries.load(Ordering::Relaxed)
    );
    println!(
        "append latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    drop(cluster);
    Ok(())
}

fn entry(payload: &[u8], count: u32) -> AppendEntry {
    AppendEntry {
        payload: payload.to_vec(),
        count,
        min_time: 1,
        max_time: 2,
    }
}
