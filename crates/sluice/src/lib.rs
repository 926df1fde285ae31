//! The sluice binary's library: subcommands, in-process so that tests and benchmarks can
//! drive them.

pub mod admin_cli;
pub mod bench_cli;
pub mod demo;
pub mod export_cli;
pub mod serve;
pub mod tls;

/// Installs ring as the process-wide rustls provider, once (see the client crate).
pub use sluice_client::install_crypto_provider;
