//! [`MemoryLog`]: an [`ImpressionLog`] held in memory.

use super::clock::{Clock, TokioClock};
use super::faults::{Faults, Op};
use crate::error::StoreError;
use crate::log::{
    AppendEntry, AppendReceipt, ImpressionLog, LogBounds, MAX_ENTRY_BYTES, StoredEntry,
    validate_env_id,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// Soft cap on the payload bytes one read or scan returns (at least one entry always is),
/// as in the embedded log.
const MAX_READ_BYTES: usize = 32 << 20;

struct EnvData {
    /// Retained entries in offset order.
    entries: VecDeque<StoredEntry>,
    /// Committed end offset.
    next: u64,
    /// Ingest time of the last appended entry (ingest times never go backwards).
    last_ingest_ms: i64,
    watch: watch::Sender<u64>,
}

impl EnvData {
    fn new() -> EnvData {
        EnvData {
            entries: VecDeque::new(),
            next: 0,
            last_ingest_ms: i64::MIN,
            watch: watch::Sender::new(0),
        }
    }

    fn bounds(&self) -> LogBounds {
        LogBounds {
            first: self.entries.front().map_or(self.next, |e| e.base_offset),
            next: self.next,
        }
    }

    /// Drops entries from the front while `doomed` holds; returns how many.
    fn drop_front(&mut self, doomed: impl Fn(&StoredEntry) -> bool) -> usize {
        let mut n = 0;
        while self.entries.front().is_some_and(&doomed) {
            self.entries.pop_front();
            n += 1;
        }
        n
    }
}

/// An [`ImpressionLog`] in memory, with a test-controlled clock, explicit retention and
/// fault injection (see the [module documentation](super)).
pub struct MemoryLog {
    envs: Mutex<HashMap<String, EnvData>>,
    clock: Arc<dyn Clock>,
    faults: Arc<Faults>,
    max_entry_bytes: usize,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog::new()
    }
}

impl MemoryLog {
    /// An empty log whose ingest times follow `tokio::time` ([`TokioClock`]).
    pub fn new() -> MemoryLog {
        MemoryLog::with_clock(Arc::new(TokioClock::new()))
    }

    /// An empty log taking ingest times from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryLog {
        MemoryLog {
            envs: Mutex::new(HashMap::new()),
            clock,
            faults: Arc::new(Faults::default()),
            max_entry_bytes: MAX_ENTRY_BYTES,
        }
    }

    /// Shares `faults` with other stores (one handle fails operations of all of them).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> MemoryLog {
        self.faults = faults;
        self
    }

    /// Refuses entries whose payload is larger than `bytes` (default
    /// [`MAX_ENTRY_BYTES`]), so that a test can hit the limit cheaply.
    pub fn with_max_entry_bytes(mut self, bytes: usize) -> MemoryLog {
        self.max_entry_bytes = bytes;
        self
    }

    /// The faults pending on this log.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, EnvData>> {
        self.envs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends as [`ImpressionLog::append`] does, stamped `ingest_ms` instead of the
    /// clock's time. Ingest times never go backwards within a log: an earlier time is
    /// raised to the previous entry's.
    pub async fn append_at(
        &self,
        env: &str,
        entry: AppendEntry,
        ingest_ms: i64,
    ) -> Result<AppendReceipt, StoreError> {
        validate_env_id(env)?;
        if entry.payload.len() > self.max_entry_bytes {
            return Err(StoreError::EntryTooLarge {
                size: entry.payload.len(),
                limit: self.max_entry_bytes,
            });
        }
        self.faults.write(Op::Append, || {
            let mut envs = self.lock();
            let data = envs.entry(env.to_owned()).or_insert_with(EnvData::new);
            let base_offset = data.next;
            if entry.count == 0 {
                return Ok(AppendReceipt {
                    base_offset,
                    next_offset: base_offset,
                });
            }
            let ingest_ms = ingest_ms.max(data.last_ingest_ms);
            let stored = StoredEntry {
                base_offset,
                count: entry.count,
                ingest_ms,
                min_time: entry.min_time,
                max_time: entry.max_time,
                payload: Bytes::from(entry.payload),
            };
            data.next = stored.end_offset();
            data.last_ingest_ms = ingest_ms;
            data.entries.push_back(stored);
            data.watch.send_replace(data.next);
            Ok(AppendReceipt {
                base_offset,
                next_offset: data.next,
            })
        })
    }

    /// Retention by offset: drops the oldest entries that end at or before `offset`
    /// (whole entries only, as the embedded log drops whole segments). Returns how many
    /// entries were dropped.
    pub fn remove_before(&self, env: &str, offset: u64) -> usize {
        self.lock()
            .get_mut(env)
            .map_or(0, |d| d.drop_front(|e| e.end_offset() <= offset))
    }

    /// Retention by age: drops the oldest entries ingested before `ingest_ms`. Returns
    /// how many entries were dropped.
    pub fn remove_ingested_before(&self, env: &str, ingest_ms: i64) -> usize {
        self.lock()
            .get_mut(env)
            .map_or(0, |d| d.drop_front(|e| e.ingest_ms < ingest_ms))
    }

    /// Entries of `env` matching `keep`, in offset order, until the record or byte
    /// budget is used up (at least one entry when any matches).
    fn collect(
        &self,
        env: &str,
        from: u64,
        max_records: usize,
        keep: impl Fn(&StoredEntry) -> bool,
    ) -> Vec<StoredEntry> {
        let envs = self.lock();
        let Some(data) = envs.get(env) else {
            return Vec::new();
        };
        let start = data.entries.partition_point(|e| e.end_offset() <= from);
        let mut out = Vec::new();
        let (mut records, mut bytes) = (0usize, 0usize);
        for e in data.entries.range(start..).filter(|e| keep(e)) {
            records = records.saturating_add(e.count as usize);
            bytes = bytes.saturating_add(e.payload.len());
            out.push(e.clone());
            if records >= max_records || bytes >= MAX_READ_BYTES {
                break;
            }
        }
        out
    }
}

