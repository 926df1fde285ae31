//! Small key-value state with compare-and-swap: configuration, cursors, gaps.
//! Maps onto JetStream KV buckets (revision = KV revision).

use crate::error::StoreError;
use async_trait::async_trait;
use futures_util::stream::BoxStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Projects,
    Environments,
    Integrations,
    /// Delivery cursors and in-flight batch descriptors, per integration.
    Cursors,
    /// Skipped backlog windows, per integration.
    Gaps,
    /// Anything else that must survive restarts (replay jobs, pause state).
    State,
}

impl Bucket {
    pub const ALL: [Bucket; 6] = [
        Bucket::Projects,
        Bucket::Environments,
        Bucket::Integrations,
        Bucket::Cursors,
        Bucket::Gaps,
        Bucket::State,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Projects => "projects",
            Bucket::Environments => "environments",
            Bucket::Integrations => "integrations",
            Bucket::Cursors => "cursors",
            Bucket::Gaps => "gaps",
            Bucket::State => "state",
        }
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Strictly increasing per key; starts at 1.
    pub revision: u64,
}

/// The condition a write requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must be at this revision.
    Revision(u64),
}

/// One committed change of a key, as [`MetaStore::watch`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaChange {
    pub key: String,
    /// The new value; `None`: the key was deleted.
    pub value: Option<Vec<u8>>,
    /// The write's revision (a deletion has one too). Increases along a watch.
    pub revision: u64,
}

/// The changes a watch reports, in commit order.
pub type MetaChanges = BoxStream<'static, Result<MetaChange, StoreError>>;

/// A watch of the keys of a bucket with a prefix (see [`MetaStore::watch`]).
pub struct MetaWatch {
    /// The keys with the prefix when the watch started, in key order.
    pub current: Vec<(String, Versioned)>,
    /// Every change of a key with the prefix committed after `current`, in commit order,
    /// none missed and none repeated. An error ends the watch (the watcher fell too far
    /// behind, or the store became unavailable); watch again to resynchronise.
    pub changes: MetaChanges,
}

impl std::fmt::Debug for MetaWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaWatch")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// All keys of a bucket with a given prefix, in key order.
    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned)>, StoreError>;
    /// Writes durably when `expect` holds; returns the new revision or
    /// [`StoreError::Conflict`]. Concurrent writers share one commit.
    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expect: Expect,
    ) -> Result<u64, StoreError>;
    /// Deletes when `expect` holds (deleting a missing key with `Any` is fine).
    async fn delete(&self, bucket: Bucket, key: &str, expect: Expect) -> Result<(), StoreError>;
    /// The keys of `bucket` starting with `prefix` as they are now, then every committed
    /// change of such a key (what a catalog mirror follows). Nothing committed after the
    /// snapshot is missed; nothing in it is reported again.
    async fn watch(&self, bucket: Bucket, prefix: &str) -> Result<MetaWatch, StoreError>;
}
