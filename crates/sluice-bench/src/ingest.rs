//! `sluice bench ingest`: durable ingest throughput.

use super::IngestArgs;
use super::load::{self, Bodies, Outcome, Plan, Target};
use super::machine::data_parent;
use super::proc::{self, Delta};
use super::report::{self, Table};
use serde_json::json;
use sluice_testkit::SluiceProcess;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::time::Instant;

pub const SDK_KEY: &str = "sdk-bench-0000000000000001";

pub struct IngestResult {
    pub args: IngestArgs,
    pub bodies_raw: usize,
    pub bodies_wire: usize,
    pub window: Duration,
    pub outcome: Outcome,
    pub server: Delta,
    pub client: Delta,
    pub machine_busy: Option<f64>,
    pub server_pid: u32,
}

impl IngestResult {
    pub fn impressions_per_sec(&self) -> f64 {
        self.outcome.ok_impressions as f64 / self.window.as_secs_f64()
    }

    pub fn print(&self) {
        let a = &self.args;
        let o = &self.outcome;
        let secs = self.window.as_secs_f64();
        report::title("Ingest: POST /api/testImpressions/bulk, 200 only after fsync");
        let cmd = format!(
            "sluice bench ingest --seconds {} --clients {} --batch {}{}",
            a.seconds,
            a.clients,
            a.batch,
            if a.gzip { " --gzip" } else { "" }
        );
        let failures = if o.failures.is_empty() {
            "none".to_owned()
        } else {
            o.failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Table::new()
            .row("command", cmd)
            .row(
                "clients / impressions per request",
                format!("{} / {}", a.clients, a.batch),
            )
            .row(
                "request body (avg)",
                if a.gzip {
                    format!(
                        "{} gzip ({} raw)",
                        report::bytes(self.bodies_wire as f64),
                        report::bytes(self.bodies_raw as f64)
                    )
                } else {
                    report::bytes(self.bodies_raw as f64)
                },
            )
            .row(
                "measured window",
                format!("{secs:.1} s (after {} s warm-up)", a.warmup),
            )
            .row(
                "impressions acknowledged (200)",
                report::int(o.ok_impressions as f64),
            )
            .row("impressions/s", report::int(self.impressions_per_sec()))
            .row("requests/s", report::int(o.ok_requests as f64 / secs))
            .row(
                "request latency p50",
                report::ms(report::quantile(&o.latencies_us, 0.50)),
            )
            .row(
                "request latency p99",
                report::ms(report::quantile(&o.latencies_us, 0.99)),
            )
            .row(
                "request latency max",
                report::ms(report::quantile(&o.latencies_us, 1.0)),
            )
            .row("failed requests", failures)
            .server_rows(&self.server, self.server_pid, o.ok_impressions)
            .row(
                "server disk writes",
                format!("{}/s", report::bytes(self.server.write_bytes as f64 / secs)),
            )
            .row("load generator CPU", report::pct(self.client.cpu_percent()))
            .row(
                "whole machine busy",
                machine_line(self.machine_busy, &[&self.server, &self.client]),
            )
            .print();
        print_threads("server CPU by thread", &self.server);
    }
}

/// The server process's CPU, CPU per million impressions and RSS, as table rows.
pub trait ServerRows {
    fn server_rows(self, server: &Delta, pid: u32, impressions: u64) -> Self;
}

impl ServerRows for Table {
    fn server_rows(self, server: &Delta, pid: u32, impressions: u64) -> Table {
        self.row(
            "server CPU",
            format!(
                "{} of one core (pid {pid})",
                report::pct(server.cpu_percent())
            ),
        )
        .row(
            "server CPU per 1M impressions",
            cpu_per_million(server.cpu, impressions),
        )
        .row(
            "server RSS (end / peak)",
            format!(
                "{} / {}",
                report::bytes(server.rss_bytes as f64),
                report::bytes(server.hwm_bytes as f64)
            ),
        )
    }
}

pub fn cpu_per_million(cpu: Duration, n: u64) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.2} CPU-s", cpu.as_secs_f64() / n as f64 * 1e6)
}

