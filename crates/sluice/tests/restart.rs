//! Clean restarts on the same data directory: undelivered impressions are delivered after
//! the restart (the pending batch keeps its `webhook-id`), and configuration, the manual
//! pause and the generated admin token survive.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::{AdminCalls as _, SDK_KEY, Sluice, bulk};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, ReceiverHandle};
use std::time::Duration;

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// First-time-delivered keys, in the order the receiver got them.
fn delivered(rx: &ReceiverHandle) -> Vec<String> {
    rx.impressions()
        .into_iter()
        .map(|r| r.impression.key)
        .collect()
}

async fn wait_for(rx: &ReceiverHandle, n: u64, what: &str) {
    let r = rx
        .wait_until(Duration::from_secs(15), |s| s.unique_impressions >= n)
        .await;
    assert!(
        r.is_ok(),
        "{what}: waited for {n} impressions, receiver stats {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_impressions_are_delivered_after_restart_in_the_same_batch() {
    let mut s = Sluice::start().await;
    let rx = common::receiver(FaultMode::Ok).await;
    s.environment("prod", "Production", SDK_KEY).await;
    s.integration(
        "hook",
        &rx.url("/hook"),
        &["prod"],
        json!({ "flushIntervalMs": 1000, "maxBatchImpressions": 100 }),
    )
    .await;

    // Two log entries of 60 while paused; on resume the first full batch (100) goes out at
    // once and ends inside r1's entry.
    let (st, v) = s
        .admin(Method::POST, "/v1/integrations/hook/pause", None)
        .await;
    assert!(st == 200 || st == 204, "pause: {st} {v}");
    let mut sent = Vec::new();
    for p in ["r0", "r1"] {
        assert_eq!(
            s.send_bulk(SDK_KEY, &bulk("restart_flag", p, 60)).await,
            200
        );
        sent.extend(keys(p, 60));
    }
    let (st, v) = s
        .admin(Method::POST, "/v1/integrations/hook/resume", None)
        .await;
    assert!(st == 200 || st == 204, "resume: {st} {v}");
    wait_for(&rx, 100, "first full batch").await;
    // The receiver fails before the next flush: the next batch is pinned from the middle of
    // r1's entry through r2 and r3 (several entries) and fails.
    rx.set_mode(FaultMode::Status(500));
    for p in ["r2", "r3"] {
        assert_eq!(
            s.send_bulk(SDK_KEY, &bulk("restart_flag", p, 30)).await,
            200
        );
        sent.extend(keys(p, 30));
    }
    let failed = rx
        .wait_until(Duration::from_secs(10), |s| s.failed_answers >= 1)
        .await;
    assert!(failed.is_ok(), "the pinned batch was attempted: {failed:?}");
    let status = s.status("hook").await;
    let pending = status["pendingBatch"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a pending batch: {status}"))
        .to_owned();
    println!(
        "pending batch before the restart: {}",
        status["pendingBatch"]
    );
    let attempted: Vec<String> = rx
        .requests()
        .into_iter()
        .filter(|r| r.status == Some(500))
        .filter_map(|r| r.webhook_id)
        .collect();
    assert!(
        attempted.iter().all(|id| *id == pending),
        "failed attempts carried the pending id {pending}: {attempted:?}"
    );
    // More data behind the pending batch, acknowledged while the receiver fails.
    assert_eq!(
        s.send_bulk(SDK_KEY, &bulk("restart_flag", "r4", 40)).await,
        200
    );
    sent.extend(keys("r4", 40));
    assert_eq!(
        rx.stats().unique_impressions,
        100,
        "nothing but the first batch was delivered"
    );

    let guard = s.stop().await;
    rx.set_mode(FaultMode::Ok);
    let s = Sluice::start_in(&s.dir, |_| {}).await;
    wait_for(&rx, sent.len() as u64, "backlog after restart").await;

    // Every acknowledged impression, in order, each exactly once (first-time deliveries).
    assert_eq!(
        delivered(&rx),
        sent,
        "delivered in ingest order, nothing lost or repeated"
    );
    // The first batch after the restart is the pinned one, with its id and its exact range.
    let kept = rx.impressions();
    let first_after = &kept[100];
    assert_eq!(
        first_after.webhook_id, pending,
        "the pending batch kept its webhook-id across the restart"
    );
    let in_pending: Vec<&str> = kept
        .iter()
        .filter(|r| r.webhook_id == pending)
        .map(|r| r.impression.key.as_str())
        .collect();
    let expected: Vec<String> = keys("r1", 60)[40..]
        .iter()
        .cloned()
        .chain(keys("r2", 30))
        .chain(keys("r3", 30))
        .collect();
    assert_eq!(
        in_pending, expected,
        "the pending batch holds the same impressions after the restart"
    );
    assert_eq!(
        status["pendingBatch"]["to"].as_u64().unwrap()
            - status["pendingBatch"]["from"].as_u64().unwrap(),
        expected.len() as u64
    );
    assert_eq!(rx.stats().duplicate_batches, 0);

    // New ingest after the restart is delivered too.
    assert_eq!(
        s.send_bulk(SDK_KEY, &bulk("restart_flag", "r4", 10)).await,
        200
    );
    wait_for(&rx, sent.len() as u64 + 10, "ingest after restart").await;
    // The receiver counts a batch before sluice has saved its cursor: poll briefly.
    let mut status = s.status("hook").await;
    for _ in 0..50 {
        if status["lagImpressions"] == 0 && status["pendingBatch"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = s.status("hook").await;
    }
    assert_eq!(status["lagImpressions"], 0, "{status}");
    assert!(status["pendingBatch"].is_null(), "{status}");
    let mut s = s;
    s.stop().await;
    drop(guard);
    rx.shutdown().await;
}

/// GETs `path` and returns its JSON (asserting 200).
async fn get(s: &Sluice, path: &str) -> Value {
    let (status, v) = s.admin(Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

async fn send_to(s: &Sluice, key: &str, prefix: &str, n: usize) {
    assert_eq!(
        s.send_bulk(key, &bulk("config_flag", prefix, n)).await,
        200,
        "ingest {prefix} with {key}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_and_manual_pause_survive_restart() {
    let mut s = Sluice::start().await;
    let rx_a = common::receiver_with_secret("whsec-restart-test").await;
    let rx_b = common::receiver(FaultMode::Ok).await;

    s.post_admin("/v1/projects", json!({ "id": "acme", "name": "Acme Inc" }))
        .await;
    s.environment("prod", "Production", SDK_KEY).await;
    s.post_admin(
        "/v1/environments",
        json!({ "id": "acme-prod", "name": "Acme production", "project": "acme", "sdkKeys": ["acme-key-1", "acme-key-2"] }),
    )
    .await;
    s.integration(
        "hook-a",
        &rx_a.url("/a"),
        &["prod"],
        json!({ "secret": "whsec-restart-test", "headers": { "x-team": "growth" }, "gzip": false,
                "flushIntervalMs": 150, "maxBatchImpressions": 100, "maxBacklogAgeMs": 3_600_000 }),
    )
    .await;
    s.integration(
        "hook-b",
        &rx_b.url("/b"),
        &["acme-prod"],
        json!({ "project": "acme" }),
    )
    .await;
    s.integration(
        "hook-c",
        &rx_b.url("/c"),
        &["prod"],
        json!({ "enabled": false }),
    )
    .await;
    s.integration("hook-d", &rx_b.url("/d"), &["prod"], json!({}))
        .await;
    let (st, v) = s
        .admin(Method::DELETE, "/v1/integrations/hook-d", None)
        .await;
    assert!(st == 200 || st == 204, "delete hook-d: {st} {v}");

    let (st, v) = s
        .admin(Method::POST, "/v1/integrations/hook-b/pause", None)
        .await;
    assert!(st == 200 || st == 204, "pause: {st} {v}");
    send_to(&s, "acme-key-1", "b0", 20).await;
    send_to(&s, SDK_KEY, "a0", 10).await;
    wait_for(&rx_a, 10, "hook-a before restart").await;

    let before: Vec<Value> = {
        let mut v = Vec::new();
        for p in [
            "/v1/projects",
            "/v1/environments",
            "/v1/integrations",
            "/v1/projects/acme",
            "/v1/integrations/hook-a",
        ] {
            v.push(get(&s, p).await);
        }
        v
    };
    let status_b = s.status("hook-b").await;
    assert_eq!(status_b["state"], "paused", "{status_b}");

    let guard = s.stop().await;
    let mut s = Sluice::start_in(&s.dir, |_| {}).await;

    for (i, p) in [
        "/v1/projects",
        "/v1/environments",
        "/v1/integrations",
        "/v1/projects/acme",
        "/v1/integrations/hook-a",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            get(&s, p).await,
            before[i],
            "GET {p} is the same after the restart"
        );
    }
    let (st, _) = s.admin(Method::GET, "/v1/integrations/hook-d", None).await;
    assert_eq!(st, 404, "a deleted integration stays deleted");
    let status_c = s.status("hook-c").await;
    assert_eq!(status_c["state"], "disabled", "{status_c}");

    // The manual pause survived: nothing reaches hook-b, even with new data.
    let status_b = s.status("hook-b").await;
    assert_eq!(status_b["state"], "paused", "{status_b}");
    assert_eq!(status_b["manuallyPaused"], true, "{status_b}");
    send_to(&s, "acme-key-2", "b1", 5).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        rx_b.stats().requests,
        0,
        "a manually paused integration sends nothing after a restart"
    );

    // Both SDK keys still work, the secret still signs, the custom header is still sent.
    send_to(&s, SDK_KEY, "a1", 10).await;
    wait_for(&rx_a, 20, "hook-a after restart").await;
    let a = rx_a.stats();
    assert_eq!(a.bad_signatures, 0, "{a:?}");
    assert_eq!(a.plain_requests, a.requests, "gzip: false survived");
    let last = rx_a.requests().pop().expect("a request");
    assert!(
        last.other_headers
            .iter()
            .any(|(k, v)| k == "x-team" && v == "growth"),
        "{:?}",
        last.other_headers
    );

    // Resume: the backlog kept while paused (before and after the restart) is delivered.
    let (st, v) = s
        .admin(Method::POST, "/v1/integrations/hook-b/resume", None)
        .await;
    assert!(st == 200 || st == 204, "resume: {st} {v}");
    wait_for(&rx_b, 25, "hook-b after resume").await;
    let mut expected = keys("b0", 20);
    expected.extend(keys("b1", 5));
    assert_eq!(delivered(&rx_b), expected);
    for r in rx_b.impressions() {
        assert_eq!(r.impression.environment_id, "acme-prod");
        assert_eq!(r.impression.environment_name, "Acme production");
    }
    assert_eq!(rx_b.stats().per_split.get("config_flag"), Some(&25));
    s.stop().await;
    drop(guard);
    rx_a.shutdown().await;
    rx_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_token_is_kept_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let start = |dir: std::path::PathBuf| async move {
        Sluice::start_in(&dir, |o| o.admin_token = None).await
    };
    let mut s = start(tmp.path().to_path_buf()).await;
    let token = s.server.as_ref().unwrap().admin_token.clone();
    let env_token = std::env::var("SLUICE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if env_token.is_none() {
        assert!(
            tmp.path().join("admin-token").exists(),
            "the generated token is kept in the data dir"
        );
    }
    s.stop().await;
    let mut s = start(tmp.path().to_path_buf()).await;
    assert_eq!(
        s.server.as_ref().unwrap().admin_token,
        token,
        "the same admin token after a restart"
    );
    let ok = s
        .client
        .get(s.url("/v1/projects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let bad = s
        .client
        .get(s.url("/v1/projects"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    s.stop().await;
}
