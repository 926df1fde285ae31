//! `sluice bench delivery`: how fast one integration drains a backlog.
//!
//! The integration is created (so it receives everything ingested from then on) and paused;
//! the backlog is ingested; then the integration is resumed and the drain is timed until the
//! in-process receiver has validated and counted every impression.

use super::DeliveryArgs;
use super::ingest::{ServerRows as _, machine_line, print_threads, server_with_env};
use super::load::{self, Bodies, Plan};
use super::machine::data_parent;
use super::proc::{self, Delta};
use super::report::{self, Table};
use serde_json::{Value, json};
use sluice_receiver::{self as receiver, ReceiverConfig, Stats};
use sluice_testkit::SluiceProcess;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::time::Instant;

pub struct DeliveryResult {
    pub args: DeliveryArgs,
    /// Building the backlog.
    pub ingested: u64,
    pub ingest_time: Duration,
    pub ingest_failures: String,
    /// The drain.
    pub drain_time: Duration,
    pub complete: bool,
    pub rx: Stats,
    pub status: Value,
    /// Average duration of the recent successful attempts (send until 200), and how many.
    pub attempt_ms: Option<(f64, usize)>,
    pub server: Delta,
    pub client: Delta,
    pub machine_busy: Option<f64>,
    pub server_pid: u32,
}

impl DeliveryResult {
    pub fn drain_per_sec(&self) -> f64 {
        self.rx.unique_impressions as f64 / self.drain_time.as_secs_f64().max(1e-9)
    }

    pub fn print(&self) {
        let a = &self.args;
        let secs = self.drain_time.as_secs_f64();
        report::title("Delivery: drain a backlog to one integration");
        let cmd = format!(
            "sluice bench delivery --impressions {} --batch {}{}",
            a.impressions,
            a.batch,
            if a.no_gzip { " --no-gzip" } else { "" }
        );
        let batches = self.rx.unique_batches.max(1) as f64;
        Table::new()
            .row("command", cmd)
            .row(
                "backlog",
                format!(
                    "{} impressions, ingested in {:.1} s ({} impressions/s; failures: {})",
                    report::int(self.ingested as f64),
                    self.ingest_time.as_secs_f64(),
                    report::int(self.ingested as f64 / self.ingest_time.as_secs_f64().max(1e-9)),
                    self.ingest_failures
                ),
            )
            .row(
                "integration",
                format!(
                    "maxBatchImpressions {}, gzip {}",
                    a.batch,
                    if a.no_gzip { "off" } else { "on" }
                ),
            )
            .row(
                "drained (receiver counted)",
                format!(
                    "{} of {}{}",
                    report::int(self.rx.unique_impressions as f64),
                    report::int(self.ingested as f64),
                    if self.complete { "" } else { "  (TIMED OUT)" }
                ),
            )
            .row("drain time", format!("{secs:.2} s"))
            .row("impressions/s", report::int(self.drain_per_sec()))
            .row(
                "batches/s",
                format!("{:.1}", self.rx.unique_batches as f64 / secs.max(1e-9)),
            )
            .row(
                "per batch",
                format!(
                    "{:.1} ms from one batch to the next; HTTP attempt (send until 200) {}",
                    secs * 1000.0 / batches,
                    self.attempt_ms.map_or("?".to_owned(), |(ms, n)| format!(
                        "{ms:.1} ms avg of the last {n}"
                    ))
                ),
            )
            .row(
                "batch body (avg)",
                format!(
                    "{} on the wire, {} JSON",
                    report::bytes(self.rx.bytes_received as f64 / batches),
                    report::bytes(self.rx.bytes_decoded as f64 / batches)
                ),
            )
            .row(
                "receiver: duplicates / refused",
                format!(
                    "{} / {}",
                    self.rx.duplicate_batches,
                    self.rx.bad_bodies
                        + self.rx.bad_headers
                        + self.rx.bad_signatures
                        + self.rx.too_large
                        + self.rx.read_errors
                ),
            )
            .row(
                "integration status",
                format!(
                    "state {}, delivered {}, failed attempts {}",
                    self.status["state"].as_str().unwrap_or("?"),
                    self.status["deliveredImpressions"],
                    self.status["failedAttempts"]
                ),
            )
            .server_rows(&self.server, self.server_pid, self.rx.unique_impressions)
            .row(
                "server disk reads / writes",
                format!(
                    "{} / {}",
                    report::bytes(self.server.read_bytes as f64),
                    report::bytes(self.server.write_bytes as f64)
                ),
            )
            .row(
                "receiver (bench process) CPU",
                report::pct(self.client.cpu_percent()),
            )
            .row(
                "whole machine busy",
                machine_line(self.machine_busy, &[&self.server, &self.client]),
            )
            .print();
        print_threads("server CPU by thread", &self.server);
        print_threads("receiver CPU by thread", &self.client);
    }
}

