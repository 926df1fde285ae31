//! `sluice bench postmortem`: the isolation claim at scale.
//!
//! One environment, `--integrations` (default 1000) integrations, steady ingest. Run 1: every
//! destination healthy (the baseline). Run 2, on a fresh server and data directory:
//! `--failing-percent` (default 30%) of the destinations fail from the start, split evenly
//! among four ways of failing —
//!
//! - **hang**: the request is read and never answered (held until sluice gives up);
//! - **refuse**: nothing listens on the destination's port (connection refused);
//! - **500**: answered at once with HTTP 500;
//! - **slow**: answered 200, but only after sluice's request timeout (a timeout failure).
//!
//! The healthy destinations' delivery lag (ingest → received, per impression) is compared
//! with the baseline. Then every failing destination heals (refusing ones get a listener on
//! their port) and the bench waits until every integration has every acknowledged
//! impression: impressions lost must be 0; duplicates (at-least-once redelivery) are counted.
//!
//! sluice runs as a child process (`<sluice> serve`) so that its CPU time, memory, threads
//! and file descriptors are read from `/proc/<pid>` apart from this process, which runs the
//! ingest client and the receivers. The receivers are a few lean axum servers on 127.0.0.1:
//! the path `/h/{index}` names the integration, and a shared table decides how each one
//! answers and records what it received (requests, batches by `webhook-id`, unique and
//! duplicate impressions, and each impression's lag, in one `u32` per impression).
//!
//! Keys are `{sent_ms}-{seq}-{i}`: the ingest request's send time, its sequence number and
//! the position in it, so that the receiver knows each impression's send time and index
//! without any lookup.

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_testkit::{ChildLog, LaunchOptions, SluiceProcess, process::unique};
use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The one environment every integration reads.
const ENV: &str = "prod";
const SDK_KEY: &str = "sdk-key-postmortem-0001";

/// Protection settings of every integration in both runs (defaults in
/// `sluice_core::model::Protection`: 5 s / 15 s timeouts, 5 s → 300 s cooldowns). Shorter
/// here so that a 60 s run sees several pause/probe cycles and healing is noticed within
/// 20 s; the pause rule (window 20, 6 in a row, 50%) is the default.
const WINDOW: u32 = 20;
const MIN_ATTEMPTS: u32 = 6;
const FAILURE_RATE_PERCENT: u32 = 50;
const REQUEST_TIMEOUT_MS: u64 = 5_000;
const CONNECT_TIMEOUT_MS: u64 = 2_000;
const INITIAL_COOLDOWN_MS: u64 = 2_000;
const MAX_COOLDOWN_MS: u64 = 20_000;
/// A slow destination answers 200 this long after the request: past sluice's timeout.
const SLOW_MS: u64 = REQUEST_TIMEOUT_MS + 2_000;
/// "Not received" in a lag table.
const MISSING: u32 = u32::MAX;

/// Arguments of `sluice bench postmortem`.
#[derive(clap::Args, Debug, Clone)]
pub struct PostmortemArgs {
    /// Integrations on the one environment (every impression is delivered to each of them).
    #[arg(long, default_value_t = 1000)]
    pub integrations: usize,
    /// Percentage of the integrations whose destination fails in run 2, split evenly among
    /// hang, refuse, 500 and slow.
    #[arg(long, default_value_t = 30)]
    pub failing_percent: u32,
    /// Seconds of steady ingest in each run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Impressions ingested per second (each one is delivered to every integration).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Impressions per ingest request.
    #[arg(long, default_value_t = 20)]
    pub per_request: u32,
    /// Percentage of the integrations that are "flaky" in run 2 (taken from the healthy
    /// ones): both attempts of one batch in every 15 fail with 500, then delivery succeeds
    /// again. Sporadic errors must not pause them; their lag is reported apart.
    #[arg(long, default_value_t = 0)]
    pub flaky_percent: u32,
    /// Skip run 1 (all healthy); only run the one with failing destinations.
    #[arg(long)]
    pub skip_baseline: bool,
    /// The integrations' `flushIntervalMs`.
    #[arg(long, default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// The integrations' `maxBatchImpressions`.
    #[arg(long, default_value_t = 5000)]
    pub max_batch_impressions: u32,
    /// After healing, give up waiting for every impression after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub heal_timeout: u64,
    /// Receiver servers (integration i is served by server i mod N).
    #[arg(long, default_value_t = 4)]
    pub receivers: usize,
    /// Directory under which each run's data directory is created (default: the system
    /// temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directories (and logs) afterwards.
    #[arg(long)]
    pub keep_data: bool,
    /// Write each server's log (stderr; level from SLUICE_LOG, default warn) to
    /// DIR/postmortem-<run>.log instead of next to its data directory.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The sluice executable to start as the server (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub sluice_bin: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------
// Who fails how
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Healthy,
    Hang,
    Refuse,
    Status500,
    Slow,
    Flaky,
}

const FAILURES: [Kind; 4] = [Kind::Hang, Kind::Refuse, Kind::Status500, Kind::Slow];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::Hang => "hang",
            Kind::Refuse => "refuse",
            Kind::Status500 => "500",
            Kind::Slow => "slow",
            Kind::Flaky => "flaky",
        }
    }
}

/// The failure kind of each integration in run 2: failing ones spread evenly over the
/// index range, kinds in turn; then flaky ones spread evenly over the healthy rest.
fn layout(n: usize, failing_percent: u32, flaky_percent: u32) -> Vec<Kind> {
    let spread =
        |len: usize, pick: usize| (0..len).filter(move |&i| (i + 1) * pick / len > i * pick / len);
    let share = |pct: u32| (n * pct.min(100) as usize + 50) / 100;
    let mut kinds = vec![Kind::Healthy; n];
    for (k, i) in spread(n, share(failing_percent)).enumerate() {
        kinds[i] = FAILURES[k % 4];
    }
    let healthy: Vec<usize> = (0..n).filter(|&i| kinds[i] == Kind::Healthy).collect();
    let flaky = share(flaky_percent).min(healthy.len());
    for j in spread(healthy.len(), flaky) {
        kinds[healthy[j]] = Kind::Flaky;
    }
    kinds
}

