//! JetStream store tests against real nats-server processes (sluice-testkit): they skip
//! loudly without a nats-server >= 2.10 locally and fail under CI.

use super::frame::MsgMeta;
use super::*;
use crate::log::{AppendEntry, ImpressionLog};
use crate::meta::{Bucket, Expect, MetaStore};
use sluice_testkit::nats::{ClusterOptions, NatsCluster, binary_or_skip};
use std::sync::Arc;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn start(test: &str, opts: ClusterOptions) -> Option<(NatsCluster, NatsConnection)> {
    let bin = binary_or_skip(test)?;
    let replicas = opts.nodes;
    let cluster = NatsCluster::start_with(&bin, opts)
        .await
        .expect("nats cluster");
    let mut cfg = NatsConfig::from_url(&cluster.urls()).expect("url");
    cfg.replicas = replicas;
    let conn = cfg.connect().await.expect("connect");
    Some((cluster, conn))
}

fn entry(tag: u32, count: u32, len: usize, time: i64) -> AppendEntry {
    let mut payload = tag.to_le_bytes().to_vec();
    payload.resize(len.max(4), (tag % 251) as u8);
    AppendEntry {
        payload,
        count,
        min_time: time,
        max_time: time + 10,
    }
}

fn tag_of(payload: &[u8]) -> u32 {
    u32::from_le_bytes(payload[..4].try_into().expect("tag"))
}

fn quick() -> LogConfig {
    LogConfig {
        retention_interval: std::time::Duration::ZERO,
        poll_interval: std::time::Duration::from_millis(200),
        ..LogConfig::default()
    }
}

/// Reads the whole log from offset 0 and checks offsets are contiguous.
async fn read_all(log: &JetStreamLog, env: &str) -> Vec<crate::log::StoredEntry> {
    let mut out: Vec<crate::log::StoredEntry> = Vec::new();
    let mut next = log.bounds(env).await.expect("bounds").first;
    loop {
        let batch = log.read(env, next, 1000).await.expect("read");
        let mut progressed = false;
        for e in batch {
            if e.end_offset() <= next {
                continue;
            }
            assert_eq!(e.base_offset, next, "offsets are contiguous");
            next = e.end_offset();
            progressed = true;
            out.push(e);
        }
        if !progressed {
            return out;
        }
    }
}

