//! Storage for sluice: one interface, implemented by the embedded store (this crate's
//! [`embedded`] module: a segmented append-only log per environment plus redb metadata)
//! and, later, by NATS JetStream.
//!
//! Two traits, shaped so that JetStream maps onto them directly:
//! - [`ImpressionLog`]: append to / read from a per-environment log by offset (a stream
//!   subject per environment; offsets are stream sequence numbers);
//! - [`MetaStore`]: small key-value state with compare-and-swap revisions (JetStream KV).
//!
//! [`memory`] holds in-memory implementations of both traits for other crates' tests.
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
pub mod memory;
pub mod meta;
pub mod nats;

pub use catalog::Catalog;
pub use error::{Corruption, StoreError, Transient};
pub use log::{
    AppendEntry, AppendReceipt, ImpressionLog, LogBounds, MAX_ENTRY_BYTES, StoredEntry,
    validate_env_id,
};
pub use meta::{Bucket, Expect, MetaChange, MetaChanges, MetaStore, MetaWatch, Versioned};
