//! `sluice bench export`: export throughput (impressions/s) of
//! `GET /v1/environments/{id}/impressions` for a narrow window (about 1% of the data, in
//! the middle of the log) and a wide one (all of it), in each format and with gzip.
//!
//! It starts `<exe> serve` as a child process (so that the server's CPU
//! time can be read from `/proc/<pid>` apart from the client's), ingests the impressions
//! with concurrent Split SDK bulk requests, then times complete exports read by a client
//! that counts the rows. Entry point: [`run_export_bench`].

use anyhow::{Context as _, bail};
use flate2::write::GzDecoder;
use serde_json::json;
use sluice_testkit::SluiceProcess;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SDK_KEY: &str = "sdk-bench-export-000000001";
const ENV: &str = "bench";
/// Impression `time` of the first impression; each next one is 10 ms later.
const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 10;

/// Options of the export benchmark (`sluice bench export`).
#[derive(clap::Args, Debug, Clone)]
pub struct ExportBenchArgs {
    /// Impressions to ingest before exporting.
    #[arg(long, default_value_t = 2_000_000)]
    pub impressions: u64,
    /// Impressions per ingest request.
    #[arg(long, default_value_t = 1000)]
    pub ingest_batch: usize,
    /// Concurrent ingest clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Share of the time range the narrow window covers, in percent.
    #[arg(long, default_value_t = 1.0)]
    pub narrow_percent: f64,
    /// Runs of each narrow export (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub narrow_runs: usize,
    /// Directory under which the server's data directory is created (default: the
    /// system temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the server's data directory afterwards.
    #[arg(long)]
    pub keep_data: bool,
}

impl Default for ExportBenchArgs {
    fn default() -> Self {
        ExportBenchArgs {
            impressions: 2_000_000,
            ingest_batch: 1000,
            clients: 8,
            narrow_percent: 1.0,
            narrow_runs: 5,
            data_dir: None,
            keep_data: false,
        }
    }
}

/// One timed export.
#[derive(Debug, Clone)]
pub struct ExportRun {
    pub label: String,
    pub format: &'static str,
    pub gzip: bool,
    pub rows: u64,
    /// Uncompressed body bytes.
    pub bytes: u64,
    /// Bytes on the wire.
    pub wire_bytes: u64,
    pub elapsed: Duration,
    /// Time to the first body byte.
    pub first_byte: Duration,
    /// Server CPU time (user + system) during the export.
    pub server_cpu: Duration,
}

