//! The failing destinations: what sluice says about them before healing, then healing them
//! (refusing ones get a listener on their port) and waiting for every impression.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde_json::Value;

use super::PostmortemArgs;
use super::ingest::IngestResult;
use super::kinds::Kind;
use super::receivers::{Receivers, Table, serve_on};
use super::server::Server;
use super::stats::wait_complete;

/// The state before healing.
pub(super) struct Snapshot {
    /// Integrations that are not healthy (failing and flaky ones).
    pub(super) failing: Vec<usize>,
    /// Requests each endpoint had received.
    pub(super) requests: Vec<u64>,
    /// sluice's status of each failing integration.
    pub(super) statuses: BTreeMap<usize, Value>,
    /// When each failing integration's first failed attempt failed (ms since the epoch:
    /// its start plus its duration — a timeout fails when it ends), from its attempts log.
    pub(super) first_failure_ms: BTreeMap<usize, i64>,
}

/// The end of the earliest failed attempt in an attempts list.
fn first_failure(attempts: &Value) -> Option<i64> {
    attempts
        .as_array()?
        .iter()
        .filter(|a| a["status"].as_u64() != Some(200))
        .filter_map(|a| Some(a["time"].as_i64()? + a["durationMs"].as_i64().unwrap_or(0)))
        .min()
}

impl Snapshot {
    pub(super) async fn take(server: &Server, table: &Table) -> Snapshot {
        let failing: Vec<usize> = (0..table.eps.len())
            .filter(|&i| table.eps[i].kind != Kind::Healthy)
            .collect();
        let requests = table
            .eps
            .iter()
            .map(|e| e.requests.load(Ordering::Relaxed))
            .collect();
        let statuses: Vec<(usize, Value, Option<i64>)> =
            futures_util::stream::iter(failing.clone())
                .map(|i| async move {
                    let status = server.status(i).await.unwrap_or(Value::Null);
                    let attempts = server.attempts(i).await.unwrap_or(Value::Null);
                    (i, status, first_failure(&attempts["attempts"]))
                })
                .buffer_unordered(16)
                .collect()
                .await;
        Snapshot {
            failing,
            requests,
            first_failure_ms: statuses
                .iter()
                .filter_map(|(i, _, f)| Some((*i, (*f)?)))
                .collect(),
            statuses: statuses.into_iter().map(|(i, s, _)| (i, s)).collect(),
        }
    }
}

pub(super) struct Healing {
    /// Seconds from healing until everything had arrived (None: not within the timeout).
    pub(super) drain_secs: Option<f64>,
    /// The listeners now serving the refusing destinations' ports.
    pub(super) listeners: Vec<tokio::task::JoinHandle<()>>,
}

/// Heals every failing destination and waits until every integration has every
/// acknowledged impression (at most `--heal-timeout`), then 3 s more for late redeliveries.
pub(super) async fn heal_and_drain(
    table: &Arc<Table>,
    receivers: &Receivers,
    ing: &IngestResult,
    args: &PostmortemArgs,
    failing: &[usize],
) -> anyhow::Result<Healing> {
    if failing.is_empty() {
        return Ok(Healing {
            drain_secs: None,
            listeners: Vec::new(),
        });
    }
    println!("  healing {} destinations", failing.len());
    table.heal();
    let mut listeners = Vec::new();
    for &p in &receivers.dead_ports {
        listeners.push(serve_on(listen_again(p).await?, table.clone()).await);
    }
    let expected = ing.acked_impressions(args.per_request.into());
    let progress = progress(table.clone(), failing.to_vec(), expected);
    let per_request = args.per_request as usize;
    let limit = Duration::from_secs(args.heal_timeout);
    let drain_secs = wait_complete(table, &ing.acked, per_request, limit, |_| true)
        .await
        .map(|d| d.as_secs_f64());
    progress.abort();
    match drain_secs {
        Some(s) => println!("  every integration has every impression, {s:.1} s after healing"),
        None => println!(
            "  NOT everything arrived within {} s of healing",
            args.heal_timeout
        ),
    }
    // Late redeliveries count as duplicates too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(Healing {
        drain_secs,
        listeners,
    })
}

/// Listens on a refusing destination's port (retrying while the OS still holds it).
async fn listen_again(p: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", p)).await {
            Ok(l) => return Ok(l),
            Err(e) if tries < 50 => {
                tries += 1;
                if tries == 1 {
                    eprintln!("  port {p} not free yet ({e}); retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context(format!("listening on 127.0.0.1:{p} to heal")),
        }
    }
}

/// Every 10 s: how many healed integrations have everything.
fn progress(table: Arc<Table>, idx: Vec<usize>, expected: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let done = idx
                .iter()
                .filter(|&&i| table.eps[i].received.lock().map_or(0, |r| r.unique) >= expected)
                .count();
            println!(
                "  … {done}/{} healed integrations have everything",
                idx.len()
            );
        }
    })
}
