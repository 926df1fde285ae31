//! The code snippets of the documentation, run as written: README.md's SDK snippets with the
//! real Split SDKs against a live sluice (their impressions must reach a webhook receiver
//! with all 14 fields right), and docs/delivery.md's signature verification on requests
//! sluice really delivered.
//!
//! Each snippet is the fenced block that follows a `<!-- snippet: NAME -->` line in its
//! document (the document is the source; there is no copy here). For the SDK snippets the
//! test replaces the README's server address ([`README_SLUICE_API`]) and SDK key
//! ([`README_SDK_KEY`]) with those of a sluice it starts on 127.0.0.1:0, and runs the snippet
//! under a harness (`tests/sdk/readme_*_harness.*`) that points the SDK's flag, auth and
//! streaming URLs at a fake Split backend on loopback (unless the snippet sets them), refuses
//! every non-loopback name lookup (so nothing can reach Split's cloud), and records each
//! evaluation and the machine name and IP the SDK sends.
//!
//! Needs `python3` with `splitio_client` and `node` with `@splitsoftware/splitio` in
//! `SLUICE_TEST_NODE_MODULES`; `.ci/run` installs both (pinned). Without them the tests fail
//! when `CI` is set and are skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;
use common::AdminCalls as _;
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

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
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

/// The snippet `name` of the document `doc` (a path in the repository).
fn doc_snippet(doc: &str, name: &str) -> String {
    let text = std::fs::read_to_string(format!("{REPO}/{doc}"))
        .unwrap_or_else(|e| panic!("read {doc}: {e}"));
    snippet(&text, name).unwrap_or_else(|e| panic!("{doc} snippet {name}: {e}"))
}

/// The README's snippet `name`, with the live server's address and SDK key filled in.
fn readme_snippet(name: &str, sluice_api: &str) -> String {
    let code = doc_snippet("README.md", name);
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

/// Runs `cmd` (`what`: for messages) to completion (120 s hang guard), asserting it
/// succeeds; returns its stdout and stderr.
async fn run_to_end(mut cmd: tokio::process::Command, what: &str) -> (String, String) {
    let child = cmd
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .unwrap_or_else(|_| panic!("{what} finishes within 120 s (hang guard)"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{what} stdout:\n{stdout}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs `cmd` (a snippet under its harness, which writes `report`) to completion.
async fn run_snippet(cmd: tokio::process::Command, report: &Path) -> Report {
    let (_, stderr) = run_to_end(cmd, "the snippet").await;
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

/// Whether [`split_sdk::python`] runs; `Err` says why not.
fn python3() -> Result<(), String> {
    match std::process::Command::new(split_sdk::python())
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{} --version: {}", split_sdk::python(), out.status)),
        Err(e) => Err(format!("cannot run {}: {e}", split_sdk::python())),
    }
}

/// A request the capture receiver got, written for the verification driver: its headers as
/// a JSON object and its raw body in `dir/name`.
fn case(
    dir: &Path,
    name: &str,
    secret: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Value {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write body");
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
        .collect();
    json!({ "secret": secret, "headers": headers, "body": path })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_signature_verification_accepts_sluice_and_refuses_forgeries() {
    let Some(_) = split_sdk::required(
        "docs_signature_verification_accepts_sluice_and_refuses_forgeries",
        python3(),
    ) else {
        return;
    };
    // Both secret forms: a Standard Webhooks `whsec_<base64>` key and a plain string.
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let plain = "my-webhook-secret";
    let s = common::Sluice::start().await;
    let capture = common::Capture::start(200).await;
    s.environment("prod", "Production", SDK_KEY).await;
    for (id, secret) in [("whsec", whsec), ("plain", plain)] {
        s.integration(
            id,
            &capture.url(&format!("/{id}")),
            &["prod"],
            json!({ "secret": secret, "flushIntervalMs": 100 }),
        )
        .await;
    }
    assert_eq!(
        s.send_bulk(SDK_KEY, &common::bulk(FLAG, "user", 3)).await,
        200
    );
    let got = capture.wait_for(2, Duration::from_secs(60)).await;
    let request = |id: &str| {
        got.iter()
            .find(|r| r.path == format!("/{id}"))
            .unwrap_or_else(|| panic!("no delivery to /{id}: {got:?}"))
            .clone()
    };
    let (signed, signed_plain) = (request("whsec"), request("plain"));
    assert!(signed.is_gzip(), "deliveries are gzipped by default");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let tampered = {
        let text = String::from_utf8(signed.plain()).expect("UTF-8 body");
        assert!(text.contains("user-1"), "{text}");
        common::gzip(text.replacen("user-1", "user-9", 1).as_bytes())
    };
    // Correctly signed, but an hour old: only the timestamp check can refuse it.
    let mut stale = signed.headers.clone();
    let id = signed.header("webhook-id").expect("webhook-id");
    let old: i64 = signed
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("numeric webhook-timestamp");
    let signature = sluice_core::signature::sign(whsec, &id, old - 3600, &signed.plain());
    stale.insert("webhook-timestamp", (old - 3600).into());
    stale.insert(
        "webhook-signature",
        signature.parse().expect("header value"),
    );
    let cases = [
        (case(dir, "a", whsec, &signed.headers, &signed.body), true),
        (
            case(dir, "b", plain, &signed_plain.headers, &signed_plain.body),
            true,
        ),
        (case(dir, "c", plain, &signed.headers, &signed.body), false),
        (case(dir, "d", whsec, &signed.headers, &tampered), false),
        (case(dir, "e", whsec, &stale, &signed.body), false),
    ];
    let cases_path = dir.join("cases.json");
    let inputs: Vec<&Value> = cases.iter().map(|(c, _)| c).collect();
    std::fs::write(&cases_path, serde_json::to_vec(&inputs).unwrap()).expect("write cases");
    let snippet_path = dir.join("verify.py");
    let code = doc_snippet("docs/delivery.md", "verify-signature-python");
    std::fs::write(&snippet_path, code).expect("write snippet");

    let mut driver = tokio::process::Command::new(split_sdk::python());
    driver
        .arg(format!("{SDK_SCRIPTS}/verify_signature_driver.py"))
        .arg(&snippet_path)
        .arg(&cases_path);
    let (stdout, stderr) = run_to_end(driver, "the verification driver").await;
    let answers: Vec<bool> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("driver output ({e}): {stderr}"));
    let expected: Vec<bool> = cases.iter().map(|(_, ok)| *ok).collect();
    assert_eq!(
        answers, expected,
        "verify_webhook on: sluice's request (whsec_ secret), sluice's request (plain secret), \
         the wrong secret, a tampered body, an old timestamp"
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
