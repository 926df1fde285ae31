//! The NATS JetStream store: the same two interfaces as [`crate::embedded`], for several
//! sluice nodes sharing one JetStream cluster (SPEC §7).
//!
//! - [`JetStreamLog`] (`log/`): one replicated, file-backed stream per environment;
//!   sluice offsets kept exact in message headers (see [`frame`]), appends group-committed
//!   and chained, acknowledged only once JetStream acknowledged the publish.
//! - [`JetStreamMeta`] (`meta.rs`): one KV bucket per [`crate::Bucket`], revisions = KV
//!   revisions.
//!
//! [`NatsConfig::connect`] opens the connection both share and fails clearly (never hangs)
//! when NATS or JetStream cannot be reached.

mod error;
pub mod frame;
mod log;
pub mod membership;
mod meta;
pub mod names;

pub use log::{JetStreamLog, LogConfig};
pub use meta::JetStreamMeta;

use crate::error::{StoreError, Transient};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach and use the JetStream cluster.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://HOST:PORT` (or `tls://`) of one or more servers.
    pub servers: Vec<String>,
    /// A `.creds` file (JWT + nkey seed).
    pub credentials: Option<PathBuf>,
    /// A token, when the servers authenticate with one.
    pub token: Option<String>,
    /// PEM root certificates to trust for TLS to NATS (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate and key (mutual TLS).
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Require TLS even without a custom CA.
    pub tls_required: bool,
    /// Replicas of every stream and bucket (3 in production; 1 on a single node).
    pub replicas: usize,
    /// How long connecting may take before start-up fails.
    pub connect_timeout: Duration,
    /// JetStream API and publish-acknowledgement timeout.
    pub request_timeout: Duration,
    /// Name of this client connection (shown by the server's monitoring).
    pub name: String,
}

impl NatsConfig {
    /// Parses `nats://HOST:PORT[,HOST:PORT...]` (the `--store` value); hosts after the first
    /// may omit the scheme.
    pub fn from_url(url: &str) -> Result<NatsConfig, StoreError> {
        let bad = |why: &str| StoreError::Config(format!("--store {url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected nats://HOST:PORT[,HOST:PORT...]"))?;
        if scheme != "nats" && scheme != "tls" {
            return Err(bad("the scheme must be nats:// or tls://"));
        }
        let mut servers = Vec::new();
        for host in rest.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let host = host.split_once("://").map_or(host, |(_, h)| h);
            if host.contains('/') || host.contains('@') {
                return Err(bad(
                    "give credentials with --nats-creds/--nats-token, not in the URL",
                ));
            }
            servers.push(format!("{scheme}://{host}"));
        }
        if servers.is_empty() {
            return Err(bad("no server given"));
        }
        Ok(NatsConfig {
            tls_required: scheme == "tls",
            servers,
            credentials: None,
            token: None,
            tls_ca: None,
            tls_client: None,
            replicas: 3,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            name: "sluice".into(),
        })
    }

    /// Connects and checks that JetStream answers. Fails with `Unavailable` (naming the
    /// servers) when NATS is unreachable or JetStream is not enabled or has no leader,
    /// within about `connect_timeout` twice; with `Config` for an unusable credentials
    /// file or server address.
    pub async fn connect(&self) -> Result<NatsConnection, StoreError> {
        let servers = self.servers.join(",");
        let what = || format!("connecting to NATS at {servers}");
        let bad = |why: String| StoreError::Config(format!("NATS at {servers}: {why}"));
        let mut opts = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.request_timeout))
            .require_tls(self.tls_required || self.tls_ca.is_some() || self.tls_client.is_some());
        if let Some(path) = &self.credentials {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| bad(format!("credentials file {}: {e}", path.display())))?;
        }
        if let Some(token) = &self.token {
            opts = opts.token(token.clone());
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let addrs: Vec<async_nats::ServerAddr> = self
            .servers
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| bad(format!("bad address {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let connect = opts.connect(addrs);
        let client = tokio::time::timeout(self.connect_timeout * 2, connect)
            .await
            .map_err(|_| {
                StoreError::unavailable(what(), Transient::Timeout(self.connect_timeout * 2))
            })?
            .map_err(|e| StoreError::unavailable(what(), Transient::jetstream(e)))?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(self.request_timeout)
            .backpressure_on_inflight(true)
            .build(client.clone());
        tokio::time::timeout(self.request_timeout * 2, js.query_account())
            .await
            .map_err(|_| {
                StoreError::unavailable(
                    format!("{} (no JetStream meta leader?)", what()),
                    Transient::Timeout(self.request_timeout * 2),
                )
            })?
            .map_err(|e| StoreError::unavailable(what(), Transient::jetstream(e)))?;
        Ok(NatsConnection {
            client,
            js,
            replicas: self.replicas.max(1),
        })
    }
}

/// A connection to a JetStream cluster, shared by the log and the meta store.
#[derive(Clone, Debug)]
pub struct NatsConnection {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub replicas: usize,
}

#[cfg(test)]
mod tests;
