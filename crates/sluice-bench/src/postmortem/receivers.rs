//! The receivers: a few lean axum servers on 127.0.0.1. The path `/h/{index}` names the
//! integration, and a shared table decides how each one answers and records what it
//! received (requests, batches by `webhook-id`, unique and duplicate impressions, and each
//! impression's lag, in one `u32` per impression).

use std::collections::HashSet;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use serde::Deserialize;

use super::kinds::Kind;
use super::now_ms;
use super::stats::MISSING;

/// How an endpoint answers now.
pub(super) const MODE_OK: u8 = 0;
pub(super) const MODE_HANG: u8 = 1;
pub(super) const MODE_500: u8 = 2;
pub(super) const MODE_SLOW: u8 = 3;
pub(super) const MODE_FLAKY: u8 = 4;
/// A flaky endpoint fails the first two of every this many requests it receives (one
/// batch's attempt and its retry; with one request per batch otherwise, that is one batch
/// in 15).
pub(super) const FLAKY_EVERY: u64 = 16;

#[derive(Default)]
pub(super) struct Received {
    /// `webhook-id`s of batches answered 200.
    pub(super) batches: HashSet<Box<str>>,
    pub(super) duplicate_batches: u64,
    /// Lag in ms of each impression (by index), [`MISSING`] until received.
    pub(super) lags: Vec<u32>,
    pub(super) unique: u64,
    pub(super) duplicates: u64,
    /// Impressions whose key this bench did not write (never expected).
    pub(super) foreign: u64,
}

pub(super) struct Endpoint {
    pub(super) kind: Kind,
    pub(super) mode: AtomicU8,
    pub(super) requests: AtomicU64,
    pub(super) received: Mutex<Received>,
}

pub(super) struct Table {
    pub(super) eps: Vec<Endpoint>,
    pub(super) per_request: u64,
    /// Lets hanging handlers go when the run ends.
    pub(super) closing: AtomicBool,
    /// How long a slow endpoint takes to answer: sluice's request timeout (read from the
    /// created integrations) plus 2 s. Set before any delivery.
    pub(super) slow_ms: AtomicU64,
}

impl Table {
    pub(super) fn new(kinds: &[Kind], failing: bool, expected: usize, per_request: u32) -> Table {
        let eps = kinds
            .iter()
            .map(|&k| {
                let kind = if failing { k } else { Kind::Healthy };
                let mode = match kind {
                    Kind::Healthy | Kind::Refuse => MODE_OK,
                    Kind::Hang => MODE_HANG,
                    Kind::Status500 => MODE_500,
                    Kind::Slow => MODE_SLOW,
                    Kind::Flaky => MODE_FLAKY,
                };
                Endpoint {
                    kind,
                    mode: AtomicU8::new(mode),
                    requests: AtomicU64::new(0),
                    received: Mutex::new(Received {
                        lags: vec![MISSING; expected],
                        ..Received::default()
                    }),
                }
            })
            .collect();
        Table {
            eps,
            per_request: u64::from(per_request),
            closing: AtomicBool::new(false),
            slow_ms: AtomicU64::new(0),
        }
    }

    /// Unique impressions received by all endpoints.
    pub(super) fn delivered(&self) -> u64 {
        self.eps
            .iter()
            .map(|e| e.received.lock().map_or(0, |r| r.unique))
            .sum()
    }

