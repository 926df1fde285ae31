//! Connect-time destination guard: a DNS resolver that only hands out allowed addresses.
//!
//! Owns: resolving a webhook's host name (bounded in time) and dropping every resolved address
//! the [`AddressPolicy`] refuses, before the connector ever sees it. reqwest connects only to the
//! addresses this resolver returns, so the check applies to the very addresses connected to: a
//! name that passed the configuration-time check and later re-resolves to an internal address
//! (DNS rebinding) is still refused here.
//!
//! Must never: return an address the policy refuses, connect anywhere itself, or wait on DNS
//! without a bound. IP-literal URLs never reach a resolver (the connector uses them directly), so
//! they are checked in [`super::send()`] instead.

use sluice_core::address::{AddressPolicy, DestinationError};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The future returned by a [`Lookup`].
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static>>;

/// Turns a host name into addresses (unfiltered). The system implementation is
/// [`SystemLookup`]; tests inject closures `Fn(&str) -> impl Future<Output = io::Result<Vec<IpAddr>>>`.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> LookupFuture;
}

impl<F, Fut> Lookup for F
where
    F: Fn(&str) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static,
{
    fn lookup(&self, host: &str) -> LookupFuture {
        Box::pin(self(host))
    }
}

/// The operating system's resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why a host name produced no address to connect to.
#[derive(Debug, Error)]
pub enum GuardError {
    /// Every resolved address was refused by the policy; `err` names the first one.
    #[error("{err} (host {host} resolved to no allowed address)")]
    Refused { host: String, err: DestinationError },
    #[error("host {0} did not resolve to any address")]
    NoAddress(String),
    #[error("resolving host {host} failed: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("resolving host {host} timed out after {after:?}")]
    Timeout { host: String, after: Duration },
}

impl GuardError {
    /// True when the address policy (not DNS) is why there is nothing to connect to.
    pub fn is_refused(&self) -> bool {
        matches!(self, GuardError::Refused { .. })
    }
}

