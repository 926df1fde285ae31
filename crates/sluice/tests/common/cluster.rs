//! A sluice cluster for tests: a 3-node NATS JetStream cluster on free loopback ports with
//! temporary storage (sluice-testkit), `sluice serve --store nats://…` child processes,
//! a recording webhook receiver, and sequential ingest clients that remember what was
//! acknowledged. Declared from a test with `#[path = "common/cluster.rs"] mod cluster;`.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use sluice_testkit as testkit;
use sluice_testkit::nats::NatsCluster;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "cluster-test-admin-token";

/// Upper bound of every wait in these tests (they fail instead of hanging).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

pub fn http() -> reqwest::Client {
    sluice_client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// Starts `sluice serve --store <nats> --node-id <node>`.
pub async fn start_node(
    nats: &NatsCluster,
    node: &str,
    log_dir: &std::path::Path,
) -> testkit::SluiceProcess {
    let mut opts = testkit::LaunchOptions::new(env!("CARGO_BIN_EXE_sluice"));
    opts.token = TOKEN.to_owned();
    opts.prefix = format!("sluice-{node}");
    opts.log = testkit::ChildLog::Append(log_dir.join(format!("{node}.log")));
    opts.default_log_filter =
        std::env::var("SLUICE_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into());
    opts.http = Some(http());
    opts.start_timeout = Duration::from_secs(60);
    opts.extra_args = vec![
        "--store".into(),
        nats.urls(),
        "--node-id".into(),
        node.into(),
    ];
    testkit::SluiceProcess::start(opts)
        .await
        .unwrap_or_else(|e| panic!("starting {node}: {e}"))
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub integration: String,
    pub webhook_id: String,
    pub body: Bytes,
    pub at: Instant,
}

/// A webhook endpoint recording every request (`POST /hook/{integration}`), answering 200
/// (after `delay`, when set).
#[derive(Clone, Default)]
pub struct Recorder {
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub delay: Arc<Mutex<Duration>>,
}

impl Recorder {
    pub async fn start() -> (Recorder, String) {
        let rec = Recorder::default();
        let app = axum::Router::new()
            .route("/hook/{id}", axum::routing::post(receive))
            .with_state(rec.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (rec, url)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Checks that no `webhook-id` carried two different bodies, and returns, per
    /// integration, the impressions of each client (`key`) in delivery order with
    /// repeats from resent batches removed only when they are exact batch repeats.
    pub fn check(&self) -> BTreeMap<String, HashMap<String, Vec<u64>>> {
        let got = self.deliveries();
        let mut bodies: HashMap<&str, &Bytes> = HashMap::new();
        let mut out: BTreeMap<String, HashMap<String, Vec<u64>>> = BTreeMap::new();
        for d in &got {
            match bodies.get(d.webhook_id.as_str()) {
                Some(b) => {
                    assert_eq!(
                        *b, &d.body,
                        "webhook-id {} was sent with two different bodies",
                        d.webhook_id
                    );
                    continue;
                }
                None => {
                    bodies.insert(&d.webhook_id, &d.body);
                }
            }
            let imps: Vec<Value> = serde_json::from_slice(&d.body).expect("a JSON array");
            let per = out.entry(d.integration.clone()).or_default();
            for i in imps {
                let key = i["key"].as_str().unwrap().to_owned();
                let seq: u64 = i["treatment"].as_str().unwrap().parse().unwrap();
                per.entry(key).or_default().push(seq);
            }
        }
        out
    }
}

async fn receive(
    State(rec): State<Recorder>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    let delay = *rec.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    rec.got.lock().unwrap().push(Delivery {
        integration: id,
        webhook_id,
        body,
        at: Instant::now(),
    });
    axum::http::StatusCode::OK
}

/// Creates environment `env` (SDK key `key-<env>`) and integrations delivering it to
/// `receiver/hook/<id>` (no gzip, short flush interval, small batches).
pub async fn configure(
    node: &testkit::SluiceProcess,
    env: &str,
    integrations: &[&str],
    receiver: &str,
) {
    let admin = node.admin();
    admin
        .create_environment(
            &json!({"id": env, "name": env, "sdkKeys": [format!("sdk-key-{env}-0000")]}),
        )
        .await
        .expect("environment created");
    for id in integrations {
        admin
            .create_integration(&json!({
                "id": id,
                "name": id,
                "url": format!("{receiver}/hook/{id}"),
                "environments": [env],
                "gzip": false,
                "flushIntervalMs": 100,
                "maxBatchImpressions": 25,
            }))
            .await
            .expect("integration created");
    }
}

/// What the ingest clients saw.
#[derive(Debug, Default)]
pub struct Acked {
    /// Per client (`key`), the sequence numbers answered 200, in sending order.
    pub per_client: BTreeMap<String, Vec<u64>>,
    /// Answers other than 200, by status (0: no answer).
    pub refused: BTreeMap<u16, u64>,
    /// 503 answers without `Retry-After`.
    pub unavailable_without_retry_after: u64,
}

/// `clients` sequential clients, each sending one impression per request (treatment =
/// its sequence number), each to the nodes in `urls` in turn (a node that does not answer
/// is skipped until the next request), until `stop`.
pub async fn ingest_until(
    urls: Arc<Mutex<Vec<String>>>,
    env: &str,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Acked {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, urls, stop, env) = (http.clone(), urls.clone(), stop.clone(), env.to_owned());
        tasks.push(tokio::spawn(async move {
            let key = format!("client-{c}");
            let mut acked = Vec::new();
            let mut refused: BTreeMap<u16, u64> = BTreeMap::new();
            let mut bad_503 = 0;
            let mut seq = 0u64;
            let mut turn = c;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = {
                    let u = urls.lock().unwrap();
                    turn += 1;
                    u[turn % u.len()].clone()
                };
                let body = json!([{"key": key, "split": "flag", "treatment": seq.to_string(), "time": 1_700_000_000_000u64 + seq}]);
                let r = http
                    .post(format!("{url}/v1/impressions"))
                    .bearer_auth(format!("sdk-key-{env}-0000"))
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        acked.push(seq);
                        seq += 1;
                    }
                    Ok(r) => {
                        let s = r.status().as_u16();
                        if s == 503 && r.headers().get("retry-after").is_none() {
                            bad_503 += 1;
                        }
                        *refused.entry(s).or_default() += 1;
                        // Not acknowledged: the next request carries a new number, so an
                        // unacknowledged one that was stored after all shows as extra.
                        seq += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        *refused.entry(0).or_default() += 1;
                        seq += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (key, acked, refused, bad_503)
        }));
    }
    let mut out = Acked::default();
    for t in tasks {
        let (key, acked, refused, bad) = t.await.unwrap();
        out.per_client.insert(key, acked);
        for (s, n) in refused {
            *out.refused.entry(s).or_default() += n;
        }
        out.unavailable_without_retry_after += bad;
    }
    out
}

/// Waits until every integration of `integrations` received every acknowledged impression
/// (bounded by [`HANG_GUARD`]); then checks per-client order and that nothing acknowledged
/// is missing. Returns the number of impressions delivered more than once.
pub async fn assert_all_delivered(rec: &Recorder, integrations: &[&str], acked: &Acked) -> usize {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let got = rec.check();
        let missing: usize = integrations
            .iter()
            .map(|i| {
                let per = got.get(*i);
                acked
                    .per_client
                    .iter()
                    .map(|(k, seqs)| {
                        let have: std::collections::HashSet<u64> = per
                            .and_then(|p| p.get(k))
                            .map(|v| v.iter().copied().collect())
                            .unwrap_or_default();
                        seqs.iter().filter(|s| !have.contains(s)).count()
                    })
                    .sum::<usize>()
            })
            .sum();
        if missing == 0 {
            let mut repeats = 0;
            for i in integrations {
                for (k, seqs) in &got[*i] {
                    // In order: a resent batch may repeat, never skip back past what was
                    // delivered before it was first sent. (Only acknowledged impressions
                    // have an order: an unacknowledged one may be stored late.)
                    let acked_here: std::collections::HashSet<u64> = acked
                        .per_client
                        .get(k)
                        .map(|v| v.iter().copied().collect())
                        .unwrap_or_default();
                    let mut max = None;
                    let mut seen = std::collections::HashSet::new();
                    for s in seqs {
                        if !seen.insert(*s) {
                            repeats += 1;
                            continue;
                        }
                        if !acked_here.contains(s) {
                            continue;
                        }
                        if let Some(m) = max {
                            assert!(*s > m, "{i}: client {k}: impression {s} arrived after {m}");
                        }
                        max = Some(*s);
                    }
                }
            }
            return repeats;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged impressions were never delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status of an integration as `node` answers it (forwarded to its owner).
pub async fn status(node: &testkit::SluiceProcess, id: &str) -> Value {
    node.admin()
        .integration_status(id)
        .await
        .unwrap_or_else(|e| panic!("status of {id}: {e}"))
}

/// Waits until `node` reports `id` claimed by `owner` (bounded by [`HANG_GUARD`]).
pub async fn wait_owner(node: &testkit::SluiceProcess, id: &str, owner: &str) -> Value {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Ok(s) = node.admin().integration_status(id).await
            && s["owner"] == owner
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} never went to {owner}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
