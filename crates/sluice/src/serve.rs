//! `sluice serve`: opens storage (embedded, or a NATS JetStream cluster shared with other
//! nodes — `serve/store.rs`), loads the catalog, starts the delivery engine and the HTTP
//! API, and shuts all of it down in order on SIGINT/SIGTERM.
//!
//! [`start`] is also what integration tests and `sluice demo` call in-process.

mod forward;
mod shutdown;
pub mod store;

use anyhow::Context as _;
use ipnet::IpNet;
use serde::Deserialize;
use sluice_api::auth::token_digest;
use sluice_api::body::BodyLimits;
use sluice_api::{ApiConfig, Inner};
use sluice_core::address::AddressPolicy;
use sluice_delivery::endpoint::PoolOptions;
use sluice_delivery::{DeliveryEngine, EngineOptions};
use sluice_store::embedded::log::SegmentLog;
use sluice_store::{Catalog, ImpressionLog, MetaStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Everything `sluice serve` can be told, from flags or the `--config` TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub allow_private_destinations: bool,
    /// Networks allowed as destinations even though not public (CIDR).
    pub allow_destinations: Vec<IpNet>,
    pub retention_hours: u64,
    /// Refuse ingest (503) once the log holds this many bytes (0: no limit).
    pub max_storage_bytes: u64,
    /// Impressions per second accepted per environment (0: unlimited).
    pub ingest_rate_limit: u32,
    /// An idle outbound connection (to a webhook destination) is closed after this many
    /// milliseconds (default 15000).
    pub connection_idle_timeout_ms: u64,
    /// Size of the log's segment files in bytes (default: the log's, 64 MiB).
    pub segment_bytes: Option<u64>,
    /// Serve HTTPS with this PEM certificate chain (needs `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `nats://HOST:PORT[,HOST:PORT...]`: share a NATS JetStream cluster with other nodes
    /// (SPEC §7); default: the embedded store in `data_dir`.
    pub store: Option<String>,
    /// This node's name in the cluster (default: host name, listen address and port).
    pub node_id: Option<String>,
    /// The admin API address other nodes forward requests to (default `http://LISTEN`).
    pub advertise_url: Option<String>,
    /// NATS credentials file (JWT + nkey seed).
    pub nats_creds: Option<PathBuf>,
    /// NATS token (default: `SLUICE_NATS_TOKEN`).
    #[serde(skip)]
    pub nats_token: Option<String>,
    /// PEM root certificates to trust for TLS to NATS (implies TLS).
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS to NATS.
    pub nats_tls_cert: Option<PathBuf>,
    pub nats_tls_key: Option<PathBuf>,
    /// Replicas of every JetStream stream and KV bucket (default 3).
    pub replicas: usize,
    /// Per environment, the oldest impressions are removed while its stream is larger
    /// (JetStream `max_bytes`; 0: only the age limit).
    pub nats_max_bytes_per_env: u64,
    /// Failed admin authentications allowed per client address per minute (429 beyond).
    pub auth_failures_per_minute: u32,
    /// One `/metrics` series per integration (default); off for very large fleets, leaving
    /// the aggregates by state.
    pub metrics_per_integration: bool,
    /// Admin token; default: `SLUICE_ADMIN_TOKEN`, else generated into the data dir.
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// Print the start-up banner (address, token) on stdout.
    #[serde(skip)]
    pub banner: bool,
    /// How long a graceful shutdown waits for in-flight requests (a long export) before
    /// it cuts the responses still streaming and closes the store (default 10 s).
    #[serde(skip)]
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./sluice-data"),
            allow_private_destinations: false,
            allow_destinations: Vec::new(),
            retention_hours: 7 * 24,
            max_storage_bytes: 0,
            ingest_rate_limit: 0,
            connection_idle_timeout_ms: 15_000,
            segment_bytes: None,
            tls_cert: None,
            tls_key: None,
            store: None,
            node_id: None,
            advertise_url: None,
            nats_creds: None,
            nats_token: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            replicas: 3,
            nats_max_bytes_per_env: 0,
            auth_failures_per_minute: 30,
            metrics_per_integration: true,
            admin_token: None,
            banner: true,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServeOptions {
    pub fn from_file(path: &Path) -> anyhow::Result<ServeOptions> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// `http` or `https` (with `--tls-cert`).
    pub scheme: &'static str,
    pub admin_token: String,
    pub engine: Arc<DeliveryEngine>,
    pub log: Arc<dyn ImpressionLog>,
    /// The embedded log (`None` on JetStream).
    pub embedded_log: Option<Arc<SegmentLog>>,
    /// This node's name in a cluster (`None` when embedded).
    pub node_id: Option<String>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// The embedded log; panics on a JetStream server (for tests of the embedded store).
    pub fn segment_log(&self) -> Arc<SegmentLog> {
        #[allow(clippy::expect_used, reason = "tests of the embedded store only")]
        self.embedded_log.clone().expect("an embedded store")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests (cutting those still
    /// streaming after `shutdown_grace`), stop delivery, close the log.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    /// Resolves when the server has stopped (after a signal or [`Server::shutdown`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn admin_token(opts: &ServeOptions) -> anyhow::Result<(String, bool)> {
    if let Some(t) = &opts.admin_token {
        return Ok((t.clone(), false));
    }
    if let Ok(t) = std::env::var("SLUICE_ADMIN_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok((t.trim().to_owned(), false));
    }
    let path = opts.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok((t.trim().to_owned(), true));
    }
    let token = format!(
        "adm_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    Ok((token, true))
}

/// The admin token of a cluster: `SLUICE_ADMIN_TOKEN` (or the option), else one generated
/// by the first node and kept in the state bucket, so every node accepts the same token.
async fn cluster_admin_token(
    opts: &ServeOptions,
    meta: &dyn MetaStore,
) -> anyhow::Result<(String, bool)> {
    if opts.admin_token.is_some()
        || std::env::var("SLUICE_ADMIN_TOKEN").is_ok_and(|t| !t.trim().is_empty())
    {
        return admin_token(opts);
    }
    use sluice_store::{Bucket, Expect, StoreError};
    let token = format!(
        "adm_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    match meta
        .put(
            Bucket::State,
            "admin-token",
            token.into_bytes(),
            Expect::Absent,
        )
        .await
    {
        Ok(_) | Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e).context("storing the cluster's admin token"),
    }
    let stored = meta
        .get(Bucket::State, "admin-token")
        .await
        .context("reading the cluster's admin token")?
        .context("the cluster's admin token is missing")?;
    Ok((
        String::from_utf8_lossy(&stored.value).trim().to_owned(),
        true,
    ))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// Opens storage and starts serving. Returns once the listener is bound.
pub async fn start(opts: ServeOptions) -> anyhow::Result<Server> {
    // Certificate problems are start-up errors, found before anything is opened.
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data dir {}", opts.data_dir.display()))?;
    let lock = lock_data_dir(&opts.data_dir)?;
    // Bound first: a node's default cluster name includes the port.
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let opened = store::open(&opts, addr).await?;
    let (log, meta) = (opened.log.clone(), opened.meta.clone());
    let catalog = Arc::new(
        Catalog::load(meta.clone())
            .await
            .context("loading configuration")?,
    );
    // In a cluster, changes made through other nodes are mirrored here.
    let follow = opened.cluster.as_ref().map(|_| catalog.follow());
    let loaded = {
        let snap = catalog.snapshot();
        (
            snap.projects.len(),
            snap.environments.len(),
            snap.integrations.len(),
        )
    };
    let (token, from_data_dir) = match &opened.cluster {
        Some(_) => cluster_admin_token(&opts, meta.as_ref()).await?,
        None => admin_token(&opts)?,
    };
    let policy = AddressPolicy {
        allow_private: opts.allow_private_destinations,
        allow: opts.allow_destinations.clone(),
    };
    let engine = DeliveryEngine::new(
        catalog.clone(),
        log.clone(),
        EngineOptions {
            policy: Arc::new(policy),
            ownership: opened.cluster.as_ref().map_or_else(
                || EngineOptions::default().ownership,
                |c| c.ownership.clone(),
            ),
            pool: PoolOptions {
                idle_timeout: Duration::from_millis(opts.connection_idle_timeout_ms),
                ..PoolOptions::default()
            },
            ..EngineOptions::default()
        },
    );
    let engine_task = engine.start();
    let state = Inner::new(
        catalog,
        log,
        engine.clone(),
        ApiConfig {
            admin_token_digest: token_digest(&token),
            limits: BodyLimits::default(),
            ingest_rate_per_env: (opts.ingest_rate_limit > 0).then_some(opts.ingest_rate_limit),
            auth_failures_per_minute: opts.auth_failures_per_minute,
            per_integration_metrics: opts.metrics_per_integration,
        },
        sluice_api::telemetry::install(),
    );
    let node_id = opened.cluster.as_ref().map(|c| c.node.clone());
    let store_desc = opened.describe.clone();
    tracing::info!(
        event = "started",
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        scheme,
        store = %store_desc,
        node = node_id.as_deref().unwrap_or(""),
        data_dir = %opts.data_dir.display(),
        projects = loaded.0,
        environments = loaded.1,
        integrations = loaded.2,
        "sluice listening on {scheme}://{addr} ({store_desc} store{}; {} integrations)",
        node_id.as_deref().map(|n| format!(", node {n}")).unwrap_or_default(),
        loaded.2
    );
    if opts.banner {
        println!(
            "sluice {} listening on {scheme}://{addr}",
            env!("CARGO_PKG_VERSION")
        );
        println!("data dir: {}", opts.data_dir.display());
        if let Some(n) = &node_id {
            println!("store: {store_desc}, node {n}");
        }
        if from_data_dir && node_id.is_some() {
            println!("admin token: {token}  (kept in the cluster's state bucket)");
        } else if from_data_dir {
            println!(
                "admin token: {token}  (kept in {})",
                opts.data_dir.join("admin-token").display()
            );
        } else {
            println!("admin token: from SLUICE_ADMIN_TOKEN");
        }
        if opts.allow_private_destinations {
            println!(
                "warning: --allow-private-destinations is on: webhooks may reach private and loopback addresses"
            );
        }
    }
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // Set once the grace period is over: responses still streaming are cut.
    let (cut_tx, cut_rx) = watch::channel(false);
    let mut app = sluice_api::router(state.clone());
    if let Some(c) = &opened.cluster {
        let fwd = forward::Forwarder::new(c.ownership.clone());
        // The aggregated status asks each integration's owner (SPEC §7).
        state.set_peers(Arc::new(fwd.clone()));
        app = app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                forward::forward(fwd.clone(), req, next)
            },
        ));
    }
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let cut = cut_rx.clone();
            async move { shutdown::cut_body_on(cut, next.run(req).await) }
        },
    ));
    let task_engine = engine.clone();
    let task_log = opened.embedded.clone();
    let cluster = opened.cluster;
    let grace = opts.shutdown_grace;
    let task = tokio::spawn(async move {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let began = Arc::new(OnceLock::new());
        let shutdown = {
            let state = state.clone();
            let began = began.clone();
            async move {
                tokio::select! {
                    _ = stop_rx.changed() => {},
                    _ = signal() => {},
                }
                state.ready.store(false, Ordering::Relaxed);
                let _ = began.set(std::time::Instant::now());
                tracing::info!(event = "shutting_down", "shutting down");
                let _ = stopping_tx.send(());
            }
        };
        let served = async move {
            match tls {
                Some(config) => match crate::tls::TlsListener::new(listener, config) {
                    Ok(listener) => serve_on(listener, app, shutdown).await,
                    Err(e) => Err(e),
                },
                None => serve_on(listener, app, shutdown).await,
            }
        };
        shutdown::serve_with_grace(served, stopping_rx, grace, &cut_tx).await;
        task_engine.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), engine_task).await;
        if let Some(f) = follow {
            f.abort();
        }
        // The others take this node's integrations over at once.
        if let Some(c) = cluster {
            c.membership.leave().await;
        }
        // Closing joins the writer threads (they sync what is queued): blocking.
        if let Some(task_log) = task_log
            && let Err(e) = tokio::task::spawn_blocking(move || task_log.close()).await
        {
            tracing::error!(error = %e, "closing the impression log failed");
        }
        drop(lock);
        let took_ms = began.get().map_or(0, |t| t.elapsed().as_millis() as u64);
        tracing::info!(event = "stopped", took_ms, "stopped in {took_ms} ms");
    });
    Ok(Server {
        addr,
        scheme,
        admin_token: token,
        engine,
        log: opened.log,
        embedded_log: opened.embedded,
        node_id,
        stop: stop_tx,
        task,
    })
}

/// Serves `app` on `listener` until `shutdown` resolves, with each request's client address
/// available to handlers (the admin authentication limiter counts failures per address).
async fn serve_on<L>(
    listener: L,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt as _;
    // `tap_io` (doing nothing) is what makes the listener's address type the connect info.
    axum::serve(
        listener.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Holds an exclusive lock on `DATA_DIR/LOCK` for the server's life: two processes
/// writing one log would corrupt it. The OS releases the lock if the process dies.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!(
                "another sluice is already using the data dir {}",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
