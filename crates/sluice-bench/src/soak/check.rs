//! The final count: every destination healed, the bench waits until each receiver has,
//! for every acknowledged request, all of its impressions (per flag name `soak-<seq>`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ingest::{Ingested, flag};
use super::{Run, SoakArgs};

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What one destination ended with.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Impressions of acknowledged requests that never arrived.
    pub(crate) lost: u64,
    /// Impressions received more than once (a batch sent again under its id, counted by
    /// the receiver, plus arrivals beyond a request's size: replays, redeliveries).
    pub(crate) duplicates: u64,
    /// Impressions of requests not answered 200 that arrived anyway (stored before the
    /// answer was lost to a kill: at-least-once, not a loss).
    pub(crate) unacked_arrived: u64,
    /// Seconds from the end of ingest until nothing was missing (or the timeout).
    pub(crate) drain_s: f64,
}

fn outcome(run: &Run, i: usize, ingest: &Ingested, per_request: u32, drain_s: f64) -> Outcome {
    let stats = run.receivers[i].stats();
    let per = u64::from(per_request);
    let mut o = Outcome {
        lost: 0,
        duplicates: stats.duplicate_impressions,
        unacked_arrived: 0,
        drain_s,
    };
    for (seq, acked) in ingest.acked.iter().enumerate() {
        let got = stats.per_split.get(&flag(seq as u64)).copied().unwrap_or(0);
        o.duplicates += got.saturating_sub(per);
        if *acked {
            o.lost += per.saturating_sub(got);
        } else {
            o.unacked_arrived += got.min(per);
        }
    }
    o
}

/// Waits (at most `--drain-timeout`) until no destination misses anything.
pub(crate) async fn drain(run: &Arc<Run>, ingest: &Ingested, args: &SoakArgs) -> Vec<Outcome> {
    let t = Instant::now();
    loop {
        let drain_s = t.elapsed().as_secs_f64();
        let all: Vec<Outcome> = (0..run.receivers.len())
            .map(|i| outcome(run, i, ingest, args.per_request, drain_s))
            .collect();
        if all.iter().all(|o| o.lost == 0) || t.elapsed() > args.drain_timeout {
            return all;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
