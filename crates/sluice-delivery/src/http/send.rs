//! One delivery attempt: POST a prepared batch and classify what happened.
//!
//! Owns: the pre-send URL check (IP literals never reach the resolver, so the policy is applied
//! to them here), the POST itself, reading at most `max_response_bytes` of the response (then the
//! connection is dropped, so a destination answering with a huge or endless body costs at most
//! about that many bytes), `Retry-After` parsing for 429/503, and mapping every failure to an
//! [`OutcomeKind`].
//!
//! Must never: panic on anything a destination sends, retry (the caller decides), follow a
//! redirect, buffer more than [`SNIPPET_BYTES`] of a response, or put the URL in an error
//! message (webhook URLs often carry credentials in their path or query).

use super::guard::GuardError;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use sluice_core::address::{AddressPolicy, DestinationError};
use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

/// How much of a response body is kept for diagnostics.
pub const SNIPPET_BYTES: usize = 512;

/// Longest `Retry-After` reported; longer values are clamped (the caller caps further at the
/// integration's maximum cooldown). Keeps `Instant + retry_after` far from overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest error message kept in an [`Outcome`].
const MAX_ERROR_CHARS: usize = 1024;

/// A request ready to send: the body is final (already compressed, signed headers set).
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What kind of result an attempt had. Only [`OutcomeKind::Delivered`] is a success (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// The destination answered exactly 200.
    Delivered,
    /// Any other status (including 2xx other than 200, and 3xx: redirects are not followed).
    HttpStatus,
    /// The attempt ran out of time (connect or total timeout).
    Timeout,
    /// No connection or it broke: refused, reset, TLS handshake failure, DNS failure or timeout.
    Connect,
    /// The destination policy refused the URL or every address its host resolved to; nothing
    /// was sent.
    Refused,
    /// Anything else (malformed URL or headers, protocol violations by the destination).
    Other,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Delivered => "delivered",
            OutcomeKind::HttpStatus => "http_status",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Connect => "connect",
            OutcomeKind::Refused => "refused",
            OutcomeKind::Other => "other",
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The response status, when a response arrived.
    pub status: Option<u16>,
    /// `Retry-After` of a 429 or 503 (delta-seconds or IMF-fixdate), clamped to
    /// [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    /// From the start of the call until the body was read (or the attempt failed).
    pub duration: Duration,
    /// Set for every outcome that is not `Delivered`; on `Delivered` it notes a failure to read
    /// the rest of the response body (which does not change the outcome). Never contains the URL.
    pub error: Option<String>,
    /// The first ≤ [`SNIPPET_BYTES`] bytes of the response body, lossy UTF-8.
    pub response_snippet: String,
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        self.kind == OutcomeKind::Delivered
    }

    fn failed(kind: OutcomeKind, started: Instant, error: String) -> Outcome {
        Outcome {
            kind,
            status: None,
            retry_after: None,
            duration: started.elapsed(),
            error: Some(truncate(error)),
            response_snippet: String::new(),
        }
    }
}

/// Sends `req` once with `client` (built by [`super::build_client`] for the same policy),
/// within the client's own request timeout.
pub async fn send(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    req: &PreparedRequest,
    max_response_bytes: usize,
) -> Outcome {
    attempt(client, policy, req, max_response_bytes, None).await
}

/// Like [`send()`], with this attempt's own total timeout (resolve, connect, send and read
/// the capped response): how one shared client serves integrations with different
/// `requestTimeoutMs`.
pub async fn send_within(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    req: &PreparedRequest,
    max_response_bytes: usize,
    timeout: Duration,
) -> Outcome {
    attempt(client, policy, req, max_response_bytes, Some(timeout)).await
}