    pub(super) fn heal(&self) {
        for ep in &self.eps {
            ep.mode.store(MODE_OK, Ordering::Relaxed);
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Imp<'a> {
    #[serde(borrow)]
    pub(super) key: &'a str,
}

/// `{sent_ms}-{seq}-{i}` → (sent_ms, index).
pub(super) fn parse_key(key: &str, per_request: u64) -> Option<(i64, usize)> {
    let mut it = key.splitn(3, '-');
    let sent: i64 = it.next()?.parse().ok()?;
    let seq: u64 = it.next()?.parse().ok()?;
    let i: u64 = it.next()?.parse().ok()?;
    if i >= per_request {
        return None;
    }
    Some((sent, (seq * per_request + i) as usize))
}

pub(super) async fn hook(
    State(t): State<Arc<Table>>,
    Path(idx): Path<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let recv_ms = now_ms();
    let Some(ep) = t.eps.get(idx) else {
        return StatusCode::NOT_FOUND;
    };
    let seen = ep.requests.fetch_add(1, Ordering::Relaxed);
    match ep.mode.load(Ordering::Relaxed) {
        MODE_FLAKY if seen % FLAKY_EVERY < 2 => return StatusCode::INTERNAL_SERVER_ERROR,
        MODE_OK | MODE_FLAKY => {}
        MODE_500 => return StatusCode::INTERNAL_SERVER_ERROR,
        MODE_SLOW => {
            tokio::time::sleep(Duration::from_millis(t.slow_ms.load(Ordering::Relaxed))).await;
            // Too late: sluice gave up on this request; what it carried is not recorded.
            return StatusCode::OK;
        }
        _ => {
            // Hang: never answer. The future is dropped when sluice closes the connection;
            // should it not be, let it go once healed (sluice gave up long before).
            while ep.mode.load(Ordering::Relaxed) == MODE_HANG && !t.closing.load(Ordering::Relaxed)
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let inflated;
    let json: &[u8] = if gzip {
        let mut out = Vec::with_capacity(body.len() * 8);
        if flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return StatusCode::BAD_REQUEST;
        }
        inflated = out;
        &inflated
    } else {
        &body
    };
    let Ok(imps) = serde_json::from_slice::<Vec<Imp<'_>>>(json) else {
        return StatusCode::BAD_REQUEST;
    };
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut r = ep.received.lock().unwrap_or_else(|e| e.into_inner());
    if !r.batches.insert(webhook_id.into()) {
        r.duplicate_batches += 1;
    }
    for imp in &imps {
        let Some((sent, index)) = parse_key(imp.key, t.per_request) else {
            r.foreign += 1;
            continue;
        };
        if index >= r.lags.len() {
            r.lags.resize(index + 1, MISSING);
        }
        if r.lags[index] == MISSING {
            r.lags[index] = (recv_ms - sent).clamp(0, i64::from(u32::MAX - 1)) as u32;
            r.unique += 1;
        } else {
            r.duplicates += 1;
        }
    }
    StatusCode::OK
}

pub(super) fn router(t: Arc<Table>) -> Router {
    Router::new()
        .route("/h/{idx}", post(hook))
        .layer(DefaultBodyLimit::max(256 << 20))
        .with_state(t)
}

/// The receiver servers of a run, and the ports of the refusing destinations (nothing
/// listens there until they heal).
pub(super) struct Receivers {
    pub(super) servers: Vec<tokio::task::JoinHandle<()>>,
    /// Each integration's destination URL.
    pub(super) url_of: Vec<String>,
    pub(super) dead_ports: Vec<u16>,
}

impl Receivers {
    /// `n` servers on 127.0.0.1 (integration `i` is served by server `i mod n`); a refusing
    /// integration gets a port where nothing listens.
    pub(super) async fn start(n: usize, table: &Arc<Table>) -> anyhow::Result<Receivers> {
        let mut servers = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..n.max(1) {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(l.local_addr()?);
            servers.push(serve_on(l, table.clone()).await);
        }
        let count = table.eps.len();
        let refusing: Vec<usize> = (0..count)
            .filter(|&i| table.eps[i].kind == Kind::Refuse)
            .collect();
        let dead_ports = dead_ports(refusing.len())?;
        let mut url_of: Vec<String> = (0..count)
            .map(|i| format!("http://{}/h/{i}", addrs[i % addrs.len()]))
            .collect();
        for (&i, &p) in refusing.iter().zip(&dead_ports) {
            url_of[i] = format!("http://127.0.0.1:{p}/h/{i}");
        }
        Ok(Receivers {
            servers,
            url_of,
            dead_ports,
        })
    }

    /// Stops the servers and the listeners opened when healing.
    pub(super) fn stop(self, healed: Vec<tokio::task::JoinHandle<()>>) {
        for h in self.servers.into_iter().chain(healed) {
            h.abort();
        }
    }
}

pub(super) async fn serve_on(
    listener: tokio::net::TcpListener,
    t: Arc<Table>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(t)).await;
    })
}

/// Free ports on 127.0.0.1 below the ephemeral range (so that no outgoing connection is
/// given one as its local port while nothing listens there, and no `:0` bind takes it).
pub(super) fn dead_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768);
    let start = low.saturating_sub(12_000).max(1025) + (std::process::id() % 4000) as u16;
    let mut out = Vec::with_capacity(n);
    let mut p = start;
    while out.len() < n {
        if p >= low {
            bail!("no {n} free ports between {start} and {low}");
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            out.push(p);
        }
        p += 1;
    }
    Ok(out)
}
