//! Shared test harness: a real sluice (in-process, or as a child process for crash tests)
//! on 127.0.0.1:0 with embedded storage in a temporary directory, real receivers, and
//! helpers for the admin and ingest APIs. Only loopback addresses are ever used.
#![allow(dead_code)]

use serde_json::{Value, json};
use sluice::serve::{self, ServeOptions, Server};
use sluice_client::AdminClient;
use sluice_receiver::{self as receiver, FaultMode, ReceiverConfig, ReceiverHandle};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SDK_KEY: &str = "sdk-key-test-0001";

pub fn http() -> reqwest::Client {
    sluice_client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub struct Sluice {
    pub server: Option<Server>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
}

pub fn options(dir: &Path) -> ServeOptions {
    ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        allow_private_destinations: true,
        admin_token: Some("test-admin-token".into()),
        banner: false,
        // Tests send many wrong tokens on purpose; tests/admin_auth_rate.rs tests the limit.
        auth_failures_per_minute: 0,
        ..ServeOptions::default()
    }
}

impl Sluice {
    pub async fn start() -> Sluice {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Sluice::start_in(&dir, |_| {}).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_with(f: impl FnOnce(&mut ServeOptions)) -> Sluice {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Sluice::start_in(&dir, f).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data dir (restarts).
    pub async fn start_in(dir: &Path, f: impl FnOnce(&mut ServeOptions)) -> Sluice {
        let mut o = options(dir);
        f(&mut o);
        let server = serve::start(o).await.expect("sluice starts");
        Sluice {
            server: Some(server),
            dir: dir.to_path_buf(),
            _tmp: None,
            client: http(),
        }
    }

    /// Clean shutdown, keeping the data dir (and its TempDir guard) for a restart.
    pub async fn stop(&mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self._tmp.take()
    }

    pub fn url(&self, path: &str) -> String {
        self.server.as_ref().expect("running").url(path)
    }

    /// The admin client for this server (the test admin token).
    pub fn admin_client(&self) -> AdminClient {
        AdminClient::with_http(&self.url(""), "test-admin-token", self.client.clone())
            .expect("admin client")
    }

    /// Sends a Split SDK bulk body (Python SDK headers) and returns the status code.
    pub async fn send_bulk(&self, key: &str, body: &Value) -> u16 {
        send_bulk(
            &self.client,
            &self.url("/api/testImpressions/bulk"),
            key,
            body,
        )
        .await
        .expect("ingest request")
    }
}

/// Admin calls of a test server (in-process or a child process), through its admin client.
pub trait AdminCalls {
    fn admin_client(&self) -> AdminClient;

    /// An admin call answered with any status: `(status, body)`.
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let a = self
            .admin_client()
            .send(method, path, body.as_ref())
            .await
            .expect("admin request");
        (a.status.as_u16(), a.body)
    }

    async fn post_admin(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 200 || status == 201, "POST {path}: {status} {v}");
        v
    }

