//! A real `sluice serve` as a child process: on a free loopback port, with a fresh data
//! directory (or a given one), waited for until it is ready; killed with SIGKILL, restarted on
//! the same data directory, stopped with SIGTERM. Used by the bench and by the integration
//! tests that kill the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_client::AdminClient;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Why a child server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {exe} serve: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sluice exited before listening ({status}){log}")]
    Exited { status: String, log: String },
    #[error("sluice did not {what} within {timeout:?}{log}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
        log: String,
    },
    #[error("sluice printed a bad address in {line:?}")]
    BadAddress { line: String },
    #[error("admin client: {0}")]
    Client(#[from] sluice_client::ClientError),
    #[error("the server is not running")]
    NotRunning,
}

/// Where the child's log (its stderr) goes.
#[derive(Debug, Clone)]
pub enum ChildLog {
    /// This process's stderr.
    Inherit,
    /// Appended to a file (every start appends).
    Append(PathBuf),
}

/// How a child server is started.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The `sluice` binary.
    pub exe: PathBuf,
    /// The data directory. `None`: a new directory named `<prefix>-<pid>-<nanos>` under
    /// [`LaunchOptions::parent`], removed on drop unless [`LaunchOptions::keep_data`].
    pub data_dir: Option<PathBuf>,
    /// Where a new data directory is made (default: the system temp dir).
    pub parent: Option<PathBuf>,
    /// Name prefix of a new data directory.
    pub prefix: String,
    /// The admin token (`SLUICE_ADMIN_TOKEN`).
    pub token: String,
    pub log: ChildLog,
    /// `SLUICE_LOG` of the child when this process has none set.
    pub default_log_filter: String,
    /// Further arguments after `serve --listen 127.0.0.1:0 --data-dir D
    /// --allow-private-destinations`.
    pub extra_args: Vec<String>,
    /// Keep a new data directory on drop (it is printed).
    pub keep_data: bool,
    /// How long starting (listening, then `/readyz`) may take.
    pub start_timeout: Duration,
    /// How long [`SluiceProcess::stop`] waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// The admin client's HTTP client (its timeouts); `None`: the client's default.
    pub http: Option<reqwest::Client>,
}

impl LaunchOptions {
    /// Defaults for `exe`: fresh temp data dir, a unique token, log inherited at `warn`.
    pub fn new(exe: impl Into<PathBuf>) -> LaunchOptions {
        LaunchOptions {
            exe: exe.into(),
            data_dir: None,
            parent: None,
            prefix: "sluice".to_owned(),
            token: format!("token-{}", unique()),
            log: ChildLog::Inherit,
            default_log_filter: "warn".to_owned(),
            extra_args: Vec::new(),
            keep_data: false,
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            http: None,
        }
    }
}

/// `<pid>-<nanoseconds since the epoch, hex>`: unique enough for names of this run.
pub fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

/// A `sluice serve` child. Dropped → killed, and its data directory removed if it made it
/// (and was not told to keep it).
pub struct SluiceProcess {
    opts: LaunchOptions,
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    data_dir: PathBuf,
    owns_data_dir: bool,
    admin: AdminClient,
}