#[async_trait]
impl ImpressionLog for MemoryLog {
    async fn append(&self, env: &str, entry: AppendEntry) -> Result<AppendReceipt, StoreError> {
        let now = self.clock.now_ms();
        self.append_at(env, entry, now).await
    }

    async fn read(
        &self,
        env: &str,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        validate_env_id(env)?;
        self.faults.check(Op::Read)?;
        Ok(self.collect(env, from, max_records, |_| true))
    }

    async fn bounds(&self, env: &str) -> Result<LogBounds, StoreError> {
        validate_env_id(env)?;
        self.faults.check(Op::Bounds)?;
        Ok(self
            .lock()
            .get(env)
            .map(EnvData::bounds)
            .unwrap_or_default())
    }

    fn subscribe(&self, env: &str) -> watch::Receiver<u64> {
        if validate_env_id(env).is_err() {
            return watch::channel(0).1;
        }
        self.lock()
            .entry(env.to_owned())
            .or_insert_with(EnvData::new)
            .watch
            .subscribe()
    }

    async fn offset_at_ingest_time(&self, env: &str, ingest_ms: i64) -> Result<u64, StoreError> {
        validate_env_id(env)?;
        self.faults.check(Op::OffsetAtIngestTime)?;
        let envs = self.lock();
        let Some(data) = envs.get(env) else {
            return Ok(0);
        };
        let i = data.entries.partition_point(|e| e.ingest_ms < ingest_ms);
        Ok(data.entries.get(i).map_or(data.next, |e| e.base_offset))
    }

    async fn scan_time(
        &self,
        env: &str,
        from_ms: i64,
        to_ms: i64,
        after: u64,
        max_records: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        validate_env_id(env)?;
        self.faults.check(Op::ScanTime)?;
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        Ok(self.collect(env, after, max_records, |e| {
            e.min_time < to_ms && e.max_time >= from_ms
        }))
    }

    async fn remove(&self, env: &str) -> Result<(), StoreError> {
        validate_env_id(env)?;
        self.faults.write(Op::Remove, || {
            if let Some(data) = self.lock().get_mut(env) {
                data.entries.clear();
                data.next = 0;
                data.last_ingest_ms = i64::MIN;
                data.watch.send_replace(0);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Fault, ManualClock};

    fn entry(count: u32, time: i64) -> AppendEntry {
        AppendEntry {
            payload: vec![7; count as usize],
            count,
            min_time: time,
            max_time: time,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ingest_time_follows_paused_tokio_time() {
        let log = MemoryLog::with_clock(Arc::new(TokioClock::starting_at(10_000)));
        log.append("e", entry(2, 0)).await.unwrap();
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        log.append("e", entry(3, 0)).await.unwrap();
        let got = log.read("e", 0, 100).await.unwrap();
        let times: Vec<i64> = got.iter().map(|e| e.ingest_ms).collect();
        assert_eq!(times, [10_000, 70_000]);
        assert_eq!(log.offset_at_ingest_time("e", 10_001).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn explicit_ingest_time_never_goes_backwards() {
        let clock = Arc::new(ManualClock::new(500));
        let log = MemoryLog::with_clock(clock.clone());
        log.append_at("e", entry(1, 0), 1_000).await.unwrap();
        log.append("e", entry(1, 0)).await.unwrap();
        let got = log.read("e", 0, 10).await.unwrap();
        assert_eq!(got[1].ingest_ms, 1_000);
    }

    #[tokio::test]
    async fn retention_calls_drop_whole_entries_from_the_front() {
        let log = MemoryLog::new();
        for t in 0..4 {
            log.append_at("e", entry(10, 0), t * 100).await.unwrap();
        }
        let bounds = |b: LogBounds| (b.first, b.next);
        assert_eq!(log.remove_before("e", 15), 1);
        assert_eq!(bounds(log.bounds("e").await.unwrap()), (10, 40));
        assert_eq!(log.remove_ingested_before("e", 250), 2);
        assert_eq!(bounds(log.bounds("e").await.unwrap()), (30, 40));
        assert_eq!(log.remove_before("absent", 10), 0);
    }

    #[tokio::test]
    async fn oversized_entry_is_refused() {
        let log = MemoryLog::new().with_max_entry_bytes(4);
        assert!(log.append("e", entry(5, 0)).await.is_err());
        assert!(log.append("e", entry(4, 0)).await.is_ok());
    }

    #[tokio::test]
    async fn injected_append_faults() {
        let log = MemoryLog::new();
        log.faults().fail_next(Op::Append, 1, Fault::Fail);
        assert!(matches!(
            log.append("e", entry(1, 0)).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(log.bounds("e").await.unwrap().next, 0);
        log.faults().fail_next(Op::Append, 1, Fault::ApplyThenFail);
        assert!(log.append("e", entry(1, 0)).await.is_err());
        assert_eq!(log.bounds("e").await.unwrap().next, 1);
        log.faults().fail_next(Op::Read, 1, Fault::Fail);
        assert!(log.read("e", 0, 1).await.is_err());
        assert_eq!(log.read("e", 0, 1).await.unwrap().len(), 1);
    }
}
