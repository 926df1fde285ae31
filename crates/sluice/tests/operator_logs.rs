//! What an operator reads (issue 10 item 4): `sluice serve --log-format json` writes one
//! JSON object per line on stderr, with the start-up line, an INFO line per state change —
//! paused (with the reason), resumed — naming the integration, and the shutdown lines on
//! SIGTERM. A destination answering 500 pauses the integration; once it answers 200 the
//! probe resumes it. Bounded waits only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::Capture;
use serde_json::{Value, json};
use sluice_testkit as testkit;
use std::path::Path;
use std::time::Duration;

const SDK_KEY: &str = "sdk-key-operator-logs";
const INTEGRATION: &str = "crm-hook";

/// The child's log lines, each parsed as JSON (panics naming a line that is not).
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

/// The lines whose `fields.event` is `event`.
fn events(lines: &[Value], event: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["event"] == event)
        .cloned()
        .collect()
}

/// Waits (at most 60 s) for a line with `fields.event == event` for the integration.
async fn wait_for_event(path: &Path, event: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lines = json_lines(path);
        if let Some(l) = events(&lines, event)
            .into_iter()
            .find(|l| l["fields"]["integration"] == INTEGRATION)
        {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event:?} line within 60 s; the log:\n{}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn json_logs_show_start_pause_resume_and_stop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log_path = tmp.path().join("sluice.log");
    let mut opts = testkit::LaunchOptions::new(env!("CARGO_BIN_EXE_sluice"));
    opts.data_dir = Some(tmp.path().join("data"));
    opts.log = testkit::ChildLog::Append(log_path.clone());
    opts.default_log_filter = "info".into();
    opts.extra_args = vec!["--log-format".into(), "json".into()];
    opts.stop_timeout = Duration::from_secs(30);
    let mut p = testkit::SluiceProcess::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = common::http();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, p.url(path)).bearer_auth(p.token())
    };

    let dest = Capture::start(500).await;
    let r = admin(reqwest::Method::POST, "/v1/environments")
        .json(&json!({"id": "prod", "name": "Prod", "sdkKeys": [SDK_KEY]}))
        .send()
        .await
        .expect("create environment");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = admin(reqwest::Method::POST, "/v1/integrations")
        .json(&json!({
            "id": INTEGRATION, "name": "CRM", "url": dest.url("/hook"),
            "environments": ["prod"], "flushIntervalMs": 100,
            "protection": {"window": 4, "minAttempts": 2,
                           "initialCooldownMs": 200, "maxCooldownMs": 400}
        }))
        .send()
        .await
        .expect("create integration");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = http
        .post(p.url("/api/testImpressions/bulk"))
        .bearer_auth(SDK_KEY)
        .json(&json!([{"f": "flag", "i": [
            {"k": "user-1", "t": "on", "m": 1_700_000_000_000i64, "c": 1, "r": "default rule"}
        ]}]))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 200);

    // The destination fails: paused, with the reason and the next probe.
    let paused = wait_for_event(&log_path, "paused").await;
    assert_eq!(paused["level"], "INFO", "{paused}");
    assert_eq!(paused["fields"]["project"], "default", "{paused}");
    let reason = paused["fields"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("failure rate") || reason.contains("every attempt failed"),
        "{paused}"
    );
    assert!(
        paused["fields"]["next_probe_at_ms"].as_i64().is_some(),
        "{paused}"
    );

    // It recovers: a probe resumes delivery.
    dest.set_status(200);
    let resumed = wait_for_event(&log_path, "resumed").await;
    assert_eq!(resumed["level"], "INFO", "{resumed}");

    assert!(p.stop().await, "sluice did not exit on SIGTERM");
    let lines = json_lines(&log_path);
    let started = events(&lines, "started");
    assert_eq!(started.len(), 1, "{lines:?}");
    let s = &started[0]["fields"];
    assert_eq!(s["listen"], p.addr().to_string(), "{s}");
    assert_eq!(s["scheme"], "http", "{s}");
    assert_eq!(s["store"], "embedded", "{s}");
    assert!(s["data_dir"].as_str().is_some(), "{s}");
    assert_eq!(s["integrations"], 0, "{s}");
    assert_eq!(events(&lines, "shutting_down").len(), 1, "{lines:?}");
    let stopped = events(&lines, "stopped");
    assert_eq!(stopped.len(), 1, "{lines:?}");
    assert!(
        stopped[0]["fields"]["took_ms"].as_u64().is_some(),
        "{stopped:?}"
    );
    // Attempts stay at DEBUG: at INFO, each pause is one line, not one per attempt.
    assert!(
        lines
            .iter()
            .filter(|l| l["level"] == "INFO")
            .all(|l| l["fields"]["message"] != "delivery attempt failed"),
        "attempts logged at INFO"
    );
}
