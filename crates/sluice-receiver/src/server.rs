//! The HTTP side: routes, the delivery handler, and the handle a running receiver is driven by.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ReceiverConfig;
use super::decode::{Job, Parsed, Reject};
use super::faults::{FaultMode, Plan, huge_body};
use super::record::{Outcome, ReceivedAlert, ReceivedImpression, RequestRecord};
use super::stats::{Board, Caps, Stats};

/// Bodies larger than this (as sent) are decoded on a blocking thread, so a big batch never
/// stalls the runtime's workers.
const INLINE_DECODE_BYTES: usize = 64 * 1024;
/// Longest `webhook-id` accepted.
const MAX_WEBHOOK_ID_BYTES: usize = 256;
/// How long [`ReceiverHandle::shutdown`] waits for connections to finish before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Headers not copied into [`RequestRecord::other_headers`].
const KNOWN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "accept",
    "accept-encoding",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
];
const MAX_OTHER_HEADERS: usize = 32;
const MAX_HEADER_VALUE_BYTES: usize = 256;

/// State shared by the handlers and the handle.
pub(crate) struct Shared {
    secret: Option<Arc<str>>,
    keep: bool,
    quiet: bool,
    max_body_bytes: usize,
    max_skew: Option<Duration>,
    mode: Mutex<FaultMode>,
    board: Mutex<Board>,
    /// Bumped on every change to the board, for [`ReceiverHandle::wait_until`].
    changed: watch::Sender<u64>,
    /// Set to `true` once to stop: hung and slow requests give up, the server drains.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn board(&self) -> MutexGuard<'_, Board> {
        // A panic while holding the lock cannot leave the counters inconsistent in a way that
        // matters for a test receiver, so a poisoned lock is simply taken over.
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_board<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        let out = f(&mut self.board());
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    fn mode(&self) -> FaultMode {
        self.mode.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_mode(&self, mode: FaultMode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn stopped(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// A running receiver. Dropping it stops the receiver too (without waiting); prefer
/// [`ReceiverHandle::shutdown`].
pub struct ReceiverHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ReceiverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ReceiverHandle {
    /// The address the receiver listens on (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`; an unspecified listen address (`0.0.0.0`, `::`) is given as
    /// loopback. `path` gets a leading `/` if it lacks one.
    pub fn url(&self, path: &str) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!(
            "http://{}{slash}{path}",
            SocketAddr::new(ip, self.addr.port())
        )
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.board().stats()
    }

    /// The current fault mode.
    pub fn mode(&self) -> FaultMode {
        self.shared.mode()
    }

    /// Switches the fault mode; applies to requests arriving from now on. An invalid status
    /// (see [`FaultMode::validate`]) is answered as 500.
    pub fn set_mode(&self, mode: FaultMode) {
        self.shared.set_mode(mode);
    }

    /// Kept impressions, oldest first (empty unless `keep_impressions`).
    pub fn impressions(&self) -> Vec<ReceivedImpression> {
        self.shared.board().impressions(usize::MAX)
    }

    /// Operator alerts received (first deliveries), oldest first; at most 10,000.
    pub fn alerts(&self) -> Vec<ReceivedAlert> {
        self.shared.board().alerts()
    }

    /// The request log, oldest first (at most `request_log_capacity` entries).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.board().requests(usize::MAX)
    }

    /// Forgets all counters, seen `webhook-id`s, the request log and kept impressions.
    pub fn reset(&self) {
        self.shared.with_board(Board::reset);
    }

    /// Waits until `pred` holds for the stats, up to `timeout`. Returns the stats that satisfied
    /// it, or `Err` with the last stats on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, Stats> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.shared.changed.subscribe();
        loop {
            let stats = self.stats();
            if pred(&stats) {
                return Ok(stats);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let stats = self.stats();
                    return if pred(&stats) { Ok(stats) } else { Err(stats) };
                }
            }
        }
    }