#[tokio::test]
async fn appends_get_exact_offsets_and_read_back() {
    let Some((_c, conn)) = start("appends_get_exact_offsets", ClusterOptions::nodes(1)).await
    else {
        return;
    };
    let log = JetStreamLog::open(conn.clone(), quick())
        .await
        .expect("log");
    // An environment prepared ahead of its first append has its stream already.
    log.prepare("e9").await.unwrap();
    assert!(conn.js.get_stream(names::log_stream("e9")).await.is_ok());
    assert_eq!(log.bounds("e9").await.unwrap(), crate::LogBounds::default());
    assert!(log.prepare("../x").await.is_err());
    assert_eq!(log.bounds("e1").await.unwrap(), crate::LogBounds::default());
    assert!(log.read("e1", 0, 10).await.unwrap().is_empty());
    let mut watch = log.subscribe("e1");
    let r1 = log.append("e1", entry(1, 3, 20, 100)).await.unwrap();
    let r2 = log.append("e1", entry(2, 5, 20, 200)).await.unwrap();
    assert_eq!((r1.base_offset, r1.next_offset), (0, 3));
    assert_eq!((r2.base_offset, r2.next_offset), (3, 8));
    // Another environment has its own offsets.
    let r3 = log.append("e.2", entry(3, 2, 20, 100)).await.unwrap();
    assert_eq!((r3.base_offset, r3.next_offset), (0, 2));
    let b = log.bounds("e1").await.unwrap();
    assert_eq!((b.first, b.next), (0, 8));
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        watch.wait_for(|v| *v == 8),
    )
    .await
    .expect("watch reaches the end")
    .unwrap();
    let all = read_all(&log, "e1").await;
    assert_eq!(
        all.iter().map(|e| tag_of(&e.payload)).collect::<Vec<_>>(),
        [1, 2]
    );
    // Reading from the middle of an entry returns that entry first.
    let mid = log.read("e1", 4, 1).await.unwrap();
    assert_eq!(mid[0].base_offset, 3);
    // Past the end: nothing.
    assert!(log.read("e1", 8, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_appends_from_two_nodes_keep_offsets_exact() {
    let Some((cluster, conn)) =
        start("concurrent_appends_two_nodes", ClusterOptions::nodes(1)).await
    else {
        return;
    };
    // Two independent logs (two sluice nodes) on the same environment.
    let mut cfg2 = NatsConfig::from_url(&cluster.urls()).unwrap();
    cfg2.replicas = 1;
    let a = Arc::new(JetStreamLog::open(conn, quick()).await.unwrap());
    let b = Arc::new(
        JetStreamLog::open(cfg2.connect().await.unwrap(), quick())
            .await
            .unwrap(),
    );
    let receipts = append_through_both(&a, &b, "shared").await;
    let all = read_all(&a, "shared").await;
    assert_eq!(all.len(), 200, "each append stored once");
    for ((t, r), e) in receipts.iter().zip(&all) {
        assert_eq!(e.base_offset, r.base_offset);
        assert_eq!(
            tag_of(&e.payload),
            *t,
            "the receipt's offset holds its entry"
        );
    }
    assert!(
        a.counters()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            + b.counters()
                .retries
                .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the two writers did conflict (the test exercises the chain)"
    );
}

#[tokio::test]
async fn entries_larger_than_max_payload_are_split_and_torn_runs_skipped() {
    let mut opts = ClusterOptions::nodes(1);
    opts.max_payload = Some(64 * 1024);
    let Some((_c, conn)) = start("entries_split", opts).await else {
        return;
    };
    let js = conn.js.clone();
    let log = JetStreamLog::open(conn, quick()).await.unwrap();
    let max = log.max_body();
    assert!(max < 64 * 1024);
    let r1 = log.append("big", entry(1, 4, 10, 5)).await.unwrap();
    // A torn run: part 1 of 3 written by a writer that died, straight after entry 1.
    let mut h = async_nats::HeaderMap::new();
    MsgMeta {
        offset: r1.next_offset,
        count: 9,
        ingest_ms: 0,
        min_time: 0,
        max_time: 0,
        part: Some((1, 3)),
    }
    .to_headers(&mut h);
    js.publish_with_headers(names::log_subject("big"), h, "junk".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Entries of 3.5 and 1 bodies, appended concurrently with small ones.
    let big = entry(2, 1000, max * 7 / 2, 7);
    let mut tasks = Vec::new();
    {
        let log = Arc::new(log);
        for (t, e) in [
            (2, big),
            (3, entry(3, 2, 10, 1)),
            (4, entry(4, 5, max, 1)),
            (5, entry(5, 1, 10, 1)),
        ] {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                (t, log.append("big", e).await.unwrap())
            }));
        }
        let mut receipts = Vec::new();
        for t in tasks {
            receipts.push(t.await.unwrap());
        }
        let all = read_all(&log, "big").await;
        assert_eq!(
            all.len(),
            5,
            "entry 1, the four appends; the torn part skipped"
        );
        assert_eq!(all[0].base_offset, 0);
        assert_eq!(
            all[1].base_offset, r1.next_offset,
            "the torn run reused no offset"
        );
        for (t, r) in receipts {
            let e = all
                .iter()
                .find(|e| e.base_offset == r.base_offset)
                .expect("stored");
            assert_eq!(tag_of(&e.payload), t);
            if t == 2 {
                assert_eq!(e.payload.len(), max * 7 / 2, "reassembled whole");
                assert!(e.payload[4..].iter().all(|&b| b == 2));
            }
        }
    }
}

