//! The real `sluice` binary as a child process, for tests that kill it (`kill -9`) and
//! restart it on the same data directory. Declared from a test with
//! `#[path = "common/process.rs"] mod process;`.
#![allow(dead_code)]

use serde_json::Value;
use sluice_testkit as testkit;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The admin token given to every child through `SLUICE_ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str = "process-test-admin-token";

pub fn client() -> reqwest::Client {
    sluice_client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// A running `sluice serve` child process (the test kit's launcher) with the test's log file.
pub struct SluiceProcess {
    inner: testkit::SluiceProcess,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Where the child's stderr (its log) goes; appended to by every start.
    pub log_path: PathBuf,
    pub client: reqwest::Client,
}

impl SluiceProcess {
    /// Starts `sluice serve --listen 127.0.0.1:0 --data-dir dir --allow-private-destinations`
    /// and waits until it is ready. The child's log is appended to `log_path`.
    pub async fn spawn(dir: &Path, log_path: &Path) -> SluiceProcess {
        let client = client();
        let mut opts = testkit::LaunchOptions::new(env!("CARGO_BIN_EXE_sluice"));
        opts.data_dir = Some(dir.to_path_buf());
        opts.token = ADMIN_TOKEN.to_owned();
        opts.log = testkit::ChildLog::Append(log_path.to_path_buf());
        opts.default_log_filter =
            std::env::var("SLUICE_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into());
        opts.http = Some(client.clone());
        let inner = testkit::SluiceProcess::start(opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        SluiceProcess {
            addr: inner.addr(),
            inner,
            dir: dir.to_path_buf(),
            log_path: log_path.to_path_buf(),
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.inner.url(path)
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// `kill -9` and reap.
    pub async fn kill9(mut self) {
        self.inner.kill9().await;
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.inner.running()
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

impl crate::common::AdminCalls for SluiceProcess {
    fn admin_client(&self) -> sluice_client::AdminClient {
        self.inner.admin().clone()
    }
}

pub use crate::common::send_bulk;
pub use testkit::process::tail;

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
