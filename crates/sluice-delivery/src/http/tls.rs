//! The one TLS client configuration every outbound client shares.
//!
//! Owns: choosing the crypto provider (ring, passed explicitly — never the process-wide default
//! provider, which nothing in sluice installs), the trust roots (Mozilla's, via `webpki-roots`, so
//! the behaviour does not depend on the host's certificate store) and ALPN (`h2`, `http/1.1`).
//!
//! Must never: disable certificate verification, add client certificates, or be rebuilt per
//! request — it is built once and shared as an `Arc` (cheap to clone).

use std::sync::{Arc, OnceLock};

/// The shared client TLS configuration (built on first use).
pub fn client_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| Arc::new(build())).clone()
}

#[allow(
    clippy::expect_used,
    reason = "fails only on a build misconfiguration, never on input or the network"
)]
fn build() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // Not network-dependent: ring supports both TLS 1.2 and 1.3, and the `tls12` feature is
        // on, so this only fails on a build misconfiguration (covered by a unit test).
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest leaves ALPN of a preconfigured config alone: without this, HTTPS would never
    // negotiate HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_once_and_shared() {
        let a = client_tls_config();
        let b = client_tls_config();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!a.alpn_protocols.is_empty());
        assert!(a.crypto_provider().cipher_suites.len() > 1);
    }
}
