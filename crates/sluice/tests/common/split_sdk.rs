//! What the tests that drive real Split SDKs share: a fake Split backend (feature flags,
//! segments, auth) on 127.0.0.1:0 serving one flag, a sluice delivering to a receiver
//! ([`Rig`]), the check of every delivered impression against the SDK calls that caused it,
//! and whether a missing SDK must fail the test (in CI) or skip it. Declared from a test
//! (which also declares `mod common;`) with `#[path = "common/split_sdk.rs"] mod split_sdk;`.
#![allow(dead_code)]

use crate::common::{self, AdminCalls as _, Sluice};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::routing::get;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, ReceiverHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The one flag the backend serves.
pub const FLAG: &str = "new_checkout";
/// Its change number (`splitVersionNumber` of its impressions).
pub const CHANGE_NUMBER: i64 = 1_700_000_000_123;
/// The key whitelisted to `on`.
pub const VIP_KEY: &str = "vip-user";

/// The label of `key`'s impressions of [`FLAG`].
pub fn label_for(key: &str) -> &'static str {
    if key == VIP_KEY {
        "whitelisted"
    } else {
        "default rule"
    }
}

/// The one flag: `vip-user` is whitelisted to `on`; everyone else gets 50/50 on/off.
pub fn flag_definition() -> Value {
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
                "matcherGroup": { "combiner": "AND", "matchers": [matcher("WHITELIST", Some(vec![VIP_KEY]))] },
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

pub type Seen = Arc<Mutex<Vec<String>>>;

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
pub async fn fake_split_backend() -> (String, Seen) {
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

/// A sluice whose environment `prod` ("Production", one SDK key) is delivered every 100 ms
/// to a receiver that keeps what it gets, and a fake Split backend.
pub struct Rig {
    pub sluice: Sluice,
    pub rx: ReceiverHandle,
    /// The fake backend's base URL (`http://127.0.0.1:PORT/api`).
    pub backend: String,
    /// What the fake backend was asked.
    pub seen: Seen,
}

/// What every impression of a run carries besides what its SDK call decided.
pub struct Expected {
    /// `SplitSDKVersion` as the SDK sends it, e.g. `python-10.7.0`.
    pub sdk_version_header: String,
    /// The machine headers the SDK sends (`None`: not sent, or "NA").
    pub machine_name: Option<String>,
    pub machine_ip: Option<String>,
    /// The run's bounds (ms since the epoch): impression times fall inside.
    pub started_ms: i64,
    pub finished_ms: i64,
}

impl Rig {
    pub async fn start(sdk_key: &str) -> Rig {
        let sluice = Sluice::start().await;
        let rx = common::receiver(FaultMode::Ok).await;
        sluice.environment("prod", "Production", sdk_key).await;
        sluice
            .integration(
                "hook",
                &rx.url("/hook"),
                &["prod"],
                json!({ "flushIntervalMs": 100 }),
            )
            .await;
        let (backend, seen) = fake_split_backend().await;
        Rig {
            sluice,
            rx,
            backend,
            seen,
        }
    }

    /// The base URL an SDK's events and telemetry URLs point at.
    pub fn sluice_api(&self) -> String {
        self.sluice.url("/api")
    }

    /// What the fake backend was asked, after checking it was asked nothing it does not serve.
    pub fn backend_requests(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap().clone();
        assert!(
            !seen.iter().any(|u| u.starts_with("UNEXPECTED")),
            "the SDK asked the fake Split backend for something it does not serve: {seen:?}"
        );
        seen
    }

    /// Waits (60 s hang guard) until the receiver has one impression per SDK call
    /// (`{"key", "bucketingKey", "treatment", "properties"}`, of [`FLAG`]) and checks all 14
    /// fields of each.
    pub async fn assert_delivered(&self, calls: &[Value], expected: &Expected) {
        assert!(!calls.is_empty(), "no SDK call to check");
        let got = self
            .rx
            .wait_until(Duration::from_secs(60), |st| {
                st.unique_impressions >= calls.len() as u64
            })
            .await;
        if got.is_err() {
            let status = self.sluice.status("hook").await;
            let metrics = self.sluice.get_admin("/metrics").await;
            let ours: Vec<&str> = metrics
                .as_str()
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("sluice_"))
                .collect();
            panic!(
                "the receiver got an impression per call: {got:?}\nintegration status: {status}\nmetrics: {ours:#?}"
            );
        }
        let delivered = self.rx.impressions();
        assert_eq!(
            delivered.len(),
            calls.len(),
            "one impression per evaluation: {delivered:?}"
        );
        let (sdk, sdk_version) = expected
            .sdk_version_header
            .split_once('-')
            .unwrap_or_else(|| panic!("SDK version {:?}", expected.sdk_version_header));
        for call in calls {
            let key = call["key"].as_str().expect("call key");
            let imp = &delivered
                .iter()
                .find(|r| r.impression.key == key)
                .unwrap_or_else(|| panic!("no impression for {key}: {delivered:?}"))
                .impression;
            let treatment = call["treatment"].as_str().expect("call treatment");
            assert!(
                treatment == "on" || treatment == "off",
                "{key}: the SDK returned {treatment} for the fake backend's {FLAG}"
            );
            assert_eq!(imp.key, key);
            assert_eq!(imp.split, FLAG);
            assert_eq!(imp.environment_id, "prod");
            assert_eq!(imp.environment_name, "Production");
            assert_eq!(imp.treatment, treatment, "{key}");
            assert!(
                imp.time >= expected.started_ms - 1000 && imp.time <= expected.finished_ms + 1000,
                "{key}: time {} outside the run [{}, {}]",
                imp.time,
                expected.started_ms,
                expected.finished_ms
            );
            assert_eq!(
                imp.bucketing_key.as_deref(),
                call["bucketingKey"].as_str(),
                "{key}"
            );
            assert_eq!(imp.label.as_deref(), Some(label_for(key)), "{key}");
            assert_eq!(imp.machine_name, expected.machine_name, "{key}");
            assert_eq!(imp.machine_ip, expected.machine_ip, "{key}");
            assert_eq!(imp.split_version_number, CHANGE_NUMBER, "{key}");
            assert_eq!(imp.sdk, sdk);
            assert_eq!(imp.sdk_version, sdk_version);
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
    }
}

/// Asserts an SDK logged nothing at ERROR or above (`logs`: records `{"level", ...}`).
pub fn assert_no_sdk_errors(logs: &Value) {
    let errors: Vec<&Value> = logs
        .as_array()
        .expect("log records")
        .iter()
        .filter(|r| r["level"] == "ERROR" || r["level"] == "CRITICAL")
        .collect();
    assert!(
        errors.is_empty(),
        "the SDK logged errors talking to sluice or the backend: {errors:?}"
    );
}

/// The Python interpreter the tests run (`SLUICE_TEST_PYTHON`, set by `.ci/run`, or `python3`).
pub fn python() -> String {
    std::env::var("SLUICE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The version of the Split Python SDK [`python`] imports; `Err` says why it cannot.
pub fn python_sdk_version() -> Result<String, String> {
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

/// What a test needs from the machine (`Ok`), or why it is missing (`Err`). Missing fails
/// the test when `CI` is set (`.ci/run` installs everything) and skips it otherwise, saying so.
pub fn required<T>(test: &str, what: Result<T, String>) -> Option<T> {
    match what {
        Ok(v) => Some(v),
        Err(why) if in_ci() => panic!("{test} needs this in CI: {why}"),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// `CI` is set (to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
