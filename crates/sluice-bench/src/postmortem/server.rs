//! The server under test: sluice started with the test kit's launcher, its data directory
//! (and, without `--log-dir`, its log) in one directory per run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use sluice_testkit::{ChildLog, LaunchOptions, SluiceProcess, process::unique};

use super::{PostmortemArgs, integration_id};

pub(super) struct Server {
    pub(super) proc: SluiceProcess,
    pub(super) pid: u32,
    pub(super) addr: SocketAddr,
    /// Holds the data directory (`data/`) and, without `--log-dir`, the log; removed on drop
    /// unless `--keep-data`.
    pub(super) dir: PathBuf,
    pub(super) log: PathBuf,
    pub(super) keep: bool,
}

impl Server {
    pub(super) async fn start(args: &PostmortemArgs, run: &str) -> anyhow::Result<Server> {
        let exe = match &args.sluice_bin {
            Some(p) => p.clone(),
            None => crate::sluice_exe()?,
        };
        let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!("sluice-postmortem-{run}-{}", unique()));
        let log = match &args.log_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.join(format!("postmortem-{run}.log"))
            }
            None => dir.join("sluice.log"),
        };
        let mut o = LaunchOptions::new(exe);
        o.data_dir = Some(dir.join("data"));
        o.log = ChildLog::Append(log.clone());
        o.stop_timeout = Duration::from_secs(15);
        o.http = Some(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let proc = match SluiceProcess::start(o).await {
            Ok(p) => p,
            Err(e) => {
                if !args.keep_data {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e.into());
            }
        };
        Ok(Server {
            pid: proc.pid(),
            addr: proc.addr(),
            proc,
            dir,
            log,
            keep: args.keep_data,
        })
    }

    pub(super) fn url(&self, path: &str) -> String {
        self.proc.url(path)
    }

    pub(super) async fn status(&self, idx: usize) -> anyhow::Result<Value> {
        Ok(self
            .proc
            .admin()
            .integration_status(&integration_id(idx))
            .await?)
    }

    pub(super) async fn attempts(&self, idx: usize) -> anyhow::Result<Value> {
        Ok(self.proc.admin().attempts(&integration_id(idx)).await?)
    }

    pub(super) async fn stop(mut self) {
        if !self.proc.stop().await {
            eprintln!("  sluice did not stop within 15 s of SIGTERM; killed it");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("  kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
