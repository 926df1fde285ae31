//! The real `sluice` binary as a child process, for tests that kill it (`kill -9`) and
//! restart it on the same data directory. Declared from a test with
//! `#[path = "common/process.rs"] mod process;`.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token given to every child through `SLUICE_ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str = "process-test-admin-token";

pub fn client() -> reqwest::Client {
    sluice::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// A running `sluice serve` child process.
pub struct SluiceProcess {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Where the child's stderr (its log) goes; appended to by every start.
    pub log_path: PathBuf,
    pub client: reqwest::Client,
}

impl SluiceProcess {
    /// Starts `sluice serve --listen 127.0.0.1:0 --data-dir dir --allow-private-destinations`
    /// and waits for its `listening on` line. The child's log is appended to `log_path`.
    pub async fn spawn(dir: &Path, log_path: &Path) -> SluiceProcess {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open child log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir)
            .arg("--allow-private-destinations")
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sluice");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Duration::from_secs(30);
        let addr = loop {
            let line = match tokio::time::timeout(
                deadline.saturating_sub(started.elapsed()),
                lines.next_line(),
            )
            .await
            {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.wait().await;
                    panic!(
                        "sluice exited before listening ({status:?}); its log:\n{}",
                        tail(log_path, 4000)
                    );
                }
                Err(_) => panic!(
                    "sluice did not print its address within {deadline:?}; its log:\n{}",
                    tail(log_path, 4000)
                ),
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest
                    .trim()
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
            }
        };
        // Keep draining stdout so that the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        SluiceProcess {
            child,
            addr,
            dir: dir.to_path_buf(),
            log_path: log_path.to_path_buf(),
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `kill -9` and reap.
    pub async fn kill9(mut self) {
        self.child.kill().await.expect("SIGKILL sluice");
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post_admin(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 200 || status == 201, "POST {path}: {status} {v}");
        v
    }

    pub async fn environment(&self, id: &str, key: &str) -> Value {
        self.post_admin(
            "/v1/environments",
            json!({ "id": id, "name": id, "sdkKeys": [key] }),
        )
        .await
    }

    pub async fn status(&self, integration: &str) -> Value {
        let (s, v) = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/integrations/{integration}/status"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Sends one Split bulk body with Python SDK headers; `Err` for transport failures.
    pub async fn send_bulk(
        &self,
        client: &reqwest::Client,
        key: &str,
        body: &Value,
    ) -> Result<u16, String> {
        send_bulk(client, &self.url("/api/testImpressions/bulk"), key, body).await
    }
}

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

/// The last `max` bytes of a file (lossy UTF-8), for failure messages.
pub fn tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The segment files (`*.log`) of one environment's log, oldest first.
pub fn segments(data_dir: &Path, env: &str) -> Vec<PathBuf> {
    let dir = data_dir.join("log").join(env);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// The newest segment file of one environment's log.
pub fn newest_segment(data_dir: &Path, env: &str) -> PathBuf {
    segments(data_dir, env).pop().expect("at least one segment")
}
