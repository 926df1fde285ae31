//! Gaps and replay: a pause longer than `maxBacklogAgeMs` creates a gap; replaying the
//! gap delivers exactly the skipped impressions and nothing else, under their own batch
//! ids; live delivery continues during a replay; window replays deliver exactly the
//! window.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, ReceiverHandle};
use std::collections::HashSet;
use std::time::Duration;

fn keys_where(r: &ReceiverHandle, f: impl Fn(&str) -> bool) -> HashSet<String> {
    r.impressions()
        .into_iter()
        .filter(|i| f(&i.webhook_id))
        .map(|i| i.impression.key)
        .collect()
}

fn prefixed(keys: &HashSet<String>, p: &str) -> HashSet<String> {
    keys.iter().filter(|k| k.starts_with(p)).cloned().collect()
}

async fn send_keys(s: &Sluice, prefix: &str, n: usize, time0: i64) -> HashSet<String> {
    let mut sent = HashSet::new();
    for chunk in 0..n.div_ceil(500) {
        let items: Vec<Value> = (chunk * 500..((chunk + 1) * 500).min(n))
            .map(|i| {
                let k = format!("{prefix}-{i}");
                sent.insert(k.clone());
                json!({"k": k, "t": "on", "m": time0 + i as i64, "c": 1, "r": "rule"})
            })
            .collect();
        assert_eq!(
            s.send_bulk(SDK_KEY, &json!([{"f": "flag", "i": items}]))
                .await,
            200
        );
    }
    sent
}

