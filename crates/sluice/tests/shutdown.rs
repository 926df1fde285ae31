//! Graceful shutdown of an in-process server is bounded: an export still streaming to a
//! client that does not read is cut after `shutdown_grace`, the server stops, and the log
//! is closed (off the async workers).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use serde_json::{Value, json};
use sluice::serve::{self, ServeOptions};
use sluice_store::{AppendEntry, ImpressionLog as _, StoreError, Transient};
use std::time::Duration;

const TOKEN: &str = "shutdown-test-admin-token";
const KEY: &str = "sdk-key-shutdown-0001";

/// Bounds a hang only: a passing run never waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_an_export_that_outlives_the_grace_period() {
    sluice::install_crypto_provider();
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve::start(ServeOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: tmp.path().to_path_buf(),
        admin_token: Some(TOKEN.into()),
        banner: false,
        shutdown_grace: Duration::from_millis(200),
        ..ServeOptions::default()
    })
    .await
    .expect("sluice starts");
    let client = reqwest::Client::new();
    // Long names are repeated in every exported row: a few ingested impressions make an
    // export far larger than the socket buffers of a client that does not read.
    let resp = client
        .post(server.url("/v1/environments"))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "big", "name": "E".repeat(180), "sdkKeys": [KEY] }))
        .send()
        .await
        .expect("create environment");
    assert!(resp.status().is_success());
    for r in 0..40 {
        let items: Vec<Value> = (0..1000)
            .map(|i| json!({ "k": format!("user-{r}-{i}"), "t": "on", "m": 1_700_000_000_000i64 + i, "c": 1, "r": "default rule" }))
            .collect();
        let resp = client
            .post(server.url("/api/testImpressions/bulk"))
            .bearer_auth(KEY)
            .header("SplitSDKVersion", "python-10.7.0")
            .header("SplitSDKMachineName", "m".repeat(195))
            .json(&json!([{ "f": "flag", "i": items }]))
            .send()
            .await
            .expect("ingest");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let mut export = client
        .get(server.url("/v1/environments/big/impressions?format=ndjson"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("export starts");
    assert_eq!(export.status().as_u16(), 200);
    assert!(export.chunk().await.expect("first chunk").is_some());

    let log = server.segment_log();
    tokio::time::timeout(HANG_GUARD, server.shutdown())
        .await
        .expect("shutdown ends although the export is not read");
    let rest = async {
        loop {
            match export.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    assert!(
        tokio::time::timeout(HANG_GUARD, rest)
            .await
            .expect("the export ends")
            .is_err(),
        "the cut export ends as a truncated transfer, not a complete one"
    );
    let closed = log
        .append(
            "big",
            AppendEntry {
                payload: vec![1],
                count: 1,
                min_time: 0,
                max_time: 0,
            },
        )
        .await;
    assert!(
        matches!(
            closed,
            Err(StoreError::Unavailable {
                cause: Transient::Closed,
                ..
            })
        ),
        "the log was closed: {closed:?}"
    );
}
