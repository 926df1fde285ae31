//! The real Split Python SDK (`splitio_client` from PyPI) sends its impressions to sluice.
//!
//! The test runs `tests/sdk/python_sdk_client.py` with the SDK's feature-flag and auth URLs
//! pointing at a tiny fake Split backend (served here) and its events and telemetry URLs at
//! sluice (`http://127.0.0.1:PORT/api`), and checks every impression at a webhook receiver.
//!
//! Needs `python3` with `splitio_client` (`pip install splitio_client==10.7.0`); `.ci/run`
//! installs it. Without it the test fails when `CI` is set and is skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;
use common::AdminCalls as _;
#[path = "common/split_sdk.rs"]
mod split_sdk;

use serde_json::{Value, json};
use split_sdk::{Expected, FLAG, Rig, VIP_KEY, assert_no_sdk_errors, now_ms, python};
use std::time::Duration;

const SDK_KEY: &str = "sdk-key-python-real-0001";
const MACHINE_NAME: &str = "python-sdk-host";
const MACHINE_IP: &str = "10.20.30.40";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_impressions_are_delivered() {
    let Some(version) = split_sdk::required(
        "python_sdk_impressions_are_delivered",
        split_sdk::python_sdk_version(),
    ) else {
        return;
    };

    let rig = Rig::start(SDK_KEY).await;
    let sluice_api = rig.sluice_api();
    let keys = [VIP_KEY, "user-1", "user-2", "user-3", "user-4", "user-5"];
    let args = json!({
        "sdkKey": SDK_KEY,
        "sdkUrl": rig.backend,
        "authUrl": rig.backend,
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
    let started_ms = now_ms();
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
    let finished_ms = now_ms();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python script failed ({}):\n{stderr}",
        out.status
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\nstderr:\n{stderr}"));
    let backend_requests = rig.backend_requests();
    println!("splitio_client {version}; fake backend saw {backend_requests:?}");
    println!("SDK log records (WARNING and above): {}", result["logs"]);
    println!("SDK stderr:\n{stderr}");

    assert_eq!(result["version"], version.as_str());
    assert!(
        backend_requests
            .iter()
            .any(|u| u.starts_with("/api/splitChanges?") && u.contains("s=1.3")),
        "the SDK fetched flags with spec 1.3: {backend_requests:?}"
    );
    assert_no_sdk_errors(&result["logs"]);

    let calls = result["calls"].as_array().unwrap();
    assert_eq!(calls.len(), keys.len() + 2);
    let expected = Expected {
        sdk_version_header: format!("python-{version}"),
        machine_name: Some(MACHINE_NAME.into()),
        machine_ip: Some(MACHINE_IP.into()),
        started_ms,
        finished_ms,
    };
    rig.assert_delivered(calls, &expected).await;
    let vip = rig.rx.impressions();
    let vip = vip.iter().find(|r| r.impression.key == VIP_KEY).unwrap();
    assert_eq!(vip.impression.treatment, "on");
    // The SDK's telemetry (metrics/config, metrics/usage) went to sluice too and was accepted.
    let metrics = rig.sluice.get_admin("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default();
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
    rig.rx.shutdown().await;
}
