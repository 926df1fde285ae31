//! `sluice bench soak`: hours of the life of a server in one run, bounded by `--duration`
//! (default 30 minutes). Not run in CI.
//!
//! - **Steady ingest**: one Split bulk request every `--per-request / --rate` seconds, each
//!   with its own flag name (`soak-<seq>`), so that every receiver's per-flag counts say, for
//!   each acknowledged request, whether all its impressions arrived.
//! - **Destinations flipping**: three integrations, each on its own receiver, move every
//!   `--flip-every` through healthy and every failure mode the receiver has (500, 503,
//!   hang, slow, 429 with `Retry-After`, flaky, a huge response body), out of phase.
//! - **kill -9** every `--kill-every` (± a quarter, at random), restarted at once on the same
//!   data directory (a new port: the ingest client follows).
//! - **Exports and replays** running: an export of the last minute every 60 s, and a
//!   window replay to a fourth integration every 90 s.
//! - **Sampled**: the server's RSS, threads and open file descriptors every 10 s.
//!
//! At the end every destination heals and the bench waits until each has every
//! acknowledged impression. It prints the lost impressions (must be 0), duplicates, the
//! RSS/fd samples per server life and their trend, and fails if anything was lost.
//!
//! Files: [`schedule`] (the receivers' modes over time), [`ingest`], [`chaos`] (kills,
//! samples, exports, replays), [`check`] (the final count), [`report`].

mod chaos;
mod check;
mod ingest;
mod report;
mod schedule;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use sluice_receiver::{FaultMode, ReceiverConfig, ReceiverHandle};
use sluice_testkit::{ChildLog, LaunchOptions, SluiceProcess, process::unique};
use tokio::sync::{Mutex, RwLock};

/// The environment every integration reads.
const ENV: &str = "prod";
const SDK_KEY: &str = "sdk-key-soak-0001";
/// Integrations whose destinations flip; the last one takes the replays.
const FLIPPING: usize = 3;
/// The receivers count impressions per flag name for at most this many names.
const MAX_REQUESTS: u64 = 9_000;

/// `sluice bench soak`
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long to run (e.g. `30m`, `90s`, `1h`).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Impressions per second ingested.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Impressions per ingest request.
    #[arg(long, default_value_t = 250)]
    pub per_request: u32,
    /// Mean time between kill -9 restarts.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub kill_every: Duration,
    /// How long each destination stays in one mode.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub flip_every: Duration,
    /// How long the final drain may take.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Directory under which the run's directory (data and server log) is made.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the run's directory afterwards.
    #[arg(long)]
    pub keep_data: bool,
    /// The `sluice` binary (default: beside this one, or `$SLUICE_BIN`).
    #[arg(long, value_name = "PATH")]
    pub sluice_bin: Option<PathBuf>,
}

/// `90s`, `30m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m or 1h"))?;
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// What every part of the run shares: the server (behind a lock: the killer restarts it),
/// its current base URL, and the receivers.
pub(crate) struct Run {
    pub(crate) server: Mutex<SluiceProcess>,
    pub(crate) base_url: RwLock<String>,
    pub(crate) receivers: Vec<ReceiverHandle>,
    pub(crate) started: Instant,
}

pub(crate) fn integration_id(i: usize) -> String {
    format!("soak-{i}")
}

pub async fn run_soak(args: SoakArgs) -> anyhow::Result<()> {
    let requests = args.duration.as_secs_f64() * f64::from(args.rate) / f64::from(args.per_request);
    if requests > MAX_REQUESTS as f64 {
        bail!(
            "{requests:.0} requests would be sent; at most {MAX_REQUESTS} can be checked one by one \
             (raise --per-request or lower --rate)"
        );
    }
    let exe = match &args.sluice_bin {
        Some(p) => p.clone(),
        None => crate::sluice_exe()?,
    };
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("sluice-soak-{}", unique()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = soak_in(&args, exe, &dir).await;
    if args.keep_data {
        eprintln!("  kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn soak_in(args: &SoakArgs, exe: PathBuf, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut receivers = Vec::new();
    for _ in 0..=FLIPPING {
        receivers.push(
            sluice_receiver::start(ReceiverConfig {
                quiet: true,
                ..ReceiverConfig::default()
            })
            .await?,
        );
    }
    let mut o = LaunchOptions::new(exe);
    o.data_dir = Some(dir.join("data"));
    o.log = ChildLog::Append(dir.join("sluice.log"));
    o.stop_timeout = Duration::from_secs(15);
    o.start_timeout = Duration::from_secs(120);
    o.http = Some(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
    );
    let server = SluiceProcess::start(o).await?;
    let admin = server.admin();
    admin
        .create_environment(&json!({"id": ENV, "name": "Production", "sdkKeys": [SDK_KEY]}))
        .await?;
    for (i, rx) in receivers.iter().enumerate() {
        admin
            .create_integration(&json!({
                "id": integration_id(i), "name": integration_id(i), "url": rx.url(&format!("/h/{i}")),
                "environments": [ENV], "flushIntervalMs": 200, "maxBatchImpressions": 1000,
                "protection": {"requestTimeoutMs": 3000, "initialCooldownMs": 1000, "maxCooldownMs": 10000},
            }))
            .await?;
    }
    wait_started(&server).await?;
    let base_url = server.url("");
    let run = Arc::new(Run {
        server: Mutex::new(server),
        base_url: RwLock::new(base_url),
        receivers,
        started: Instant::now(),
    });
    println!(
        "soak: {} s, {} impressions/s ({} per request), kill -9 every ~{} s, modes flip every {} s; log {}",
        args.duration.as_secs(),
        args.rate,
        args.per_request,
        args.kill_every.as_secs(),
        args.flip_every.as_secs(),
        dir.join("sluice.log").display()
    );

    let stop = Arc::new(tokio::sync::Notify::new());
    let flipper = tokio::spawn(schedule::flip(run.clone(), args.flip_every));
    let chaos = tokio::spawn(chaos::chaos(run.clone(), args.clone(), stop.clone()));
    let ingest = ingest::ingest(&run, args).await;
    flipper.abort();
    stop.notify_one();
    let chaos = chaos.await.context("the chaos task")??;
    for rx in &run.receivers {
        rx.set_mode(FaultMode::Ok);
    }
    println!(
        "ingest done after {:.0} s; every destination healed; waiting for the drain (at most {} s)",
        run.started.elapsed().as_secs_f64(),
        args.drain_timeout.as_secs()
    );
    let outcome = check::drain(&run, &ingest, args).await;
    let sample = crate::proc::light(Some(run.server.lock().await.pid()));
    report::print(args, &ingest, &chaos, &outcome, &sample);
    run.server.lock().await.stop().await;
    if outcome.iter().any(|o| o.lost > 0) {
        bail!("acknowledged impressions were lost (see above)");
    }
    Ok(())
}

/// Every integration must hold its position before the first impression.
async fn wait_started(server: &SluiceProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..=FLIPPING {
        loop {
            match server.admin().integration_status(&integration_id(i)).await {
                Ok(v) if v["cursors"].get(ENV).is_some() => break,
                _ if Instant::now() > deadline => bail!("integration {i} never started"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("ten minutes").is_err());
    }
}