// ---------------------------------------------------------------------------------------
// Receivers
// ---------------------------------------------------------------------------------------

/// How an endpoint answers now.
const MODE_OK: u8 = 0;
const MODE_HANG: u8 = 1;
const MODE_500: u8 = 2;
const MODE_SLOW: u8 = 3;
const MODE_FLAKY: u8 = 4;
/// A flaky endpoint fails the first two of every this many requests it receives (one
/// batch's attempt and its retry; with one request per batch otherwise, that is one batch
/// in 15).
const FLAKY_EVERY: u64 = 16;

#[derive(Default)]
struct Received {
    /// `webhook-id`s of batches answered 200.
    batches: HashSet<Box<str>>,
    duplicate_batches: u64,
    /// Lag in ms of each impression (by index), [`MISSING`] until received.
    lags: Vec<u32>,
    unique: u64,
    duplicates: u64,
    /// Impressions whose key this bench did not write (never expected).
    foreign: u64,
}

struct Endpoint {
    kind: Kind,
    mode: AtomicU8,
    requests: AtomicU64,
    received: Mutex<Received>,
}

struct Table {
    eps: Vec<Endpoint>,
    per_request: u64,
    /// Lets hanging handlers go when the run ends.
    closing: AtomicBool,
}

impl Table {
    fn new(kinds: &[Kind], failing: bool, expected: usize, per_request: u32) -> Table {
        let eps = kinds
            .iter()
            .map(|&k| {
                let kind = if failing { k } else { Kind::Healthy };
                let mode = match kind {
                    Kind::Healthy | Kind::Refuse => MODE_OK,
                    Kind::Hang => MODE_HANG,
                    Kind::Status500 => MODE_500,
                    Kind::Slow => MODE_SLOW,
                    Kind::Flaky => MODE_FLAKY,
                };
                Endpoint {
                    kind,
                    mode: AtomicU8::new(mode),
                    requests: AtomicU64::new(0),
                    received: Mutex::new(Received {
                        lags: vec![MISSING; expected],
                        ..Received::default()
                    }),
                }
            })
            .collect();
        Table {
            eps,
            per_request: u64::from(per_request),
            closing: AtomicBool::new(false),
        }
    }

    fn heal(&self) {
        for ep in &self.eps {
            ep.mode.store(MODE_OK, Ordering::Relaxed);
        }
    }
}

#[derive(Deserialize)]
struct Imp<'a> {
    #[serde(borrow)]
    key: &'a str,
}

/// `{sent_ms}-{seq}-{i}` → (sent_ms, index).
fn parse_key(key: &str, per_request: u64) -> Option<(i64, usize)> {
    let mut it = key.splitn(3, '-');
    let sent: i64 = it.next()?.parse().ok()?;
    let seq: u64 = it.next()?.parse().ok()?;
    let i: u64 = it.next()?.parse().ok()?;
    if i >= per_request {
        return None;
    }
    Some((sent, (seq * per_request + i) as usize))
}

async fn hook(
    State(t): State<Arc<Table>>,
    Path(idx): Path<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let recv_ms = now_ms();
    let Some(ep) = t.eps.get(idx) else {
        return StatusCode::NOT_FOUND;
    };
    let seen = ep.requests.fetch_add(1, Ordering::Relaxed);
    match ep.mode.load(Ordering::Relaxed) {
        MODE_FLAKY if seen % FLAKY_EVERY < 2 => return StatusCode::INTERNAL_SERVER_ERROR,
        MODE_OK | MODE_FLAKY => {}
        MODE_500 => return StatusCode::INTERNAL_SERVER_ERROR,
        MODE_SLOW => {
            tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
            // Too late: sluice gave up on this request; what it carried is not recorded.
            return StatusCode::OK;
        }
        _ => {
            // Hang: never answer. The future is dropped when sluice closes the connection;
            // should it not be, let it go once healed (sluice gave up long before).
            while ep.mode.load(Ordering::Relaxed) == MODE_HANG && !t.closing.load(Ordering::Relaxed)
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let inflated;
    let json: &[u8] = if gzip {
        let mut out = Vec::with_capacity(body.len() * 8);
        if flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return StatusCode::BAD_REQUEST;
        }
        inflated = out;
        &inflated
    } else {
        &body
    };
    let Ok(imps) = serde_json::from_slice::<Vec<Imp<'_>>>(json) else {
        return StatusCode::BAD_REQUEST;
    };
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut r = ep.received.lock().unwrap_or_else(|e| e.into_inner());
    if !r.batches.insert(webhook_id.into()) {
        r.duplicate_batches += 1;
    }
    for imp in &imps {
        let Some((sent, index)) = parse_key(imp.key, t.per_request) else {
            r.foreign += 1;
            continue;
        };
        if index >= r.lags.len() {
            r.lags.resize(index + 1, MISSING);
        }
        if r.lags[index] == MISSING {
            r.lags[index] = (recv_ms - sent).clamp(0, i64::from(u32::MAX - 1)) as u32;
            r.unique += 1;
        } else {
            r.duplicates += 1;
        }
    }
    StatusCode::OK
}

fn router(t: Arc<Table>) -> Router {
    Router::new()
        .route("/h/{idx}", post(hook))
        .layer(DefaultBodyLimit::max(256 << 20))
        .with_state(t)
}

async fn serve_on(listener: tokio::net::TcpListener, t: Arc<Table>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(t)).await;
    })
}