    /// Stops accepting, releases hung and slow requests, and waits (up to 5 s) for open
    /// connections to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ReceiverHandle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Binds and serves; see [`super::start`].
pub(crate) async fn start(cfg: ReceiverConfig) -> anyhow::Result<ReceiverHandle> {
    if let Err(e) = cfg.mode.validate() {
        anyhow::bail!("invalid fault mode: {e}");
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    let shared = Arc::new(Shared {
        secret: cfg.secret.as_deref().map(Arc::from),
        keep: cfg.keep_impressions,
        quiet: cfg.quiet,
        max_body_bytes: cfg.max_body_bytes,
        max_skew: cfg.max_timestamp_skew,
        mode: Mutex::new(cfg.mode.clone()),
        board: Mutex::new(Board::new(Caps {
            request_log: cfg.request_log_capacity,
            dedupe: cfg.dedupe_capacity,
            kept: if cfg.keep_impressions {
                cfg.max_kept_impressions
            } else {
                0
            },
        })),
        changed: watch::Sender::new(0),
        shutdown: watch::Sender::new(false),
    });
    let app = Router::new()
        .route("/stats", get(get_stats).fallback(deliver))
        .route("/mode", get(get_mode).post(post_mode))
        .route("/impressions", get(get_impressions).fallback(deliver))
        .route("/requests", get(get_requests).fallback(deliver))
        .route("/alerts", get(get_alerts).fallback(deliver))
        .fallback(deliver)
        .with_state(shared.clone());
    let listener = listener.tap_io(|tcp| {
        // Small answers must not wait for Nagle; failure only costs latency.
        let _ = tcp.set_nodelay(true);
    });
    let stop = shared.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.stopped().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(target: "sluice::receiver", error = %e, "receiver stopped");
        }
    });
    Ok(ReceiverHandle {
        shared,
        addr,
        task: Some(task),
    })
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn json_error(status: StatusCode, error: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "error": error, "detail": detail });
    (status, axum::Json(body)).into_response()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn new_record(method: &Method, path: &str, headers: &HeaderMap, t0: Instant) -> RequestRecord {
    let text = |name: &str| header_str(headers, name).map(|v| truncated(v, MAX_HEADER_VALUE_BYTES));
    let other_headers = headers
        .iter()
        .filter(|(name, _)| !KNOWN_HEADERS.contains(&name.as_str()))
        .take(MAX_OTHER_HEADERS)
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            (
                name.as_str().to_owned(),
                truncated(&value, MAX_HEADER_VALUE_BYTES),
            )
        })
        .collect();
    RequestRecord {
        received_at: t0,
        received_unix_ms: now_unix_ms(),
        method: method.as_str().to_owned(),
        path: truncated(path, MAX_HEADER_VALUE_BYTES),
        webhook_id: text("webhook-id"),
        webhook_timestamp: header_str(headers, "webhook-timestamp")
            .and_then(|v| v.trim().parse().ok()),
        signature_present: headers.contains_key("webhook-signature"),
        signature_ok: None,
        user_agent: text("user-agent"),
        content_type: text("content-type"),
        content_encoding: text("content-encoding"),
        other_headers,
        body_bytes: 0,
        decoded_bytes: None,
        impressions: None,
        status: None,
        outcome: Outcome::Delivered,
        handling_time: Duration::ZERO,
    }
}

/// `Some(true)` gzip, `Some(false)` none/identity, `None` anything else.
fn encoding_is_gzip(headers: &HeaderMap) -> Option<bool> {
    if headers.get_all(header::CONTENT_ENCODING).iter().count() > 1 {
        return None;
    }
    match header_str(headers, "content-encoding").map(str::trim) {
        None | Some("") => Some(false),
        Some(e) if e.eq_ignore_ascii_case("identity") => Some(false),
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => Some(true),
        Some(_) => None,
    }
}

/// Exactly one `Content-Type`, and it is `application/json` (parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    if headers.get_all(header::CONTENT_TYPE).iter().count() != 1 {
        return false;
    }
    header_str(headers, "content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

enum ReadFail {
    TooLarge,
    Broken(String),
}

/// Reads a whole body, refusing more than `cap` bytes.
async fn read_capped(body: Body, cap: usize, hint: Option<usize>) -> Result<Bytes, ReadFail> {
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadFail::Broken(e.to_string()))?;
        total = total.saturating_add(chunk.len());
        if total > cap {
            return Err(ReadFail::TooLarge);
        }
        if chunk.is_empty() {
            continue;
        }
        if first.is_none() && buf.is_empty() {
            first = Some(chunk);
            continue;
        }
        if let Some(f) = first.take() {
            buf.reserve(hint.unwrap_or(0).min(cap).max(total));
            buf.extend_from_slice(&f);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads and discards a body (at most `cap` bytes); returns how many bytes were read.
async fn drain(body: Body, cap: usize) -> u64 {
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        total = total.saturating_add(chunk.len());
        if total > cap {
            break;
        }
    }
    total as u64
}

/// Decrements the "hanging now" gauge when a hung request ends (the client went away and its
/// connection task dropped the handler, or the receiver shut down).
struct HangGuard(Arc<Shared>);

impl HangGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.with_board(|b| b.hanging(true));
        HangGuard(shared.clone())
    }
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        self.0.with_board(|b| b.hanging(false));
    }
}