impl ExportRun {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct ExportBenchResult {
    pub impressions: u64,
    pub ingest_elapsed: Duration,
    pub log_bytes: u64,
    pub runs: Vec<ExportRun>,
}

impl ExportBenchResult {
    /// Prints the figures as a table.
    pub fn print(&self) {
        println!();
        println!("Export: GET /v1/environments/{{id}}/impressions");
        println!(
            "  {} impressions ingested in {:.1} s; log {} on disk",
            group(self.impressions),
            self.ingest_elapsed.as_secs_f64(),
            mib(self.log_bytes)
        );
        println!();
        println!(
            "  {:<26} {:>7} {:>11} {:>10} {:>10} {:>9} {:>14} {:>10} {:>11}",
            "window",
            "format",
            "rows",
            "body",
            "wire",
            "time",
            "impressions/s",
            "MiB/s",
            "server CPU"
        );
        for r in &self.runs {
            println!(
                "  {:<26} {:>7} {:>11} {:>10} {:>10} {:>9} {:>14} {:>10} {:>10.0}%",
                r.label,
                if r.gzip {
                    format!("{}+gz", r.format)
                } else {
                    r.format.to_owned()
                },
                group(r.rows),
                mib(r.bytes),
                mib(r.wire_bytes),
                format!("{:.3} s", r.elapsed.as_secs_f64()),
                group(r.rows_per_sec() as u64),
                format!(
                    "{:.0}",
                    r.bytes as f64 / 1048576.0 / r.elapsed.as_secs_f64().max(1e-9)
                ),
                100.0 * r.server_cpu.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
            );
        }
        if let Some(n) = self.runs.iter().find(|r| r.label.starts_with("narrow")) {
            println!();
            println!(
                "  narrow window: first byte after {:.1} ms (median of runs)",
                n.first_byte.as_secs_f64() * 1000.0
            );
        }
    }
}

/// Runs the export benchmark against `exe serve` (`exe`: the sluice binary, e.g.
/// [`crate::sluice_exe`] from `sluice bench`, or `env!("CARGO_BIN_EXE_sluice")` from a test).
pub async fn run_export_bench(
    exe: &Path,
    args: &ExportBenchArgs,
) -> anyhow::Result<ExportBenchResult> {
    anyhow::ensure!(
        args.impressions > 0 && args.ingest_batch > 0 && args.clients > 0,
        "--impressions, --ingest-batch and --clients must be positive"
    );
    anyhow::ensure!(
        args.narrow_percent > 0.0 && args.narrow_percent <= 100.0,
        "--narrow-percent must be in (0, 100]"
    );
    sluice_client::install_crypto_provider();
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut server =
        super::server::start(exe, &parent, "sluice-bench-export", args.keep_data).await?;
    eprintln!(
        "server pid {} on {} (data dir {})",
        server.pid(),
        server.addr(),
        server.data_dir().display()
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    server
        .admin()
        .create_environment(&json!({ "id": ENV, "name": "Bench Production", "sdkKeys": [SDK_KEY] }))
        .await
        .context("creating the environment")?;

    let ingest_elapsed = ingest(&http, &server, args).await?;
    let log_bytes = dir_size(&server.data_dir().join("log"));

    let span = args.impressions as i64 * STEP_MS;
    let width = ((span as f64 * args.narrow_percent / 100.0) as i64).max(1);
    let from = T0 + (span - width) / 2;
    let narrow = format!("from={from}&to={}", from + width);
    let mut runs = Vec::new();
    // Warm-up: one wide export (page cache, connections).
    export(&http, &server, "warm-up", "", "ndjson", false).await?;
    for (format, gzip) in [
        ("ndjson", false),
        ("json", false),
        ("csv", false),
        ("ndjson", true),
    ] {
        runs.push(export(&http, &server, "wide (all)", "", format, gzip).await?);
    }
    let label = format!("narrow ({}%, middle)", args.narrow_percent);
    for (format, gzip) in [("ndjson", false), ("ndjson", true)] {
        let mut tries = Vec::new();
        for _ in 0..args.narrow_runs.max(1) {
            tries.push(export(&http, &server, &label, &narrow, format, gzip).await?);
        }
        tries.sort_by_key(|r| r.elapsed);
        runs.push(tries.swap_remove(tries.len() / 2));
    }
    let expected_wide = args.impressions;
    for r in &runs {
        if r.label.starts_with("wide") && r.rows != expected_wide {
            bail!(
                "{} {}: exported {} rows, expected {expected_wide}",
                r.label,
                r.format,
                r.rows
            );
        }
    }
    server.stop().await;
    Ok(ExportBenchResult {
        impressions: args.impressions,
        ingest_elapsed,
        log_bytes,
        runs,
    })
}

async fn ingest(
    http: &reqwest::Client,
    server: &SluiceProcess,
    args: &ExportBenchArgs,
) -> anyhow::Result<Duration> {
    let requests = args.impressions.div_ceil(args.ingest_batch as u64);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (http, next, done) = (http.clone(), next.clone(), done.clone());
        let url = server.url("/api/testImpressions/bulk");
        let (total, batch) = (args.impressions, args.ingest_batch as u64);
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    return anyhow::Ok(());
                }
                let first = r * batch;
                let items: Vec<serde_json::Value> = (first..(first + batch).min(total))
                    .map(|g| {
                        json!({
                            "k": format!("user-{:09}", g % 1_000_003), "t": if g.is_multiple_of(3) { "off" } else { "on" },
                            "m": T0 + g as i64 * STEP_MS, "c": 1_699_999_000_000i64, "r": "default rule",
                            "b": null, "pt": null,
                        })
                    })
                    .collect();
                let body = serde_json::to_vec(&json!([{ "f": format!("flag_{}", r % 16), "i": items }]))?;
                let resp = http
                    .post(&url)
                    .bearer_auth(SDK_KEY)
                    .header("content-type", "application/json")
                    .header("SplitSDKVersion", "python-10.7.0")
                    .header("SplitSDKMachineName", "bench-host-01")
                    .header("SplitSDKMachineIP", "10.0.0.1")
                    .body(body)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("ingest: {} {}", resp.status(), resp.text().await.unwrap_or_default());
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = tokio::spawn({
        let done = done.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                eprintln!(
                    "  ingest: {}/{requests} requests",
                    done.load(Ordering::Relaxed)
                );
            }
        }
    });
    let mut result = Ok(());
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(e.into()),
        }
    }
    progress.abort();
    result?;
    Ok(started.elapsed())
}

/// One complete export, read and counted by the client.
async fn export(
    http: &reqwest::Client,
    server: &SluiceProcess,
    label: &str,
    query: &str,
    format: &'static str,
    gzip: bool,
) -> anyhow::Result<ExportRun> {
    let sep = if query.is_empty() { "" } else { "&" };
    let url = server.url(&format!(
        "/v1/environments/{ENV}/impressions?{query}{sep}format={format}"
    ));
    let mut req = http.get(url).bearer_auth(server.token());
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let cpu0 = server_cpu(server);
    let started = Instant::now();
    let mut resp = req.send().await?;
    if !resp.status().is_success() {
        bail!(
            "export: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let mut decoder = gzip.then(|| GzDecoder::new(Vec::with_capacity(1 << 20)));
    let mut first_byte = None;
    // Rows are counted by newlines: NDJSON and CSV end each row with one (bench values
    // need no CSV quoting); sluice's JSON array puts each object on a line of its own, with
    // one line break after `[` and one before `]` more than there are objects.
    let (mut lines, mut bytes, mut wire) = (0u64, 0u64, 0u64);
    let mut count = |data: &[u8]| {
        bytes += data.len() as u64;
        lines += data.iter().filter(|b| **b == b'\n').count() as u64;
    };
    while let Some(chunk) = resp.chunk().await? {
        first_byte.get_or_insert_with(|| started.elapsed());
        wire += chunk.len() as u64;
        match decoder.as_mut() {
            Some(d) => {
                d.write_all(&chunk)?;
                count(d.get_ref());
                d.get_mut().clear();
            }
            None => count(&chunk),
        }
    }
    if let Some(d) = decoder {
        count(&d.finish()?);
    }
    let elapsed = started.elapsed();
    let rows = match format {
        "csv" => lines.saturating_sub(1),
        "json" => lines.saturating_sub(2),
        _ => lines,
    };
    Ok(ExportRun {
        label: label.to_owned(),
        format,
        gzip,
        rows,
        bytes,
        wire_bytes: wire,
        elapsed,
        first_byte: first_byte.unwrap_or(elapsed),
        server_cpu: server_cpu(server).saturating_sub(cpu0),
    })
}

/// User + system CPU time of the server so far.
fn server_cpu(server: &SluiceProcess) -> Duration {
    crate::proc::sample(Some(server.pid())).cpu
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    crate::report::int(n as f64)
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / 1048576.0)
}
