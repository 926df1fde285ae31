//! `sluice demo`: one command that shows the product working — a server with embedded
//! storage, simulated SDK traffic on two environments, six webhook receivers of which two
//! fail (one hangs, one answers 500) and heal later, and a live view of delivery and
//! isolation in the terminal (and the dashboard in a browser), ending with a summary.
//!
//! `traffic.rs` sends and times the SDK requests, `view.rs` draws a frame, `summary.rs`
//! the closing account (lost must be 0), `style.rs` the colours (none when stdout is not
//! a terminal or `NO_COLOR` is set).

mod style;
mod summary;
mod traffic;
mod view;

use crate::serve::{self, ServeOptions};
use serde_json::{Value, json};
use sluice_client::AdminClient;
use sluice_receiver::{self as receiver, FaultMode, ReceiverConfig, ReceiverHandle};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use style::Style;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// When the failing receivers heal.
    #[arg(long, default_value_t = 40)]
    pub heal_after: u64,
    /// Impressions per second of simulated SDK traffic.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Address for the demo server (the dashboard is at /).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Data directory (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

struct Dest {
    id: &'static str,
    role: &'static str,
    environments: &'static [&'static str],
    receiver: ReceiverHandle,
    fault: Option<FaultMode>,
}

const ADMIN: &str = "demo-admin-token";

/// Impressions per request and requests per second at most, for every destination: the
/// healed ones' backlog then drains over several seconds instead of in a blink.
const MAX_BATCH: u32 = 1000;
const MAX_REQUESTS_PER_SECOND: u32 = 8;

/// How long the end waits for the active destinations' lag to reach 0.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let style = Style::detect();
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let server = serve::start(ServeOptions {
        listen: args.listen,
        data_dir,
        allow_private_destinations: true,
        admin_token: Some(ADMIN.into()),
        banner: false,
        ..ServeOptions::default()
    })
    .await?;
    let base = server.url("");
    let dashboard = server.url("/");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let admin = AdminClient::with_http(&base, ADMIN, client.clone())?;
    for (id, name, key) in traffic::ENVIRONMENTS {
        admin
            .create_environment(&json!({"id": id, "name": name, "sdkKeys": [key]}))
            .await?;
    }
    let dests = destinations(&admin).await?;
    println!("{} — server {base}", style.bold("sluice demo"));
    println!(
        "dashboard: {}  — sign in with the admin token {} (it sees every project; a project token sees its own)",
        style.cyan(&dashboard),
        style.bold(ADMIN)
    );
    println!(
        "metrics:   {base}/metrics (Prometheus)\nSDK traffic: {} impressions/s on environments web and mobile; 2 of 6 destinations fail until t={}s\n",
        args.rate, args.heal_after
    );

    let stats: traffic::Shared = Arc::default();
    let sender = traffic::spawn(client.clone(), base.clone(), args.rate, stats.clone());
    let started = Instant::now();
    let mut healed_at = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let t = started.elapsed().as_secs();
        if healed_at.is_none() && t >= args.heal_after {
            healed_at = Some(t);
            for d in &dests {
                if d.fault.is_some() {
                    d.receiver.set_mode(FaultMode::Ok);
                }
            }
        }
        let statuses = statuses(&admin, &dests).await;
        let (ingest, errors, stored) =
            traffic::with(&stats, |s| (s.now(), s.errors, s.acknowledged.clone()));
        let frame = view::Frame {
            t,
            dashboard: &dashboard,
            token: ADMIN,
            healed_at,
            heal_after: args.heal_after,
            ingest,
            ingest_errors: errors,
            stored: &stored,
            rows: dests
                .iter()
                .zip(&statuses)
                .map(|(d, st)| view::Row {
                    id: d.id,
                    role: if healed_at.is_some() && d.fault.is_some() {
                        "healed"
                    } else {
                        d.role
                    },
                    environments: d.environments,
                    status: st,
                })
                .collect(),
            now_ms: now_ms(),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(view::render(&style, &frame).as_bytes());
        let _ = stdout.flush();
        if args.seconds.is_some_and(|s| t >= s) {
            break;
        }
    }
    sender.abort();
    let _ = sender.await;
    println!(
        "\nstopping the SDK traffic; waiting up to {} s for the active destinations to catch up…",
        DRAIN_WAIT.as_secs()
    );
    let statuses = drain(&admin, &dests).await;
    let (acknowledged, (p50, p99), errors) =
        traffic::with(&stats, |s| (s.acknowledged.clone(), s.overall(), s.errors));
    let outcomes = dests
        .iter()
        .zip(&statuses)
        .map(|(d, st)| summary::Outcome {
            id: d.id,
            environments: d.environments,
            received: d.receiver.stats().unique_impressions,
            queued: st["lagImpressions"].as_u64().unwrap_or(0),
            gapped: 0,
            pauses: st["pauseCount"].as_u64().unwrap_or(0),
        })
        .collect::<Vec<_>>();
    let mut outcomes = outcomes;
    for (o, d) in outcomes.iter_mut().zip(&dests) {
        o.gapped = gap_impressions(&admin, d.id).await;
    }
    print!(
        "{}",
        summary::render(
            &style,
            &summary::Summary {
                seconds: started.elapsed().as_secs(),
                acknowledged: &acknowledged,
                ingest_p50: p50,
                ingest_p99: p99,
                ingest_errors: errors,
                destinations: outcomes,
            }
        )
    );
    server.shutdown().await;
    Ok(())
}

