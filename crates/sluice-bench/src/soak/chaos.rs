//! What happens to the server while ingest runs: kill -9 and restart every
//! `--kill-every` (± a quarter), a sample of its RSS, threads and file descriptors every
//! 10 s, an export of the last minute every 60 s and a window replay every 90 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;

use super::{ENV, FLIPPING, Run, SoakArgs, integration_id};
use crate::proc;

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const EXPORT_EVERY: Duration = Duration::from_secs(60);
const REPLAY_EVERY: Duration = Duration::from_secs(90);

/// One reading of the server process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Seconds since the run started.
    pub(crate) at_s: f64,
    /// Which server life (0 = before the first kill).
    pub(crate) life: usize,
    /// Seconds since this life started.
    pub(crate) uptime_s: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) fds: u64,
    pub(crate) threads: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Chaos {
    /// Per kill: seconds into the run, and how long the restart took until ready.
    pub(crate) restarts: Vec<(f64, Duration)>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) exports_ok: u64,
    pub(crate) exports_failed: u64,
    pub(crate) export_bytes: u64,
    pub(crate) replays_started: u64,
    pub(crate) replays_failed: u64,
}

/// xorshift, seeded from the clock: only the kill times need to vary.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        Jitter(super::check::now_ms() as u64 | 1)
    }
    /// Uniform in `[0.75, 1.25)` times `d`.
    fn around(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        d.mul_f64(0.75 + (self.0 % 1000) as f64 / 2000.0)
    }
}

pub(crate) async fn chaos(
    run: Arc<Run>,
    args: SoakArgs,
    stop: Arc<Notify>,
) -> anyhow::Result<Chaos> {
    let mut out = Chaos::default();
    let mut jitter = Jitter::new();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut life = 0usize;
    let mut life_start = Instant::now();
    let mut next_kill = tokio::time::Instant::now() + jitter.around(args.kill_every);
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    let mut export = tokio::time::interval(EXPORT_EVERY);
    let mut replay = tokio::time::interval(REPLAY_EVERY);
    export.reset();
    replay.reset();
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = tokio::time::sleep_until(next_kill) => {
                let mut server = run.server.lock().await;
                server.kill9().await;
                let t = Instant::now();
                server.restart().await?;
                let took = t.elapsed();
                *run.base_url.write().await = server.url("");
                drop(server);
                out.restarts.push((run.started.elapsed().as_secs_f64(), took));
                life += 1;
                life_start = Instant::now();
                println!(
                    "  {:>5.0} s  kill -9 #{life}; ready again after {:.2} s",
                    run.started.elapsed().as_secs_f64(),
                    took.as_secs_f64()
                );
                next_kill = tokio::time::Instant::now() + jitter.around(args.kill_every);
            }
            _ = sample.tick() => {
                let pid = run.server.lock().await.pid();
                let l = proc::light(Some(pid));
                out.samples.push(Sample {
                    at_s: run.started.elapsed().as_secs_f64(),
                    life,
                    uptime_s: life_start.elapsed().as_secs_f64(),
                    rss_bytes: l.rss_bytes,
                    fds: l.fds,
                    threads: l.threads,
                });
            }
            _ = export.tick() => {
                let (url, token) = {
                    let server = run.server.lock().await;
                    let from = super::check::now_ms() - 60_000;
                    (server.url(&format!("/v1/environments/{ENV}/impressions?from={from}&format=ndjson")), server.token().to_owned())
                };
                match export_bytes(&http, &url, &token).await {
                    Ok(n) => {
                        out.exports_ok += 1;
                        out.export_bytes += n;
                    }
                    Err(_) => out.exports_failed += 1,
                }
            }
            _ = replay.tick() => {
                let now = super::check::now_ms();
                let server = run.server.lock().await;
                let r = server
                    .admin()
                    .replay(&integration_id(FLIPPING), &json!({"from": now - 120_000, "to": now - 60_000}))
                    .await;
                drop(server);
                match r {
                    Ok(_) => out.replays_started += 1,
                    Err(_) => out.replays_failed += 1,
                }
            }
        }
    }
    Ok(out)
}

async fn export_bytes(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<u64> {
    let mut resp = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}