/// Finishes a request: logs it, counts it, and builds the answer.
fn answer(
    sh: &Shared,
    mut rec: RequestRecord,
    status: StatusCode,
    outcome: Outcome,
    response: Response,
) -> Response {
    rec.status = Some(status.as_u16());
    rec.outcome = outcome;
    rec.handling_time = rec.received_at.elapsed();
    if !matches!(
        outcome,
        Outcome::Delivered | Outcome::Slack | Outcome::Alert | Outcome::Duplicate | Outcome::Fault
    ) {
        let id = rec.webhook_id.as_deref().unwrap_or("-");
        if sh.quiet {
            tracing::debug!(target: "sluice::receiver", status = status.as_u16(), ?outcome, webhook_id = id, path = %rec.path, "delivery refused");
        } else {
            tracing::info!(target: "sluice::receiver", status = status.as_u16(), ?outcome, webhook_id = id, path = %rec.path, "delivery refused");
        }
    }
    sh.with_board(|b| b.finish(rec));
    let mut response = response;
    *response.status_mut() = status;
    response
}

/// 413: the body is over `cap` bytes (as sent or inflated).
fn too_large(sh: &Shared, rec: RequestRecord, cap: usize) -> Response {
    refuse(
        sh,
        rec,
        StatusCode::PAYLOAD_TOO_LARGE,
        Outcome::TooLarge,
        &format!("body over {cap} bytes"),
    )
}

fn refuse(
    sh: &Shared,
    rec: RequestRecord,
    status: StatusCode,
    outcome: Outcome,
    detail: &str,
) -> Response {
    let error = match outcome {
        Outcome::BadSignature => "bad signature",
        Outcome::BadBody => "invalid body",
        Outcome::BadHeaders => "missing or malformed webhook headers",
        Outcome::UnsupportedMedia => "unsupported media type",
        Outcome::TooLarge => "body too large",
        Outcome::ReadError => "body could not be read",
        _ => "refused",
    };
    answer(sh, rec, status, outcome, json_error(status, error, detail))
}

/// Any `POST` that is not a control request: a webhook delivery.
async fn deliver(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let t0 = Instant::now();
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            "POST webhook deliveries to any path; GET /stats, GET|POST /mode, GET /impressions, GET /requests, GET /alerts",
        );
    }
    let headers = &parts.headers;
    let rec = new_record(&parts.method, parts.uri.path(), headers, t0);
    let gzip = encoding_is_gzip(headers);
    sh.with_board(|b| b.arrived(gzip));
    let cap = sh.max_body_bytes;

    let plan = sh.mode().plan();
    let (delay, huge) = match plan {
        Plan::Hang => return hang(sh, body, rec).await,
        Plan::Fail {
            status,
            retry_after,
        } => {
            let mut rec = rec;
            rec.body_bytes = drain(body, cap).await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = json_error(status, "fault injected", "the receiver is set to fail");
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return answer(&sh, rec, status, Outcome::Fault, response);
        }
        Plan::Accept { delay, huge } => (delay, huge),
    };

    // Headers first: nothing else needs the body.
    let Some(gzip) = gzip else {
        return refuse(
            &sh,
            rec,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Outcome::UnsupportedMedia,
            "Content-Encoding must be gzip or absent",
        );
    };
    if !is_json(headers) {
        return refuse(
            &sh,
            rec,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Outcome::UnsupportedMedia,
            "Content-Type must be application/json",
        );
    }
    let (unauthorized, bad_headers) = (
        (StatusCode::UNAUTHORIZED, Outcome::BadSignature),
        (StatusCode::BAD_REQUEST, Outcome::BadHeaders),
    );
    let missing = if sh.secret.is_some() {
        unauthorized
    } else {
        bad_headers
    };
    let webhook_id = match header_str(headers, "webhook-id") {
        Some(id) if !id.is_empty() && id.len() <= MAX_WEBHOOK_ID_BYTES => id.to_owned(),
        _ => {
            return refuse(
                &sh,
                rec,
                missing.0,
                missing.1,
                "webhook-id header missing, empty, or over 256 bytes",
            );
        }
    };
    let Some(timestamp) = rec.webhook_timestamp else {
        return refuse(
            &sh,
            rec,
            missing.0,
            missing.1,
            "webhook-timestamp header missing or not an integer",
        );
    };
    let verify = match &sh.secret {
        None => None,
        Some(secret) => {
            let Some(sig) = header_str(headers, "webhook-signature") else {
                return refuse(
                    &sh,
                    rec,
                    unauthorized.0,
                    unauthorized.1,
                    "webhook-signature header missing",
                );
            };
            if let Some(max) = sh.max_skew {
                let skew = (now_unix_ms() / 1000).abs_diff(timestamp);
                if skew > max.as_secs() {
                    return refuse(
                        &sh,
                        rec,
                        unauthorized.0,
                        unauthorized.1,
                        "webhook-timestamp too far from the receiver's clock",
                    );
                }
            }
            Some((
                secret.clone(),
                webhook_id.clone(),
                timestamp,
                sig.to_owned(),
            ))
        }
    };
    let hint = header_str(headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    if hint.is_some_and(|n| n > cap) {
        return too_large(&sh, rec, cap);
    }

    let mut rec = rec;
    let body = match read_capped(body, cap, hint).await {
        Ok(b) => b,
        Err(ReadFail::TooLarge) => {
            return too_large(&sh, rec, cap);
        }
        Err(ReadFail::Broken(e)) => {
            return refuse(&sh, rec, StatusCode::BAD_REQUEST, Outcome::ReadError, &e);
        }
    };
    rec.body_bytes = body.len() as u64;
    let job = Job {
        body,
        gzip,
        max_bytes: cap,
        verify,
        keep: sh.keep,
    };
    let checked = if rec.body_bytes as usize > INLINE_DECODE_BYTES {
        match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(c) => c,
            Err(e) => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "receiver error",
                    &e.to_string(),
                );
            }
        }
    } else {
        job.run()
    };
    rec.decoded_bytes = checked.decoded_bytes;
    rec.signature_ok = checked.signature_ok;
    let parsed = match checked.result {
        Ok(p) => p,
        Err(Reject::TooLarge(d)) => {
            return refuse(
                &sh,
                rec,
                StatusCode::PAYLOAD_TOO_LARGE,
                Outcome::TooLarge,
                &d,
            );
        }
        Err(Reject::BadBody(d)) => {
            return refuse(&sh, rec, StatusCode::BAD_REQUEST, Outcome::BadBody, &d);
        }
        Err(Reject::BadSignature(d)) => {
            return refuse(&sh, rec, unauthorized.0, unauthorized.1, &d);
        }
    };
    if let Parsed::Impressions(b) = &parsed {
        rec.impressions = Some(b.count);
    }

    if let Some(delay) = delay {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = sh.stopped() => {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", "");
            }
        }
    }

    let received_unix_ms = rec.received_unix_ms;
    let signature_ok = rec.signature_ok;
    let outcome =
        sh.with_board(|b| b.deliver(&webhook_id, parsed, t0, received_unix_ms, signature_ok));
    let response = match huge {
        Some(bytes) => {
            let mut r = Response::new(huge_body(bytes));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        None => axum::Json(serde_json::json!({
            "ok": true,
            "duplicate": outcome == Outcome::Duplicate,
        }))
        .into_response(),
    };
    answer(&sh, rec, StatusCode::OK, outcome, response)
}

