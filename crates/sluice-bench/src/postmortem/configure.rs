//! sluice's configuration for a run: the environment and one integration per destination,
//! then waiting until every integration's worker holds its position.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::server::Server;
use super::{
    CONNECT_TIMEOUT_MS, ENV, FAILURE_RATE_PERCENT, INITIAL_COOLDOWN_MS, MAX_COOLDOWN_MS,
    MIN_ATTEMPTS, PostmortemArgs, REQUEST_TIMEOUT_MS, SDK_KEY, WINDOW, integration_id,
};

/// Creates the environment and the integrations (integration `i` delivers to `url_of[i]`)
/// and waits until all of them have started.
pub(super) async fn integrations(
    server: &Server,
    args: &PostmortemArgs,
    url_of: &[String],
) -> anyhow::Result<()> {
    let admin = server.proc.admin();
    admin
        .create_environment(&json!({"id": ENV, "name": "Production", "sdkKeys": [SDK_KEY]}))
        .await?;
    let t_cfg = Instant::now();
    let results: Vec<Result<Value, sluice_client::ClientError>> =
        futures_util::stream::iter(url_of.iter().enumerate())
            .map(|(i, url)| {
                let body = integration_body(args, i, url);
                async move { admin.create_integration(&body).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
    for r in results {
        r?;
    }
    wait_started(server, url_of.len()).await?;
    println!(
        "  configured {} integrations in {:.1} s; ingesting {} impressions/s ({} per request) for {} s",
        url_of.len(),
        t_cfg.elapsed().as_secs_f64(),
        args.rate,
        args.per_request,
        args.seconds
    );
    Ok(())
}

fn integration_body(args: &PostmortemArgs, i: usize, url: &str) -> Value {
    let protection = json!({
        "window": WINDOW, "minAttempts": MIN_ATTEMPTS, "failureRatePercent": FAILURE_RATE_PERCENT,
        "initialCooldownMs": INITIAL_COOLDOWN_MS, "maxCooldownMs": MAX_COOLDOWN_MS,
        "connectTimeoutMs": CONNECT_TIMEOUT_MS, "requestTimeoutMs": REQUEST_TIMEOUT_MS,
    });
    json!({
        "id": integration_id(i), "name": integration_id(i), "url": url,
        "environments": [ENV], "flushIntervalMs": args.flush_interval_ms,
        "maxBatchImpressions": args.max_batch_impressions, "protection": protection,
    })
}

/// Every worker must hold its position before the first impression, or it would start
/// after it (an integration receives impressions from the moment its worker starts).
async fn wait_started(server: &Server, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<usize> = (0..n).collect();
    while !pending.is_empty() {
        let still: Vec<Option<usize>> = futures_util::stream::iter(pending.clone())
            .map(|i| async move {
                match server.status(i).await {
                    Ok(v) if v["cursors"].get(ENV).is_some() => None,
                    _ => Some(i),
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        pending = still.into_iter().flatten().collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} integrations never started (e.g. {})",
                pending.len(),
                integration_id(pending[0])
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
