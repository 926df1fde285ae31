//! `sluice bench cluster`: scale-out on a local 3-node NATS JetStream cluster (SPEC §7)
//! with several `sluice serve --store nats://…` nodes — ingest acknowledged at R3 through
//! every node, the drain of that backlog to one integration, and the takeover time of a
//! killed node's integrations over many `kill -9`s (from the kill to the first delivery
//! of each of its integrations by another node).

use super::load::{self, Bodies, Outcome, Plan, Target};
use super::report::{self, Table};
use serde_json::json;
use sluice_receiver::{ReceiverConfig, ReceiverHandle};
use sluice_testkit::nats::{NatsCluster, find_binary};
use sluice_testkit::{ChildLog, LaunchOptions, SluiceProcess};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::time::Instant;

const SDK_KEY: &str = "sdk-cluster-bench-000000000001";
const TOKEN: &str = "cluster-bench-admin-token";

/// `sluice bench cluster`
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// sluice nodes (the NATS cluster has 3 nodes, R3).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Ingest: measured seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Ingest: concurrent clients (spread over the nodes).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Ingest: impressions per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Takeover: how many times the node owning the most integrations is killed.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Takeover: integrations spread over the nodes.
    #[arg(long, default_value_t = 8)]
    pub integrations: usize,
}

async fn start_node(nats: &NatsCluster, i: usize) -> anyhow::Result<SluiceProcess> {
    let exe = crate::sluice_exe()?;
    let mut o = LaunchOptions::new(&exe);
    o.token = TOKEN.to_owned();
    o.prefix = format!("sluice-cluster-bench-{i}");
    o.start_timeout = Duration::from_secs(60);
    o.log = ChildLog::Append(std::env::temp_dir().join(format!("sluice-cluster-bench-{i}.log")));
    o.extra_args = vec![
        "--store".into(),
        nats.urls(),
        "--node-id".into(),
        format!("bench-{i}"),
    ];
    o.http = Some(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
    );
    Ok(SluiceProcess::start(o).await?)
}