/// A [`reqwest::dns::Resolve`] that filters resolved addresses through an [`AddressPolicy`].
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    lookup: Arc<dyn Lookup>,
    timeout: Duration,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// How long one resolution may take unless [`GuardedResolver::with_timeout`] says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A guard over the system resolver.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self::with_lookup(policy, SystemLookup)
    }

    /// A guard over an injected lookup (tests, or an alternative resolver).
    pub fn with_lookup(policy: Arc<AddressPolicy>, lookup: impl Lookup) -> Self {
        GuardedResolver {
            policy,
            lookup: Arc::new(lookup),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Bounds each resolution to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Resolves `host` and returns the allowed addresses, in resolver order, without duplicates.
    pub async fn resolve_allowed(&self, host: &str) -> Result<Vec<IpAddr>, GuardError> {
        let resolved = match tokio::time::timeout(self.timeout, self.lookup.lookup(host)).await {
            Err(_) => {
                return Err(GuardError::Timeout {
                    host: host.to_owned(),
                    after: self.timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(GuardError::Lookup {
                    host: host.to_owned(),
                    source,
                });
            }
            Ok(Ok(addrs)) => addrs,
        };
        if resolved.is_empty() {
            return Err(GuardError::NoAddress(host.to_owned()));
        }
        let mut allowed: Vec<IpAddr> = Vec::with_capacity(resolved.len());
        let mut first_refusal = None;
        for ip in resolved {
            match self.policy.check(ip) {
                Ok(()) => {
                    if !allowed.contains(&ip) {
                        allowed.push(ip);
                    }
                }
                Err(err) => {
                    tracing::debug!(host, %ip, "resolved address refused by destination policy");
                    first_refusal.get_or_insert(err);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some(err)) => Err(GuardError::Refused {
                host: host.to_owned(),
                err,
            }),
            (true, None) => Err(GuardError::NoAddress(host.to_owned())),
            (false, _) => Ok(allowed),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let ips = this.resolve_allowed(name.as_str()).await?;
            // Port 0 is replaced by the URL's port (or the scheme's default) by reqwest.
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A guard whose "DNS" answers `answer` for every name. Nothing here opens a socket.
    fn fixed(policy: AddressPolicy, answer: &[&str]) -> GuardedResolver {
        let answer: Vec<IpAddr> = answer.iter().map(|a| ip(a)).collect();
        GuardedResolver::with_lookup(Arc::new(policy), move |_host: &str| {
            let answer = answer.clone();
            async move { Ok(answer) }
        })
    }

    #[tokio::test]
    async fn private_addresses_are_filtered_out() {
        let g = fixed(AddressPolicy::default(), &["10.0.0.1", "8.8.8.8"]);
        assert_eq!(
            g.resolve_allowed("mixed.example").await.unwrap(),
            vec![ip("8.8.8.8")]
        );
    }

    #[tokio::test]
    async fn all_refused_is_an_error_naming_the_address() {
        for (answer, shown) in [
            (&["169.254.169.254"][..], "169.254.169.254"),
            (&["::1"][..], "::1"),
            (&["::ffff:127.0.0.1"][..], "::ffff:127.0.0.1"),
            (&["10.0.0.5", "192.168.1.1"][..], "10.0.0.5"),
        ] {
            let g = fixed(AddressPolicy::default(), answer);
            let err = g.resolve_allowed("evil.example").await.unwrap_err();
            assert!(err.is_refused(), "{answer:?}: {err}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!(
                    "destination address {shown} is not a public address"
                )),
                "{msg}"
            );
            assert!(msg.contains("evil.example"), "{msg}");
        }
    }

    #[tokio::test]
    async fn permissive_and_allow_list_policies_let_addresses_through() {
        let g = fixed(AddressPolicy::permissive(), &["10.0.0.1", "::1"]);
        assert_eq!(
            g.resolve_allowed("x").await.unwrap(),
            vec![ip("10.0.0.1"), ip("::1")]
        );
        let p = AddressPolicy {
            allow_private: false,
            allow: vec!["10.1.0.0/16".parse().unwrap()],
        };
        let g = fixed(p, &["10.2.0.1", "10.1.2.3", "10.1.2.3"]);
        assert_eq!(g.resolve_allowed("x").await.unwrap(), vec![ip("10.1.2.3")]);
    }

    #[tokio::test]
    async fn empty_answers_and_lookup_failures_are_not_refusals() {
        let g = fixed(AddressPolicy::default(), &[]);
        assert!(matches!(
            g.resolve_allowed("x").await,
            Err(GuardError::NoAddress(_))
        ));
        let g =
            GuardedResolver::with_lookup(Arc::new(AddressPolicy::default()), |_h: &str| async {
                Err(io::Error::other("no such host"))
            });
        assert!(matches!(
            g.resolve_allowed("x").await,
            Err(GuardError::Lookup { .. })
        ));
    }

    #[tokio::test]
    async fn resolution_time_is_bounded() {
        let g = GuardedResolver::with_lookup(Arc::new(AddressPolicy::default()), |_h: &str| {
            std::future::pending::<io::Result<Vec<IpAddr>>>()
        })
        .with_timeout(Duration::from_millis(50));
        let started = std::time::Instant::now();
        assert!(matches!(
            g.resolve_allowed("slow.example").await,
            Err(GuardError::Timeout { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn reqwest_resolve_returns_only_allowed_socket_addrs() {
        let g = fixed(
            AddressPolicy::default(),
            &["127.0.0.1", "8.8.8.8", "169.254.169.254", "1.1.1.1"],
        );
        let addrs: Vec<SocketAddr> = g
            .resolve("mixed.example".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(
            addrs,
            vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 0),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)), 0),
            ]
        );
        let g = fixed(AddressPolicy::default(), &["169.254.169.254"]);
        let err = match g.resolve("metadata.example".parse().unwrap()).await {
            Ok(_) => panic!("metadata address must be refused"),
            Err(e) => e,
        };
        assert!(
            err.downcast_ref::<GuardError>()
                .is_some_and(|e| e.is_refused())
        );
    }
}