/// The machine's busy share, and how much of it was neither the server nor the bench.
pub fn machine_line(busy: Option<f64>, measured: &[&Delta]) -> String {
    match (busy, proc::others_percent(busy, measured)) {
        (Some(b), Some(o)) => format!(
            "{b:.0}% of all cores (other processes: {} of one core)",
            report::pct(o)
        ),
        _ => "?".into(),
    }
}

pub fn print_threads(title: &str, d: &Delta) {
    println!();
    println!("  {title} (% of one core over the window):");
    let mut t = Table::new().header(["  thread", "CPU"]);
    for (name, cpu) in d.threads.iter().take(8) {
        t = t.cols([format!("  {name}"), report::pct(proc::pct_of(*cpu, d.wall))]);
    }
    t.print();
}

/// Starts a server with one environment; returns it and the ingest target.
pub async fn server_with_env(
    parent: &std::path::Path,
    keep: bool,
) -> anyhow::Result<(SluiceProcess, Target)> {
    let server = super::server::start(&crate::sluice_exe()?, parent, "sluice-bench", keep).await?;
    server
        .admin()
        .create_environment(
            &json!({ "id": "bench", "name": "Bench Production", "sdkKeys": [SDK_KEY] }),
        )
        .await?;
    let target = Target {
        url: server.url("/api/testImpressions/bulk"),
        sdk_key: SDK_KEY.into(),
    };
    eprintln!(
        "server pid {} on {} (data dir {})",
        server.pid(),
        server.addr(),
        server.data_dir().display()
    );
    Ok((server, target))
}

pub async fn run(a: &IngestArgs) -> anyhow::Result<IngestResult> {
    anyhow::ensure!(
        a.clients > 0 && a.batch > 0 && a.seconds > 0,
        "--clients, --batch and --seconds must be positive"
    );
    let bodies = Arc::new(
        tokio::task::spawn_blocking({
            let (batch, gzip, clients) = (a.batch, a.gzip, a.clients);
            move || Bodies::generate((clients * 4).clamp(32, 256), batch, gzip)
        })
        .await?,
    );
    let (mut server, target) = server_with_env(&data_parent(&a.common), a.common.keep_data).await?;
    let pid = server.pid();
    let now = Instant::now();
    let plan = Plan {
        count_from: now + Duration::from_secs(a.warmup),
        until: now + Duration::from_secs(a.warmup + a.seconds),
        max_requests: None,
    };
    let acked = Arc::new(AtomicU64::new(0));
    let progress = load::progress("ingest", acked.clone());
    // Sample both processes at the window's edges.
    let sampler = tokio::spawn({
        let plan = plan.clone();
        async move {
            tokio::time::sleep_until(plan.count_from).await;
            let (s0, c0, m0) = (
                proc::sample(Some(pid)),
                proc::sample(None),
                proc::machine_cpu(),
            );
            tokio::time::sleep_until(plan.until).await;
            let (s1, c1, m1) = (
                proc::sample(Some(pid)),
                proc::sample(None),
                proc::machine_cpu(),
            );
            (
                Delta::between(&s0, &s1),
                Delta::between(&c0, &c1),
                proc::machine_busy(m0, m1),
            )
        }
    });
    let outcome = load::run_clients(a.clients, bodies.clone(), target, plan.clone(), acked).await;
    drop(progress);
    let (server_delta, client_delta, machine_busy) = sampler.await?;
    server.stop().await;
    let outcome = outcome?;
    Ok(IngestResult {
        args: a.clone(),
        bodies_raw: bodies.raw_bytes,
        bodies_wire: bodies.wire_bytes,
        window: plan.until.duration_since(plan.count_from),
        outcome,
        server: server_delta,
        client: client_delta,
        machine_busy,
        server_pid: pid,
    })
}
