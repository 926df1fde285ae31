//! The sluice binary's library: subcommands, in-process so that tests and benchmarks can
//! drive them.

pub mod admin_cli;
pub mod bench;
pub mod demo;
pub mod export_cli;
pub mod serve;
pub mod tls;

/// Installs ring as the process-wide rustls provider, once. Plain `reqwest::Client`s (the
/// admin CLI, tests, the bench) need it; delivery clients carry their own configuration.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
