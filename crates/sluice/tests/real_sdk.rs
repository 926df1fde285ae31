//! The real Split Python SDK (`splitio_client` from PyPI) sends its impressions to sluice.
//!
//! The test runs `tests/sdk/python_sdk_client.py` with the SDK's feature-flag and auth URLs
//! pointing at a tiny fake Split backend (served here) and its events and telemetry URLs at
//! sluice (`http://127.0.0.1:PORT/api`), and checks every impression at a webhook receiver.
//!
//! Needs `python3` with `splitio_client` (`pip install splitio_client==10.7.0`); `.ci/run`
//! installs it. Without it the test fails when `CI` is set and is skipped otherwise.

mod common;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::routing::get;
use common::Sluice;
use serde_json::{Value, json};
use sluice::receiver::FaultMode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLAG: &str = "new_checkout";
const CHANGE_NUMBER: i64 = 1_700_000_000_123;
const SDK_KEY: &str = "sdk-key-python-real-0001";
const MACHINE_NAME: &str = "python-sdk-host";
const MACHINE_IP: &str = "10.20.30.40";

fn python() -> String {
    std::env::var("SLUICE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `python3` can import the SDK; `Err` says why not.
fn sdk_available() -> Result<String, String> {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "from splitio.version import __version__; print(__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import splitio (pip install splitio_client): {}",
            python(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The one flag: `vip-user` is whitelisted to `on`; everyone else gets 50/50 on/off.
fn flag_definition() -> Value {
    let matcher = |kind: &str, whitelist: Option<Vec<&str>>| {
        json!({
            "keySelector": { "trafficType": "user", "attribute": null },
            "matcherType": kind,
            "negate": false,
            "userDefinedSegmentMatcherData": null,
            "whitelistMatcherData": whitelist.map(|w| json!({ "whitelist": w })),
            "unaryNumericMatcherData": null,
            "betweenMatcherData": null,
            "booleanMatcherData": null,
            "dependencyMatcherData": null,
            "stringMatcherData": null
        })
    };
    json!({
        "trafficTypeName": "user",
        "name": FLAG,
        "trafficAllocation": 100,
        "trafficAllocationSeed": 1_234_567,
        "seed": -1_222_652_054,
        "status": "ACTIVE",
        "killed": false,
        "defaultTreatment": "off",
        "changeNumber": CHANGE_NUMBER,
        "algo": 2,
        "configurations": {},
        "sets": [],
        "impressionsDisabled": false,
        "conditions": [
            {
                "conditionType": "WHITELIST",
                "matcherGroup": { "combiner": "AND", "matchers": [matcher("WHITELIST", Some(vec!["vip-user"]))] },
                "partitions": [{ "treatment": "on", "size": 100 }],
                "label": "whitelisted"
            },
            {
                "conditionType": "ROLLOUT",
                "matcherGroup": { "combiner": "AND", "matchers": [matcher("ALL_KEYS", None)] },
                "partitions": [{ "treatment": "on", "size": 50 }, { "treatment": "off", "size": 50 }],
                "label": "default rule"
            }
        ]
    })
}

type Seen = Arc<Mutex<Vec<String>>>;

async fn split_changes(
    State(seen): State<Seen>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    seen.lock().unwrap().push(uri.to_string());
    let since: i64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(-1);
    let flags = if since < CHANGE_NUMBER {
        vec![flag_definition()]
    } else {
        vec![]
    };
    axum::Json(json!({
        "ff": { "d": flags, "s": since, "t": CHANGE_NUMBER },
        "rbs": { "d": [], "s": -1, "t": -1 }
    }))
}

async fn segment_changes(
    State(seen): State<Seen>,
    uri: Uri,
    Path(name): Path<String>,
) -> axum::Json<Value> {
    seen.lock().unwrap().push(uri.to_string());
    axum::Json(json!({ "name": name, "added": [], "removed": [], "since": -1, "till": -1 }))
}

async fn auth(State(seen): State<Seen>, uri: Uri) -> axum::Json<Value> {
    seen.lock().unwrap().push(uri.to_string());
    axum::Json(json!({ "pushEnabled": false, "token": "" }))
}

async fn other(State(seen): State<Seen>, uri: Uri) -> axum::http::StatusCode {
    seen.lock().unwrap().push(format!("UNEXPECTED {uri}"));
    axum::http::StatusCode::NOT_FOUND
}

/// A fake Split backend (feature flags, segments, auth) on 127.0.0.1:0.
async fn fake_split_backend() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/api/splitChanges", get(split_changes))
        .route("/api/segmentChanges/{name}", get(segment_changes))
        .route("/api/v2/auth", get(auth))
        .fallback(other)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/api"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_impressions_are_delivered() {
    let version = match sdk_available() {
        Ok(v) => v,
        Err(why) if in_ci() => {
            panic!("the real-SDK test needs the Split Python SDK in CI: {why}")
        }
        Err(why) => {
            println!("SKIPPED python_sdk_impressions_are_delivered: {why}");
            eprintln!("SKIPPED python_sdk_impressions_are_delivered: {why}");
            return;
        }
    };

    let s = Sluice::start().await;
    let rx = common::receiver(FaultMode::Ok).await;
    s.environment("prod", "Production", SDK_KEY).await;
    s.integration(
        "hook",
        &rx.url("/hook"),
        &["prod"],
        json!({ "flushIntervalMs": 100 }),
    )
    .await;
    let (backend, seen) = fake_split_backend().await;
    let sluice_api = s.url("/api");

    let keys = ["vip-user", "user-1", "user-2", "user-3", "user-4", "user-5"];
    let args = json!({
        "sdkKey": SDK_KEY,
        "sdkUrl": backend,
        "authUrl": backend,
        "eventsUrl": sluice_api,
        "telemetryUrl": sluice_api,
        "flag": FLAG,
        "keys": keys,
        "machineName": MACHINE_NAME,
        "machineIp": MACHINE_IP,
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/python_sdk_client.py"
    );
    let started_ms = chrono_ms();
    let child = tokio::process::Command::new(python())
        .arg(script)
        .arg(args.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .expect("the Python SDK script finishes within 90 s")
        .expect("run python");
    let finished_ms = chrono_ms();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python script failed ({}):\n{stderr}",
        out.status
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\nstderr:\n{stderr}"));
    let backend_requests = seen.lock().unwrap().clone();
    println!("splitio_client {version}; fake backend saw {backend_requests:?}");
    println!("SDK log records (WARNING and above): {}", result["logs"]);

    assert_eq!(result["version"], version.as_str());
    assert!(
        backend_requests
            .iter()
            .any(|u| u.starts_with("/api/splitChanges?") && u.contains("s=1.3")),
        "the SDK fetched flags with spec 1.3: {backend_requests:?}"
    );
    assert!(
        !backend_requests.iter().any(|u| u.starts_with("UNEXPECTED")),
        "{backend_requests:?}"
    );
    let errors: Vec<&Value> = result["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["level"] == "ERROR" || r["level"] == "CRITICAL")
        .collect();
    assert!(
        errors.is_empty(),
        "the SDK logged errors talking to sluice or the backend: {errors:?}\nstderr:\n{stderr}"
    );

    let calls = result["calls"].as_array().unwrap();
    assert_eq!(calls.len(), keys.len() + 2);
    let got = rx
        .wait_until(Duration::from_secs(15), |st| {
            st.unique_impressions >= calls.len() as u64
        })
        .await;
    if got.is_err() {
        let status = s.status("hook").await;
        let (_, metrics) = s.admin(reqwest::Method::GET, "/metrics", None).await;
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        let ours: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("sluice_"))
            .collect();
        panic!(
            "receiver got all impressions: {got:?}\nintegration status: {status}\nmetrics: {ours:#?}\nscript stdout: {stdout}\nscript stderr:\n{stderr}"
        );
    }
    let delivered = rx.impressions();
    assert_eq!(
        delivered.len(),
        calls.len(),
        "one impression per evaluation: {delivered:?}"
    );
    for call in calls {
        let key = call["key"].as_str().unwrap();
        let imp = &delivered
            .iter()
            .find(|r| r.impression.key == key)
            .unwrap_or_else(|| panic!("no impression for {key}: {delivered:?}"))
            .impression;
        let treatment = call["treatment"].as_str().unwrap();
        assert!(
            treatment == "on" || treatment == "off",
            "{key}: SDK returned {treatment}"
        );
        assert_eq!(imp.split, FLAG);
        assert_eq!(imp.treatment, treatment, "{key}");
        let label = if key == "vip-user" {
            "whitelisted"
        } else {
            "default rule"
        };
        assert_eq!(imp.label.as_deref(), Some(label), "{key}");
        assert_eq!(imp.split_version_number, CHANGE_NUMBER, "{key}");
        assert_eq!(imp.sdk, "python");
        assert_eq!(imp.sdk_version, version);
        assert_eq!(imp.machine_name.as_deref(), Some(MACHINE_NAME));
        assert_eq!(imp.machine_ip.as_deref(), Some(MACHINE_IP));
        assert_eq!(imp.environment_id, "prod");
        assert_eq!(imp.environment_name, "Production");
        assert_eq!(
            imp.bucketing_key.as_deref(),
            call["bucketingKey"].as_str(),
            "{key}"
        );
        assert!(
            imp.time >= started_ms - 1000 && imp.time <= finished_ms + 1000,
            "{key}: time {}",
            imp.time
        );
        match &call["properties"] {
            Value::Null => assert_eq!(imp.properties, None, "{key}"),
            props => {
                let sent: Value =
                    serde_json::from_str(imp.properties.as_deref().expect("properties"))
                        .expect("properties is a JSON-encoded string");
                assert_eq!(&sent, props, "{key}");
            }
        }
    }
    assert_eq!(
        delivered
            .iter()
            .find(|r| r.impression.key == "vip-user")
            .unwrap()
            .impression
            .treatment,
        "on"
    );
    // The SDK's telemetry (metrics/config, metrics/usage) went to sluice too and was accepted.
    let (st, metrics) = s.admin(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(st, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let other: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_sdk_other_requests_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!("sluice_sdk_other_requests_total {other}");
    assert!(
        other >= 1.0,
        "the SDK's telemetry reached sluice:\n{metrics}"
    );
    rx.shutdown().await;
}

/// `CI` is set (to anything but empty, `0` or `false`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