/// Free ports on 127.0.0.1 below the ephemeral range (so that no outgoing connection is
/// given one as its local port while nothing listens there, and no `:0` bind takes it).
fn dead_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768);
    let start = low.saturating_sub(12_000).max(1025) + (std::process::id() % 4000) as u16;
    let mut out = Vec::with_capacity(n);
    let mut p = start;
    while out.len() < n {
        if p >= low {
            bail!("no {n} free ports between {start} and {low}");
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            out.push(p);
        }
        p += 1;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

struct Server {
    proc: SluiceProcess,
    pid: u32,
    addr: SocketAddr,
    /// Holds the data directory (`data/`) and, without `--log-dir`, the log; removed on drop
    /// unless `--keep-data`.
    dir: PathBuf,
    log: PathBuf,
    keep: bool,
}

impl Server {
    async fn start(args: &PostmortemArgs, run: &str) -> anyhow::Result<Server> {
        let exe = match &args.sluice_bin {
            Some(p) => p.clone(),
            None => crate::sluice_exe()?,
        };
        let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!("sluice-postmortem-{run}-{}", unique()));
        let log = match &args.log_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.join(format!("postmortem-{run}.log"))
            }
            None => dir.join("sluice.log"),
        };
        let mut o = LaunchOptions::new(exe);
        o.data_dir = Some(dir.join("data"));
        o.log = ChildLog::Append(log.clone());
        o.stop_timeout = Duration::from_secs(15);
        o.http = Some(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let proc = match SluiceProcess::start(o).await {
            Ok(p) => p,
            Err(e) => {
                if !args.keep_data {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e.into());
            }
        };
        Ok(Server {
            pid: proc.pid(),
            addr: proc.addr(),
            proc,
            dir,
            log,
            keep: args.keep_data,
        })
    }

    fn url(&self, path: &str) -> String {
        self.proc.url(path)
    }

    async fn status(&self, idx: usize) -> anyhow::Result<Value> {
        Ok(self
            .proc
            .admin()
            .integration_status(&integration_id(idx))
            .await?)
    }

    async fn stop(mut self) {
        if !self.proc.stop().await {
            eprintln!("  sluice did not stop within 15 s of SIGTERM; killed it");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("  kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn integration_id(idx: usize) -> String {
    format!("pm{idx:05}")
}

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(100.0)
    })
}

#[derive(Clone, Copy, Default, Debug)]
struct ProcSample {
    cpu_s: f64,
    rss: u64,
    hwm: u64,
    threads: u64,
    fds: u64,
}

/// `pid` or this process.
fn proc_sample(pid: Option<u32>) -> ProcSample {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let mut s = ProcSample::default();
    if let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat"))
        && let Some(pos) = stat.rfind(')')
    {
        let f: Vec<&str> = stat[pos + 1..].split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        s.cpu_s = (t(11) + t(12)) as f64 / clk_tck();
    }
    if let Ok(st) = std::fs::read_to_string(format!("{dir}/status")) {
        for l in st.lines() {
            let v = || {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if l.starts_with("VmRSS:") {
                s.rss = v() * 1024;
            } else if l.starts_with("VmHWM:") {
                s.hwm = v() * 1024;
            } else if l.starts_with("Threads:") {
                s.threads = v();
            }
        }
    }
    s.fds = std::fs::read_dir(format!("{dir}/fd")).map_or(0, |d| d.count() as u64);
    s
}

/// Whole-machine CPU time from `/proc/stat`, in seconds of one core: (busy, total).
fn machine_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return (0.0, 0.0);
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    ((total - idle) as f64 / clk_tck(), total as f64 / clk_tck())
}

/// Peaks of a process over a run, sampled every 250 ms.
#[derive(Default, Clone, Copy, Debug)]
struct Peaks {
    rss: u64,
    threads: u64,
    fds: u64,
}

fn watch_peaks(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Peaks> {
    tokio::spawn(async move {
        let mut p = Peaks::default();
        while !stop.load(Ordering::Relaxed) {
            let s = proc_sample(Some(pid));
            p.rss = p.rss.max(s.hwm).max(s.rss);
            p.threads = p.threads.max(s.threads);
            p.fds = p.fds.max(s.fds);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        p
    })
}

// ---------------------------------------------------------------------------------------
// Ingest
// ---------------------------------------------------------------------------------------

struct IngestResult {
    requests: u64,
    /// Acknowledged (200) per request sequence number.
    acked: Vec<bool>,
    failed: u64,
    latencies_ms: Vec<u32>,
    /// Requests sent more than 100 ms after their schedule (the generator fell behind).
    late: u64,
}

impl IngestResult {
    fn acked_impressions(&self, per_request: u64) -> u64 {
        self.acked.iter().filter(|a| **a).count() as u64 * per_request
    }
}

fn bulk_body(sent: i64, seq: u64, per_request: u32) -> String {
    let mut s = String::with_capacity(32 + per_request as usize * 80);
    s.push_str(r#"[{"f":"postmortem_flag","i":["#);
    for i in 0..per_request {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"k":"{sent}-{seq}-{i}","t":"on","m":{sent},"c":1,"r":"rule"}}"#
        ));
    }
    s.push_str("]}]");
    s
}

async fn ingest(server: &Server, args: &PostmortemArgs, requests: u64) -> IngestResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let url = server.url("/api/testImpressions/bulk");
    let period = Duration::from_secs_f64(f64::from(args.per_request) / f64::from(args.rate));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut late = 0;
    for seq in 0..requests {
        let due = start + period.mul_f64(seq as f64);
        tokio::time::sleep_until(due).await;
        if tokio::time::Instant::now() > due + Duration::from_millis(100) {
            late += 1;
        }
        let sent = now_ms();
        let body = bulk_body(sent, seq, args.per_request);
        let req = client
            .post(&url)
            .bearer_auth(SDK_KEY)
            .header("content-type", "application/json")
            .header("SplitSDKVersion", "python-10.7.0")
            .header("SplitSDKMachineIP", "10.1.2.3")
            .header("SplitSDKMachineName", "bench-host-1")
            .body(body);
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = matches!(req.send().await, Ok(r) if r.status() == 200);
            (
                seq,
                ok,
                t.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            )
        });
    }
    let mut acked = vec![false; requests as usize];
    let mut latencies_ms = Vec::with_capacity(requests as usize);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((seq, ok, ms)) = r {
            acked[seq as usize] = ok;
            failed += u64::from(!ok);
            latencies_ms.push(ms);
        }
    }
    latencies_ms.sort_unstable();
    IngestResult {
        requests,
        acked,
        failed,
        latencies_ms,
        late,
    }
}

// ---------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default, Debug)]
struct Pcts {
    n: usize,
    p50: u32,
    p99: u32,
    p999: u32,
    max: u32,
}

