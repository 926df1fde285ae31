//! Outbound HTTP for delivery: SSRF-safe clients and single attempts (SPEC §3, §6).
//!
//! - [`tls`]: the one shared rustls configuration (ring provider, webpki roots).
//! - [`guard`]: the DNS resolver that drops addresses the [`AddressPolicy`] refuses, so the
//!   policy holds at connect time, after DNS (rebinding included).
//! - [`client`]: building one `reqwest::Client` per integration (own pool; no redirects, no
//!   environment proxies, no decompression, bounded timeouts).
//! - [`send`](mod@send): one POST attempt → [`Outcome`]; checks IP-literal URLs (which never
//!   reach a resolver), caps the response bytes read, parses `Retry-After`.
//!
//! This module never retries, schedules or decides what a failure means for an integration;
//! that is the delivery loop's job. Nothing here may reach a destination except through a client
//! built by [`build_client`] and a URL checked by [`send()`].
//!
//! [`AddressPolicy`]: sluice_core::address::AddressPolicy

pub mod client;
pub mod guard;
pub mod send;
pub mod tls;

pub use client::{ClientOptions, HttpError, build_client, build_client_with_resolver};
pub use guard::{GuardError, GuardedResolver, Lookup, LookupFuture, SystemLookup};
pub use send::{
    Outcome, OutcomeKind, PreparedRequest, SNIPPET_BYTES, parse_retry_after, send, send_within,
};
pub use tls::client_tls_config;