    async fn get_admin(&self, path: &str) -> Value {
        let (status, v) = self.admin(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Creates environment `id` with SDK key `key`.
    async fn environment(&self, id: &str, name: &str, key: &str) -> Value {
        self.post_admin(
            "/v1/environments",
            json!({ "id": id, "name": name, "sdkKeys": [key] }),
        )
        .await
    }

    /// Creates an integration; `extra` fields are merged in.
    async fn integration(&self, id: &str, url: &str, envs: &[&str], extra: Value) -> Value {
        let mut body = json!({ "id": id, "name": id, "url": url, "environments": envs, "flushIntervalMs": 200 });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        self.post_admin("/v1/integrations", body).await
    }

    async fn status(&self, id: &str) -> Value {
        self.get_admin(&format!("/v1/integrations/{id}/status"))
            .await
    }
}

impl AdminCalls for Sluice {
    fn admin_client(&self) -> AdminClient {
        Sluice::admin_client(self)
    }
}

/// Sends one Split bulk body to `url` with Python SDK headers; `Err` for transport failures.
pub async fn send_bulk(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> Result<u16, String> {
    let resp = client
        .post(url)
        .bearer_auth(key)
        .header("SplitSDKVersion", "python-10.7.0")
        .header("SplitSDKMachineIP", "10.1.2.3")
        .header("SplitSDKMachineName", "sdk-host-1")
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    // Read the body: the answer is complete only once it has been read.
    resp.bytes().await.map_err(|e| e.to_string())?;
    Ok(status)
}

/// A Split bulk body with `n` impressions of one flag, keys `{prefix}-{i}`.
pub fn bulk(flag: &str, prefix: &str, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({ "k": format!("{prefix}-{i}"), "t": "on", "m": 1_700_000_000_000i64 + i as i64, "c": 42, "r": "default rule", "b": null, "pt": null }))
        .collect();
    json!([{ "f": flag, "i": items }])
}

pub async fn receiver(mode: FaultMode) -> ReceiverHandle {
    receiver::start(ReceiverConfig {
        mode,
        keep_impressions: true,
        quiet: true,
        ..ReceiverConfig::default()
    })
    .await
    .expect("receiver starts")
}

pub async fn receiver_with_secret(secret: &str) -> ReceiverHandle {
    receiver::start(ReceiverConfig {
        secret: Some(secret.into()),
        keep_impressions: true,
        quiet: true,
        ..ReceiverConfig::default()
    })
    .await
    .expect("receiver starts")
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Raw ingest / admin helpers.

/// An HTTP answer: status, headers, body parsed as JSON (or the text as a JSON string).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts the SPEC §2 error shape: status `status`, JSON `{"error": str, "detail": str}`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} {}",
            self.status, self.body
        );
        assert!(
            self.body
                .get("error")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            "{what}: error body without \"error\": {}",
            self.body
        );
        assert!(
            self.body.get("detail").and_then(Value::as_str).is_some(),
            "{what}: error body without \"detail\": {}",
            self.body
        );
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{what}: error Content-Type is {ct:?}"
        );
    }

    pub fn detail(&self) -> String {
        self.body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

impl Sluice {
    /// POSTs raw bytes to `path`. `key`: bearer token (None: no Authorization header).
    /// `headers`: extra headers (Content-Type etc.).
    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await.expect("request")).await
    }

    /// POSTs a JSON value to an ingest route with the given SDK key and Python SDK headers.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> Answer {
        let headers = [
            ("Content-Type", "application/json"),
            ("SplitSDKVersion", "python-10.7.0"),
            ("SplitSDKMachineIP", "10.1.2.3"),
            ("SplitSDKMachineName", "sdk-host-1"),
        ];
        self.post_raw(path, Some(key), &headers, serde_json::to_vec(body).unwrap())
            .await
    }

    /// Any admin request with an arbitrary (or no) token.
    pub async fn admin_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.expect("admin request")).await
    }

    /// Impressions durably stored in `env`'s log (its end offset).
    pub async fn stored(&self, env: &str) -> u64 {
        self.server
            .as_ref()
            .expect("running")
            .log
            .bounds(env)
            .await
            .expect("log bounds")
            .next
    }
}

/// A fixture request captured from a real SDK (`fixtures/split-sdk/<name>`).
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../fixtures/split-sdk/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

pub fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(raw).unwrap();
    enc.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

// ---------------------------------------------------------------------------------------
// A raw capturing receiver: records every request exactly as sent (headers and body bytes)
// and answers a settable status. For checks the validating receiver does not expose (exact
// body bytes, Slack text, field sets).

#[derive(Debug, Clone)]
pub struct Captured {
    pub at: std::time::Instant,
    pub path: String,
    pub headers: axum::http::HeaderMap,
    /// The body as sent (compressed when gzip).
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn is_gzip(&self) -> bool {
        self.header("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    }

    /// The body after gzip decoding (when gzip).
    pub fn plain(&self) -> Vec<u8> {
        if self.is_gzip() {
            gunzip(&self.body)
        } else {
            self.body.clone()
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.plain()).expect("delivery body is JSON")
    }
}

pub struct Capture {
    pub addr: std::net::SocketAddr,
    reqs: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    /// Sent as `Location` with every answer when set (for redirect tests).
    location: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    pub async fn start(status: u16) -> Capture {
        use std::sync::atomic::Ordering;
        let reqs: std::sync::Arc<std::sync::Mutex<Vec<Captured>>> = Default::default();
        let st = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind capture");
        let addr = listener.local_addr().unwrap();
        let location: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let (r, s, l) = (reqs.clone(), st.clone(), location.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (r, s, l) = (r.clone(), s.clone(), l.clone());
            async move {
                let at = std::time::Instant::now();
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 256 << 20)
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                r.lock().unwrap().push(Captured {
                    at,
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                });
                let code = axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                let mut headers = axum::http::HeaderMap::new();
                if let Some(loc) = l.lock().unwrap().clone() {
                    headers.insert("location", loc.parse().unwrap());
                }
                (code, headers, "{}")
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Capture {
            addr,
            reqs,
            status: st,
            location,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answers carry `Location: url` from now on (None: no Location).
    pub fn set_location(&self, url: Option<String>) {
        *self.location.lock().unwrap() = url;
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.reqs.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns them (panics on timeout).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let ok = eventually(timeout, || self.reqs.lock().unwrap().len() >= n).await;
        let got = self.requests();
        assert!(
            ok,
            "capture receiver: expected {n} requests within {timeout:?}, got {}",
            got.len()
        );
        got
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}