fn pcts(sorted: &[u32]) -> Pcts {
    let at = |p: f64| {
        if sorted.is_empty() {
            0
        } else {
            sorted[((sorted.len() - 1) as f64 * p).round() as usize]
        }
    };
    Pcts {
        n: sorted.len(),
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

fn min_med_max(mut v: Vec<u64>) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

struct KindReport {
    kind: Kind,
    count: usize,
    /// Requests the destination received while failing (a refusing one receives none).
    requests: (u64, u64, u64),
    /// sluice's `failedAttempts` while failing.
    failed_attempts: (u64, u64, u64),
    paused: usize,
    states: BTreeMap<String, usize>,
    /// After healing.
    lost: u64,
    duplicates: u64,
    duplicate_batches: u64,
    integrations_with_loss: usize,
    /// Seconds from the start of ingest to the first pause (min / median / max), over the
    /// integrations that paused.
    first_pause: Option<(f64, f64, f64)>,
}

struct RunResult {
    label: &'static str,
    healthy: usize,
    ingest: IngestResult,
    ingest_secs: f64,
    impressions: u64,
    lag: Pcts,
    /// Flaky integrations' lag, and when they had caught up after the end of ingest.
    flaky_lag: Option<Pcts>,
    flaky_caught_up: Option<f64>,
    /// Healthy lag p99 per 10 s of send time.
    timeline: Vec<u32>,
    /// Healthy endpoints' requests received (min, median, max).
    healthy_requests: (u64, u64, u64),
    /// Seconds after the end of ingest until every healthy integration had everything
    /// (None: not within the wait).
    healthy_caught_up: Option<f64>,
    healthy_missing_then: u64,
    sluice_cpu_pct: f64,
    bench_cpu_pct: f64,
    /// All processes on the machine, and those other than sluice and this bench.
    machine_cpu_pct: f64,
    others_cpu_pct: f64,
    peaks: Peaks,
    rss_end: u64,
    hwm_before_heal: u64,
    kinds: Vec<KindReport>,
    /// Seconds from healing until everything had arrived.
    drain_secs: Option<f64>,
    lost_total: u64,
    duplicates_total: u64,
    log_lines: (u64, u64),
}

/// Missing acknowledged impressions at one endpoint.
fn missing_at(ep: &Endpoint, acked: &[bool], per_request: usize) -> u64 {
    let r = ep.received.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    for (seq, a) in acked.iter().enumerate() {
        if !a {
            continue;
        }
        for i in 0..per_request {
            if r.lags
                .get(seq * per_request + i)
                .is_none_or(|l| *l == MISSING)
            {
                n += 1;
            }
        }
    }
    n
}

/// Waits until every endpoint picked by `pick` has every acknowledged impression, or
/// `limit` passes. Returns the time it took, or None.
async fn wait_complete(
    table: &Table,
    acked: &[bool],
    per_request: usize,
    limit: Duration,
    pick: impl Fn(&Endpoint) -> bool,
) -> Option<Duration> {
    let expected = acked.iter().filter(|a| **a).count() as u64 * per_request as u64;
    let t0 = Instant::now();
    loop {
        let mut done = true;
        for ep in table.eps.iter().filter(|e| pick(e)) {
            let unique = ep.received.lock().unwrap_or_else(|e| e.into_inner()).unique;
            // Cheap test first; the exact one only once the count says so.
            if unique < expected || missing_at(ep, acked, per_request) > 0 {
                done = false;
                break;
            }
        }
        if done {
            return Some(t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count_log_lines(path: &std::path::Path) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, 0);
    };
    let (mut warn, mut err) = (0, 0);
    for l in text.lines() {
        if l.contains(" WARN ") {
            warn += 1;
        } else if l.contains(" ERROR ") {
            err += 1;
        }
    }
    (warn, err)
}

async fn run_once(
    args: &PostmortemArgs,
    kinds: &[Kind],
    failing: bool,
) -> anyhow::Result<RunResult> {
    let label = if failing { "failing" } else { "baseline" };
    let per_request = args.per_request as usize;
    let requests =
        (args.seconds as f64 * f64::from(args.rate) / f64::from(args.per_request)).round() as u64;
    let expected = requests as usize * per_request;
    let n = kinds.len();
    println!();
    println!(
        "== run: {} ({n} integrations, {}) ==",
        if failing {
            "with failing destinations"
        } else {
            "all healthy"
        },
        if failing {
            let f = kinds.iter().filter(|k| FAILURES.contains(k)).count();
            let flaky = kinds.iter().filter(|k| **k == Kind::Flaky).count();
            format!("{f} failing: hang / refuse / 500 / slow; {flaky} flaky")
        } else {
            "none failing".to_owned()
        }
    );
    let table = Arc::new(Table::new(kinds, failing, expected, args.per_request));

    // Receivers.
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..args.receivers.max(1) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(l.local_addr()?);
        servers.push(serve_on(l, table.clone()).await);
    }
    let refusing: Vec<usize> = (0..n)
        .filter(|&i| table.eps[i].kind == Kind::Refuse)
        .collect();
    let ports = dead_ports(refusing.len())?;
    let mut url_of: Vec<String> = (0..n)
        .map(|i| format!("http://{}/h/{i}", addrs[i % addrs.len()]))
        .collect();
    for (&i, &p) in refusing.iter().zip(&ports) {
        url_of[i] = format!("http://127.0.0.1:{p}/h/{i}");
    }

    // sluice and its configuration.
    let server = Server::start(args, label).await?;
    println!(
        "  sluice pid {} at {} (log: {})",
        server.pid,
        server.addr,
        server.log.display()
    );
    server
        .proc
        .admin()
        .create_environment(&json!({"id": ENV, "name": "Production", "sdkKeys": [SDK_KEY]}))
        .await?;
    let protection = json!({
        "window": WINDOW, "minAttempts": MIN_ATTEMPTS, "failureRatePercent": FAILURE_RATE_PERCENT,
        "initialCooldownMs": INITIAL_COOLDOWN_MS, "maxCooldownMs": MAX_COOLDOWN_MS,
        "connectTimeoutMs": CONNECT_TIMEOUT_MS, "requestTimeoutMs": REQUEST_TIMEOUT_MS,
    });
    let t_cfg = Instant::now();
    let results: Vec<Result<Value, sluice_client::ClientError>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let body = json!({
                "id": integration_id(i), "name": integration_id(i), "url": url_of[i],
                "environments": [ENV], "flushIntervalMs": args.flush_interval_ms,
                "maxBatchImpressions": args.max_batch_impressions, "protection": protection,
            });
            let s = &server;
            async move { s.proc.admin().create_integration(&body).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r?;
    }
    // Every worker must hold its position before the first impression, or it would start
    // after it (an integration receives impressions from the moment its worker starts).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<usize> = (0..n).collect();
    while !pending.is_empty() {
        let s = &server;
        let still: Vec<Option<usize>> = futures_util::stream::iter(pending.clone())
            .map(|i| async move {
                match s.status(i).await {
                    Ok(v) if v["cursors"].get(ENV).is_some() => None,
                    _ => Some(i),
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        pending = still.into_iter().flatten().collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} integrations never started (e.g. {})",
                pending.len(),
                integration_id(pending[0])
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "  configured {n} integrations in {:.1} s; ingesting {} impressions/s ({} per request) for {} s",
        t_cfg.elapsed().as_secs_f64(),
        args.rate,
        args.per_request,
        args.seconds
    );

    // Steady ingest, measured.
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch_peaks(server.pid, stop_watch.clone());
    let (s0, b0, t0) = (
        proc_sample(Some(server.pid)),
        proc_sample(None),
        Instant::now(),
    );
    let start_ms = now_ms();
    let m0 = machine_cpu();
    let progress = {
        let table = table.clone();
        let secs = args.seconds;
        tokio::spawn(async move {
            let mut last = 0u64;
            for s in (10..=secs).step_by(10) {
                tokio::time::sleep_until((t0 + Duration::from_secs(s)).into()).await;
                let total: u64 = table
                    .eps
                    .iter()
                    .map(|e| e.received.lock().map_or(0, |r| r.unique))
                    .sum();
                println!(
                    "  t={s:>4}s delivered {total:>10} impressions in all (+{}/s)",
                    (total - last) / 10
                );
                last = total;
            }
        })
    };
    let ing = ingest(&server, args, requests).await;
    let ingest_secs = t0.elapsed().as_secs_f64();
    let (s1, b1) = (proc_sample(Some(server.pid)), proc_sample(None));
    progress.abort();
    let sluice_cpu_pct = (s1.cpu_s - s0.cpu_s) / ingest_secs * 100.0;
    let bench_cpu_pct = (b1.cpu_s - b0.cpu_s) / ingest_secs * 100.0;
    let m1 = machine_cpu();
    let machine_cpu_pct = (m1.0 - m0.0) / ingest_secs * 100.0;
    let others_cpu_pct = (machine_cpu_pct - sluice_cpu_pct - bench_cpu_pct).max(0.0);
    println!(
        "  ingest done in {ingest_secs:.1} s: {} requests, {} failed; sluice CPU {sluice_cpu_pct:.0}%, bench CPU {bench_cpu_pct:.0}%, other processes {others_cpu_pct:.0}% (of one core)",
        ing.requests, ing.failed
    );

    // Healthy ones catch up with the end of ingest.
    let healthy_caught_up = wait_complete(
        &table,
        &ing.acked,
        per_request,
        Duration::from_secs(60),
        |e| e.kind == Kind::Healthy,
    )
    .await
    .map(|d| d.as_secs_f64());
    let healthy_missing_then: u64 = table
        .eps
        .iter()
        .filter(|e| e.kind == Kind::Healthy)
        .map(|e| missing_at(e, &ing.acked, per_request))
        .sum();

    // Flaky ones (if any) too, so that their lag is complete.
    let flaky_caught_up = if table.eps.iter().any(|e| e.kind == Kind::Flaky) {
        wait_complete(
            &table,
            &ing.acked,
            per_request,
            Duration::from_secs(60),
            |e| e.kind == Kind::Flaky,
        )
        .await
        .map(|d| d.as_secs_f64())
    } else {
        None
    };
    let mut flaky_lags: Vec<u32> = Vec::new();
    for e in table.eps.iter().filter(|e| e.kind == Kind::Flaky) {
        let r = e.received.lock().unwrap_or_else(|e| e.into_inner());
        flaky_lags.extend(r.lags.iter().copied().filter(|l| *l != MISSING));
    }
    flaky_lags.sort_unstable();
    let flaky_lag = (!flaky_lags.is_empty()).then(|| pcts(&flaky_lags));
    drop(flaky_lags);

    // Healthy lag.
    let mut all = Vec::new();
    let bucket_reqs = (10.0 * f64::from(args.rate) / f64::from(args.per_request)).max(1.0) as usize;
    let buckets = (requests as usize).div_ceil(bucket_reqs);
    let mut per_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets];
    let mut healthy_reqs = Vec::new();
    for e in table.eps.iter().filter(|e| e.kind == Kind::Healthy) {
        healthy_reqs.push(e.requests.load(Ordering::Relaxed));
        let r = e.received.lock().unwrap_or_else(|e| e.into_inner());
        for (idx, &l) in r.lags.iter().enumerate() {
            if l != MISSING {
                all.push(l);
                if let Some(b) = per_bucket.get_mut(idx / per_request / bucket_reqs) {
                    b.push(l);
                }
            }
        }
    }
    all.sort_unstable();
    let lag = pcts(&all);
    drop(all);
    let timeline = per_bucket
        .into_iter()
        .map(|mut b| {
            b.sort_unstable();
            pcts(&b).p99
        })
        .collect();
    let healthy = table.eps.iter().filter(|e| e.kind == Kind::Healthy).count();
    println!(
        "  healthy lag p50 {} ms  p99 {} ms  max {} ms over {} impressions; caught up {}",
        lag.p50,
        lag.p99,
        lag.max,
        lag.n,
        healthy_caught_up.map_or_else(
            || format!("NOT within 60 s ({healthy_missing_then} missing)"),
            |s| format!("{s:.1} s after ingest ended")
        )
    );

    // Failing ones: what they received and what sluice says about them.
    let failing_idx: Vec<usize> = (0..n)
        .filter(|&i| table.eps[i].kind != Kind::Healthy)
        .collect();
    let requests_while_failing: Vec<u64> = table
        .eps
        .iter()
        .map(|e| e.requests.load(Ordering::Relaxed))
        .collect();
    let s = &server;
    let statuses: Vec<(usize, Value)> = futures_util::stream::iter(failing_idx.clone())
        .map(|i| async move { (i, s.status(i).await.unwrap_or(Value::Null)) })
        .buffer_unordered(16)
        .collect()
        .await;
    let statuses: BTreeMap<usize, Value> = statuses.into_iter().collect();

    // Peak memory so far: ingest and the failing period, before any drain.
    let hwm_before_heal = proc_sample(Some(server.pid)).hwm;

    // Heal, and wait for everything.
    let mut drain_secs = None;
    let mut healed_listeners = Vec::new();
    if !failing_idx.is_empty() {
        println!("  healing {} destinations", failing_idx.len());
        table.heal();
        for &p in &ports {
            let mut tries = 0;
            let l = loop {
                match tokio::net::TcpListener::bind(("127.0.0.1", p)).await {
                    Ok(l) => break l,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        if tries == 1 {
                            eprintln!("  port {p} not free yet ({e}); retrying");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e).context(format!("listening on 127.0.0.1:{p} to heal")),
                }
            };
            healed_listeners.push(serve_on(l, table.clone()).await);
        }
        let progress = {
            let table = table.clone();
            let expected = ing.acked_impressions(args.per_request.into());
            let idx = failing_idx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let done = idx
                        .iter()
                        .filter(|&&i| {
                            table.eps[i].received.lock().map_or(0, |r| r.unique) >= expected
                        })
                        .count();
                    println!(
                        "  … {done}/{} healed integrations have everything",
                        idx.len()
                    );
                }
            })
        };
        drain_secs = wait_complete(
            &table,
            &ing.acked,
            per_request,
            Duration::from_secs(args.heal_timeout),
            |_| true,
        )
        .await
        .map(|d| d.as_secs_f64());
        progress.abort();
        match drain_secs {
            Some(s) => println!("  every integration has every impression, {s:.1} s after healing"),
            None => println!(
                "  NOT everything arrived within {} s of healing",
                args.heal_timeout
            ),
        }
        // Late redeliveries count as duplicates too.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop_watch.store(true, Ordering::Relaxed);
    let mut peaks = watcher.await.unwrap_or_default();
    let end = proc_sample(Some(server.pid));
    let rss_end = end.rss;
    peaks.rss = peaks.rss.max(end.hwm).max(hwm_before_heal);

    // Losses and duplicates, per kind.
    let mut kinds_out = Vec::new();
    let mut lost_total = 0;
    let mut duplicates_total = 0;
    let mut present: Vec<Kind> = table.eps.iter().map(|e| e.kind).collect();
    present.sort();
    present.dedup();
    for kind in present {
        let idx: Vec<usize> = (0..n).filter(|&i| table.eps[i].kind == kind).collect();
        let mut k = KindReport {
            kind,
            count: idx.len(),
            requests: min_med_max(idx.iter().map(|&i| requests_while_failing[i]).collect()),
            failed_attempts: min_med_max(
                idx.iter()
                    .map(|i| {
                        statuses
                            .get(i)
                            .and_then(|v| v["failedAttempts"].as_u64())
                            .unwrap_or(0)
                    })
                    .collect(),
            ),
            paused: idx
                .iter()
                .filter(|i| {
                    statuses
                        .get(i)
                        .and_then(|v| v["pauseCount"].as_u64())
                        .unwrap_or(0)
                        >= 1
                })
                .count(),
            states: BTreeMap::new(),
            lost: 0,
            duplicates: 0,
            duplicate_batches: 0,
            integrations_with_loss: 0,
            first_pause: None,
        };
        let mut firsts: Vec<f64> = idx
            .iter()
            .filter_map(|i| {
                let h = statuses.get(i)?["pauseHistory"].as_array()?;
                let first = h.iter().filter_map(|p| p["pausedAt"].as_i64()).min()?;
                Some((first - start_ms) as f64 / 1000.0)
            })
            .collect();
        firsts.sort_by(f64::total_cmp);
        if !firsts.is_empty() {
            k.first_pause = Some((
                firsts[0],
                firsts[firsts.len() / 2],
                firsts[firsts.len() - 1],
            ));
        }
        for &i in &idx {
            if let Some(st) = statuses.get(&i).and_then(|v| v["state"].as_str()) {
                *k.states.entry(st.to_owned()).or_default() += 1;
            }
            let m = missing_at(&table.eps[i], &ing.acked, per_request);
            k.lost += m;
            k.integrations_with_loss += usize::from(m > 0);
            let r = table.eps[i]
                .received
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            k.duplicates += r.duplicates;
            k.duplicate_batches += r.duplicate_batches;
            if r.foreign > 0 {
                eprintln!(
                    "  {}: {} impressions with keys this bench did not send",
                    integration_id(i),
                    r.foreign
                );
            }
        }
        lost_total += k.lost;
        duplicates_total += k.duplicates;
        kinds_out.push(k);
    }
    if lost_total > 0 {
        // Where: a few examples with sluice's view of them.
        let mut shown = 0;
        for i in 0..n {
            let m = missing_at(&table.eps[i], &ing.acked, per_request);
            if m > 0 && shown < 5 {
                shown += 1;
                let st = server.status(i).await.unwrap_or(Value::Null);
                println!(
                    "  LOST {m} at {} ({}): state {} lag {} delivered {} cursors {} pending {}",
                    integration_id(i),
                    table.eps[i].kind.label(),
                    st["state"],
                    st["lagImpressions"],
                    st["deliveredImpressions"],
                    st["cursors"],
                    st["pendingBatch"]
                );
            }
        }
    }
    table.closing.store(true, Ordering::Relaxed);
    let log = server.log.clone();
    server.stop().await;
    let log_lines = count_log_lines(&log);
    for h in servers.into_iter().chain(healed_listeners) {
        h.abort();
    }
    let impressions = ing.acked_impressions(args.per_request.into());
    Ok(RunResult {
        label,
        healthy,
        ingest: ing,
        ingest_secs,
        impressions,
        lag,
        flaky_lag,
        flaky_caught_up,
        timeline,
        healthy_requests: min_med_max(healthy_reqs),
        healthy_caught_up,
        healthy_missing_then,
        sluice_cpu_pct,
        bench_cpu_pct,
        machine_cpu_pct,
        others_cpu_pct,
        peaks,
        rss_end,
        hwm_before_heal,
        kinds: kinds_out,
        drain_secs,
        lost_total,
        duplicates_total,
        log_lines,
    })
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

fn machine() -> Vec<(&'static str, String)> {
    let first = |path: &str, prefix: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(prefix))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into())
    };
    let cmd = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    let mem = first("/proc/meminfo", "MemTotal").replace(" kB", "");
    let mem = mem
        .parse::<u64>()
        .map_or(mem, |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0));
    let dirty = if cmd("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (work tree has uncommitted changes)"
    };
    vec![
        ("date (UTC)", cmd("date", &["-u", "+%Y-%m-%d %H:%M"])),
        (
            "commit",
            format!("{}{dirty}", cmd("git", &["rev-parse", "--short", "HEAD"])),
        ),
        (
            "build",
            if cfg!(debug_assertions) {
                "debug (figures NOT meaningful)"
            } else {
                "release"
            }
            .to_owned(),
        ),
        (
            "cpus (nproc)",
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("cpu model", first("/proc/cpuinfo", "model name")),
        ("memory", mem),
        ("kernel", cmd("uname", &["-r"])),
    ]
}

fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

fn header(cells: &[&str]) {
    row(&cells.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    println!("|{}", cells.iter().map(|_| "---|").collect::<String>());
}

fn report(args: &PostmortemArgs, base: Option<&RunResult>, fail: &RunResult) -> bool {
    println!();
    println!("## Postmortem benchmark: results");
    println!();
    println!(
        "{} integrations on one environment, {}% failing in run 2 (hang / refuse / 500 / slow), {} impressions/s ingested ({} per request) for {} s; flushIntervalMs {}, maxBatchImpressions {}; protection: requestTimeoutMs {REQUEST_TIMEOUT_MS}, connectTimeoutMs {CONNECT_TIMEOUT_MS}, initialCooldownMs {INITIAL_COOLDOWN_MS}, maxCooldownMs {MAX_COOLDOWN_MS}, window {WINDOW}, minAttempts {MIN_ATTEMPTS}, failureRatePercent {FAILURE_RATE_PERCENT}; slow destinations answer after {SLOW_MS} ms{}.",
        args.integrations,
        args.failing_percent,
        args.rate,
        args.per_request,
        args.seconds,
        args.flush_interval_ms,
        args.max_batch_impressions,
        if args.flaky_percent > 0 {
            format!(
                "; {}% flaky (500 to 2 of every {FLAKY_EVERY} requests: one batch's attempt and its retry)",
                args.flaky_percent
            )
        } else {
            String::new()
        }
    );
    println!();
    let runs: Vec<&RunResult> = base.into_iter().chain(std::iter::once(fail)).collect();
    let mut h = vec![""];
    h.extend(runs.iter().map(|r| {
        if r.label == "baseline" {
            "all healthy"
        } else {
            "with failing"
        }
    }));
    header(&h);
    let line = |name: &str, f: &dyn Fn(&RunResult) -> String| {
        let mut c = vec![name.to_owned()];
        c.extend(runs.iter().map(|r| f(r)));
        row(&c);
    };
    line("healthy integrations", &|r| r.healthy.to_string());
    line("impressions ingested (acknowledged)", &|r| {
        r.impressions.to_string()
    });
    line("deliveries to healthy integrations", &|r| {
        (r.impressions * r.healthy as u64).to_string()
    });
    line("healthy lag p50", &|r| format!("{} ms", r.lag.p50));
    line("**healthy lag p99**", &|r| format!("**{} ms**", r.lag.p99));
    line("healthy lag p99.9", &|r| format!("{} ms", r.lag.p999));
    line("healthy lag max", &|r| format!("{} ms", r.lag.max));
    if fail.flaky_lag.is_some() {
        line("flaky integrations' lag p50 / p99 / max", &|r| {
            r.flaky_lag.map_or_else(
                || "(healthy above)".to_owned(),
                |p| format!("{} / {} / {} ms", p.p50, p.p99, p.max),
            )
        });
        line("flaky caught up after end of ingest", &|r| {
            if r.flaky_lag.is_none() {
                return "".to_owned();
            }
            r.flaky_caught_up
                .map_or_else(|| "not in 60 s".to_owned(), |s| format!("{s:.1} s"))
        });
    }
    line("healthy lag p99 per 10 s of ingest", &|r| {
        r.timeline
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" / ")
            + " ms"
    });
    line("healthy caught up after end of ingest", &|r| {
        r.healthy_caught_up.map_or_else(
            || format!("not in 60 s ({} missing)", r.healthy_missing_then),
            |s| format!("{s:.1} s"),
        )
    });
    line("requests per healthy endpoint (min / median / max)", &|r| {
        let (a, b, c) = r.healthy_requests;
        format!("{a} / {b} / {c}")
    });
    line("ingest latency p50 / p99 / max", &|r| {
        let p = pcts(&r.ingest.latencies_ms);
        format!("{} / {} / {} ms", p.p50, p.p99, p.max)
    });
    line("ingest requests failed / sent late", &|r| {
        format!("{} / {}", r.ingest.failed, r.ingest.late)
    });
    line("sluice CPU during ingest (% of one core)", &|r| {
        format!("{:.0}%", r.sluice_cpu_pct)
    });
    line("bench process CPU (ingest + receivers)", &|r| {
        format!("{:.0}%", r.bench_cpu_pct)
    });
    line("other processes' CPU (machine busy − both)", &|r| {
        format!(
            "{:.0}% (machine {:.0}%)",
            r.others_cpu_pct, r.machine_cpu_pct
        )
    });
    line(
        "sluice peak RSS (VmHWM): before healing / incl. drain / at end",
        &|r| {
            format!(
                "{} / {} / {}",
                mib(r.hwm_before_heal),
                mib(r.peaks.rss),
                mib(r.rss_end)
            )
        },
    );
    line("sluice threads (max)", &|r| r.peaks.threads.to_string());
    line("sluice open fds (max)", &|r| r.peaks.fds.to_string());
    line("sluice log WARN / ERROR lines", &|r| {
        format!("{} / {}", r.log_lines.0, r.log_lines.1)
    });
    println!();
    println!(
        "Failing destinations while failing ({:.0} s of ingest, then until the healthy ones caught up), and after healing:",
        fail.ingest_secs
    );
    println!();
    header(&[
        "kind",
        "integrations",
        "requests received (min / med / max)",
        "sluice failedAttempts (min / med / max)",
        "paused ≥ 1×",
        "first pause, s after start (min / med / max)",
        "state before healing",
        "lost after healing",
        "duplicate impressions (batches)",
    ]);
    for k in &fail.kinds {
        let states = k
            .states
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        row(&[
            k.kind.label().to_owned(),
            k.count.to_string(),
            format!("{} / {} / {}", k.requests.0, k.requests.1, k.requests.2),
            format!(
                "{} / {} / {}",
                k.failed_attempts.0, k.failed_attempts.1, k.failed_attempts.2
            ),
            format!("{}/{}", k.paused, k.count),
            k.first_pause.map_or_else(
                || "—".to_owned(),
                |(a, b, c)| format!("{a:.0} / {b:.0} / {c:.0}"),
            ),
            states,
            if k.integrations_with_loss > 0 {
                format!(
                    "**{}** (at {} integrations)",
                    k.lost, k.integrations_with_loss
                )
            } else {
                "0".to_owned()
            },
            format!("{} ({})", k.duplicates, k.duplicate_batches),
        ]);
    }
    println!();
    println!(
        "Drain after healing: {}. Impressions lost: {}. Duplicate impressions: {}.",
        fail.drain_secs.map_or_else(
            || format!("NOT complete within {} s", args.heal_timeout),
            |s| format!("{s:.1} s")
        ),
        fail.lost_total,
        fail.duplicates_total
    );
    let met = match base {
        Some(b) => {
            let allowed = (f64::from(b.lag.p99) * 1.1).max(f64::from(b.lag.p99) + 1000.0);
            let ok = f64::from(fail.lag.p99) <= allowed;
            println!(
                "Target (healthy p99 within max(10%, 1 s) of all-healthy: ≤ {allowed:.0} ms): {} ({} ms vs {} ms).",
                if ok { "MET" } else { "NOT MET" },
                fail.lag.p99,
                b.lag.p99
            );
            ok
        }
        None => {
            println!("Target: not evaluated (--skip-baseline).");
            true
        }
    };
    met && fail.lost_total == 0
}