async fn attempt(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    req: &PreparedRequest,
    max_response_bytes: usize,
    timeout: Option<Duration>,
) -> Outcome {
    let started = Instant::now();
    match policy.check_url(&req.url) {
        Ok(_) => {}
        Err(e @ DestinationError::BadUrl(_)) => {
            return Outcome::failed(OutcomeKind::Other, started, e.to_string());
        }
        Err(e) => return Outcome::failed(OutcomeKind::Refused, started, e.to_string()),
    }
    let mut builder = client
        .post(req.url.as_str())
        .headers(req.headers.clone())
        .body(req.body.clone());
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let request = match builder.build() {
        Ok(r) => r,
        Err(e) => return Outcome::failed(OutcomeKind::Other, started, describe(&e.without_url())),
    };
    // Belt and braces: judge the host exactly as reqwest parsed it. The connector connects to
    // an IP-literal host directly, without asking the (guarded) resolver.
    if let Some(ip) = request.url().host_str().and_then(literal_ip)
        && let Err(e) = policy.check(ip)
    {
        return Outcome::failed(OutcomeKind::Refused, started, e.to_string());
    }

    let mut response = match client.execute(request).await {
        Ok(r) => r,
        Err(e) => {
            let (kind, error) = classify(e);
            let outcome = Outcome::failed(kind, started, error);
            tracing::debug!(kind = kind.as_str(), error = ?outcome.error, "delivery attempt failed");
            return outcome;
        }
    };

    let status = response.status().as_u16();
    let retry_after = if status == 429 || status == 503 {
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let (response_snippet, body_error) = read_capped(&mut response, max_response_bytes).await;
    // Dropping a response whose body was not read to the end closes its connection instead of
    // returning it to the pool.
    drop(response);

    let (kind, error) = if status == 200 {
        (OutcomeKind::Delivered, body_error)
    } else {
        let mut msg = format!("destination answered HTTP {status}");
        if let Some(b) = body_error {
            msg.push_str("; ");
            msg.push_str(&b);
        }
        (OutcomeKind::HttpStatus, Some(msg))
    };
    let outcome = Outcome {
        kind,
        status: Some(status),
        retry_after,
        duration: started.elapsed(),
        error: error.map(truncate),
        response_snippet,
    };
    tracing::debug!(
        kind = kind.as_str(),
        status,
        duration_ms = outcome.duration.as_millis() as u64,
        "delivery attempt answered"
    );
    outcome
}

/// Reads at most `max` body bytes (give or take the last chunk), keeping the first
/// [`SNIPPET_BYTES`] of them. Returns the snippet and a body-read error, if any.
async fn read_capped(response: &mut reqwest::Response, max: usize) -> (String, Option<String>) {
    let keep = SNIPPET_BYTES.min(max);
    let mut snippet: Vec<u8> = Vec::with_capacity(keep);
    let mut read: usize = 0;
    let mut error = None;
    while read < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = keep.saturating_sub(snippet.len()).min(chunk.len());
                snippet.extend_from_slice(&chunk[..room]);
                read = read.saturating_add(chunk.len());
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!(
                    "reading response body: {}",
                    describe(&e.without_url())
                ));
                break;
            }
        }
    }
    (String::from_utf8_lossy(&snippet).into_owned(), error)
}

/// The IP address of an IP-literal URL host (`host_str` brackets IPv6), parsed the way the
/// connector does.
fn literal_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn classify(err: reqwest::Error) -> (OutcomeKind, String) {
    let err = err.without_url();
    if let Some(guard) = find_in_chain::<GuardError>(&err) {
        // A DNS failure or timeout is a failure to connect; a policy refusal is its own kind.
        let kind = if guard.is_refused() {
            OutcomeKind::Refused
        } else {
            OutcomeKind::Connect
        };
        return (kind, guard.to_string());
    }
    let kind = if err.is_timeout() {
        OutcomeKind::Timeout
    } else if err.is_connect() || broken_connection(&err) {
        OutcomeKind::Connect
    } else {
        OutcomeKind::Other
    };
    (kind, describe(&err))
}

fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// A connection that was established and then broke: reset, or closed by the destination
/// before it answered.
fn broken_connection(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The error and its sources, joined with ": " (sources already quoted by their parent skipped).
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut msg = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !part.is_empty() && !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        current = e.source();
    }
    truncate(msg)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_CHARS {
        let mut cut = MAX_ERROR_CHARS;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// `Retry-After`: delta-seconds, or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`) relative
/// to `now` (a date in the past means zero). Clamped to [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let wait = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and that is "very long".
        Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::{ClientOptions, build_client, build_client_with_resolver};
    use crate::http::guard::GuardedResolver;
    use crate::http::tls::client_tls_config;
    use reqwest::header::{CONTENT_TYPE, HeaderValue};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    // ---- a tiny HTTP/1.1 server on 127.0.0.1 with scripted behaviour ----

    enum Reply {
        /// Write these bytes, then close.
        Raw(String),
        /// Read the request, then hold the connection open without answering.
        Hang,
        /// Answer 200 with a body of this many bytes, streamed until the client goes away.
        Huge(usize),
        /// Read the request, then close without answering.
        Close,
    }

    struct Server {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
        written: Arc<AtomicUsize>,
        finished: Arc<tokio::sync::Notify>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }
        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    async fn serve(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            requests: Arc::default(),
            written: Arc::default(),
            finished: Arc::default(),
        };
        let reply = Arc::new(reply);
        let (connections, requests, written, finished) = (
            server.connections.clone(),
            server.requests.clone(),
            server.written.clone(),
            server.finished.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (reply, requests, written, finished) = (
                    reply.clone(),
                    requests.clone(),
                    written.clone(),
                    finished.clone(),
                );
                tokio::spawn(async move {
                    handle(stream, &reply, &requests, &written).await;
                    finished.notify_one();
                });
            }
        });
        server
    }

    async fn handle(
        mut stream: TcpStream,
        reply: &Reply,
        requests: &Mutex<Vec<Vec<u8>>>,
        written: &AtomicUsize,
    ) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        requests.lock().unwrap().push(request);
        match reply {
            Reply::Raw(bytes) => {
                let _ = stream.write_all(bytes.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Reply::Close => {}
            Reply::Huge(len) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 64 * 1024];
                let mut left = *len;
                while left > 0 {
                    let n = left.min(block.len());
                    if stream.write_all(&block[..n]).await.is_err() {
                        return;
                    }
                    written.fetch_add(n, Ordering::SeqCst);
                    left -= n;
                }
            }
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(buf)
    }

    fn response(status_line: &str, extra_headers: &str, body: &str) -> Reply {
        Reply::Raw(format!(
            "HTTP/1.1 {status_line}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    // ---- clients ----

    fn options(policy: AddressPolicy, timeout: Duration) -> ClientOptions {
        ClientOptions {
            policy: Arc::new(policy),
            connect_timeout: timeout,
            request_timeout: timeout,
            user_agent: "sluice/test".into(),
            pool_idle_timeout: Duration::from_secs(10),
            pool_max_idle_per_host: 1,
        }
    }

    fn permissive(timeout: Duration) -> (reqwest::Client, AddressPolicy) {
        let opts = options(AddressPolicy::permissive(), timeout);
        (
            build_client(&opts, client_tls_config()).unwrap(),
            AddressPolicy::permissive(),
        )
    }

    fn strict(timeout: Duration) -> (reqwest::Client, AddressPolicy) {
        let opts = options(AddressPolicy::default(), timeout);
        (
            build_client(&opts, client_tls_config()).unwrap(),
            AddressPolicy::default(),
        )
    }

    /// A client whose DNS answers `answer` for every name, guarded by `policy`.
    fn with_fake_dns(policy: AddressPolicy, answer: Vec<IpAddr>) -> reqwest::Client {
        let opts = options(policy.clone(), Duration::from_secs(2));
        let resolver = GuardedResolver::with_lookup(Arc::new(policy), move |_h: &str| {
            let answer = answer.clone();
            async move { Ok(answer) }
        });
        build_client_with_resolver(&opts, client_tls_config(), resolver).unwrap()
    }

    fn prepared(url: String) -> PreparedRequest {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-custom", HeaderValue::from_static("yes"));
        PreparedRequest {
            url,
            headers,
            body: Bytes::from_static(b"[{\"k\":1}]"),
        }
    }

    const MAX: usize = 64 * 1024;

    // ---- outcomes against local servers (permissive policy) ----

    #[tokio::test]
    async fn ok_200_is_delivered_with_headers_and_body_sent() {
        let server = serve(response("200 OK", "", "thanks")).await;
        let (client, policy) = permissive(Duration::from_secs(2));
        let out = send(&client, &policy, &prepared(server.url("/hook?t=1")), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Delivered, "{out:?}");
        assert!(out.is_delivered());
        assert_eq!(out.status, Some(200));
        assert_eq!(out.error, None);
        assert_eq!(out.response_snippet, "thanks");
        assert_eq!(out.retry_after, None);
        let requests = server.requests.lock().unwrap();
        let req = String::from_utf8_lossy(&requests[0]).to_string();
        assert!(req.starts_with("POST /hook?t=1 HTTP/1.1\r\n"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(lower.contains("\r\nx-custom: yes\r\n"), "{req}");
        assert!(lower.contains("\r\nuser-agent: sluice/test\r\n"), "{req}");
        assert!(
            lower.contains("\r\ncontent-type: application/json\r\n"),
            "{req}"
        );
        assert!(req.ends_with("\r\n\r\n[{\"k\":1}]"), "{req}");
    }

    #[tokio::test]
    async fn other_statuses_are_http_status_failures() {
        for (line, code) in [
            ("500 Internal Server Error", 500),
            ("204 No Content", 204),
            ("404 Not Found", 404),
        ] {
            let body = if code == 204 { "" } else { "nope" };
            let server = serve(response(line, "Retry-After: 5\r\n", body)).await;
            let (client, policy) = permissive(Duration::from_secs(2));
            let out = send(&client, &policy, &prepared(server.url("/")), MAX).await;
            assert_eq!(out.kind, OutcomeKind::HttpStatus, "{out:?}");
            assert!(!out.is_delivered());
            assert_eq!(out.status, Some(code));
            assert_eq!(out.retry_after, None, "Retry-After only counts on 429/503");
            assert_eq!(out.response_snippet, body);
            assert!(out.error.as_deref().unwrap().contains(&code.to_string()));
        }
    }

    #[tokio::test]
    async fn retry_after_is_read_on_503_and_429() {
        for line in ["503 Service Unavailable", "429 Too Many Requests"] {
            let server = serve(response(line, "Retry-After: 7\r\n", "")).await;
            let (client, policy) = permissive(Duration::from_secs(2));
            let out = send(&client, &policy, &prepared(server.url("/")), MAX).await;
            assert_eq!(out.kind, OutcomeKind::HttpStatus);
            assert_eq!(out.retry_after, Some(Duration::from_secs(7)), "{line}");
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let target = serve(response("200 OK", "", "")).await;
        let redirect = serve(response(
            "302 Found",
            &format!("Location: {}\r\n", target.url("/elsewhere")),
            "",
        ))
        .await;
        let (client, policy) = permissive(Duration::from_secs(2));
        let out = send(&client, &policy, &prepared(redirect.url("/")), MAX).await;
        assert_eq!(out.kind, OutcomeKind::HttpStatus, "{out:?}");
        assert_eq!(out.status, Some(302));
        assert_eq!(redirect.connections(), 1);
        assert_eq!(target.connections(), 0, "redirect target must never be hit");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let server = serve(Reply::Hang).await;
        let (client, policy) = permissive(Duration::from_millis(300));
        let started = Instant::now();
        let out = send(&client, &policy, &prepared(server.url("/")), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Timeout, "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(out.duration >= Duration::from_millis(250));
        assert!(
            !out.error.as_deref().unwrap().contains("127.0.0.1"),
            "no URL in errors"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_failure() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let (client, policy) = permissive(Duration::from_secs(2));
        let out = send(
            &client,
            &policy,
            &prepared(format!("http://127.0.0.1:{port}/")),
            MAX,
        )
        .await;
        assert_eq!(out.kind, OutcomeKind::Connect, "{out:?}");
        assert_eq!(out.status, None);
    }

    #[tokio::test]
    async fn a_connection_closed_without_answer_is_a_failure() {
        let server = serve(Reply::Close).await;
        let (client, policy) = permissive(Duration::from_secs(2));
        let out = send(&client, &policy, &prepared(server.url("/")), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Connect, "{out:?}");
        assert!(
            out.error
                .unwrap()
                .contains("connection closed before message completed")
        );
    }

    #[tokio::test]
    async fn tls_to_a_plain_http_server_is_a_connect_failure() {
        // A plain-HTTP server that answers as soon as a client connects: the TLS handshake
        // gets an HTTP response instead of a ServerHello.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            }
        });
        let (client, policy) = permissive(Duration::from_secs(2));
        let out = send(&client, &policy, &prepared(format!("https://{addr}/")), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Connect, "{out:?}");
        assert!(out.duration < Duration::from_secs(1), "{out:?}");
    }

    #[tokio::test]
    async fn a_huge_body_is_read_only_up_to_the_cap() {
        const BODY: usize = 50 * 1024 * 1024;
        let server = serve(Reply::Huge(BODY)).await;
        let (client, policy) = permissive(Duration::from_secs(10));
        let started = Instant::now();
        let out = send(&client, &policy, &prepared(server.url("/")), MAX).await;
        let took = started.elapsed();
        assert_eq!(out.kind, OutcomeKind::Delivered, "{out:?}");
        assert_eq!(out.response_snippet.len(), SNIPPET_BYTES);
        assert!(took < Duration::from_secs(3), "took {took:?}");
        // The server stops once we hang up; only socket buffers hold more than the cap.
        tokio::time::timeout(Duration::from_secs(5), server.finished.notified())
            .await
            .expect("the server notices the dropped connection");
        let written = server.written.load(Ordering::SeqCst);
        assert!(
            written < BODY / 4,
            "server managed to write {written} bytes"
        );
    }

    // ---- the destination policy ----

    #[tokio::test]
    async fn private_ip_literals_are_refused_before_any_connection() {
        let server = serve(response("200 OK", "", "")).await;
        let port = server.addr.port();
        let (client, policy) = strict(Duration::from_millis(100));
        for url in [
            "http://10.0.0.1/".to_owned(),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://[::1]/".to_owned(),
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0x7f.1:{port}/"),
        ] {
            let out = send(&client, &policy, &prepared(url.clone()), MAX).await;
            assert_eq!(out.kind, OutcomeKind::Refused, "{url}: {out:?}");
            let err = out.error.unwrap();
            assert!(err.contains("is not a public address"), "{url}: {err}");
            assert!(out.duration < Duration::from_millis(100), "{url}");
        }
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn localhost_is_refused_under_the_default_policy() {
        let server = serve(response("200 OK", "", "")).await;
        let (client, policy) = strict(Duration::from_secs(1));
        for host in ["localhost", "LocalHost", "api.localhost"] {
            let url = format!("http://{host}:{}/", server.addr.port());
            let out = send(&client, &policy, &prepared(url), MAX).await;
            assert_eq!(out.kind, OutcomeKind::Refused, "{host}: {out:?}");
        }
        assert_eq!(server.connections(), 0, "the local server must see nothing");
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused_at_connect_time() {
        let server = serve(response("200 OK", "", "")).await;
        let policy = AddressPolicy::default();
        // The URL passes the configuration-time check; the name "rebinds" to loopback.
        let client = with_fake_dns(policy.clone(), vec!["127.0.0.1".parse().unwrap()]);
        let url = format!("http://hooks.example:{}/", server.addr.port());
        assert!(policy.check_url(&url).is_ok());
        let out = send(&client, &policy, &prepared(url), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Refused, "{out:?}");
        let err = out.error.unwrap();
        assert!(
            err.starts_with("destination address 127.0.0.1 is not a public address"),
            "{err}"
        );
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn only_allowed_resolved_addresses_are_connected_to() {
        let server = serve(response("200 OK", "", "")).await;
        let policy = AddressPolicy {
            allow_private: false,
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        // 10.0.0.1 is dropped by the guard, so the connector never tries it.
        let client = with_fake_dns(
            policy.clone(),
            vec!["10.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
        );
        let url = format!("http://hooks.example:{}/", server.addr.port());
        let out = send(&client, &policy, &prepared(url), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Delivered, "{out:?}");
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn dns_failures_are_connect_failures() {
        let policy = AddressPolicy::default();
        let opts = options(policy.clone(), Duration::from_secs(1));
        let resolver = GuardedResolver::with_lookup(Arc::new(policy.clone()), |h: &str| {
            let h = h.to_owned();
            async move { Err(io::Error::other(format!("{h}: no such host"))) }
        });
        let client = build_client_with_resolver(&opts, client_tls_config(), resolver).unwrap();
        let out = send(
            &client,
            &policy,
            &prepared("https://nowhere.example/".into()),
            MAX,
        )
        .await;
        assert_eq!(out.kind, OutcomeKind::Connect, "{out:?}");
        assert!(out.error.unwrap().contains("no such host"));
    }

    #[tokio::test]
    async fn malformed_and_disallowed_urls_fail_without_sending() {
        let (client, policy) = strict(Duration::from_millis(100));
        let out = send(&client, &policy, &prepared("not a url".into()), MAX).await;
        assert_eq!(out.kind, OutcomeKind::Other);
        let out = send(
            &client,
            &policy,
            &prepared("ftp://example.com/".into()),
            MAX,
        )
        .await;
        assert_eq!(out.kind, OutcomeKind::Refused);
        let out = send(
            &client,
            &policy,
            &prepared("https://u:p@example.com/".into()),
            MAX,
        )
        .await;
        assert_eq!(out.kind, OutcomeKind::Refused);
    }

    // ---- helpers ----

    #[test]
    fn retry_after_parsing() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 60); // 1994-11-06 08:48:37
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        let epoch = UNIX_EPOCH;
        assert_eq!(
            parse_retry_after("Tue, 29 Feb 2028 12:00:00 GMT", epoch),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(
                "Tue, 29 Feb 2028 12:00:00 GMT",
                epoch + Duration::from_secs(1_835_438_400 - 90)
            ),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn literal_hosts_are_recognised() {
        assert_eq!(literal_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(literal_ip("example.com"), None);
    }

    #[test]
    fn long_errors_are_truncated_on_a_char_boundary() {
        let s = truncate("é".repeat(1000));
        assert!(s.len() <= MAX_ERROR_CHARS + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