#[tokio::test]
async fn time_seek_scan_remove_and_retention() {
    let Some((_c, conn)) = start("time_seek_scan", ClusterOptions::nodes(1)).await else {
        return;
    };
    let mut cfg = quick();
    cfg.max_age = std::time::Duration::from_millis(1500);
    let log = JetStreamLog::open(conn, cfg).await.unwrap();
    let t0 = now_ms();
    log.append("t", entry(1, 2, 10, 1_000)).await.unwrap();
    log.append("t", entry(2, 2, 10, 50_000)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    let t1 = now_ms();
    log.append("t", entry(3, 2, 10, 2_000)).await.unwrap();
    assert_eq!(log.offset_at_ingest_time("t", t0 - 1000).await.unwrap(), 0);
    assert_eq!(log.offset_at_ingest_time("t", t1).await.unwrap(), 4);
    assert_eq!(
        log.offset_at_ingest_time("t", t1 + 60_000).await.unwrap(),
        6
    );
    let hits = log.scan_time("t", 1_500, 3_000, 0, 100).await.unwrap();
    assert_eq!(
        hits.iter().map(|e| tag_of(&e.payload)).collect::<Vec<_>>(),
        [3]
    );
    let hits = log.scan_time("t", 0, 1_005, 0, 100).await.unwrap();
    assert_eq!(
        hits.iter().map(|e| tag_of(&e.payload)).collect::<Vec<_>>(),
        [1]
    );
    // Retention removes what is older than max_age, never the last message.
    assert_eq!(log.enforce_retention().await.unwrap(), 2);
    let b = log.bounds("t").await.unwrap();
    assert_eq!((b.first, b.next), (4, 6));
    assert_eq!(log.read("t", 0, 10).await.unwrap()[0].base_offset, 4);
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    log.enforce_retention().await.unwrap();
    let r = log.append("t", entry(4, 1, 10, 1)).await.unwrap();
    assert_eq!(
        r.base_offset, 6,
        "offsets continue after everything expired"
    );
    log.remove("t").await.unwrap();
    assert_eq!(log.bounds("t").await.unwrap(), crate::LogBounds::default());
    let r = log.append("t", entry(5, 1, 10, 1)).await.unwrap();
    assert_eq!(r.base_offset, 0, "a removed log starts again at 0");
}

#[tokio::test]
async fn unreachable_nats_fails_fast_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = NatsConfig::from_url(&format!("nats://127.0.0.1:{port}")).unwrap();
    cfg.connect_timeout = std::time::Duration::from_millis(500);
    let started = std::time::Instant::now();
    let err = cfg.connect().await.expect_err("nothing listens there");
    assert!(matches!(err, crate::StoreError::Unavailable { .. }));
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "hang guard"
    );
}

#[test]
fn store_urls_parse() {
    let c = NatsConfig::from_url("nats://a:1,b:2, nats://c:3").unwrap();
    assert_eq!(c.servers, ["nats://a:1", "nats://b:2", "nats://c:3"]);
    assert_eq!(c.replicas, 3);
    assert!(NatsConfig::from_url("http://a:1").is_err());
    assert!(NatsConfig::from_url("nats://user:pw@a:1").is_err());
    assert!(NatsConfig::from_url("nats://").is_err());
    assert!(NatsConfig::from_url("tls://a:1").unwrap().tls_required);
}

