//! How store errors answer over HTTP, against the API served on 127.0.0.1:0 with the
//! in-memory store: a permanent error (an entry over the log's size limit) is a 413 with a
//! JSON message and no `Retry-After`; a transient one is a 503 with `Retry-After`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use serde_json::{Value, json};
use sluice_api::auth::token_digest;
use sluice_api::body::BodyLimits;
use sluice_api::{ApiConfig, Inner};
use sluice_core::model::{DEFAULT_PROJECT, Environment};
use sluice_delivery::{DeliveryEngine, EngineOptions};
use sluice_store::memory::{Fault, MemoryLog, MemoryMeta, Op};
use sluice_store::{Catalog, ImpressionLog};
use std::net::SocketAddr;
use std::sync::Arc;

const KEY: &str = "sdk-key-store-errors";

async fn serve(log: Arc<MemoryLog>) -> String {
    let catalog = Arc::new(
        Catalog::load(Arc::new(MemoryMeta::new()))
            .await
            .expect("catalog"),
    );
    catalog
        .create_environment(Environment {
            id: "prod".into(),
            name: "Production".into(),
            project: DEFAULT_PROJECT.into(),
            sdk_keys: vec![KEY.into()],
        })
        .await
        .expect("environment");
    let dyn_log: Arc<dyn ImpressionLog> = log;
    let engine = DeliveryEngine::new(catalog.clone(), dyn_log.clone(), EngineOptions::default());
    let state = Inner::new(
        catalog,
        dyn_log,
        engine,
        ApiConfig {
            per_integration_metrics: true,
            admin_token_digest: token_digest("admin"),
            limits: BodyLimits::default(),
            ingest_rate_per_env: None,
            auth_failures_per_minute: 0,
        },
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = sluice_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn ingest(base: &str, n: usize) -> (u16, Option<String>, Value) {
    // reqwest is built without a default TLS provider in this workspace; plain HTTP
    // still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let items: Vec<Value> = (0..n)
        .map(|i| json!({ "k": format!("user-{i}"), "t": "on", "m": 1_700_000_000_000i64 + i as i64, "c": 1, "r": "default rule" }))
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/testImpressions/bulk"))
        .bearer_auth(KEY)
        .header("SplitSDKVersion", "python-10.7.0")
        .json(&json!([{ "f": "flag", "i": items }]))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

#[tokio::test]
async fn an_oversized_entry_is_413_with_a_json_message_not_503() {
    let log = Arc::new(MemoryLog::new().with_max_entry_bytes(2048));
    let base = serve(log.clone()).await;
    let (status, _, _) = ingest(&base, 1).await;
    assert_eq!(status, 200, "a small request is stored");
    let (status, retry_after, body) = ingest(&base, 500).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(retry_after, None, "retrying can never succeed");
    assert_eq!(body["error"], "payload too large");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("limit of 2048 bytes")),
        "{body}"
    );
    assert_eq!(log.bounds("prod").await.expect("bounds").next, 1);
}

#[tokio::test]
async fn a_transient_store_failure_is_503_with_retry_after() {
    let log = Arc::new(MemoryLog::new());
    let base = serve(log.clone()).await;
    log.faults().fail_next(Op::Append, 1, Fault::Fail);
    let (status, retry_after, body) = ingest(&base, 1).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(body["error"], "storage unavailable");
    let (status, _, _) = ingest(&base, 1).await;
    assert_eq!(status, 200, "the retry succeeds");
}
