//! Opening storage for `sluice serve`: the embedded log and metadata in the data
//! directory (the default), or a NATS JetStream cluster shared with other sluice nodes
//! (`--store nats://…`, SPEC §7), with this node's membership in the cluster.

use super::ServeOptions;
use anyhow::Context as _;
use sluice_delivery::Ownership;
use sluice_store::embedded::log::{LogOptions, SegmentLog};
use sluice_store::embedded::meta::RedbMeta;
use sluice_store::members::NodeInfo;
use sluice_store::nats::membership::{Membership, MembershipConfig};
use sluice_store::nats::{JetStreamLog, JetStreamMeta, LogConfig, NatsConfig};
use sluice_store::{ImpressionLog, MetaStore};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The storage a server runs on.
pub struct Opened {
    pub log: Arc<dyn ImpressionLog>,
    pub meta: Arc<dyn MetaStore>,
    /// The embedded log (closed on shutdown); `None` on JetStream.
    pub embedded: Option<Arc<SegmentLog>>,
    /// This node's place in a cluster; `None` when embedded.
    pub cluster: Option<ClusterNode>,
    /// What the start-up line says: `embedded` or the NATS servers.
    pub describe: String,
}

/// A node of a JetStream cluster.
pub struct ClusterNode {
    pub node: String,
    pub membership: Membership,
    pub ownership: Ownership,
}

/// Whether `--store` asks for JetStream.
pub fn is_nats(store: Option<&str>) -> bool {
    store.is_some_and(|s| !s.is_empty() && s != "embedded")
}

pub async fn open(opts: &ServeOptions, addr: SocketAddr) -> anyhow::Result<Opened> {
    match opts.store.as_deref() {
        Some(url) if is_nats(Some(url)) => open_nats(opts, url, addr).await,
        _ => open_embedded(opts).await,
    }
}

async fn open_embedded(opts: &ServeOptions) -> anyhow::Result<Opened> {
    let log_opts = LogOptions {
        retention_ms: (opts.retention_hours.max(1) * 3600 * 1000) as i64,
        max_total_bytes: (opts.max_storage_bytes > 0).then_some(opts.max_storage_bytes),
        segment_bytes: opts
            .segment_bytes
            .unwrap_or(LogOptions::default().segment_bytes),
        ..LogOptions::default()
    };
    let log_dir = opts.data_dir.join("log");
    // Opening recovers segments from disk: blocking work, off the async workers.
    let seg_log = Arc::new(
        tokio::task::spawn_blocking(move || SegmentLog::open(&log_dir, log_opts))
            .await
            .context("opening the impression log")?
            .context("opening the impression log")?,
    );
    let meta: Arc<dyn MetaStore> = Arc::new(
        RedbMeta::open(&opts.data_dir.join("meta.redb")).context("opening the metadata store")?,
    );
    Ok(Opened {
        log: seg_log.clone(),
        meta,
        embedded: Some(seg_log),
        cluster: None,
        describe: "embedded".to_owned(),
    })
}

/// The default node id: unique and stable per host and listen address.
pub fn default_node_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sluice".to_owned());
    let ip = addr.ip().to_string().replace([':', '.'], "-");
    format!("{host}-{ip}-{}", addr.port())
}

async fn open_nats(opts: &ServeOptions, url: &str, addr: SocketAddr) -> anyhow::Result<Opened> {
    let node = opts
        .node_id
        .clone()
        .unwrap_or_else(|| default_node_id(addr));
    let mut cfg = NatsConfig::from_url(url)?;
    cfg.credentials = opts.nats_creds.clone();
    cfg.token = opts.nats_token.clone();
    cfg.tls_ca = opts.nats_tls_ca.clone();
    cfg.tls_client = match (&opts.nats_tls_cert, &opts.nats_tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => anyhow::bail!("--nats-tls-cert and --nats-tls-key go together: give both or neither"),
    };
    cfg.replicas = opts.replicas.max(1);
    cfg.name = format!("sluice {node}");
    let conn = cfg.connect().await.with_context(|| {
        format!("cannot use the NATS JetStream cluster at {url} (is it running, with JetStream enabled, and reachable from here?)")
    })?;
    let log_cfg = LogConfig {
        max_age: Duration::from_secs(opts.retention_hours.max(1) * 3600),
        max_bytes_per_env: (opts.nats_max_bytes_per_env > 0).then_some(opts.nats_max_bytes_per_env),
        ..LogConfig::default()
    };
    let log = Arc::new(
        JetStreamLog::open(conn.clone(), log_cfg)
            .await
            .context("opening the impression log on JetStream")?,
    );
    let meta: Arc<dyn MetaStore> = Arc::new(
        JetStreamMeta::open(conn.clone())
            .await
            .context("opening the metadata buckets on JetStream")?,
    );
    let url_self = opts
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let membership = Membership::start(
        conn.client.clone(),
        MembershipConfig::new(node.clone(), NodeInfo { url: url_self }),
    )
    .await
    .context("joining the cluster")?;
    // One appender per environment: appends go to the environment's rendezvous owner
    // among the live nodes instead of every node racing on the stream's tail. The live
    // set, not the settled view: nodes agree sooner (a joining node is heard within a
    // heartbeat, the settled view waits 1.5 s more), and disagreeing costs only
    // contention, never correctness.
    log.route_appends(&node, membership.live())
        .await
        .context("taking forwarded appends")?;
    let ownership = Ownership::following(&node, membership.view());
    Ok(Opened {
        log,
        meta,
        embedded: None,
        cluster: Some(ClusterNode {
            node,
            membership,
            ownership,
        }),
        describe: format!("nats ({})", cfg.servers.join(",")),
    })
}
