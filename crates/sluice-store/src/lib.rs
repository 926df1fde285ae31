//! Storage for sluice: one interface, implemented by the embedded store (this crate's
//! [`embedded`] module: a segmented append-only log per environment plus redb metadata)
//! and by NATS JetStream ([`nats`]).
//!
//! Two traits, shaped so that JetStream maps onto them directly:
//! - [`ImpressionLog`]: append to / read from a per-environment log by offset (a stream
//!   per environment; offsets are kept exact in message headers);
//! - [`MetaStore`]: small key-value state with compare-and-swap revisions and watches
//!   (JetStream KV).
//!
//! [`memory`] holds in-memory implementations of both traits for other crates' tests.
//! Every implementation passes one conformance suite (`conformance`, for tests). Errors
//! ([`StoreError`]) are typed; only [`StoreError::Unavailable`] is transient.
//!
//! This crate must never know about HTTP or delivery; it stores and returns bytes.

pub mod catalog;
mod change_hub;
#[cfg(any(test, feature = "conformance"))]
#[doc(hidden)]
pub mod conformance;
pub mod embedded;
pub mod error;
pub mod log;
pub mod members;
pub mod memory;
pub mod meta;
pub mod nats;

pub use catalog::Catalog;
pub use error::{Corruption, StoreError, Transient};
pub use log::{
    AppendEntry, AppendReceipt, EnvUsage, ImpressionLog, LogBounds, MAX_ENTRY_BYTES, StoredEntry,
    validate_env_id,
};
pub use meta::{Bucket, Expect, MetaChange, MetaChanges, MetaStore, MetaWatch, Versioned};
