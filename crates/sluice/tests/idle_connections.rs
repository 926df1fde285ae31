//! Outbound sockets follow the requests in flight, not the number of integrations (issue 9,
//! "cheap integrations"): integrations share one connection pool keyed by destination, and
//! an idle connection is closed after `connection-idle-timeout-ms`. A real `sluice serve`
//! child with many integrations on a few receivers delivers one batch each; its open file
//! descriptors then fall back to where they were before any delivery once the (short,
//! configured) idle timeout has passed. Counts only, with bounded waits — no timing
//! thresholds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::{Capture, http};
use serde_json::{Value, json};
use sluice_testkit as testkit;
use std::time::Duration;

const SDK_KEY: &str = "sdk-key-idle-connections";
const INTEGRATIONS: usize = 60;
const RECEIVERS: usize = 3;

/// Socket file descriptors of process `pid`.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    })
}

/// Established TCP connections to any of `ports` on 127.0.0.1 (from `/proc/net/tcp`: the
/// client ends of connections to the receivers, i.e. sluice's outbound connections).
fn connections_to(ports: &[u16]) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let remote_port = cols
                .get(2)
                .and_then(|a| a.split(':').nth(1))
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            cols.get(3) == Some(&"01") && remote_port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

/// Waits (at most `limit`) until `f()` holds; false if it never did.
async fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

#[tokio::test]
async fn idle_connections_are_closed_and_fds_do_not_track_integrations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("sluice.toml");
    std::fs::write(&config, "connection-idle-timeout-ms = 1000\n").expect("config");
    let mut opts = testkit::LaunchOptions::new(env!("CARGO_BIN_EXE_sluice"));
    opts.data_dir = Some(tmp.path().join("data"));
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    let p = testkit::SluiceProcess::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = p.admin();
    admin
        .create_environment(&json!({"id": "prod", "name": "Prod", "sdkKeys": [SDK_KEY]}))
        .await
        .expect("environment");
    let receivers =
        futures_util::future::join_all((0..RECEIVERS).map(|_| Capture::start(200))).await;
    let items: Vec<Value> = (0..INTEGRATIONS)
        .map(|i| {
            json!({"id": format!("i{i:03}"), "name": format!("i{i:03}"),
                   "url": receivers[i % RECEIVERS].url(&format!("/h/{i}")),
                   "environments": ["prod"], "flushIntervalMs": 100})
        })
        .collect();
    let created = admin
        .create_integrations(&items)
        .await
        .expect("bulk create");
    assert_eq!(created["created"], INTEGRATIONS, "{created}");

    // Every integration has started (holds a position), nothing has been sent yet.
    let mut ready = false;
    for _ in 0..300 {
        let page = admin
            .get("/v1/integrations/status?limit=1000")
            .await
            .expect("fleet status");
        let n = page["integrations"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|s| s["cursors"].get("prod").is_some())
                .count()
        });
        if n == INTEGRATIONS {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "every integration started");
    let pid = p.pid();
    let ports: Vec<u16> = receivers.iter().map(|r| r.addr.port()).collect();
    let sockets_before = open_sockets(pid);
    assert_eq!(connections_to(&ports), 0, "nothing delivered yet");

    let ingest = http();
    let body =
        json!([{"f": "flag", "i": [{"k": "k1", "t": "on", "m": 1_700_000_000_000i64, "c": 1}]}]);
    let r = ingest
        .post(p.url("/api/testImpressions/bulk"))
        .bearer_auth(SDK_KEY)
        .header("SplitSDKVersion", "python-10.7.0")
        .json(&body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 200);
    drop(r);
    drop(ingest);

    // Every integration delivers its batch over pooled connections...
    let delivered = within(Duration::from_secs(60), || {
        receivers.iter().map(|r| r.requests().len()).sum::<usize>() >= INTEGRATIONS
    })
    .await;
    assert!(delivered, "every integration delivered");
    let open_after_delivery = connections_to(&ports);
    // ...which are closed once idle for longer than the idle timeout (1 s here): no socket
    // stays open per integration (before issue 9: one per integration, for 60 s).
    let closed = within(Duration::from_secs(30), || connections_to(&ports) == 0).await;
    assert!(
        closed,
        "{} connections to the receivers still open long after the 1 s idle timeout ({open_after_delivery} right after delivery)",
        connections_to(&ports)
    );
    // And the process holds no more sockets than before it delivered anything (the
    // ingest client's connection, dropped above, is closed by then too).
    let back = within(Duration::from_secs(30), || {
        open_sockets(pid) <= sockets_before
    })
    .await;
    assert!(
        back,
        "sluice holds {} sockets, {sockets_before} before delivering",
        open_sockets(pid)
    );
}