async fn wait_job(s: &Sluice, integ: &str, job: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (st, v) = s
            .admin(
                Method::GET,
                &format!("/v1/integrations/{integ}/replays/{job}"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        if v["state"] != "running" || tokio::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_past_max_age_becomes_a_gap_and_replay_closes_it() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let r = receiver(FaultMode::Ok).await;
    s.integration(
        "i1",
        &r.url("/hook"),
        &["prod"],
        json!({"maxBacklogAgeMs": 1000, "maxBatchImpressions": 100}),
    )
    .await;

    // Paused for longer than maxBacklogAgeMs: the backlog is skipped as a gap.
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/i1/pause", None)
        .await;
    assert_eq!(st, 200);
    let old = send_keys(&s, "old", 3000, 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/i1/resume", None)
        .await;
    assert_eq!(st, 200);
    let new = send_keys(&s, "new", 200, 2_000_000).await;
    assert!(
        eventually(Duration::from_secs(15), || keys_where(&r, |_| true)
            .is_superset(&new))
        .await,
        "live delivery after resume"
    );
    let got = keys_where(&r, |_| true);
    assert!(
        prefixed(&got, "old").is_empty(),
        "skipped backlog must not be delivered live"
    );

    let (st, gaps) = s.admin(Method::GET, "/v1/integrations/i1/gaps", None).await;
    assert_eq!(st, 200);
    let gaps = gaps["gaps"].as_array().expect("gaps").clone();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let gap = &gaps[0];
    assert_eq!(gap["impressions"], 3000);
    assert_eq!(gap["reason"], "maxBacklogAge");
    assert!(gap["closedBy"].is_null());

    // Replay the gap while live traffic continues and the receiver is slowish: live
    // impressions keep arriving before the replay is done.
    r.set_mode(FaultMode::Slow(Duration::from_millis(40)));
    let (st, job) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"gapId": gap["id"]})),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    // A second replay while one runs is refused.
    let (st, _) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"gapId": gap["id"]})),
        )
        .await;
    assert_eq!(st, 409);
    let live = send_keys(&s, "live", 100, 3_000_000).await;
    assert!(
        eventually(Duration::from_secs(15), || keys_where(&r, |_| true)
            .is_superset(&live))
        .await
    );
    let (_, during) = s
        .admin(
            Method::GET,
            &format!("/v1/integrations/i1/replays/{job_id}"),
            None,
        )
        .await;
    assert_eq!(
        during["state"], "running",
        "live delivery must not wait for the replay: {during}"
    );

    let done = wait_job(&s, "i1", &job_id, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["deliveredImpressions"], 3000);
    let replayed = keys_where(&r, |id| id.starts_with("msg_r"));
    assert_eq!(
        replayed, old,
        "replay delivers exactly the skipped impressions and nothing else"
    );
    let (_, gaps) = s.admin(Method::GET, "/v1/integrations/i1/gaps", None).await;
    assert_eq!(gaps["gaps"][0]["closedBy"], job_id.as_str());
    // Replay batches are attempts of kind "replay"; they never count as live progress.
    let st = s.status("i1").await;
    assert_eq!(
        st["deliveredImpressions"].as_u64(),
        Some((new.len() + live.len()) as u64),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_replay_delivers_exactly_the_window() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let r = receiver(FaultMode::Ok).await;
    s.integration(
        "i1",
        &r.url("/hook"),
        &["prod"],
        json!({"maxBatchImpressions": 250}),
    )
    .await;
    // Times 1_000_000 + i, i in 0..2000; the window [1_000_500, 1_001_250) holds 750.
    let sent = send_keys(&s, "k", 2000, 1_000_000).await;
    assert!(
        eventually(Duration::from_secs(15), || keys_where(&r, |_| true).len()
            == sent.len())
        .await
    );

    let (st, job) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"from": 1_000_500, "to": 1_001_250})),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let done = wait_job(
        &s,
        "i1",
        job["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["state"], "done", "{done}");
    let expected: HashSet<String> = (500..1250).map(|i| format!("k-{i}")).collect();
    let replayed = keys_where(&r, |id| id.starts_with("msg_r"));
    assert_eq!(replayed, expected);
    assert_eq!(done["deliveredImpressions"], 750);
    // Replay batches respect the batch size and carry their own ids.
    let requests = r.requests();
    let replay_ids: HashSet<String> = requests
        .iter()
        .filter_map(|q| q.webhook_id.clone())
        .filter(|id| id.starts_with("msg_r"))
        .collect();
    assert!(
        replay_ids.len() >= 3,
        "750 impressions in batches of ≤250: {replay_ids:?}"
    );

    // Bad requests.
    for (body, status) in [
        (json!({"from": 10, "to": 10}), 400),
        (json!({"from": 20, "to": 10}), 400),
        (json!({"from": 1, "to": 2, "gapId": "x"}), 400),
        (json!({}), 400),
        (json!({"gapId": "nope"}), 404),
        (json!({"from": "a", "to": 2}), 400),
    ] {
        let (st, v) = s
            .admin(
                Method::POST,
                "/v1/integrations/i1/replay",
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, status, "{body} → {v}");
        assert!(v["error"].is_string() && v["detail"].is_string(), "{v}");
    }
    let (st, _) = s
        .admin(
            Method::POST,
            "/v1/integrations/nope/replay",
            Some(json!({"from": 1, "to": 2})),
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_past_retention_answer_a_clear_error() {
    // Small segments, so retention can remove sealed ones.
    let s = Sluice::start_with(|o| o.segment_bytes = Some(1200)).await;
    s.environment("prod", "Production", SDK_KEY).await;
    let r = receiver(FaultMode::Ok).await;
    s.integration(
        "i1",
        &r.url("/hook"),
        &["prod"],
        json!({"maxBacklogAgeMs": 1000}),
    )
    .await;
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/i1/pause", None)
        .await;
    assert_eq!(st, 200);
    for i in 0..40 {
        let body = json!([{"f": "flag", "i": [{"k": format!("old-{i}"), "t": "on", "m": 1_000_000 + i, "c": 1}]}]);
        assert_eq!(s.send_bulk(SDK_KEY, &body).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/i1/resume", None)
        .await;
    assert_eq!(st, 200);
    let new = send_keys(&s, "new", 10, 5_000_000).await;
    assert!(
        eventually(Duration::from_secs(15), || keys_where(&r, |_| true)
            .is_superset(&new))
        .await
    );
    let (_, gaps) = s.admin(Method::GET, "/v1/integrations/i1/gaps", None).await;
    let gap_id = gaps["gaps"][0]["id"]
        .as_str()
        .expect("a gap was recorded")
        .to_owned();

    // Retention removes every sealed segment (as if long past).
    let server = s.server.as_ref().expect("running");
    let log = server.segment_log();
    tokio::task::spawn_blocking(move || log.enforce_retention(4_102_444_800_000))
        .await
        .unwrap();
    assert!(
        server.log.bounds("prod").await.unwrap().first > 0,
        "retention removed nothing"
    );

    let (st, v) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"gapId": gap_id})),
        )
        .await;
    assert_eq!(st, 410, "{v}");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("retention"),
        "{v}"
    );
    let (st, v) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"from": 1_000_000, "to": 6_000_000})),
        )
        .await;
    assert_eq!(st, 410, "{v}");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("retention"),
        "{v}"
    );
    // A window within what is retained is fine.
    let (st, v) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"from": 5_000_000, "to": 6_000_000})),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = wait_job(&s, "i1", v["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(done["deliveredImpressions"], 10, "{done}");
}
