//! `sluice demo`, bounded, as a user runs it (the real binary, stdout not a terminal): it
//! prints the dashboard URL and how to sign in, frames with the ingest row, the
//! environments column, a paused destination's countdown to its next probe and its last
//! error, and ends with a summary in which nothing was lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_demo_ends_with_a_summary_where_nothing_is_lost() {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "demo",
            "--seconds",
            "12",
            "--heal-after",
            "8",
            "--rate",
            "400",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sluice demo starts");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the demo ends on its own")
        .expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains('\x1b'),
        "NO_COLOR and no terminal: no escapes\n{stdout}"
    );
    assert!(
        stdout.contains("sign in with the admin token demo-admin-token"),
        "{stdout}"
    );
    assert!(stdout.contains("dashboard: http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("impressions/s   latency p50"), "{stdout}");
    assert!(stdout.contains("environments"), "{stdout}");
    assert!(stdout.contains("web,mobile"), "{stdout}");
    assert!(
        stdout.contains("probe in "),
        "a paused destination's countdown\n{stdout}"
    );
    assert!(
        stdout.contains("last error: destination answered HTTP 500"),
        "{stdout}"
    );
    // At the first frame at or after 8 s (a loaded machine may skip a second).
    assert!(stdout.contains("HEALED at t="), "{stdout}");
    let summary = stdout
        .split("\n summary (ran ")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    assert!(summary.contains("lost       0\n"), "{summary}");
    assert!(summary.contains("errors"), "{summary}");
    let delivered: u64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("delivered  "))
        .and_then(|l| l.split(' ').next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no delivered line: {summary}"));
    assert!(delivered > 0, "{summary}");
    let pauses: u64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("pauses     "))
        .and_then(|l| l.split(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or_else(|| panic!("no pauses line: {summary}"));
    assert!(pauses >= 1, "{summary}");
}
