//! The server under test: `<this binary> serve` as a child process on 127.0.0.1, with a fresh
//! data directory, driven over the admin API.

use anyhow::{Context as _, bail};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub struct ChildServer {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    token: String,
    pub data_dir: PathBuf,
    keep_data: bool,
    http: reqwest::Client,
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{:x}", std::process::id(), nanos)
}

impl ChildServer {
    /// Starts `serve` with its data directory in a new directory under `parent`, and waits
    /// until it listens.
    pub async fn start(parent: &Path, keep_data: bool) -> anyhow::Result<ChildServer> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let data_dir = parent.join(format!("sluice-bench-{}", unique()));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let token = format!("bench-{}", unique());
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--allow-private-destinations")
            .env("SLUICE_ADMIN_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if std::env::var_os("SLUICE_LOG").is_none() {
            cmd.env("SLUICE_LOG", "warn");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let pid = child.id().context("server exited at once")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest
                        .trim()
                        .parse::<SocketAddr>()
                        .map_err(anyhow::Error::from);
                }
            }
            bail!("server exited before listening")
        })
        .await
        .context("server did not start within 30 s")??;
        // Keep draining its stdout so it can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let server = ChildServer {
            child,
            pid,
            addr,
            token,
            data_dir,
            keep_data,
            http,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server at {} never became ready", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// An admin API call; a non-2xx answer is an error.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        admin_call(&self.http, &self.url(path), &self.token, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.admin(reqwest::Method::POST, path, Some(body)).await
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and deletes its data directory
    /// unless asked to keep it.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        if self.keep_data {
            eprintln!(
                "kept the server's data directory: {}",
                self.data_dir.display()
            );
        }
        // Drop removes the data directory.
    }
}

impl Drop for ChildServer {
    /// Also on an early error: the child is killed and its data directory removed.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
            for _ in 0..100 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// One admin API call of the bench's own servers: bearer token, JSON body; a non-2xx
/// answer is an error naming the call. (Used by every bench scenario.)
pub(crate) async fn admin_call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http.request(method.clone(), url).bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&b)?);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
