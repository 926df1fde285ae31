//! The SDK snippets of README.md, run as written with the real Split SDKs against a live
//! sluice: their impressions must reach a webhook receiver with all 14 fields right.
//!
//! Each snippet is the fenced block that follows a `<!-- snippet: NAME -->` line in README.md
//! (the README is the source; there is no copy here). The test replaces the README's server
//! address ([`README_SLUICE_API`]) and SDK key ([`README_SDK_KEY`]) with those of a sluice it
//! starts on 127.0.0.1:0, and runs the snippet under a harness (`tests/sdk/readme_*_harness.*`)
//! that points the SDK's flag, auth and streaming URLs at a fake Split backend on loopback
//! (unless the snippet sets them), refuses every non-loopback name lookup (so nothing can
//! reach Split's cloud), and records each evaluation and the machine name and IP the SDK sends.
//!
//! Needs `python3` with `splitio_client` and `node` with `@splitsoftware/splitio` in
//! `SLUICE_TEST_NODE_MODULES`; `.ci/run` installs both (pinned). Without them the tests fail
//! when `CI` is set and are skipped otherwise.

mod common;
#[path = "common/split_sdk.rs"]
mod split_sdk;

use serde_json::{Value, json};
use split_sdk::{Expected, FLAG, Rig, assert_no_sdk_errors, now_ms};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The sluice address the README's snippets use (replaced by the live server's).
const README_SLUICE_API: &str = "http://127.0.0.1:8080/api";
/// The SDK key the README's snippets use (replaced by the test environment's).
const README_SDK_KEY: &str = "my-sdk-key-123";
const SDK_KEY: &str = "sdk-key-readme-snippet-0001";

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
const SDK_SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

/// The code of the fenced block right after the `<!-- snippet: NAME -->` line of `markdown`.
fn snippet(markdown: &str, name: &str) -> Result<String, String> {
    let marker = format!("<!-- snippet: {name} -->");
    let starts: Vec<usize> = markdown
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == marker)
        .map(|(i, _)| i)
        .collect();
    let [start] = starts[..] else {
        return Err(format!("{} lines {marker:?}, expected one", starts.len()));
    };
    let mut lines = markdown.lines().skip(start + 1);
    let fence = lines.next().unwrap_or_default();
    if !fence.starts_with("```") {
        return Err(format!(
            "{marker:?} is not followed by a ``` fence: {fence:?}"
        ));
    }
    let mut code = String::new();
    for line in lines {
        if line.trim_end() == "```" {
            return Ok(code);
        }
        code.push_str(line);
        code.push('\n');
    }
    Err(format!("the block after {marker:?} is not closed"))
}

/// The README's snippet `name`, with the live server's address and SDK key filled in.
fn readme_snippet(name: &str, sluice_api: &str) -> String {
    let readme = std::fs::read_to_string(README).expect("read README.md");
    let code = snippet(&readme, name).unwrap_or_else(|e| panic!("README.md snippet {name}: {e}"));
    for placeholder in [README_SLUICE_API, README_SDK_KEY] {
        assert!(
            code.contains(placeholder),
            "README.md snippet {name} no longer contains {placeholder:?}, which this test fills \
             in; keep the README's example address and key or update the test:\n{code}"
        );
    }
    code.replace(README_SLUICE_API, sluice_api)
        .replace(README_SDK_KEY, SDK_KEY)
}

/// `node_modules` holding the Node SDK (`SLUICE_TEST_NODE_MODULES`, set by `.ci/run`), once
/// `node` runs; `Err` says what is missing.
fn node_sdk() -> Result<PathBuf, String> {
    let dir = std::env::var_os("SLUICE_TEST_NODE_MODULES").map(PathBuf::from).ok_or(
        "SLUICE_TEST_NODE_MODULES is not set (.ci/run installs @splitsoftware/splitio and sets it)",
    )?;
    let package = dir.join("@splitsoftware/splitio/package.json");
    let text = std::fs::read_to_string(&package)
        .map_err(|e| format!("no Node SDK at {}: {e}", package.display()))?;
    let version: Value = serde_json::from_str(&text).map_err(|e| format!("{e}"))?;
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if !out.status.success() {
        return Err(format!("node --version failed: {}", out.status));
    }
    println!(
        "node {} with @splitsoftware/splitio {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        version["version"]
    );
    Ok(dir)
}

/// What a harness reports (see `tests/sdk/readme_*_harness.*`).
struct Report {
    /// `SplitSDKVersion`, e.g. `python-10.7.0`.
    version: String,
    machine_name: Option<String>,
    machine_ip: Option<String>,
    calls: Vec<Value>,
    raw: Value,
}

impl Report {
    fn parse(raw: Value) -> Report {
        // What the SDK sends in a machine header: a string, or nothing (null, or false from
        // the Node SDK). sluice delivers "NA" as null too (the SDKs' "not available").
        let header = |v: &Value| v.as_str().filter(|s| *s != "NA").map(str::to_owned);
        Report {
            version: raw["version"].as_str().expect("report: version").to_owned(),
            machine_name: header(&raw["machineName"]),
            machine_ip: header(&raw["machineIp"]),
            calls: raw["calls"].as_array().expect("report: calls").clone(),
            raw,
        }
    }
}

