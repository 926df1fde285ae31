//! Clean deletion (SPEC §4): deleting an integration removes everything that hangs on it —
//! its cursor and pinned batches, pause state, gaps, replay jobs (a running replay is
//! stopped), attempts, health and pause history — so a new integration of the same id, in
//! another project and pointing elsewhere, starts clean and never receives the deleted
//! one's impressions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, ReceiverHandle};
use std::collections::HashSet;
use std::time::Duration;

const SDK_KEY: &str = "sdk-clean-deletion";
const OTHER_KEY: &str = "sdk-other-project";

fn keys(r: &ReceiverHandle) -> HashSet<String> {
    r.impressions()
        .into_iter()
        .map(|i| i.impression.key)
        .collect()
}

async fn send(s: &Sluice, key: &str, prefix: &str, n: usize, time0: i64) -> HashSet<String> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"k": format!("{prefix}-{i}"), "t": "on", "m": time0 + i as i64, "c": 1, "r": "rule"}))
        .collect();
    assert_eq!(
        s.send_bulk(key, &json!([{"f": "flag", "i": items}])).await,
        200
    );
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn get(s: &Sluice, path: &str) -> Value {
    s.get_admin(path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_integration_of_a_deleted_ones_id_starts_clean() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let old_dest = receiver(FaultMode::Ok).await;
    s.integration(
        "dup",
        &old_dest.url("/old"),
        &["prod"],
        json!({"maxBacklogAgeMs": 1000, "maxBatchImpressions": 100}),
    )
    .await;

    // A gap: paused for longer than maxBacklogAgeMs.
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/dup/pause", None)
        .await;
    assert_eq!(st, 200);
    let old = send(&s, SDK_KEY, "old", 2000, 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/dup/resume", None)
        .await;
    assert_eq!(st, 200);
    let live = send(&s, SDK_KEY, "live", 100, 2_000_000).await;
    assert!(
        eventually(Duration::from_secs(30), || keys(&old_dest)
            .is_superset(&live))
        .await,
        "live delivery to the old integration"
    );
    let gaps = get(&s, "/v1/integrations/dup/gaps").await;
    let gap = gaps["gaps"][0].clone();
    assert_eq!(gap["impressions"], 2000, "{gaps}");

    // A replay of the gap that is running when the integration is deleted: the old
    // destination holds its requests.
    old_dest.set_mode(FaultMode::Hang);
    let (st, job) = s
        .admin(
            Method::POST,
            "/v1/integrations/dup/replay",
            Some(json!({"gapId": gap["id"]})),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    let replays = get(&s, "/v1/integrations/dup/replays").await;
    assert!(replays.to_string().contains(&job_id), "{replays}");
    // Manual pause state, pause history and attempts of the old one.
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/dup/pause", None)
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .admin(Method::POST, "/v1/integrations/dup/test", None)
        .await;
    assert!(st < 500, "test send: {st}");

    let (st, v) = s.admin(Method::DELETE, "/v1/integrations/dup", None).await;
    assert_eq!(st, 204, "{v}");

    // The namesake: another project, another environment, another destination.
    s.post_admin("/v1/projects", json!({"id": "other", "name": "Other"}))
        .await;
    s.post_admin(
        "/v1/environments",
        json!({"id": "prod-other", "name": "Other prod", "project": "other", "sdkKeys": [OTHER_KEY]}),
    )
    .await;
    let new_dest = receiver(FaultMode::Ok).await;
    s.integration(
        "dup",
        &new_dest.url("/new"),
        &["prod-other"],
        json!({"project": "other"}),
    )
    .await;

    // Nothing of the old one is visible ...
    let status = get(&s, "/v1/integrations/dup/status").await;
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["manuallyPaused"], false, "{status}");
    assert_eq!(status["pauseCount"], 0, "{status}");
    assert_eq!(status["failedAttempts"], 0, "{status}");
    assert_eq!(status["deliveredImpressions"], 0, "{status}");
    let gaps = get(&s, "/v1/integrations/dup/gaps").await;
    assert_eq!(gaps["gaps"].as_array().map(Vec::len), Some(0), "{gaps}");
    let replays = get(&s, "/v1/integrations/dup/replays").await;
    assert!(!replays.to_string().contains(&job_id), "{replays}");
    let attempts = get(&s, "/v1/integrations/dup/attempts").await;
    assert!(
        attempts
            .as_array()
            .or_else(|| attempts["attempts"].as_array())
            .is_some_and(Vec::is_empty),
        "{attempts}"
    );
    let (st, v) = s
        .admin(
            Method::GET,
            &format!("/v1/integrations/dup/replays/{job_id}"),
            None,
        )
        .await;
    assert_eq!(st, 404, "{v}");

    // ... and it delivers its own impressions, and only those.
    let fresh = send(&s, OTHER_KEY, "fresh", 50, 3_000_000).await;
    assert!(
        eventually(Duration::from_secs(30), || keys(&new_dest)
            .is_superset(&fresh))
        .await,
        "the new integration delivers"
    );
    // The old destination recovers; the deleted integration's replay must not resume
    // anywhere.
    old_dest.set_mode(FaultMode::Ok);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = keys(&new_dest);
    assert_eq!(got, fresh, "the namesake received only its own impressions");
    assert!(
        keys(&old_dest).is_disjoint(&old),
        "the deleted integration's replay did not go on"
    );
}
