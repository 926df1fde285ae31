//! Scale-out on NATS JetStream (SPEC §7), end to end: a 3-node NATS cluster on free
//! loopback ports with temporary storage and 2–3 `sluice serve --store nats://…` child
//! processes. Configuration made on one node applies on the others; a killed or stopped
//! owner's integrations are taken over, with every acknowledged impression delivered, in
//! order per client, no `webhook-id` with two bodies, and a stale owner never advancing a
//! cursor; killing JetStream leaders never acknowledges unstored data; a joining node
//! takes its share; alert destinations made on one node get each event once, from one
//! node. Skipped (loudly) without a nats-server ≥ 2.10, except under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a broken setup should panic

#[path = "common/cluster.rs"]
mod cluster;

use cluster::*;
use serde_json::json;
use sluice_testkit::nats::{NatsCluster, binary_or_skip};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn nats(test: &str) -> Option<NatsCluster> {
    let bin = binary_or_skip(test)?;
    Some(NatsCluster::start(&bin, 3).await.expect("nats cluster"))
}

/// Owner of each integration, as node `via` reports it, once every one is claimed by a
/// member of `nodes`.
async fn owners(
    via: &sluice_testkit::SluiceProcess,
    ids: &[&str],
    nodes: &[&str],
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let mut out = BTreeMap::new();
        for id in ids {
            // Not mirrored there yet: a 404 for a moment.
            let Ok(s) = via.admin().integration_status(id).await else {
                continue;
            };
            if let Some(o) = s["owner"].as_str()
                && nodes.contains(&o)
            {
                out.insert(id.to_string(), o.to_owned());
            }
        }
        if out.len() == ids.len() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "integrations never all claimed: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configuration_change_on_one_node_applies_on_the_other_within_a_second() {
    let Some(nats) = nats("cluster config mirror").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let a = start_node(&nats, "node-a", logs.path()).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    let (_rec, receiver) = Recorder::start().await;

    // An environment created on A: B resolves its SDK key (ingest) within a second.
    a.admin()
        .create_environment(&json!({"id": "e1", "name": "e1", "sdkKeys": ["sdk-key-e1-0000"]}))
        .await
        .unwrap();
    let began = Instant::now();
    let seen = loop {
        let r = b
            .http()
            .post(b.url("/v1/impressions"))
            .bearer_auth("sdk-key-e1-0000")
            .json(&json!([{"key": "k", "split": "f", "treatment": "on", "time": 1}]))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break began.elapsed();
        }
        assert_eq!(
            r.status(),
            401,
            "before the mirror has it, the key is unknown"
        );
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "B did not see A's environment within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("environment created on A was usable on B after {seen:?}");

    // An integration created on B, then changed on B: A answers with the change.
    configure_integration(&b, "i1", "e1", &receiver).await;
    b.admin()
        .patch_integration("i1", &json!({"name": "renamed"}))
        .await
        .unwrap();
    let began = Instant::now();
    loop {
        let got = a.admin().integration("i1").await;
        if let Ok(v) = &got
            && v["name"] == "renamed"
        {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "A did not see B's change within 1 s: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Deleted on A: gone on B.
    a.admin().delete_integration("i1").await.unwrap();
    let began = Instant::now();
    while b.admin().integration("i1").await.is_ok() {
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "B still has the deleted integration after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn configure_integration(
    node: &sluice_testkit::SluiceProcess,
    id: &str,
    env: &str,
    receiver: &str,
) {
    node.admin()
        .create_integration(&json!({
            "id": id, "name": id, "url": format!("{receiver}/hook/{id}"),
            "environments": [env], "gzip": false, "flushIntervalMs": 100, "maxBatchImpressions": 25,
        }))
        .await
        .unwrap();
}

const IDS: [&str; 8] = ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_owner_mid_load_moves_its_integrations_and_loses_nothing() {
    let Some(nats) = nats("cluster owner kill").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let mut a = start_node(&nats, "node-a", logs.path()).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    let (rec, receiver) = Recorder::start().await;
    configure(&a, "e1", &IDS, &receiver).await;
    let owned = owners(&b, &IDS, &["node-a", "node-b"]).await;
    let victims: Vec<&str> = IDS
        .iter()
        .copied()
        .filter(|i| owned[*i] == "node-a")
        .collect();
    assert!(
        !victims.is_empty() && victims.len() < IDS.len(),
        "both nodes own some: {owned:?}"
    );

    let urls = Arc::new(Mutex::new(vec![a.url(""), b.url("")]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(ingest_until(urls.clone(), "e1", 4, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill9().await;
    let killed = Instant::now();
    *urls.lock().unwrap() = vec![b.url("")];
    for v in &victims {
        wait_owner(&b, v, "node-b").await;
    }
    let moved = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    let total: usize = acked.per_client.values().map(Vec::len).sum();
    assert!(total > 0, "nothing was acknowledged: {:?}", acked.refused);
    assert_eq!(acked.unavailable_without_retry_after, 0);
    let repeats = assert_all_delivered(&rec, &IDS, &acked).await;
    // The first delivery of a victim after the kill: the takeover as a receiver sees it.
    let first_after = rec
        .deliveries()
        .iter()
        .filter(|d| victims.contains(&d.integration.as_str()) && d.at > killed)
        .map(|d| d.at.duration_since(killed))
        .min();
    eprintln!(
        "{} victims claimed by node-b {moved:?} after kill -9, first delivery {first_after:?}; {total} acknowledged, {repeats} impressions delivered again, refused {:?}",
        victims.len(),
        acked.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_owner_resumed_after_a_takeover_cannot_advance_the_cursor() {
    let Some(nats) = nats("cluster stopped owner").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let a = start_node(&nats, "node-a", logs.path()).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    let (rec, receiver) = Recorder::start().await;
    configure(&a, "e1", &IDS, &receiver).await;
    let owned = owners(&b, &IDS, &["node-a", "node-b"]).await;
    let victims: Vec<&str> = IDS
        .iter()
        .copied()
        .filter(|i| owned[*i] == "node-a")
        .collect();
    assert!(!victims.is_empty(), "node-a owns some: {owned:?}");
    let before: BTreeMap<&str, u64> = {
        let mut m = BTreeMap::new();
        for v in &victims {
            m.insert(*v, status(&b, v).await["epoch"].as_u64().unwrap());
        }
        m
    };

    // Slow answers: node-a is likely stopped with a batch in flight.
    *rec.delay.lock().unwrap() = Duration::from_millis(300);
    let urls = Arc::new(Mutex::new(vec![b.url("")]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(ingest_until(urls.clone(), "e1", 3, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = a.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut taken: BTreeMap<&str, u64> = BTreeMap::new();
    for v in &victims {
        let s = wait_owner(&b, v, "node-b").await;
        let epoch = s["epoch"].as_u64().unwrap();
        assert!(epoch > before[v], "a takeover starts a new epoch");
        taken.insert(*v, epoch);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let resumed = Instant::now();
    // node-a wakes up with its old epoch in memory. Any cursor write it made would store
    // its old (owner, epoch); watch the records while it runs again.
    while resumed.elapsed() < Duration::from_secs(6) {
        for v in &victims {
            let s = status(&b, v).await;
            let epoch = s["epoch"].as_u64().unwrap();
            assert!(
                epoch >= taken[v],
                "{v}: epoch went back from {} to {epoch} (owner {}): a stale owner wrote the cursor",
                taken[v],
                s["owner"]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    *rec.delay.lock().unwrap() = Duration::ZERO;
    assert_all_delivered(&rec, &IDS, &acked).await;
    let log = std::fs::read_to_string(logs.path().join("node-a.log")).unwrap_or_default();
    eprintln!(
        "node-a after SIGCONT: gave up on waking = {}, fenced by a write = {}",
        log.contains("did not run for a while"),
        log.contains("another node took this integration over")
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_and_kv_leaders_mid_load_acknowledges_nothing_unstored() {
    let Some(mut nats) = nats("cluster leader kill").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let a = start_node(&nats, "node-a", logs.path()).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    let (rec, receiver) = Recorder::start().await;
    configure(&a, "e1", &IDS[..4], &receiver).await;
    owners(&b, &IDS[..4], &["node-a", "node-b"]).await;

    let urls = Arc::new(Mutex::new(vec![a.url(""), b.url("")]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(ingest_until(urls.clone(), "e1", 4, stop.clone()));
    for stream in [
        sluice_store::nats::names::log_stream("e1"),
        "KV_sluice_cursors".to_owned(),
    ] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = nats.stream_leader(&stream).await.expect("a leader");
        nats.kill(leader);
        eprintln!("killed {stream}'s leader (node {leader})");
        tokio::time::sleep(Duration::from_secs(12)).await;
        nats.restart(leader).await.unwrap();
        nats.wait_ready().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    assert_eq!(
        acked.unavailable_without_retry_after, 0,
        "every 503 says when to retry"
    );
    assert!(
        acked.refused.keys().all(|s| *s == 503),
        "only 503s while JetStream elects: {:?}",
        acked.refused
    );
    let total: usize = acked.per_client.values().map(Vec::len).sum();
    let repeats = assert_all_delivered(&rec, &IDS[..4], &acked).await;
    eprintln!(
        "{total} acknowledged, refused {:?}, {repeats} delivered again",
        acked.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_its_share() {
    let Some(nats) = nats("cluster join").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let a = start_node(&nats, "node-a", logs.path()).await;
    let (rec, receiver) = Recorder::start().await;
    configure(&a, "e1", &IDS, &receiver).await;
    owners(&a, &IDS, &["node-a"]).await;
    let urls = Arc::new(Mutex::new(vec![a.url("")]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(ingest_until(urls.clone(), "e1", 3, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    urls.lock().unwrap().push(b.url(""));
    // Rendezvous hashing over {a, b}: exactly these move.
    let expect_b: Vec<&str> = {
        let view = sluice_store::members::Members {
            nodes: Arc::new(
                ["node-a", "node-b"]
                    .iter()
                    .map(|n| {
                        (
                            n.to_string(),
                            sluice_store::members::NodeInfo { url: String::new() },
                        )
                    })
                    .collect(),
            ),
        };
        IDS.iter()
            .copied()
            .filter(|i| sluice_delivery::ownership::owner(&view, i) == Some("node-b"))
            .collect()
    };
    assert!(!expect_b.is_empty(), "node-b has a share to take");
    for i in &expect_b {
        wait_owner(&a, i, "node-b").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    let repeats = assert_all_delivered(&rec, &IDS, &acked).await;
    // At most the batch in flight (and the one prefetched with it) of each moved
    // integration is sent twice.
    assert!(
        repeats <= expect_b.len() * 2 * 25,
        "{repeats} impressions delivered twice for {} moved integrations",
        expect_b.len()
    );
    let owned = owners(&b, &IDS, &["node-a", "node-b"]).await;
    for (i, o) in &owned {
        assert_eq!(
            o == "node-b",
            expect_b.contains(&i.as_str()),
            "{i} is owned by {o}"
        );
    }
    eprintln!(
        "node-b took {:?}; {repeats} impressions delivered twice",
        expect_b
    );
}

/// NATS unreachable at start-up: `sluice serve` exits with an error naming the servers
/// within a bounded time instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_at_start_up_is_a_clear_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--store", &format!("nats://127.0.0.1:{port}")])
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("sluice serve gave up instead of hanging")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("NATS"),
        "the error names the servers: {err}"
    );
}

/// Alert destinations of which, over `node-a` and `node-b`, each node sends three
/// (rendezvous owners of `alert-destination:{id}`; fixed by the hash).
const ALERT_DESTS: [&str; 6] = ["ops0", "ops1", "ops2", "ops3", "ops4", "ops5"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_destinations_created_on_one_node_get_each_event_exactly_once() {
    let Some(nats) = nats("cluster alerts").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let a = start_node(&nats, "node-a", logs.path()).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    let (rec, receiver) = Recorder::start().await;
    a.admin()
        .create_environment(&json!({"id": "e1", "name": "e1", "sdkKeys": ["sdk-key-e1-0000"]}))
        .await
        .unwrap();
    for id in ALERT_DESTS {
        a.admin()
            .create_alert_destination(&json!({
                "id": id, "url": format!("{receiver}/hook/{id}"), "secret": "whsec-ops",
                "events": ["integration.paused", "integration.resumed"],
            }))
            .await
            .unwrap();
    }
    // Both nodes see every destination, and agree on who sends each (the view settled).
    let deadline = Instant::now() + HANG_GUARD;
    let senders = loop {
        let mut by: BTreeMap<&str, (String, String)> = BTreeMap::new();
        for id in ALERT_DESTS {
            let (Ok(sa), Ok(sb)) = (
                a.admin().alert_destination_status(id).await,
                b.admin().alert_destination_status(id).await,
            ) else {
                continue;
            };
            by.insert(
                id,
                (
                    sa["sentBy"].as_str().unwrap_or("").to_owned(),
                    sb["sentBy"].as_str().unwrap_or("").to_owned(),
                ),
            );
        }
        let agreed: Vec<&str> = by
            .values()
            .filter(|(x, y)| x == y)
            .map(|(x, _)| x.as_str())
            .collect();
        if agreed.len() == ALERT_DESTS.len()
            && agreed.contains(&"node-a")
            && agreed.contains(&"node-b")
        {
            break by;
        }
        assert!(Instant::now() < deadline, "never settled: {by:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("alert destinations sent by: {senders:?}");

    // Integrations created on B; each paused and resumed through either node: one event
    // each, recorded by the node that handled the request.
    let integrations = ["i0", "i1", "i2"];
    for id in integrations {
        configure_integration(&b, id, "e1", &receiver).await;
    }
    for (k, id) in integrations.iter().enumerate() {
        let (first, second) = if k % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // The integration may not be mirrored on that node yet: a 404 for a moment.
        let deadline = Instant::now() + HANG_GUARD;
        while first.admin().pause(id).await.is_err() {
            assert!(Instant::now() < deadline, "cannot pause {id}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while second.admin().resume(id).await.is_err() {
            assert!(Instant::now() < deadline, "cannot resume {id}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let want = 2 * integrations.len();
    let per_dest = |got: &[Delivery]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in got {
            m.entry(d.integration.clone())
                .or_default()
                .push(d.webhook_id.clone());
        }
        m
    };
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let m = per_dest(&rec.deliveries());
        if ALERT_DESTS
            .iter()
            .all(|id| m.get(*id).is_some_and(|v| v.len() >= want))
        {
            break;
        }
        assert!(Instant::now() < deadline, "alerts missing: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives: every event was recorded once, by one node — one `webhook-id`
    // per event. Delivery is at least once: an attempt that timed out on a loaded machine
    // is sent again under the same id (receivers deduplicate), so a repeated id is allowed,
    // a second id for the same event is not.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = per_dest(&rec.deliveries());
    for id in ALERT_DESTS {
        let ids = &m[id];
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), want, "{id} got {ids:?}");
        if ids.len() > want {
            eprintln!("{id}: {} resent under the same id", ids.len() - want);
        }
        let st = b.admin().alert_destination_status(id).await.unwrap();
        assert_eq!(st["pendingEvents"], 0, "{id}: {st}");
        assert!(
            st["deliveredEvents"].as_u64() >= Some(want as u64),
            "{id}: {st}"
        );
    }
    let ops0_before = m["ops0"].len();
    // Deleted on B: gone on A at once, and nothing is sent to it any more.
    b.admin().delete_alert_destination("ops0").await.unwrap();
    let began = Instant::now();
    while a.admin().alert_destination("ops0").await.is_ok() {
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "A still has the deleted alert destination after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.admin().pause("i0").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = per_dest(&rec.deliveries());
    assert_eq!(
        m["ops0"].len(),
        ops0_before,
        "sent to a deleted destination"
    );
    let ops1: std::collections::BTreeSet<&String> = m["ops1"].iter().collect();
    assert!(ops1.len() > want, "the others still get alerts: {m:?}");
}

/// `GET /v1/integrations/status` on any node reports each integration's status as its
/// owner does (SPEC §4, §7): an integration delivered by node B whose destination refuses
/// is paused on B, and node A — which never delivered it — lists it `paused` (and finds
/// it with `state=paused`), not `active` from the store's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_aggregated_status_on_one_node_is_each_owners() {
    let Some(nats) = nats("cluster aggregated status").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let a = start_node(&nats, "node-a", logs.path()).await;
    let b = start_node(&nats, "node-b", logs.path()).await;
    // A destination that refuses every connection.
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    a.admin()
        .create_environment(&json!({"id": "e1", "name": "e1", "sdkKeys": ["sdk-key-e1-0000"]}))
        .await
        .unwrap();
    for id in IDS {
        a.admin()
            .create_integration(&json!({
                "id": id, "name": id, "url": format!("{refusing}/hook/{id}"),
                "environments": ["e1"], "gzip": false, "flushIntervalMs": 100,
                // Paused after two failed attempts, for ten minutes.
                "protection": {
                    "window": 4, "minAttempts": 2, "failureRatePercent": 50,
                    "minFailedAttempts": 2, "connectTimeoutMs": 500, "requestTimeoutMs": 1000,
                    "initialCooldownMs": 600_000, "maxCooldownMs": 600_000,
                },
            }))
            .await
            .unwrap();
    }
    let owned = owners(&a, &IDS, &["node-a", "node-b"]).await;
    let on_b: Vec<&str> = IDS
        .iter()
        .copied()
        .filter(|i| owned[*i] == "node-b")
        .collect();
    assert!(!on_b.is_empty(), "node-b owns some: {owned:?}");
    let victim = on_b[0];
    // Something to deliver (through B's ingest; every integration reads e1).
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let r = b
            .http()
            .post(b.url("/v1/impressions"))
            .bearer_auth("sdk-key-e1-0000")
            .json(&json!([{"key": "k", "split": "f", "treatment": "on", "time": 1}]))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "ingest on B: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Paused on B, by protection (no operator pause in the store).
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let s = status(&b, victim).await;
        if s["state"] == "paused" {
            assert_eq!(s["manuallyPaused"], false);
            break;
        }
        assert!(Instant::now() < deadline, "{victim} never paused on B: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = |node: &sluice_testkit::SluiceProcess, query: &str| {
        let req = node
            .http()
            .get(node.url(&format!("/v1/integrations/status{query}")))
            .bearer_auth(TOKEN);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let row = |page: &serde_json::Value, id: &str| {
        page["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .cloned()
    };
    // A lists it as B reports it, with B's failure record.
    let all = page(&a, "?limit=1000").await;
    let on_a = row(&all, victim).unwrap_or_else(|| panic!("{victim} missing on A: {all}"));
    assert_eq!(on_a["state"], "paused", "{on_a}");
    assert!(on_a["pausedUntil"].is_i64(), "{on_a}");
    assert!(on_a["lastError"].is_string(), "{on_a}");
    assert_eq!(all["integrations"].as_array().unwrap().len(), IDS.len());
    // And finds it by the owner's state.
    let paused = page(&a, "?state=paused&limit=1000").await;
    assert!(
        row(&paused, victim).is_some(),
        "{victim} not paused on A: {paused}"
    );
    assert!(
        paused["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "paused"),
        "{paused}"
    );
    let active = page(&a, "?state=active&limit=1000").await;
    assert!(
        row(&active, victim).is_none(),
        "{victim} active on A: {active}"
    );
    // B says the same of it.
    let on_b = row(&page(&b, "?limit=1000").await, victim).unwrap();
    assert_eq!(on_b["state"], "paused", "{on_b}");
    // Small pages: one chunk at a time, still the owners' answers.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let p = page(&a, &format!("?limit=3{cursor}")).await;
        for v in p["integrations"].as_array().unwrap() {
            seen.push((v["id"].as_str().unwrap().to_owned(), v["state"].clone()));
        }
        match p["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), IDS.len(), "{seen:?}");
    assert!(
        seen.iter().any(|(id, st)| id == victim && st == "paused"),
        "{seen:?}"
    );
    // Every destination refuses: once all are paused (each on its owner), both nodes'
    // dashboard overviews count them all paused.
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let p = page(&a, "?state=paused&limit=1000").await;
        if p["integrations"].as_array().unwrap().len() == IDS.len() {
            break;
        }
        assert!(Instant::now() < deadline, "never all paused: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in [&a, &b] {
        let r = node
            .http()
            .get(node.url("/v1/dashboard/overview"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let o: serde_json::Value = r.json().await.unwrap();
        assert_eq!(o["live"], true, "{o}");
        assert_eq!(o["summary"]["states"]["paused"], IDS.len(), "{o}");
    }
    // A resume asked of A ends B's automatic pause (its 10-minute cooldown lives in B's
    // memory): B tries again at once, fails twice and pauses it a second time.
    let before = status(&b, victim).await["pauseCount"].as_u64().unwrap();
    let r = a
        .http()
        .post(a.url(&format!("/v1/integrations/{victim}/resume")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "resume on A: {}", r.status());
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let s = status(&b, victim).await;
        if s["pauseCount"].as_u64().unwrap() > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{victim} still in its first pause on B after a resume through A: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
