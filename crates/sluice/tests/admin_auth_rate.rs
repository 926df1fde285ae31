//! Repeated admin authentication failures are rate-limited per client address (SPEC §6):
//! real server, real clients from two loopback addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use sluice::serve::{self, ServeOptions};
use std::net::IpAddr;
use std::time::Duration;

const TOKEN: &str = "rate-admin-token";

async fn start(dir: &std::path::Path, per_minute: u32) -> serve::Server {
    serve::start(ServeOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_path_buf(),
        admin_token: Some(TOKEN.into()),
        banner: false,
        auth_failures_per_minute: per_minute,
        ..ServeOptions::default()
    })
    .await
    .expect("sluice starts")
}

fn client_from(ip: &str) -> reqwest::Client {
    sluice::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, retry, body)
}

#[tokio::test]
async fn wrong_tokens_from_one_address_are_refused_after_the_allowance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(tmp.path(), 3).await;
    let url = server.url("/v1/projects");
    let attacker = client_from("127.0.0.1");
    let other = client_from("127.0.0.2");

    // Missing tokens are not guesses and are not counted.
    for _ in 0..5 {
        assert_eq!(get(&attacker, &url, None).await.0, 401);
    }
    for i in 0..3 {
        let (status, _, body) = get(&attacker, &url, Some(&format!("guess-{i}"))).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, retry, body) = get(&attacker, &url, Some("guess-4")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too many authentication failures");
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    // While limited, even the right token from that address waits: guessing cannot go on
    // by interleaving a known-good request.
    assert_eq!(get(&attacker, &url, Some(TOKEN)).await.0, 429);

    // Another address is not affected, and its right token works.
    let (status, _, body) = get(&other, &url, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&other, &url, Some("wrong")).await.0, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn zero_turns_the_limit_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(tmp.path(), 0).await;
    let url = server.url("/v1/projects");
    let c = client_from("127.0.0.1");
    for i in 0..40 {
        assert_eq!(get(&c, &url, Some(&format!("guess-{i}"))).await.0, 401);
    }
    assert_eq!(get(&c, &url, Some(TOKEN)).await.0, 200);
    server.shutdown().await;
}