pub async fn run(a: &DeliveryArgs) -> anyhow::Result<DeliveryResult> {
    anyhow::ensure!(
        a.impressions > 0 && a.batch > 0 && a.ingest_batch > 0 && a.clients > 0,
        "sizes must be positive"
    );
    let bodies = Arc::new(
        tokio::task::spawn_blocking({
            let (batch, clients) = (a.ingest_batch, a.clients);
            move || Bodies::generate((clients * 4).clamp(32, 256), batch, false)
        })
        .await?,
    );
    let rx = receiver::start(ReceiverConfig {
        quiet: true,
        keep_impressions: false,
        request_log_capacity: 1000,
        ..ReceiverConfig::default()
    })
    .await?;
    let (mut server, target) = server_with_env(&data_parent(&a.common), a.common.keep_data).await?;
    let result = drive(a, &server, target, bodies, &rx).await;
    server.stop().await;
    rx.shutdown().await;
    result
}

async fn drive(
    a: &DeliveryArgs,
    server: &SluiceProcess,
    target: load::Target,
    bodies: Arc<Bodies>,
    rx: &receiver::ReceiverHandle,
) -> anyhow::Result<DeliveryResult> {
    let id = "bench-hook";
    let admin = server.admin();
    admin
        .create_integration(&json!({
                "id": id,
                "name": "bench receiver",
                "url": rx.url("/hook"),
                "environments": ["bench"],
                "gzip": !a.no_gzip,
                "maxBatchImpressions": a.batch,
                "flushIntervalMs": 250,
        }))
        .await?;
    admin.pause(id).await?;

    // 1. The backlog.
    let requests = a.impressions.div_ceil(a.ingest_batch as u64);
    let acked = Arc::new(AtomicU64::new(0));
    let progress = load::progress("backlog", acked.clone());
    let t0 = Instant::now();
    let plan = Plan {
        count_from: t0,
        until: t0 + Duration::from_secs(a.timeout),
        max_requests: Some(requests),
    };
    let ingest = load::run_clients(a.clients, bodies, target, plan, acked).await?;
    let ingest_time = t0.elapsed();
    drop(progress);
    let ingested = ingest.ok_impressions;
    anyhow::ensure!(
        ingested > 0,
        "no impression was ingested: {:?}",
        ingest.failures
    );
    let ingest_failures = if ingest.failures.is_empty() {
        "none".to_owned()
    } else {
        ingest
            .failures
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let before = rx.stats().unique_impressions;
    anyhow::ensure!(
        before == 0,
        "the paused integration delivered {before} impressions"
    );
    // Let the page cache and the server settle before timing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. The drain.
    let (s0, c0, m0) = (
        proc::sample(Some(server.pid())),
        proc::sample(None),
        proc::machine_cpu(),
    );
    let start = Instant::now();
    admin.resume(id).await?;
    let deadline = start + Duration::from_secs(a.timeout);
    let mut last_print = start;
    let mut last_count = 0u64;
    let mut complete = false;
    let stats = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let step = left.min(Duration::from_secs(1));
        match rx
            .wait_until(step, |s| s.unique_impressions >= ingested)
            .await
        {
            Ok(s) => {
                complete = true;
                break s;
            }
            Err(s) => {
                if Instant::now() >= deadline {
                    break s;
                }
                let now = Instant::now();
                if now.duration_since(last_print) >= Duration::from_millis(990) {
                    let rate = (s.unique_impressions - last_count) as f64
                        / now.duration_since(last_print).as_secs_f64();
                    eprintln!(
                        "  [drain] {:>4}s  {:>12} impressions/s  ({} of {})",
                        start.elapsed().as_secs(),
                        report::int(rate),
                        report::int(s.unique_impressions as f64),
                        report::int(ingested as f64)
                    );
                    last_print = now;
                    last_count = s.unique_impressions;
                }
            }
        }
    };
    let drain_time = start.elapsed();
    let (s1, c1, m1) = (
        proc::sample(Some(server.pid())),
        proc::sample(None),
        proc::machine_cpu(),
    );
    let attempts = admin.attempts(id).await.unwrap_or(Value::Null);
    let ok: Vec<f64> = attempts["attempts"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|a| a["status"].as_u64() == Some(200))
                .filter_map(|a| a["durationMs"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    let attempt_ms = (!ok.is_empty()).then(|| (ok.iter().sum::<f64>() / ok.len() as f64, ok.len()));
    // The receiver counts a batch before the server has saved its cursor: give the status a
    // moment to catch up.
    let mut status = Value::Null;
    for _ in 0..30 {
        status = admin.integration_status(id).await.unwrap_or(Value::Null);
        if !complete || status["deliveredImpressions"].as_u64() >= Some(ingested) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(DeliveryResult {
        args: a.clone(),
        ingested,
        ingest_time,
        ingest_failures,
        drain_time,
        complete,
        rx: stats,
        status,
        attempt_ms,
        server: Delta::between(&s0, &s1),
        client: Delta::between(&c0, &c1),
        machine_busy: proc::machine_busy(m0, m1),
        server_pid: server.pid(),
    })
}
