//! Durability proof: the real `sluice` binary is killed with SIGKILL mid-load and mid-delivery,
//! restarted on the same data directory several times, and every impression of every request
//! that was answered 200 must reach the webhook receiver in the end (at least once).
//!
//! Also: a damaged tail of the newest log segment (garbage appended, a frame cut in half) is
//! repaired on start, without losing acknowledged data written before the damage.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;
#[path = "common/process.rs"]
mod process;

use common::AdminCalls as _;
use process::SluiceProcess;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, ReceiverHandle};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const FLAG: &str = "crash_flag";

/// A Split bulk body of `n` impressions of [`FLAG`], keys `{prefix}-{i}`.
fn bulk(prefix: &str, n: usize) -> Value {
    common::bulk(FLAG, prefix, n)
}

fn keys(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}-{i}"))
}

/// What one load client saw.
#[derive(Default)]
struct ClientLog {
    /// (key prefix, impressions) of requests answered 200.
    acked: Vec<(String, usize)>,
    /// (key prefix, impressions) of requests that got no answer or another status.
    unacked: Vec<(String, usize)>,
    statuses: BTreeMap<u16, usize>,
    transport_errors: usize,
}

/// Starts `clients` tasks that send bulk requests to `url` until `stop` is set.
fn start_load(
    url: String,
    sdk_key: &'static str,
    cycle: usize,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<ClientLog>> {
    (0..clients)
        .map(|c| {
            let url = url.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = process::client();
                let mut log = ClientLog::default();
                let mut seq = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let prefix = format!("k{cycle}.c{c}-{seq}");
                    let n = 5 + (seq * 7 + c) % 31;
                    match process::send_bulk(&client, &url, sdk_key, &bulk(&prefix, n)).await {
                        Ok(200) => {
                            *log.statuses.entry(200).or_default() += 1;
                            log.acked.push((prefix, n));
                        }
                        Ok(s) => {
                            *log.statuses.entry(s).or_default() += 1;
                            log.unacked.push((prefix, n));
                        }
                        Err(_) => {
                            log.transport_errors += 1;
                            log.unacked.push((prefix, n));
                            // The server is gone (killed): do not spin.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                log
            })
        })
        .collect()
}

fn random_ms(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rand::random::<u64>() % (hi - lo + 1))
}

