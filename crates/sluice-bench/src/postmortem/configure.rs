//! sluice's configuration for a run: the environment and one integration per destination,
//! created through `POST /v1/integrations/bulk` (1000 per request) and timed, then waiting
//! until every integration's worker holds its position.
//!
//! The integrations carry no `protection`: the run measures sluice's default protection
//! settings. What the bench sets is only what the scenario needs: the URL, the environment,
//! and the flush interval and batch size when given on the command line.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::server::Server;
use super::{ENV, PostmortemArgs, SDK_KEY, integration_id};

/// Integrations per bulk request (the API's maximum).
const PER_BULK: usize = 1000;

/// What configuring found out.
pub(super) struct Configured {
    /// Seconds to create every integration (the bulk requests alone).
    pub(super) create_secs: f64,
    /// Seconds until every integration's worker held its position.
    pub(super) started_secs: f64,
    /// The default protection settings sluice filled in (from the first created one).
    pub(super) protection: Value,
    /// The flush interval the integrations have (given or sluice's default).
    pub(super) flush_interval_ms: u64,
}

/// Creates the environment and the integrations (integration `i` delivers to `url_of[i]`)
/// and waits until all of them have started.
pub(super) async fn integrations(
    server: &Server,
    args: &PostmortemArgs,
    url_of: &[String],
) -> anyhow::Result<Configured> {
    let admin = server.proc.admin();
    admin
        .create_environment(&json!({"id": ENV, "name": "Production", "sdkKeys": [SDK_KEY]}))
        .await?;
    let t_cfg = Instant::now();
    let mut first: Option<Value> = None;
    let items: Vec<Value> = url_of
        .iter()
        .enumerate()
        .map(|(i, url)| integration_body(args, i, url))
        .collect();
    for chunk in items.chunks(PER_BULK) {
        let answer = admin
            .create_integrations(chunk)
            .await
            .context("creating integrations")?;
        if answer["failed"].as_u64() != Some(0) {
            let refused = answer["results"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["status"] != 201))
                .cloned()
                .unwrap_or(Value::Null);
            bail!(
                "{} of {} integrations were refused, e.g. {refused}",
                answer["failed"],
                chunk.len()
            );
        }
        if first.is_none() {
            first = answer["results"][0]["integration"]
                .as_object()
                .map(|o| Value::Object(o.clone()));
        }
    }
    let create_secs = t_cfg.elapsed().as_secs_f64();
    wait_started(server, url_of.len()).await?;
    let started_secs = t_cfg.elapsed().as_secs_f64();
    let first = first.unwrap_or(Value::Null);
    let configured = Configured {
        create_secs,
        started_secs,
        protection: first["protection"].clone(),
        flush_interval_ms: first["flushIntervalMs"].as_u64().unwrap_or(0),
    };
    println!(
        "  created {} integrations in {create_secs:.1} s (all started after {started_secs:.1} s); flushIntervalMs {}; ingesting {} impressions/s ({} per request) for {} s",
        url_of.len(),
        configured.flush_interval_ms,
        args.rate,
        args.per_request,
        args.seconds
    );
    Ok(configured)
}

fn integration_body(args: &PostmortemArgs, i: usize, url: &str) -> Value {
    let mut body = json!({
        "id": integration_id(i), "name": integration_id(i), "url": url,
        "environments": [ENV],
    });
    if let Some(ms) = args.flush_interval_ms {
        body["flushIntervalMs"] = ms.into();
    }
    if let Some(n) = args.max_batch_impressions {
        body["maxBatchImpressions"] = n.into();
    }
    body
}

/// Every worker must hold its position before the first impression, or it would start
/// after it (an integration receives impressions from the moment its worker starts).
/// Reads the whole fleet's status a page of 1000 at a time.
async fn wait_started(server: &Server, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let started = started_count(server).await?;
        if started >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {started} of {n} integrations started within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Integrations whose status shows a position in the environment.
async fn started_count(server: &Server) -> anyhow::Result<usize> {
    let admin = server.proc.admin();
    let mut cursor: Option<String> = None;
    let mut started = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/integrations/status?limit=1000&cursor={c}"),
            None => "/v1/integrations/status?limit=1000".to_owned(),
        };
        let page = admin.get(&path).await?;
        started += page["integrations"].as_array().map_or(0, |a| {
            a.iter().filter(|s| s["cursors"].get(ENV).is_some()).count()
        });
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(started),
        }
    }
}