/// The hang mode: read and discard the body, then hold the request until the client goes away
/// (hyper then drops this future) or the receiver shuts down.
async fn hang(sh: Arc<Shared>, body: Body, mut rec: RequestRecord) -> Response {
    let _guard = HangGuard::new(&sh);
    rec.body_bytes = drain(body, sh.max_body_bytes).await;
    rec.outcome = Outcome::Hung;
    rec.handling_time = rec.received_at.elapsed();
    sh.with_board(|b| b.finish(rec));
    sh.stopped().await;
    json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", "")
}

async fn get_alerts(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(sh.board().alerts()).into_response()
}

async fn get_stats(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(sh.board().stats()).into_response()
}

async fn get_mode(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(sh.mode()).into_response()
}

async fn post_mode(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultMode>(&body) {
        Ok(mode) => {
            tracing::info!(target: "sluice::receiver", %mode, "fault mode changed");
            sh.set_mode(mode.clone());
            axum::Json(mode).into_response()
        }
        Err(e) => json_error(
            StatusCode::BAD_REQUEST,
            "invalid mode",
            &format!(
                "{e}; expected e.g. {{\"mode\":\"ok\"}}, {{\"mode\":\"status\",\"status\":500}}, {{\"mode\":\"hang\"}}, {{\"mode\":\"slow\",\"ms\":2000}}, {{\"mode\":\"flaky\",\"percent\":30,\"status\":503}}, {{\"mode\":\"huge\",\"bytes\":1000000}}, {{\"mode\":\"retry\",\"status\":429,\"after_secs\":5}}"
            ),
        ),
    }
}

/// `?limit=N` for the list endpoints.
#[derive(Debug, Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn get_impressions(State(sh): State<Arc<Shared>>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(1000).min(100_000);
    axum::Json(sh.board().impressions(limit)).into_response()
}

async fn get_requests(State(sh): State<Arc<Shared>>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(100).min(100_000);
    axum::Json(sh.board().requests(limit)).into_response()
}
