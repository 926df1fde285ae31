//! `sluice receiver`: command-line arguments and the foreground loop that prints a summary.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{FaultMode, ReceiverConfig, Stats};

/// Arguments of `sluice receiver`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReceiverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Verify `webhook-signature` with this secret (Standard Webhooks); unsigned or badly
    /// signed deliveries get 401.
    #[arg(long, env = "SLUICE_RECEIVER_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Answer every delivery with this status (with --flaky-percent: only that share of them;
    /// with --retry-after: together with a Retry-After header).
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(100..=599))]
    pub fail_status: Option<u16>,
    /// Accept deliveries and never answer them.
    #[arg(long, conflicts_with_all = ["fail_status", "slow_ms", "flaky_percent", "huge_response_bytes", "retry_after"])]
    pub hang: bool,
    /// Answer 200 only after this many milliseconds.
    #[arg(long, value_name = "MS", conflicts_with_all = ["fail_status", "flaky_percent", "huge_response_bytes", "retry_after"])]
    pub slow_ms: Option<u64>,
    /// Fail this percentage of deliveries at random (with --fail-status, default 500).
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u8).range(0..=100), conflicts_with_all = ["huge_response_bytes", "retry_after"])]
    pub flaky_percent: Option<u8>,
    /// Answer 200 with a streamed response body of this many bytes.
    #[arg(long, value_name = "N", conflicts_with_all = ["fail_status", "retry_after"])]
    pub huge_response_bytes: Option<usize>,
    /// Answer --fail-status (default 503) with `Retry-After: SECS`.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,
    /// Keep received impressions in memory (see `GET /impressions`).
    #[arg(long)]
    pub keep: bool,
    /// Print only the listening address and the final totals; log refused deliveries at debug.
    #[arg(long)]
    pub quiet: bool,
}

impl ReceiverArgs {
    /// The fault mode these arguments ask for.
    pub fn mode(&self) -> FaultMode {
        if self.hang {
            FaultMode::Hang
        } else if let Some(ms) = self.slow_ms {
            FaultMode::Slow(Duration::from_millis(ms))
        } else if let Some(bytes) = self.huge_response_bytes {
            FaultMode::HugeBody { bytes }
        } else if let Some(p) = self.flaky_percent {
            FaultMode::Flaky {
                fail_percent: p,
                status: self.fail_status.unwrap_or(500),
            }
        } else if let Some(after_secs) = self.retry_after {
            FaultMode::Retry {
                status: self.fail_status.unwrap_or(503),
                after_secs,
            }
        } else if let Some(status) = self.fail_status {
            FaultMode::Status(status)
        } else {
            FaultMode::Ok
        }
    }

    /// The receiver configuration these arguments ask for.
    pub fn config(&self) -> ReceiverConfig {
        ReceiverConfig {
            listen: self.listen,
            secret: self.secret.clone(),
            mode: self.mode(),
            keep_impressions: self.keep,
            quiet: self.quiet,
            ..ReceiverConfig::default()
        }
    }
}

/// Runs a receiver in the foreground until Ctrl-C: prints where it listens, then (unless
/// `--quiet`) a one-line summary every second in which something changed, and the totals at
/// the end.
pub async fn run(args: ReceiverArgs) -> anyhow::Result<()> {
    let cfg = args.config();
    let signed = if cfg.secret.is_some() {
        "signatures verified"
    } else {
        "signatures not checked"
    };
    let rx = super::start(cfg).await?;
    say(&format!(
        "sluice receiver listening on {} (mode: {}; {signed})\n  \
         deliver to any path, e.g. {}; GET {} for counters; POST {} to change the mode",
        rx.url("/"),
        rx.mode(),
        rx.url("/hook"),
        rx.url("/stats"),
        rx.url("/mode"),
    ));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = rx.stats();
    let mut last_mode = rx.mode();
    let mut last_at = Instant::now();
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            // Without a signal handler there is nothing to wait for: run until killed.
            say(&format!(
                "cannot listen for Ctrl-C ({e}); stop the receiver with a signal"
            ));
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            () = &mut ctrl_c => break,
            _ = tick.tick() => {
                if args.quiet {
                    continue;
                }
                let mode = rx.mode();
                if mode != last_mode {
                    say(&format!("mode: {mode}"));
                    last_mode = mode;
                }
                let now = rx.stats();
                if now != last {
                    say(&summary(&now, Some((&last, last_at.elapsed()))));
                    last = now;
                    last_at = Instant::now();
                }
            }
        }
    }
    say(&format!("totals: {}", summary(&rx.stats(), None)));
    rx.shutdown().await;
    Ok(())
}

/// Prints a line to stdout; a closed stdout is not an error worth stopping for.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One line: requests, batches, impressions (with the rate since `prev`), problems, and
/// unique impressions per environment.
pub(crate) fn summary(s: &Stats, prev: Option<(&Stats, Duration)>) -> String {
    let mut line = format!(
        "requests {}  batches {} (dup {})  impressions {} unique, {} dup",
        s.requests,
        s.unique_batches,
        s.duplicate_batches,
        s.unique_impressions,
        s.duplicate_impressions
    );
    if let Some((p, dt)) = prev {
        let secs = dt.as_secs_f64().max(0.001);
        let rate = s.unique_impressions.saturating_sub(p.unique_impressions) as f64 / secs;
        let _ = write!(line, " ({rate:.0}/s)");
    }
    let problems = [
        ("bad sig", s.bad_signatures),
        ("bad body", s.bad_bodies),
        ("bad headers", s.bad_headers),
        ("too large", s.too_large),
        ("failed", s.failed_answers),
        ("hanging", s.hanging_now),
        ("slack", s.slack_messages),
    ];
    for (name, n) in problems {
        if n > 0 {
            let _ = write!(line, "  {name} {n}");
        }
    }
    if !s.per_environment.is_empty() {
        line.push_str("  envs:");
        const SHOWN: usize = 8;
        for (env, n) in s.per_environment.iter().take(SHOWN) {
            let _ = write!(line, " {env}={n}");
        }
        if s.per_environment.len() > SHOWN {
            let _ = write!(line, " +{} more", s.per_environment.len() - SHOWN);
        }
    }
    line
}