impl std::fmt::Debug for SluiceProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluiceProcess")
            .field("pid", &self.pid)
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl SluiceProcess {
    /// Starts the server and returns once it listens and `/readyz` answers 200.
    pub async fn start(opts: LaunchOptions) -> Result<SluiceProcess, LaunchError> {
        let (data_dir, owns_data_dir) = match &opts.data_dir {
            Some(d) => (d.clone(), false),
            None => {
                let parent = opts.parent.clone().unwrap_or_else(std::env::temp_dir);
                (parent.join(format!("{}-{}", opts.prefix, unique())), true)
            }
        };
        std::fs::create_dir_all(&data_dir).map_err(|source| LaunchError::Io {
            path: data_dir.clone(),
            source,
        })?;
        let launched = launch(&opts, &data_dir).await;
        let (child, pid, addr) = match launched {
            Ok(v) => v,
            Err(e) => {
                if owns_data_dir && !opts.keep_data {
                    let _ = std::fs::remove_dir_all(&data_dir);
                }
                return Err(e);
            }
        };
        let admin = admin_client(&opts, addr)?;
        let p = SluiceProcess {
            opts,
            child: Some(child),
            pid,
            addr,
            data_dir,
            owns_data_dir,
            admin,
        };
        p.wait_ready().await?;
        Ok(p)
    }

    /// Starts the server again on the same data directory (after [`SluiceProcess::kill9`] or
    /// [`SluiceProcess::stop`]; a running one is killed first). It listens on a new port.
    pub async fn restart(&mut self) -> Result<(), LaunchError> {
        self.kill9().await;
        let (child, pid, addr) = launch(&self.opts, &self.data_dir).await?;
        self.admin = admin_client(&self.opts, addr)?;
        self.child = Some(child);
        self.pid = pid;
        self.addr = addr;
        self.wait_ready().await
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) -> Result<(), LaunchError> {
        let started = Instant::now();
        let url = self.url("/readyz");
        while started.elapsed() < self.opts.start_timeout {
            if let Ok(r) = self.admin.http().get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LaunchError::Timeout {
            what: "become ready",
            timeout: self.opts.start_timeout,
            log: log_tail(&self.opts.log),
        })
    }

    /// SIGKILL and reap; the data directory stays (see [`SluiceProcess::restart`]).
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the stop timeout. `true` if it
    /// exited on SIGTERM.
    pub async fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        match tokio::time::timeout(self.opts.stop_timeout, child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log file, when the log goes to one.
    pub fn log_path(&self) -> Option<&Path> {
        match &self.opts.log {
            ChildLog::Append(p) => Some(p),
            ChildLog::Inherit => None,
        }
    }

    /// The last `max` bytes of the log file (empty when the log is inherited).
    pub fn log_tail(&self, max: usize) -> String {
        self.log_path().map_or_else(String::new, |p| tail(p, max))
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.opts.token
    }

    /// An admin client for this server (re-made on restart: the port changes).
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }

    /// The HTTP client the admin client uses (for non-admin requests, e.g. ingest).
    pub fn http(&self) -> &reqwest::Client {
        self.admin.http()
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if self.owns_data_dir {
            if self.opts.keep_data {
                eprintln!(
                    "kept the server's data directory: {}",
                    self.data_dir.display()
                );
            } else {
                // The killed child may still hold files open for a moment; removal of the
                // directory entries works regardless on Linux.
                let _ = std::fs::remove_dir_all(&self.data_dir);
            }
        }
    }
}

fn admin_client(opts: &LaunchOptions, addr: SocketAddr) -> Result<AdminClient, LaunchError> {
    let server = format!("http://{addr}");
    Ok(match &opts.http {
        Some(http) => AdminClient::with_http(&server, opts.token.clone(), http.clone())?,
        None => AdminClient::new(&server, opts.token.clone())?,
    })
}

/// Spawns `serve` and reads its stdout until the `listening on http://ADDR` line.
async fn launch(
    opts: &LaunchOptions,
    data_dir: &Path,
) -> Result<(Child, u32, SocketAddr), LaunchError> {
    let stderr = match &opts.log {
        ChildLog::Inherit => Stdio::inherit(),
        ChildLog::Append(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Stdio::from)
            .map_err(|source| LaunchError::Io {
                path: path.clone(),
                source,
            })?,
    };
    let mut cmd = Command::new(&opts.exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--allow-private-destinations")
        .args(&opts.extra_args)
        .env("SLUICE_ADMIN_TOKEN", &opts.token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    if std::env::var_os("SLUICE_LOG").is_none() {
        cmd.env("SLUICE_LOG", &opts.default_log_filter);
    }
    let spawn_error = |source| LaunchError::Spawn {
        exe: opts.exe.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let Some(stdout) = child.stdout.take() else {
        return Err(spawn_error(std::io::Error::other("no stdout pipe")));
    };
    let mut lines = BufReader::new(stdout).lines();
    let listening = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return Some(
                    rest.trim()
                        .parse::<SocketAddr>()
                        .map_err(|_| LaunchError::BadAddress { line: line.clone() }),
                );
            }
        }
        None
    };
    let addr = match tokio::time::timeout(opts.start_timeout, listening).await {
        Ok(Some(addr)) => addr?,
        Ok(None) => {
            let status = child
                .wait()
                .await
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(LaunchError::Exited {
                status,
                log: log_tail(&opts.log),
            });
        }
        Err(_) => {
            return Err(LaunchError::Timeout {
                what: "print its address",
                timeout: opts.start_timeout,
                log: log_tail(&opts.log),
            });
        }
    };
    // Keep draining stdout so that the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id().ok_or(LaunchError::NotRunning)?;
    Ok((child, pid, addr))
}

fn log_tail(log: &ChildLog) -> String {
    match log {
        ChildLog::Inherit => String::new(),
        ChildLog::Append(p) => format!("; its log:\n{}", tail(p, 4000)),
    }
}

/// The last `max` bytes of a file (lossy UTF-8), for failure messages.
pub fn tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