/// Waits until the receiver has (first-time) delivered every key in `want`; returns the
/// keys still missing at the deadline.
async fn wait_delivered(
    rx: &ReceiverHandle,
    want: &HashSet<String>,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if rx.stats().unique_impressions as usize >= want.len() {
            let got: HashSet<String> = rx
                .impressions()
                .into_iter()
                .map(|r| r.impression.key)
                .collect();
            let missing: Vec<String> = want.iter().filter(|k| !got.contains(*k)).cloned().collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
        } else if Instant::now() >= deadline {
            let got: HashSet<String> = rx
                .impressions()
                .into_iter()
                .map(|r| r.impression.key)
                .collect();
            return want.iter().filter(|k| !got.contains(*k)).cloned().collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_impressions_survive_repeated_kill_9() {
    const SDK_KEY: &str = "sdk-key-crash-0001";
    const CLIENTS: usize = 8;
    let test_start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log_path = tmp.path().join("sluice.log");
    let rx = common::receiver(FaultMode::Ok).await;

    let p = SluiceProcess::spawn(&dir, &log_path).await;
    p.environment("prod", "prod", SDK_KEY).await;
    p.post_admin(
        "/v1/integrations",
        json!({ "id": "hook", "name": "hook", "url": rx.url("/hook"), "environments": ["prod"],
                "flushIntervalMs": 100, "maxBatchImpressions": 500 }),
    )
    .await;
    let mut p = Some(p);

    // Receiver behaviour during each load cycle: healthy, slow (kills land mid-delivery),
    // failing (a pending batch waits across the kill), very slow.
    let modes = [
        FaultMode::Ok,
        FaultMode::Slow(Duration::from_millis(150)),
        FaultMode::Status(500),
        FaultMode::Slow(Duration::from_millis(400)),
        FaultMode::Ok,
    ];
    let mut acked: Vec<(String, usize)> = Vec::new();
    let mut unacked: Vec<(String, usize)> = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut transport_errors = 0usize;
    for (cycle, mode) in modes.iter().enumerate() {
        let proc = match p.take() {
            Some(p) => p,
            None => SluiceProcess::spawn(&dir, &log_path).await,
        };
        rx.set_mode(mode.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = start_load(
            proc.url("/api/testImpressions/bulk"),
            SDK_KEY,
            cycle,
            CLIENTS,
            stop.clone(),
        );
        let delay = random_ms(300, 1500);
        tokio::time::sleep(delay).await;
        let before_kill = rx.stats();
        proc.kill9().await;
        stop.store(true, Ordering::Relaxed);
        let mut cycle_acked = 0;
        for t in tasks {
            let log = t.await.expect("load client");
            cycle_acked += log.acked.len();
            acked.extend(log.acked);
            unacked.extend(log.unacked);
            transport_errors += log.transport_errors;
            for (s, n) in log.statuses {
                *statuses.entry(s).or_default() += n;
            }
        }
        println!(
            "cycle {cycle}: receiver {mode:?}, killed after {delay:?}; {cycle_acked} requests acked this cycle; receiver so far: {} unique impressions, {} requests",
            before_kill.unique_impressions, before_kill.requests
        );
    }

    // Kill during delivery only: a backlog is waiting (the failing cycle), the receiver is slow.
    rx.set_mode(FaultMode::Slow(Duration::from_millis(250)));
    let proc = SluiceProcess::spawn(&dir, &log_path).await;
    let requests_before = rx.stats().requests;
    let in_delivery = rx
        .wait_until(Duration::from_secs(10), |s| {
            s.requests >= requests_before + 2
        })
        .await
        .is_ok();
    tokio::time::sleep(random_ms(0, 400)).await;
    proc.kill9().await;
    println!("delivery-only cycle: killed mid-delivery (deliveries seen: {in_delivery})");

    // Final start: everything acknowledged must be delivered.
    rx.set_mode(FaultMode::Ok);
    let proc = SluiceProcess::spawn(&dir, &log_path).await;
    let want: HashSet<String> = acked.iter().flat_map(|(p, n)| keys(p, *n)).collect();
    let acked_impressions: usize = acked.iter().map(|(_, n)| n).sum();
    assert_eq!(want.len(), acked_impressions, "keys are distinct");
    let missing = wait_delivered(&rx, &want, Duration::from_secs(30)).await;
    let status = proc.status("hook").await;
    if !missing.is_empty() {
        let mut sample = missing.clone();
        sample.sort();
        sample.truncate(20);
        println!("{}", diagnose(&rx, &missing));
        panic!(
            "{} of {} acknowledged impressions were never delivered (e.g. {sample:?}); status {status}; sluice log tail:\n{}",
            missing.len(),
            want.len(),
            process::tail(&log_path, 6000)
        );
    }

    // Figures. Impressions of unanswered requests may or may not be there; nothing else may.
    let kept = rx.impressions();
    let stats = rx.stats();
    let attempted: HashSet<String> = unacked.iter().flat_map(|(p, n)| keys(p, *n)).collect();
    let mut per_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &kept {
        per_key
            .entry(r.impression.key.as_str())
            .or_default()
            .push(r.webhook_id.as_str());
        assert_eq!(r.impression.split, FLAG);
        assert_eq!(r.impression.environment_id, "prod");
        assert_eq!(r.impression.treatment, "on");
        assert_eq!(r.impression.split_version_number, 42);
        assert_eq!(r.impression.sdk, "python");
    }
    let phantom: Vec<&&str> = per_key
        .keys()
        .filter(|k| !want.contains(**k) && !attempted.contains(**k))
        .take(10)
        .collect();
    assert!(
        phantom.is_empty(),
        "delivered impressions that were never sent: {phantom:?}"
    );
    let unacked_delivered = per_key.keys().filter(|k| attempted.contains(**k)).count();
    let unacked_impressions: usize = unacked.iter().map(|(_, n)| n).sum();
    // The same impression delivered in two batches with different webhook-ids: a receiver
    // deduplicating by webhook-id would count it twice.
    let cross_batch_dupes: Vec<(&&str, &Vec<&str>)> =
        per_key.iter().filter(|(_, ids)| ids.len() > 1).collect();

    println!("---- crash test figures ----");
    println!(
        "load cycles: {} (+1 delivery-only kill), clients: {CLIENTS}",
        modes.len()
    );
    println!(
        "requests acknowledged (200): {} = {} impressions",
        acked.len(),
        acked_impressions
    );
    println!(
        "requests not acknowledged: {} ({} impressions; transport errors {transport_errors}, statuses {statuses:?}); of their impressions {unacked_delivered} were delivered anyway",
        unacked.len(),
        unacked_impressions
    );
    println!(
        "receiver: {} deliveries, {} unique batches, {} duplicate batches ({} duplicate impressions, same webhook-id), {} unique impressions",
        stats.requests,
        stats.unique_batches,
        stats.duplicate_batches,
        stats.duplicate_impressions,
        stats.unique_impressions
    );
    println!(
        "impressions delivered under two different webhook-ids: {}",
        cross_batch_dupes.len()
    );
    println!("final status: {status}");
    println!("test time: {:?}", test_start.elapsed());
    assert!(
        acked_impressions > 1000,
        "the load should have been acknowledged many times ({acked_impressions})"
    );
    assert!(
        cross_batch_dupes.is_empty(),
        "{} impressions were redelivered under a new webhook-id (e.g. {:?}): a redelivered batch must keep its id",
        cross_batch_dupes.len(),
        cross_batch_dupes.iter().take(5).collect::<Vec<_>>()
    );
    proc.kill9().await;
    rx.shutdown().await;
}

/// What the receiver saw around missing impressions: the batches that carried the
/// neighbouring requests of the same client, and every `webhook-id` answered more than once
/// (with the impression counts of each delivery: different counts under one id mean two
/// different batches shared an id, and the receiver dropped the second as a duplicate).
fn diagnose(rx: &ReceiverHandle, missing: &[String]) -> String {
    let kept = rx.impressions();
    let mut out = String::from("---- diagnosis ----\n");
    let mut prefixes: Vec<String> = missing
        .iter()
        .filter_map(|k| k.rsplit_once('-').map(|(p, _)| p.to_owned()))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    for p in prefixes.iter().take(5) {
        let (client, seq) = p.rsplit_once('-').unwrap();
        let seq: usize = seq.parse().unwrap();
        for s in [seq.saturating_sub(1), seq + 1] {
            let neighbour = format!("{client}-{s}-0");
            let at = kept.iter().position(|r| r.impression.key == neighbour);
            out += &format!(
                "missing {p}: neighbour {neighbour} at kept position {at:?} in batch {:?}\n",
                at.map(|i| kept[i].webhook_id.clone())
            );
        }
    }
    let mut by_id: BTreeMap<String, Vec<(Option<u64>, String)>> = BTreeMap::new();
    for r in rx.requests() {
        if let Some(id) = r.webhook_id.clone() {
            by_id
                .entry(id)
                .or_default()
                .push((r.impressions, format!("{:?}/{:?}", r.outcome, r.status)));
        }
    }
    for (id, v) in by_id.iter().filter(|(_, v)| v.len() > 1) {
        out += &format!("webhook-id {id} sent {} times: {v:?}\n", v.len());
    }
    out
}

/// Sends `n` impressions under `prefix` in one request and requires a 200.
async fn ack(p: &SluiceProcess, key: &str, prefix: &str, n: usize) -> HashSet<String> {
    let status = p
        .send_bulk(&p.client, key, &bulk(prefix, n))
        .await
        .expect("ingest");
    assert_eq!(status, 200, "ingest of {prefix}");
    keys(prefix, n).collect()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn delivered_keys(rx: &ReceiverHandle) -> HashSet<String> {
    rx.impressions()
        .into_iter()
        .map(|r| r.impression.key)
        .collect()
}

async fn assert_delivered(
    rx: &ReceiverHandle,
    want: &HashSet<String>,
    what: &str,
    p: &SluiceProcess,
) {
    let missing = wait_delivered(rx, want, Duration::from_secs(15)).await;
    if !missing.is_empty() {
        let status = p.status("hook").await;
        let (_, attempts) = p
            .admin(reqwest::Method::GET, "/v1/integrations/hook/attempts", None)
            .await;
        let requests: Vec<String> = rx
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "{:?} {:?} {:?} {:?}",
                    r.webhook_id, r.impressions, r.status, r.outcome
                )
            })
            .collect();
        panic!(
            "{what}: {} of {} impressions not delivered (e.g. {:?}); status {status}\nattempts: {attempts}\nreceiver requests: {requests:#?}\nsluice log tail:\n{}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(5)],
            process::tail(&p.log_path, 4000)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_log_tail_is_repaired_on_start() {
    const SDK_KEY: &str = "sdk-key-torn-0001";
    let test_start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log_path = tmp.path().join("sluice.log");
    let rx = common::receiver(FaultMode::Ok).await;

    let p = SluiceProcess::spawn(&dir, &log_path).await;
    p.environment("torn", "torn", SDK_KEY).await;
    p.post_admin(
        "/v1/integrations",
        json!({ "id": "hook", "name": "hook", "url": rx.url("/hook"), "environments": ["torn"], "flushIntervalMs": 100 }),
    )
    .await;

    // A: acknowledged and delivered.
    let mut a = HashSet::new();
    for i in 0..3 {
        a.extend(ack(&p, SDK_KEY, &format!("a{i}"), 10).await);
    }
    assert_delivered(&rx, &a, "A before any damage", &p).await;
    // B: acknowledged, not delivered (the receiver fails; a pending batch holds it).
    rx.set_mode(FaultMode::Status(500));
    let b = ack(&p, SDK_KEY, "b", 10).await;
    let failed = rx
        .wait_until(Duration::from_secs(10), |s| s.failed_answers >= 1)
        .await;
    assert!(failed.is_ok(), "a delivery of B was attempted: {failed:?}");
    p.kill9().await;

    // Damage 1: garbage after the last complete frame (a write torn before its header was
    // complete, then junk).
    let seg = process::newest_segment(&dir, "torn");
    let good_len = file_len(&seg);
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        let mut junk = b"SLG1".to_vec();
        junk.extend((0..77).map(|_| rand::random::<u8>()));
        f.write_all(&junk).unwrap();
        f.sync_all().unwrap();
    }
    println!(
        "appended {} garbage bytes to {} ({} bytes)",
        81,
        seg.display(),
        good_len
    );
    rx.set_mode(FaultMode::Ok);
    let p = SluiceProcess::spawn(&dir, &log_path).await;
    assert_eq!(
        file_len(&seg),
        good_len,
        "the torn tail is truncated back to the last good frame"
    );
    assert_delivered(
        &rx,
        &b,
        "B (acknowledged before the garbage was appended)",
        &p,
    )
    .await;
    let c = ack(&p, SDK_KEY, "c", 10).await;
    assert_delivered(&rx, &c, "C (ingested after the repair)", &p).await;

    // Damage 2: the last acknowledged frame (D) cut in half, as if its write had been torn,
    // while a pending batch covering D waits to be delivered.
    rx.set_mode(FaultMode::Status(500));
    let len_before_d = file_len(&process::newest_segment(&dir, "torn"));
    let failed_before = rx.stats().failed_answers;
    let d = ack(&p, SDK_KEY, "d", 10).await;
    let seg = process::newest_segment(&dir, "torn");
    let len_after_d = file_len(&seg);
    assert!(
        len_after_d > len_before_d,
        "D was appended to the newest segment"
    );
    let failed = rx
        .wait_until(Duration::from_secs(10), |s| {
            s.failed_answers > failed_before
        })
        .await;
    assert!(failed.is_ok(), "a delivery of D was attempted: {failed:?}");
    p.kill9().await;
    let cut = len_before_d + (len_after_d - len_before_d) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    println!(
        "cut {} from {len_after_d} to {cut} bytes (D's frame torn)",
        seg.display()
    );
    rx.set_mode(FaultMode::Ok);
    let p = SluiceProcess::spawn(&dir, &log_path).await;
    assert_eq!(
        file_len(&seg),
        len_before_d,
        "the torn frame is truncated away"
    );
    // Everything acknowledged before D is intact and was delivered exactly as before.
    let before_d: HashSet<String> = a.iter().chain(&b).chain(&c).cloned().collect();
    let got = delivered_keys(&rx);
    assert!(before_d.iter().all(|k| got.contains(k)));
    // New ingest works and is delivered, in full.
    let e = ack(&p, SDK_KEY, "e", 10).await;
    let f = ack(&p, SDK_KEY, "f", 25).await;
    let ef: HashSet<String> = e.union(&f).cloned().collect();
    assert_delivered(
        &rx,
        &ef,
        "E and F (ingested after the torn frame was cut away)",
        &p,
    )
    .await;
    let got = delivered_keys(&rx);
    let d_delivered = d.iter().filter(|k| got.contains(*k)).count();
    println!("D (torn on disk): {d_delivered} of {} delivered", d.len());
    println!("torn-tail test time: {:?}", test_start.elapsed());
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.contains("torn tail"), "recovery logs the truncation");
    p.kill9().await;
    rx.shutdown().await;
}