/// Starts the six receivers and creates their integrations.
async fn destinations(admin: &AdminClient) -> anyhow::Result<Vec<Dest>> {
    const BOTH: &[&str] = &["web", "mobile"];
    let plan: [(&str, &str, &'static [&'static str], Option<FaultMode>); 6] = [
        ("analytics", "healthy", BOTH, None),
        ("warehouse", "healthy", BOTH, None),
        ("experiments", "healthy", &["web"], None),
        ("crm", "healthy", &["mobile"], None),
        ("legacy-hangs", "hangs", BOTH, Some(FaultMode::Hang)),
        (
            "broken-500",
            "answers 500",
            BOTH,
            Some(FaultMode::Status(500)),
        ),
    ];
    let mut dests = Vec::new();
    for (id, role, environments, fault) in plan {
        let r = receiver::start(ReceiverConfig {
            quiet: true,
            mode: fault.clone().unwrap_or(FaultMode::Ok),
            ..ReceiverConfig::default()
        })
        .await?;
        let body = json!({
            "id": id, "name": id, "url": r.url("/hook"), "environments": environments,
            "flushIntervalMs": 1000,
            "maxBatchImpressions": MAX_BATCH,
            "maxRequestsPerSecond": MAX_REQUESTS_PER_SECOND,
            "protection": {"initialCooldownMs": 2000, "maxCooldownMs": 10000, "requestTimeoutMs": 3000}
        });
        admin.create_integration(&body).await?;
        dests.push(Dest {
            id,
            role,
            environments,
            receiver: r,
            fault,
        });
    }
    Ok(dests)
}

async fn statuses(admin: &AdminClient, dests: &[Dest]) -> Vec<Value> {
    let mut out = Vec::with_capacity(dests.len());
    for d in dests {
        out.push(admin.integration_status(d.id).await.unwrap_or(Value::Null));
    }
    out
}

/// Waits (at most [`DRAIN_WAIT`]) until every active destination has no lag; returns the
/// last statuses.
async fn drain(admin: &AdminClient, dests: &[Dest]) -> Vec<Value> {
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        let st = statuses(admin, dests).await;
        let waiting = st
            .iter()
            .any(|s| s["state"] == "active" && s["lagImpressions"].as_u64().unwrap_or(0) > 0);
        if !waiting || Instant::now() >= deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn gap_impressions(admin: &AdminClient, id: &str) -> u64 {
    let gaps = admin.gaps(id).await.unwrap_or(Value::Null);
    let list = gaps.as_array().or_else(|| gaps["gaps"].as_array());
    list.map(|g| {
        g.iter()
            .filter(|g| g["closedBy"].is_null())
            .map(|g| g["impressions"].as_u64().unwrap_or(0))
            .sum()
    })
    .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