/// `sluice bench postmortem`. Fails (after printing everything) when anything was lost or
/// the healthy p99 target was missed.
pub async fn run_postmortem(args: PostmortemArgs) -> anyhow::Result<()> {
    sluice_client::install_crypto_provider();
    if args.integrations == 0 || args.rate == 0 || args.per_request == 0 || args.seconds == 0 {
        bail!("--integrations, --rate, --per-request and --seconds must be positive");
    }
    println!("## Machine");
    println!();
    header(&["", ""]);
    for (k, v) in machine() {
        row(&[k.to_owned(), v]);
    }
    println!(
        "| command | `sluice bench postmortem --integrations {} --failing-percent {} --seconds {} --rate {} --per-request {}{}{}` |",
        args.integrations,
        args.failing_percent,
        args.seconds,
        args.rate,
        args.per_request,
        if args.flaky_percent > 0 {
            format!(" --flaky-percent {}", args.flaky_percent)
        } else {
            String::new()
        },
        if args.skip_baseline {
            " --skip-baseline"
        } else {
            ""
        }
    );
    let kinds = layout(args.integrations, args.failing_percent, args.flaky_percent);
    let base = if args.skip_baseline {
        None
    } else {
        Some(run_once(&args, &kinds, false).await?)
    };
    let fail = run_once(&args, &kinds, true).await?;
    if !report(&args, base.as_ref(), &fail) {
        bail!("the postmortem benchmark's target was not met (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_spreads_failures_evenly() {
        let k = layout(1000, 30, 5);
        for f in FAILURES {
            assert_eq!(k.iter().filter(|k| **k == f).count(), 75);
        }
        assert_eq!(k.iter().filter(|k| **k == Kind::Flaky).count(), 50);
        assert_eq!(k.iter().filter(|k| **k == Kind::Healthy).count(), 650);
        let k = layout(10, 0, 0);
        assert!(k.iter().all(|k| *k == Kind::Healthy));
    }

    #[test]
    fn keys_round_trip() {
        let body = bulk_body(1_700_000_000_123, 42, 3);
        let v: Value = serde_json::from_str(&body).unwrap();
        let key = v[0]["i"][2]["k"].as_str().unwrap();
        assert_eq!(parse_key(key, 3), Some((1_700_000_000_123, 42 * 3 + 2)));
        assert_eq!(parse_key("x-1-2", 3), None);
        assert_eq!(parse_key("1-1-5", 3), None);
    }

    /// Runs the benchmark from a test binary (for development, before it is wired into the
    /// CLI): `POSTMORTEM_ARGS="--sluice-bin target/release/sluice --seconds 20"
    /// cargo test --release -p sluice --lib postmortem::tests::run -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn run() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: PostmortemArgs,
        }
        let raw = std::env::var("POSTMORTEM_ARGS").unwrap_or_default();
        let cli = Cli::parse_from(std::iter::once("postmortem").chain(raw.split_whitespace()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_postmortem(cli.a)).unwrap();
    }
}