#[tokio::test]
async fn kv_meta_store_compare_and_swap() {
    let Some((_c, conn)) = start("kv_meta_store", ClusterOptions::nodes(1)).await else {
        return;
    };
    let m = JetStreamMeta::open(conn.clone()).await.unwrap();
    let b = Bucket::State;
    assert!(m.get(b, "replay/i.1/x").await.unwrap().is_none());
    let r1 = m
        .put(b, "replay/i.1/x", b"a".to_vec(), Expect::Absent)
        .await
        .unwrap();
    assert!(matches!(
        m.put(b, "replay/i.1/x", b"b".to_vec(), Expect::Absent)
            .await,
        Err(crate::StoreError::Conflict { .. })
    ));
    let r2 = m
        .put(b, "replay/i.1/x", b"b".to_vec(), Expect::Revision(r1))
        .await
        .unwrap();
    assert!(r2 > r1);
    assert!(matches!(
        m.put(b, "replay/i.1/x", b"c".to_vec(), Expect::Revision(r1))
            .await,
        Err(crate::StoreError::Conflict { .. })
    ));
    let got = m.get(b, "replay/i.1/x").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.revision), (&b"b"[..], r2));
    m.put(b, "replay/i.1/y", b"y".to_vec(), Expect::Any)
        .await
        .unwrap();
    m.put(b, "replay/i.2/z", b"z".to_vec(), Expect::Any)
        .await
        .unwrap();
    m.put(
        Bucket::Gaps,
        "replay/i.1/other-bucket",
        b"g".to_vec(),
        Expect::Any,
    )
    .await
    .unwrap();
    let listed = m.list(b, "replay/i.1/").await.unwrap();
    assert_eq!(
        listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["replay/i.1/x", "replay/i.1/y"]
    );
    assert_eq!(listed[0].1.revision, r2);
    assert!(matches!(
        m.delete(b, "replay/i.1/x", Expect::Revision(r1)).await,
        Err(crate::StoreError::Conflict { .. })
    ));
    m.delete(b, "replay/i.1/x", Expect::Revision(r2))
        .await
        .unwrap();
    assert!(m.get(b, "replay/i.1/x").await.unwrap().is_none());
    assert_eq!(m.list(b, "replay/i.1/").await.unwrap().len(), 1);
    m.delete(b, "missing", Expect::Any).await.unwrap();
    // Created again after a delete.
    m.put(b, "replay/i.1/x", b"again".to_vec(), Expect::Absent)
        .await
        .unwrap();
    assert_eq!(m.list(b, "").await.unwrap().len(), 3);
    // A second node sees the same state.
    let other = JetStreamMeta::open(conn).await.unwrap();
    assert_eq!(
        other.get(b, "replay/i.1/x").await.unwrap().unwrap().value,
        b"again"
    );
}

#[tokio::test]
async fn follow_gives_the_current_content_then_every_change() {
    let Some((_c, conn)) = start(
        "follow_gives_current_then_changes",
        ClusterOptions::nodes(1),
    )
    .await
    else {
        return;
    };
    let m = JetStreamMeta::open(conn.clone()).await.unwrap();
    let b = Bucket::Environments;
    let ra = m.put(b, "a", b"1".to_vec(), Expect::Absent).await.unwrap();
    m.put(b, "gone", b"x".to_vec(), Expect::Absent)
        .await
        .unwrap();
    m.delete(b, "gone", Expect::Any).await.unwrap();
    let crate::MetaWatch {
        current,
        mut changes,
    } = m.follow(b).await.unwrap();
    assert_eq!(
        current.len(),
        1,
        "deleted keys are not current: {current:?}"
    );
    assert_eq!((current[0].0.as_str(), current[0].1.revision), ("a", ra));
    // Another node writes.
    let other = JetStreamMeta::open(conn).await.unwrap();
    let rc = other
        .put(b, "c.d", b"2".to_vec(), Expect::Absent)
        .await
        .unwrap();
    other.delete(b, "a", Expect::Revision(ra)).await.unwrap();
    let c = next_change(&mut changes).await;
    assert_eq!(
        (c.key.as_str(), c.value.as_deref(), c.revision),
        ("c.d", Some(&b"2"[..]), rc)
    );
    let a = next_change(&mut changes).await;
    assert_eq!((a.key.as_str(), a.value), ("a", None));
    assert!(a.revision > rc);
}

async fn next_change(changes: &mut crate::MetaChanges) -> crate::MetaChange {
    use futures_util::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(30), changes.next())
        .await
        .expect("a change within the hang guard")
        .expect("the stream goes on")
        .expect("no error")
}

struct Harness(JetStreamLog);

#[async_trait::async_trait]
impl crate::conformance::log::LogHarness for Harness {
    fn log(&self) -> &dyn ImpressionLog {
        &self.0
    }
    async fn expire_before(&self, _env: &str, cutoff_ms: i64) {
        self.0
            .remove_ingested_before(cutoff_ms)
            .await
            .expect("retention");
    }
    fn max_entry_bytes(&self) -> usize {
        crate::MAX_ENTRY_BYTES
    }
}

/// The store conformance suite ([`crate::conformance`]) against JetStream, on a
/// three-node cluster (replicas 3) so that reads may be served by followers.
#[tokio::test]
async fn jetstream_store_conforms() {
    let Some((_c, conn)) = start("jetstream_store_conforms", ClusterOptions::nodes(3)).await else {
        return;
    };
    let log = JetStreamLog::open(conn.clone(), quick())
        .await
        .expect("log");
    crate::conformance::log::run_all(&Harness(log)).await;
    let meta = JetStreamMeta::open(conn).await.expect("meta");
    crate::conformance::meta::run_all(&meta).await;
}

