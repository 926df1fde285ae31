//! What `sluice bench soak` prints: the run, the restarts, memory and descriptors per
//! server life (and their trend), exports and replays, and per destination what was lost.

use super::SoakArgs;
use super::chaos::{Chaos, Sample};
use super::check::Outcome;
use super::ingest::Ingested;
use crate::proc::Light;

const MIB: f64 = 1024.0 * 1024.0;

pub(crate) fn print(
    args: &SoakArgs,
    ingest: &Ingested,
    chaos: &Chaos,
    outcome: &[Outcome],
    last: &Light,
) {
    let per = u64::from(args.per_request);
    println!();
    println!("Soak ({} s)", args.duration.as_secs());
    println!(
        "  ingest: {} requests, {} acknowledged ({} impressions), {} refused, {} without an answer (server down)",
        ingest.acked.len(),
        ingest.acked_requests(),
        ingest.acked_requests() * per,
        ingest.refused,
        ingest.transport_errors
    );
    let restart_max = chaos
        .restarts
        .iter()
        .map(|r| r.1.as_secs_f64())
        .fold(0.0, f64::max);
    println!(
        "  kill -9: {} restarts (ready again after at most {:.2} s)",
        chaos.restarts.len(),
        restart_max
    );
    println!(
        "  exports: {} complete ({:.1} MiB), {} failed (server down); replays started: {}, refused/failed: {}",
        chaos.exports_ok,
        chaos.export_bytes as f64 / MIB,
        chaos.exports_failed,
        chaos.replays_started,
        chaos.replays_failed
    );
    println!("  server per life (samples every 10 s after the first 30 s of each life):");
    println!("    life  samples  RSS min..max MiB   fds min..max  threads max");
    let lives = chaos.samples.iter().map(|s| s.life).max().unwrap_or(0);
    let settled = |s: &&Sample| s.uptime_s >= 30.0;
    for life in 0..=lives {
        let v: Vec<&Sample> = chaos
            .samples
            .iter()
            .filter(|s| s.life == life)
            .filter(settled)
            .collect();
        if v.is_empty() {
            continue;
        }
        let rss = |f: fn(u64, u64) -> u64| v.iter().map(|s| s.rss_bytes).reduce(f).unwrap_or(0);
        let fds = |f: fn(u64, u64) -> u64| v.iter().map(|s| s.fds).reduce(f).unwrap_or(0);
        println!(
            "    {life:>4}  {:>7}  {:>7.1}..{:<7.1}   {:>5}..{:<5}   {:>5}",
            v.len(),
            rss(u64::min) as f64 / MIB,
            rss(u64::max) as f64 / MIB,
            fds(u64::min),
            fds(u64::max),
            v.iter().map(|s| s.threads).max().unwrap_or(0)
        );
    }
    let settled_all: Vec<&Sample> = chaos.samples.iter().filter(settled).collect();
    if let (Some(first), Some(lastl)) = (settled_all.first(), settled_all.last()) {
        println!(
            "  trend: RSS {:.1} MiB at {:.0} s → {:.1} MiB at {:.0} s; fds {} → {}; after the drain: RSS {:.1} MiB, fds {}",
            first.rss_bytes as f64 / MIB,
            first.at_s,
            lastl.rss_bytes as f64 / MIB,
            lastl.at_s,
            first.fds,
            lastl.fds,
            last.rss_bytes as f64 / MIB,
            last.fds
        );
    }
    println!("  destinations (3 flipping through every failure mode, 1 healthy taking replays):");
    println!("    integration  lost  duplicates  unacknowledged-but-arrived  drained after");
    for (i, o) in outcome.iter().enumerate() {
        println!(
            "    soak-{i:<6} {:>5}  {:>10}  {:>26}  {:>8.1} s",
            o.lost, o.duplicates, o.unacked_arrived, o.drain_s
        );
    }
    let lost: u64 = outcome.iter().map(|o| o.lost).sum();
    println!("  acknowledged impressions lost: {lost}");
}