/// Waits until every node accepts the SDK key (the catalog reached every node).
async fn wait_key(nodes: &[SluiceProcess]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes {
        loop {
            let r = n
                .http()
                .post(n.url("/v1/impressions"))
                .bearer_auth(SDK_KEY)
                .json(&json!([]))
                .send()
                .await?;
            if r.status() != 401 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the environment never reached every node"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

pub async fn run(a: &ClusterArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
    let bin = find_binary().map_err(|e| anyhow::anyhow!("no nats-server: {e}"))?;
    let mut nats = NatsCluster::start(&bin, 3).await?;
    eprintln!("nats cluster: {}", nats.urls());
    let mut nodes = Vec::new();
    for i in 0..a.nodes {
        nodes.push(start_node(&nats, i).await?);
    }
    let admin = nodes[0].admin().clone();
    admin
        .create_environment(&json!({"id": "bench", "name": "bench", "sdkKeys": [SDK_KEY]}))
        .await?;
    wait_key(&nodes).await?;

    // A paused integration: the ingest phase builds its backlog.
    let receiver = sluice_receiver::start(ReceiverConfig {
        quiet: true,
        ..ReceiverConfig::default()
    })
    .await?;
    admin
        .create_integration(&json!({
            "id": "drain", "name": "drain", "url": receiver.url("/drain"),
            "environments": ["bench"], "maxBatchImpressions": 5000,
        }))
        .await?;
    admin.pause("drain").await?;

    // Ingest through every node at once.
    let bodies = Arc::new(
        tokio::task::spawn_blocking({
            let (batch, clients) = (a.batch, a.clients);
            move || Bodies::generate((clients * 4).clamp(32, 256), batch, false)
        })
        .await?,
    );
    let now = Instant::now();
    let plan = Plan {
        count_from: now + Duration::from_secs(2),
        until: now + Duration::from_secs(2 + a.seconds),
        max_requests: None,
    };
    let acked = Arc::new(AtomicU64::new(0));
    let progress = load::progress("ingest", acked.clone());
    let mut runs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let clients = a.clients / a.nodes + usize::from(i < a.clients % a.nodes);
        let target = Target {
            url: n.url("/api/testImpressions/bulk"),
            sdk_key: SDK_KEY.into(),
        };
        runs.push(tokio::spawn(load::run_clients(
            clients.max(1),
            bodies.clone(),
            target,
            plan.clone(),
            acked.clone(),
        )));
    }
    let mut outcome = Outcome::default();
    for r in runs {
        let o = r.await??;
        outcome.ok_requests += o.ok_requests;
        outcome.ok_impressions += o.ok_impressions;
        for (k, v) in o.failures {
            *outcome.failures.entry(k).or_default() += v;
        }
        outcome.latencies_us.extend(o.latencies_us);
    }
    outcome.latencies_us.sort_unstable();
    drop(progress);
    let window = plan.until.duration_since(plan.count_from).as_secs_f64();

    // Drain: everything acknowledged (warm-up included) to one integration.
    let total = acked.load(std::sync::atomic::Ordering::Relaxed);
    let began = Instant::now();
    admin.resume("drain").await?;
    let drained = receiver
        .wait_until(Duration::from_secs(600), |s| s.unique_impressions >= total)
        .await
        .map_err(|s| anyhow::anyhow!("drain incomplete: {} of {total}", s.unique_impressions))?;
    let drain = began.elapsed();
    admin.delete_integration("drain").await?;

    // Takeover over many kills.
    let takeovers = takeover(&mut nats, &mut nodes, a, &receiver).await?;

    report::title(&format!(
        "Cluster: {} sluice nodes on a 3-node NATS JetStream cluster (R3, sync_interval: always)",
        a.nodes
    ));
    let failures = if outcome.failures.is_empty() {
        "none".to_owned()
    } else {
        format!("{:?}", outcome.failures)
    };
    let mut sorted = takeovers.clone();
    sorted.sort();
    let q = |p: f64| {
        sorted
            .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Table::new()
        .row(
            "command",
            format!(
                "sluice bench cluster --nodes {} --seconds {} --clients {} --batch {} --kills {} --integrations {}",
                a.nodes, a.seconds, a.clients, a.batch, a.kills, a.integrations
            ),
        )
        .row(
            "ingest impressions/s (acknowledged at R3)",
            report::int(outcome.ok_impressions as f64 / window),
        )
        .row(
            "ingest request latency p50 / p99 / max",
            format!(
                "{} / {} / {}",
                report::ms(report::quantile(&outcome.latencies_us, 0.5)),
                report::ms(report::quantile(&outcome.latencies_us, 0.99)),
                report::ms(report::quantile(&outcome.latencies_us, 1.0))
            ),
        )
        .row("ingest failed requests", failures)
        .row(
            "drain of the backlog to one integration",
            format!(
                "{} impressions in {:.1} s = {} impressions/s",
                report::int(drained.unique_impressions as f64),
                drain.as_secs_f64(),
                report::int(drained.unique_impressions as f64 / drain.as_secs_f64())
            ),
        )
        .row(
            "takeover after kill -9 (kill → first delivery by another node)",
            format!(
                "{} kills: p50 {}, max {}",
                sorted.len(),
                report::ms(q(0.5)),
                report::ms(q(1.0))
            ),
        )
        .print();
    println!(
        "  takeovers: {:?}",
        takeovers.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Kills the node owning the most integrations `a.kills` times (restarting it each time)
/// under a trickle of ingest; returns each kill's takeover time: the latest, over its
/// integrations, of the first delivery after the kill.
async fn takeover(
    nats: &mut NatsCluster,
    nodes: &mut [SluiceProcess],
    a: &ClusterArgs,
    receiver: &ReceiverHandle,
) -> anyhow::Result<Vec<Duration>> {
    let _ = nats;
    let ids: Vec<String> = (0..a.integrations).map(|i| format!("t{i}")).collect();
    for id in &ids {
        nodes[0]
            .admin()
            .create_integration(&json!({
                "id": id, "name": id, "url": receiver.url(&format!("/t/{id}")),
                "environments": ["bench"], "flushIntervalMs": 100, "maxBatchImpressions": 100,
            }))
            .await?;
    }
    // A trickle: a few impressions every 20 ms through every node.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls: Vec<String> = nodes.iter().map(|n| n.url("/v1/impressions")).collect();
    let urls = Arc::new(std::sync::Mutex::new(urls));
    let trickle = tokio::spawn({
        let (stop, urls) = (stop.clone(), urls.clone());
        async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = {
                    let u = urls
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    u[i % u.len()].clone()
                };
                i += 1;
                let _ = http
                    .post(url)
                    .bearer_auth(SDK_KEY)
                    .json(&json!([{"key": "k", "split": "f", "treatment": "on", "time": 1}]))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut times = Vec::new();
    for k in 0..a.kills {
        // Settled: every integration claimed by a live node.
        let owners = settled_owners(nodes, &ids).await?;
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for o in owners.values() {
            *count.entry(o.clone()).or_default() += 1;
        }
        let Some((victim, _)) = count.iter().max_by_key(|(_, n)| **n) else {
            anyhow::bail!("no owner");
        };
        let vi: usize = victim.trim_start_matches("bench-").parse()?;
        let theirs: Vec<&String> = ids.iter().filter(|i| owners[*i] == *victim).collect();
        nodes[vi].kill9().await;
        let killed = std::time::Instant::now();
        let deadline = Instant::now() + Duration::from_secs(60);
        let took = loop {
            let reqs = receiver.requests();
            let firsts: Vec<Duration> = theirs
                .iter()
                .filter_map(|id| {
                    reqs.iter()
                        .filter(|r| r.path == format!("/t/{id}") && r.received_at > killed)
                        .map(|r| r.received_at.duration_since(killed))
                        .min()
                })
                .collect();
            if firsts.len() == theirs.len() {
                break firsts.into_iter().max().unwrap_or_default();
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "kill {k}: no takeover within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "kill {k}: {victim} ({} integrations) → delivered by others after {took:?}",
            theirs.len()
        );
        times.push(took);
        receiver.reset();
        nodes[vi].restart().await?;
        let url = nodes[vi].url("/v1/impressions");
        urls.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[vi] = url;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = trickle.await;
    Ok(times)
}

/// Owners of `ids` once every one is claimed by a node that is running, and the claims
/// stayed the same for 3 s (the restarted node took its share back).
async fn settled_owners(
    nodes: &[SluiceProcess],
    ids: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let names: Vec<String> = (0..nodes.len()).map(|i| format!("bench-{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last: Option<(BTreeMap<String, String>, Instant)> = None;
    loop {
        let mut owners = BTreeMap::new();
        for id in ids {
            let s = nodes[0].admin().integration_status(id).await;
            let s = match s {
                Ok(s) => s,
                Err(_) => nodes[1].admin().integration_status(id).await?,
            };
            if let Some(o) = s["owner"].as_str() {
                owners.insert(id.clone(), o.to_owned());
            }
        }
        let complete = owners.len() == ids.len() && owners.values().all(|o| names.contains(o));
        let spread = owners
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1;
        if complete && spread {
            match &last {
                Some((prev, since)) if *prev == owners => {
                    if since.elapsed() >= Duration::from_secs(3) {
                        return Ok(owners);
                    }
                }
                _ => last = Some((owners, Instant::now())),
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "ownership never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