/// Two nodes' logs on one three-node JetStream cluster (replicas 3), each on its own
/// connection, routing appends with one shared membership view of `node-a` and `node-b`;
/// and an environment whose appender is `node-a`.
async fn routed_pair(
    test: &str,
) -> Option<(
    NatsCluster,
    Arc<JetStreamLog>,
    Arc<JetStreamLog>,
    tokio::sync::watch::Sender<crate::members::Members>,
    String,
)> {
    use crate::members::{Members, NodeInfo, rendezvous};
    let (cluster, conn) = start(test, ClusterOptions::nodes(3)).await?;
    let mut cfg2 = NatsConfig::from_url(&cluster.urls()).unwrap();
    cfg2.replicas = 3;
    let a = Arc::new(JetStreamLog::open(conn, quick()).await.unwrap());
    let b = Arc::new(
        JetStreamLog::open(cfg2.connect().await.unwrap(), quick())
            .await
            .unwrap(),
    );
    let mut nodes = std::collections::BTreeMap::new();
    for n in ["node-a", "node-b"] {
        nodes.insert(
            n.to_owned(),
            NodeInfo {
                url: format!("http://{n}"),
            },
        );
    }
    let view = Members {
        nodes: Arc::new(nodes),
    };
    let env = (0..)
        .map(|i| format!("shared-{i}"))
        .find(|env| rendezvous(&view, &format!("env:{env}")) == Some("node-a"))
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(view);
    a.route_appends("node-a", rx.clone()).await.unwrap();
    b.route_appends("node-b", rx).await.unwrap();
    Some((cluster, a, b, tx, env))
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

/// 200 concurrent appends to `env` (entry `t` of `1 + t % 7` impressions), alternately
/// through `a` and `b`; their receipts in offset order, checked to tile the offsets.
async fn append_through_both(
    a: &Arc<JetStreamLog>,
    b: &Arc<JetStreamLog>,
    env: &str,
) -> Vec<(u32, crate::AppendReceipt)> {
    let mut tasks = Vec::new();
    for t in 0..200u32 {
        let log = if t % 2 == 0 { a.clone() } else { b.clone() };
        let env = env.to_owned();
        tasks.push(tokio::spawn(async move {
            let r = log.append(&env, entry(t, 1 + t % 7, 40, 1)).await.unwrap();
            (t, r)
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap());
    }
    receipts.sort_by_key(|(_, r)| r.base_offset);
    let mut next = 0;
    for (t, r) in &receipts {
        assert_eq!(r.base_offset, next, "receipts tile the offsets");
        assert_eq!(r.next_offset - r.base_offset, u64::from(1 + t % 7));
        next = r.next_offset;
    }
    receipts
}

/// Checks that every receipt's offsets hold its entry, and returns the tags read back.
async fn check_receipts(
    log: &JetStreamLog,
    env: &str,
    receipts: &[(u32, crate::AppendReceipt)],
) -> Vec<u32> {
    let all = read_all(log, env).await;
    let by_offset: std::collections::HashMap<u64, &crate::log::StoredEntry> =
        all.iter().map(|e| (e.base_offset, e)).collect();
    for (t, r) in receipts {
        let e = by_offset
            .get(&r.base_offset)
            .unwrap_or_else(|| panic!("acknowledged append {t} at {} is stored", r.base_offset));
        assert_eq!(
            tag_of(&e.payload),
            *t,
            "the receipt's offset holds its entry"
        );
        assert_eq!(e.end_offset(), r.next_offset);
    }
    all.iter().map(|e| tag_of(&e.payload)).collect()
}

#[tokio::test]
async fn appends_go_through_one_appender_per_environment() {
    let Some((_c, a, b, _view, env)) = routed_pair("appends_one_appender").await else {
        return;
    };
    let receipts = append_through_both(&a, &b, &env).await;
    let tags = check_receipts(&b, &env, &receipts).await;
    assert_eq!(tags.len(), 200, "each append stored once");
    assert_eq!(
        count(&b.counters().forwarded),
        100,
        "b forwarded its appends"
    );
    assert_eq!(count(&a.counters().served), 100, "a stored them");
    assert_eq!(count(&b.counters().fallbacks), 0);
    assert_eq!(
        count(&b.counters().messages),
        0,
        "b published nothing itself"
    );
    assert_eq!(count(&a.counters().forwarded), 0, "a appends its own");
    // An entry too large for one request is appended by b itself (split into parts).
    let big_len = b.max_body() + 1000;
    let r = b.append(&env, entry(999, 3, big_len, 1)).await.unwrap();
    assert_eq!(count(&b.counters().forwarded), 100, "not forwarded");
    assert!(count(&b.counters().messages) >= 2, "b published its parts");
    let back = b.read(&env, r.base_offset, 1).await.unwrap();
    assert_eq!(back[0].base_offset, r.base_offset);
    assert_eq!(
        (tag_of(&back[0].payload), back[0].payload.len()),
        (999, big_len)
    );
}

/// The conformance suite through a log whose appends partly go to another node's
/// appender (every environment whose rendezvous owner is `node-b`).
#[tokio::test]
async fn jetstream_store_conforms_through_appenders() {
    let Some((_c, a, b, _view, _env)) = routed_pair("jetstream_store_conforms_routed").await else {
        return;
    };
    // b stays up: it stores what a forwards.
    let a = Arc::into_inner(a).expect("the only handle");
    let harness = Harness(a);
    crate::conformance::log::run_all(&harness).await;
    assert!(
        count(&harness.0.counters().forwarded) > 0,
        "some environments' appends were forwarded"
    );
    assert!(count(&b.counters().served) > 0);
}

#[tokio::test]
async fn appends_survive_their_appender_closing() {
    use crate::members::{Members, NodeInfo};
    let Some((_c, a, b, view, env)) = routed_pair("appends_appender_closing").await else {
        return;
    };
    // Four producers on b, appending until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..4u32 {
        let (b, env, stop) = (b.clone(), env.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = p * 100_000 + k;
                k += 1;
                out.push((t, b.append(&env, entry(t, 1 + t % 5, 40, 1)).await));
            }
            out
        }));
    }
    let until = |f: Box<dyn Fn() -> bool + Send>| async move {
        for _ in 0..600 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("condition not reached within the hang guard");
    };
    // Forwarded to a for a while…
    let b2 = b.clone();
    until(Box::new(move || count(&b2.counters().forwarded) >= 50)).await;
    // …then a closes (its append subject goes away): b falls back to appending itself.
    drop(a);
    let b2 = b.clone();
    until(Box::new(move || count(&b2.counters().fallbacks) >= 50)).await;
    // The view drops a: b is the appender now, nothing falls back any more.
    let mut nodes = std::collections::BTreeMap::new();
    nodes.insert(
        "node-b".to_owned(),
        NodeInfo {
            url: "http://node-b".into(),
        },
    );
    view.send_replace(Members {
        nodes: Arc::new(nodes),
    });
    let fallbacks = count(&b.counters().fallbacks);
    let messages = count(&b.counters().messages);
    let b2 = b.clone();
    until(Box::new(move || {
        count(&b2.counters().messages) >= messages + 20
    }))
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut receipts = Vec::new();
    let mut failed = 0;
    for t in tasks {
        for (tag, r) in t.await.unwrap() {
            match r {
                Ok(r) => receipts.push((tag, r)),
                Err(e) => {
                    assert!(e.is_transient(), "only transient failures: {e}");
                    failed += 1;
                }
            }
        }
    }
    assert!(
        count(&b.counters().fallbacks) <= fallbacks + 4,
        "appending locally once b is the appender"
    );
    receipts.sort_by_key(|(_, r)| r.base_offset);
    for w in receipts.windows(2) {
        assert!(
            w[0].1.next_offset <= w[1].1.base_offset,
            "receipts never overlap"
        );
    }
    let tags = check_receipts(&b, &env, &receipts).await;
    assert!(tags.len() >= receipts.len());
    // Only a request in flight while a closed may have failed (one per producer).
    assert!(failed <= 4, "{failed} appends failed");
}
