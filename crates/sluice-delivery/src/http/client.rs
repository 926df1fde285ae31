//! Building the `reqwest::Client` that integrations' attempts go through.
//!
//! Owns: every transport setting of outbound delivery — the guarded resolver (connect-time
//! address policy), the shared TLS configuration, timeouts, pooling, and the things that are
//! switched off: redirects (never followed: a 3xx is just a non-200 outcome, so a destination can
//! never bounce us to an internal address), proxies from `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`
//! (a proxy would connect on our behalf, bypassing the resolver guard), and automatic response
//! decompression (a small gzip bomb must not turn into a large allocation).
//!
//! **Shared by integrations** (see `crate::endpoint`'s `http.rs`): one client per distinct
//! connect timeout, its pool keyed by destination, idle connections closed after
//! `pool_idle_timeout`. The pool never limits connections per host (only idle ones), so a
//! destination that hangs or black-holes requests ties up only the connections of its own
//! requests, never one another integration's request waits for; each attempt carries its
//! integration's own total timeout.
//!
//! Must never: follow redirects, read proxy settings from the environment, or resolve names
//! through anything but [`GuardedResolver`].

use super::guard::GuardedResolver;
use sluice_core::address::AddressPolicy;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Transport settings of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Checked against every resolved address at connect time.
    pub policy: Arc<AddressPolicy>,
    /// Establishing a connection: name resolution, TCP connect and TLS handshake together.
    pub connect_timeout: Duration,
    /// Whole attempt: resolve, connect, send, and read the (capped) response body.
    pub request_timeout: Duration,
    /// Sent as `User-Agent` on every request (`sluice/<version>`).
    pub user_agent: String,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// At most this many idle connections are kept per host.
    pub pool_max_idle_per_host: usize,
}

/// Why a client could not be built.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("user agent {0:?} is not a valid header value")]
    UserAgent(String),
    #[error("building the HTTP client failed: {0}")]
    Build(#[source] reqwest::Error),
}

/// Builds an integration's client over the system resolver, guarded by `opts.policy`.
pub fn build_client(
    opts: &ClientOptions,
    tls: Arc<rustls::ClientConfig>,
) -> Result<reqwest::Client, HttpError> {
    let resolver = GuardedResolver::new(opts.policy.clone());
    build_client_with_resolver(opts, tls, resolver)
}

/// Like [`build_client`] with an explicit resolver (e.g. one over an injected lookup in tests).
/// The resolver's own policy is the one applied at connect time.
pub fn build_client_with_resolver(
    opts: &ClientOptions,
    tls: Arc<rustls::ClientConfig>,
    resolver: GuardedResolver,
) -> Result<reqwest::Client, HttpError> {
    let user_agent = reqwest::header::HeaderValue::from_str(&opts.user_agent)
        .map_err(|_| HttpError::UserAgent(opts.user_agent.clone()))?;
    // reqwest only recognises an owned `rustls::ClientConfig` here (anything else, including an
    // `Arc`, silently becomes an "unknown TLS backend" build error). Cloning the config is cheap:
    // its provider, roots and verifier are behind `Arc`s.
    let tls: rustls::ClientConfig = (*tls).clone();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(resolver)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .user_agent(user_agent)
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.request_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(opts.pool_idle_timeout)
        .pool_max_idle_per_host(opts.pool_max_idle_per_host)
        .build()
        .map_err(HttpError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tls::client_tls_config;

    fn opts(user_agent: &str) -> ClientOptions {
        ClientOptions {
            policy: Arc::new(AddressPolicy::default()),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            user_agent: user_agent.into(),
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 2,
        }
    }

    #[test]
    fn builds_with_the_shared_tls_config() {
        assert!(build_client(&opts("sluice/0.1.0"), client_tls_config()).is_ok());
    }

    #[test]
    fn bad_user_agent_is_an_error_not_a_panic() {
        let err = build_client(&opts("bad\nagent"), client_tls_config()).unwrap_err();
        assert!(matches!(err, HttpError::UserAgent(_)), "{err}");
    }
}
