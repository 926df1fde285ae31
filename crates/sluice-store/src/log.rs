//! The impression log interface: one append-only log per environment, addressed by offset.

use crate::error::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

/// Largest entry payload an [`ImpressionLog`] accepts (256 MiB); a larger one is refused.
pub const MAX_ENTRY_BYTES: usize = 256 << 20;

/// Accepts exactly the environment ids sluice issues: `[A-Za-z0-9_.-]{1,64}`, not
/// starting with `.`. Every [`ImpressionLog`] refuses other ids (an embedded log builds
/// paths from them, a JetStream log subjects).
pub fn validate_env_id(env: &str) -> Result<(), StoreError> {
    let ok = !env.is_empty()
        && env.len() <= 64
        && !env.starts_with('.')
        && env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidEnvId(env.to_owned()))
    }
}

/// One entry to append: the impressions of one ingest request, encoded by
/// `sluice_core::record::encode_entry`.
#[derive(Debug, Clone)]
pub struct AppendEntry {
    pub payload: Vec<u8>,
    /// Number of impressions in `payload` (offsets consumed).
    pub count: u32,
    /// Smallest and largest impression `time` in the entry (for the time index).
    pub min_time: i64,
    pub max_time: i64,
}

impl From<sluice_core::record::EncodedEntry> for AppendEntry {
    fn from(e: sluice_core::record::EncodedEntry) -> Self {
        AppendEntry {
            payload: e.payload,
            count: e.count,
            min_time: e.min_time,
            max_time: e.max_time,
        }
    }
}

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Offset of the entry's first impression.
    pub base_offset: u64,
    /// Offset after its last impression.
    pub next_offset: u64,
}

/// An entry read back from the log.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Offset of the entry's first impression; impressions are `base_offset..base_offset+count`.
    pub base_offset: u64,
    pub count: u32,
    /// When sluice stored the entry (ms since epoch).
    pub ingest_ms: i64,
    pub min_time: i64,
    pub max_time: i64,
    pub payload: Bytes,
}

impl StoredEntry {
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

/// The retained range of an environment's log: offsets `first..next` can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogBounds {
    /// First offset still retained (older ones were removed by retention).
    pub first: u64,
    /// Offset the next appended impression will get (= committed end of the log).
    pub next: u64,
}

#[async_trait]
pub trait ImpressionLog: Send + Sync + 'static {
    /// Appends one entry to `env`'s log (creating the log on first use). Returns only
    /// once the entry is durable: fsynced (embedded) or acknowledged by the stream
    /// (JetStream). Concurrent appends share one fsync (group commit).
    async fn append(&self, env: &str, entry: AppendEntry) -> Result<AppendReceipt, StoreError>;

    /// Reads committed entries holding offsets `>= from`, in offset order, stopping once
    /// at least `max_records` impressions are returned (at least one entry when any is
    /// available). The first entry may start before `from`; callers skip what they have.
    /// If `from` is below the retained range, reading starts at the first retained entry.
    async fn read(
        &self,
        env: &str,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<StoredEntry>, StoreError>;

    /// The retained range of `env`'s log (all zeros for a log never written).
    async fn bounds(&self, env: &str) -> Result<LogBounds, StoreError>;

    /// A receiver of `env`'s committed end offset; it changes after every durable append.
    fn subscribe(&self, env: &str) -> watch::Receiver<u64>;

    /// The offset of the first entry stored at or after `ingest_ms` (the end offset if
    /// none): where a consumer skipping a too-old backlog should resume.
    async fn offset_at_ingest_time(&self, env: &str, ingest_ms: i64) -> Result<u64, StoreError>;

    /// Entries that may hold impressions whose `time` is in `[from_ms, to_ms)`, starting at
    /// offset `after` and in offset order, using the time index so that a narrow window
    /// does not scan the whole log. Returns at most about `max_records` impressions'
    /// entries; an empty result means the scan is complete.
    async fn scan_time(
        &self,
        env: &str,
        from_ms: i64,
        to_ms: i64,
        after: u64,
        max_records: usize,
    ) -> Result<Vec<StoredEntry>, StoreError>;

    /// Removes `env`'s log entirely (its environment was deleted).
    async fn remove(&self, env: &str) -> Result<(), StoreError>;

    /// Makes `env` ready for appends ahead of the first one, where a store has something to
    /// create per environment (JetStream: the replicated stream, which took more than the
    /// 5 s write timeout under load when the first ingest request had to create it). The
    /// first append still creates it if this was never called or failed.
    async fn prepare(&self, env: &str) -> Result<(), StoreError> {
        validate_env_id(env)
    }

    /// What each environment's log holds on this machine's disk, for metrics (never
    /// blocks: from memory). Stores that keep nothing locally report nothing.
    fn usage(&self) -> Vec<EnvUsage> {
        Vec::new()
    }
}

/// One environment's log on disk (see [`ImpressionLog::usage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvUsage {
    pub env: String,
    /// Committed segment bytes.
    pub bytes: u64,
    /// Segment files (sealed and active).
    pub segments: u64,
}