/// Runs `cmd` (a snippet under its harness, which writes `report`) to completion.
async fn run_snippet(mut cmd: tokio::process::Command, report: &Path) -> Report {
    let child = cmd
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the snippet finishes within 120 s (hang guard)")
        .expect("run the snippet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("snippet stdout:\n{stdout}");
    assert!(
        out.status.success(),
        "the snippet failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(report)
        .unwrap_or_else(|e| panic!("no harness report ({e}); stderr:\n{stderr}"));
    let raw: Value = serde_json::from_str(&text).expect("report JSON");
    println!("harness report: {raw}");
    Report::parse(raw)
}

/// Runs README.md's snippet `name` (written to `file_name`, with this sluice's address and
/// key filled in) with the command `command(snippet file, report file, fake backend URL)`
/// against a [`Rig`], and checks every impression it caused at the receiver, field by field.
/// `sdk`: the language part of the SDK's `SplitSDKVersion`. Returns the harness report.
async fn snippet_delivers_impressions(
    name: &str,
    file_name: &str,
    sdk: &str,
    command: impl FnOnce(&Path, &Path, &str) -> tokio::process::Command,
) -> Value {
    let rig = Rig::start(SDK_KEY).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join(file_name);
    std::fs::write(&file, readme_snippet(name, &rig.sluice_api())).expect("write snippet");
    let report_path = tmp.path().join("report.json");
    let mut cmd = command(&file, &report_path, &rig.backend);
    cmd.current_dir(tmp.path());

    let started_ms = now_ms();
    let report = run_snippet(cmd, &report_path).await;
    let finished_ms = now_ms();

    assert_eq!(
        report.raw["refusedHosts"],
        json!([]),
        "the snippet tried to reach hosts beyond loopback (Split's cloud?)"
    );
    rig.backend_requests();
    if !report.raw["logs"].is_null() {
        assert_no_sdk_errors(&report.raw["logs"]);
    }
    assert!(
        report.version.starts_with(&format!("{sdk}-")),
        "SDK version {:?}",
        report.version
    );
    assert!(!report.calls.is_empty(), "the snippet evaluated no flag");
    for call in &report.calls {
        assert_eq!(
            call["split"], FLAG,
            "the fake Split backend serves only {FLAG}; an unknown flag gives no impression"
        );
    }
    let expected = Expected {
        sdk_version_header: report.version.clone(),
        machine_name: report.machine_name.clone(),
        machine_ip: report.machine_ip.clone(),
        started_ms,
        finished_ms,
    };
    rig.assert_delivered(&report.calls, &expected).await;
    // The SDK's events and telemetry base URLs are sluice's (when the harness can tell).
    for url in ["events", "telemetry"] {
        if let Some(got) = report.raw["urls"][url].as_str() {
            assert_eq!(got, rig.sluice_api(), "{url} URL");
        }
    }
    rig.rx.shutdown().await;
    report.raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_python_snippet_delivers_impressions() {
    let Some(_) = split_sdk::required(
        "readme_python_snippet_delivers_impressions",
        split_sdk::python_sdk_version(),
    ) else {
        return;
    };
    snippet_delivers_impressions(
        "python-sdk",
        "snippet.py",
        "python",
        |file, report, backend| {
            let mut cmd = tokio::process::Command::new(split_sdk::python());
            cmd.arg(format!("{SDK_SCRIPTS}/readme_python_harness.py"))
                .arg(file)
                .arg(report)
                .arg(backend);
            cmd
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_node_snippet_delivers_impressions() {
    let Some(node_modules) =
        split_sdk::required("readme_node_snippet_delivers_impressions", node_sdk())
    else {
        return;
    };
    let report = snippet_delivers_impressions(
        "node-sdk",
        "snippet.js",
        "nodejs",
        |file, report, backend| {
            let mut cmd = tokio::process::Command::new("node");
            cmd.arg("--require")
                .arg(format!("{SDK_SCRIPTS}/readme_node_harness.js"))
                .arg(file)
                .env("NODE_PATH", &node_modules)
                .env("SLUICE_SNIPPET_BACKEND", backend)
                .env("SLUICE_SNIPPET_REPORT", report);
            cmd
        },
    )
    .await;
    assert!(
        report["urls"].is_object(),
        "the harness reports the factory's URLs: {report}"
    );
}

#[test]
fn snippet_extraction_takes_the_marked_block_only() {
    let md = "text\n<!-- snippet: a -->\n```python\nprint(1)\n\nprint(2)\n```\nmore\n```python\nx\n```\n";
    assert_eq!(snippet(md, "a").unwrap(), "print(1)\n\nprint(2)\n");
    assert!(snippet(md, "b").unwrap_err().contains("0 lines"));
    let twice = format!("{md}<!-- snippet: a -->\n```js\ny\n```\n");
    assert!(snippet(&twice, "a").unwrap_err().contains("2 lines"));
    assert!(
        snippet("<!-- snippet: a -->\n\n```js\n", "a")
            .unwrap_err()
            .contains("not followed")
    );
    assert!(
        snippet("<!-- snippet: a -->\n```js\ny\n", "a")
            .unwrap_err()
            .contains("not closed")
    );
}
