//! The embedded durable impression log: [`SegmentLog`], an [`ImpressionLog`] made of
//! one directory of segment files per environment.
//!
//! ```text
//! <dir>/<env id>/00000000000000000000.log   frames (see `frame`), named by first offset
//! <dir>/<env id>/00000000000000000000.idx   rebuildable index sidecar of a sealed segment
//! ```
//!
//! This file owns the public API, the options and the state shared by the writer threads
//! (`writer`), readers (`read`), retention (`retention`) and start-up (`recovery`).
//! Appends are acknowledged only after `fdatasync`; readers only ever see fsynced
//! entries; blocking file I/O never runs on async worker threads.

mod env;
mod frame;
mod index;
mod read;
mod recovery;
mod retention;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

pub use retention::RetentionReport;

use crate::embedded::disk::{self, Disk};
use crate::error::{StoreError, Transient};
use crate::log::{AppendEntry, AppendReceipt, ImpressionLog, LogBounds, StoredEntry};
use async_trait::async_trait;
use env::{EnvLog, EnvState, validate_env_id};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::{error, warn};

/// Largest segment size honoured (a larger `segment_bytes` is clamped to this).
const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Options of a [`SegmentLog`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Roll to a new segment when the active one would grow past this (default 64 MiB,
    /// at most 1 GiB). An entry larger than this gets a segment of its own.
    pub segment_bytes: u64,
    /// Roll the active segment when its first entry is older than this (default 1 hour),
    /// so that age-based retention can delete quiet environments' data on time.
    pub segment_max_age_ms: i64,
    /// Delete sealed segments whose newest entry was ingested longer ago (default 7 days).
    pub retention_ms: i64,
    /// Per environment, delete the oldest sealed segments while its log is larger than
    /// this (default: no limit).
    pub retention_bytes_per_env: Option<u64>,
    /// Refuse appends with `Unavailable("storage full")` when the segment bytes of all
    /// environments would exceed this even after retention (default: no limit).
    pub max_total_bytes: Option<u64>,
    /// Number of group-commit writer threads; environments are hashed onto them
    /// (default 2).
    pub writer_threads: usize,
    /// How often the background thread applies retention (default 60 s; zero disables
    /// the thread, leaving [`SegmentLog::enforce_retention`] to the caller).
    pub retention_interval: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            segment_max_age_ms: 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes_per_env: None,
            max_total_bytes: None,
            writer_threads: 2,
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// Counters since open, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Group-commit rounds run by the writer threads.
    pub rounds: u64,
    /// `fdatasync` calls on segment files.
    pub fsyncs: u64,
    /// `fsync` calls on directories (new segments and environments).
    pub dir_fsyncs: u64,
    /// Entries durably appended.
    pub entries_appended: u64,
    /// Frame bytes durably appended.
    pub bytes_appended: u64,
    /// Segments whose entries a time scan examined (segments skipped whole do not count).
    pub scan_segments_examined: u64,
    /// Index entries a time scan examined.
    pub scan_entries_examined: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Current segment bytes on disk over all environments (including appends in flight).
    pub total_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    rounds: AtomicU64,
    fsyncs: AtomicU64,
    dir_fsyncs: AtomicU64,
    entries_appended: AtomicU64,
    bytes_appended: AtomicU64,
    scan_segments_examined: AtomicU64,
    scan_entries_examined: AtomicU64,
    segments_deleted: AtomicU64,
}

/// State shared by the log handle, the writer threads and the retention thread.
pub(crate) struct Shared {
    root: PathBuf,
    /// Every file operation goes through it (the OS, or a simulated disk in tests).
    disk: Arc<dyn Disk>,
    opts: LogOptions,
    envs: RwLock<HashMap<String, Arc<EnvLog>>>,
    /// Committed plus reserved segment bytes over all environments.
    total_bytes: AtomicU64,
    counters: Counters,
    /// Test hook: the next this-many chunk writes fail with ENOSPC after writing.
    #[cfg(test)]
    fail_writes: std::sync::atomic::AtomicU32,
}

impl Shared {
    fn env(&self, id: &str) -> Option<Arc<EnvLog>> {
        self.envs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The environment's log object, created (in memory only) if new. `id` must be valid.
    fn env_or_create(&self, id: &str) -> Arc<EnvLog> {
        if let Some(env) = self.env(id) {
            return env;
        }
        let mut envs = self.envs.write().unwrap_or_else(PoisonError::into_inner);
        envs.entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(EnvLog::new(
                    id.to_string(),
                    &self.root,
                    self.writer_for(id),
                    self.disk.clone(),
                    EnvState::empty(),
                ))
            })
            .clone()
    }

    fn all_envs(&self) -> Vec<Arc<EnvLog>> {
        self.envs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn writer_for(&self, id: &str) -> usize {
        // FNV-1a: stable across runs, good enough to spread environment ids.
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        (h % self.opts.writer_threads.max(1) as u64) as usize
    }

    /// Reserves `n` bytes of the global budget; false if that would exceed it.
    fn try_reserve(&self, n: u64) -> bool {
        let Some(max) = self.opts.max_total_bytes else {
            self.total_bytes.fetch_add(n, Ordering::Relaxed);
            return true;
        };
        self.total_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                cur.checked_add(n).filter(|t| *t <= max)
            })
            .is_ok()
    }

    /// Test hook (see `fail_writes`); a no-op outside tests.
    #[cfg(not(test))]
    #[inline(always)]
    fn failpoint(&self) -> std::io::Result<()> {
        Ok(())
    }

    #[cfg(test)]
    fn failpoint(&self) -> std::io::Result<()> {
        let take = |n: u32| n.checked_sub(1);
        match self
            .fail_writes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
        {
            Ok(_) => Err(std::io::Error::from_raw_os_error(28)),
            Err(_) => Ok(()),
        }
    }

    fn release(&self, n: u64) {
        let _ = self
            .total_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some(cur.saturating_sub(n))
            });
    }
}

/// Scans `bytes` as start-up recovery scans an active segment file starting at offset
/// 0 (magic, length, checksum, dense offsets, frame by frame), and reads the frames it
/// accepts back with their checksums verified: `(frames accepted, bytes they span)`.
/// Never panics, whatever the bytes — the entry point of the `segment_frames` fuzz target.
#[doc(hidden)]
pub fn scan_segment_bytes(bytes: &[u8]) -> Result<(usize, u64), StoreError> {
    let file = disk::BytesFile(bytes);
    let scan = segment::scan_file(&file, 0, bytes.len() as u64)?;
    let mut out = Vec::with_capacity(scan.entries.len());
    segment::read_entries(&file, Path::new("fuzz"), &scan.entries, &mut out)?;
    Ok((out.len(), scan.good_len))
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The embedded, durable, segmented impression log. See the module documentation.
pub struct SegmentLog {
    shared: Arc<Shared>,
    /// One sender per writer thread; emptied by [`SegmentLog::close`].
    senders: RwLock<Vec<mpsc::Sender<writer::Command>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    retention_stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl std::fmt::Debug for SegmentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentLog")
            .field("dir", &self.shared.root)
            .finish_non_exhaustive()
    }
}

impl SegmentLog {
    /// Opens (creating if needed) the log rooted at `dir`, recovering every environment's
    /// segments (see `recovery`), and starts the writer and retention threads. Blocking:
    /// call it before starting to serve, or from `spawn_blocking`.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<SegmentLog, StoreError> {
        SegmentLog::open_on(disk::os(), dir, opts)
    }

    /// [`SegmentLog::open`] on a given disk (tests put the log on a
    /// [`SimDisk`](crate::embedded::disk::SimDisk)).
    pub fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        mut opts: LogOptions,
    ) -> Result<SegmentLog, StoreError> {
        opts.segment_bytes = opts.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
        opts.writer_threads = opts.writer_threads.clamp(1, 64);
        opts.segment_max_age_ms = opts.segment_max_age_ms.max(1);
        disk::create_dir_durable(&*disk, dir)?;
        let shared = Shared {
            root: dir.to_path_buf(),
            disk: disk.clone(),
            opts,
            envs: RwLock::new(HashMap::new()),
            total_bytes: AtomicU64::new(0),
            counters: Counters::default(),
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicU32::new(0),
        };
        let mut envs = HashMap::new();
        let mut total = 0;
        for entry in disk.list_dir(dir)? {
            if !entry.is_dir {
                continue;
            }
            let name = entry.name.as_str();
            let path = dir.join(name);
            if name.starts_with(".trash-") {
                if let Err(e) = disk.remove_dir_all(&path) {
                    warn!(path = %path.display(), error = %e, "could not delete a removed environment's log");
                }
                continue;
            }
            if validate_env_id(name).is_err() {
                warn!(path = %path.display(), "ignoring a directory that is not an environment id in the log directory");
                continue;
            }
            let state = recovery::recover_env(&*disk, &path, name)?;
            total += state.bytes();
            let env = EnvLog::new(
                name.to_string(),
                dir,
                shared.writer_for(name),
                disk.clone(),
                state,
            );
            envs.insert(name.to_string(), Arc::new(env));
        }
        shared.total_bytes.store(total, Ordering::Relaxed);
        *shared.envs.write().unwrap_or_else(PoisonError::into_inner) = envs;
        let shared = Arc::new(shared);

        let log = SegmentLog {
            shared: shared.clone(),
            senders: RwLock::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            retention_stop: Mutex::new(None),
        };
        for n in 0..shared.opts.writer_threads {
            let (tx, handle) = writer::spawn(shared.clone(), n)?;
            log.senders
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .push(tx);
            log.threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        if !shared.opts.retention_interval.is_zero() {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let interval = shared.opts.retention_interval;
            let sh = shared.clone();
            let handle = std::thread::Builder::new()
                .name("sluice-log-retention".into())
                .spawn(move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval)
                    {
                        retention::enforce(&sh, now_ms());
                    }
                })?;
            *log.retention_stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(stop_tx);
            log.threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        Ok(log)
    }

    /// Applies retention as of `now_ms` (ms since epoch): deletes sealed segments whose
    /// newest entry is older than `retention_ms`, then the oldest sealed segments of each
    /// environment over `retention_bytes_per_env`. Never deletes an active segment.
    /// Blocking (unlinks files); also run every `retention_interval` by a background thread.
    pub fn enforce_retention(&self, now_ms: i64) -> RetentionReport {
        retention::enforce(&self.shared, now_ms)
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LogStats {
            rounds: get(&c.rounds),
            fsyncs: get(&c.fsyncs),
            dir_fsyncs: get(&c.dir_fsyncs),
            entries_appended: get(&c.entries_appended),
            bytes_appended: get(&c.bytes_appended),
            scan_segments_examined: get(&c.scan_segments_examined),
            scan_entries_examined: get(&c.scan_entries_examined),
            segments_deleted: get(&c.segments_deleted),
            total_bytes: get(&self.shared.total_bytes),
        }
    }

    /// Stops accepting appends, lets the writer threads write and sync everything already
    /// queued, and joins them and the retention thread. Idempotent; also run on drop.
    /// Blocking: from async code, call it via `spawn_blocking` (or just drop the log).
    pub fn close(&self) {
        drop(std::mem::take(
            &mut *self.senders.write().unwrap_or_else(PoisonError::into_inner),
        ));
        drop(
            self.retention_stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            if t.join().is_err() {
                error!("a log thread panicked");
            }
        }
    }

    fn send(&self, env: &EnvLog, cmd: writer::Command) -> Result<(), StoreError> {
        let senders = self.senders.read().unwrap_or_else(PoisonError::into_inner);
        let closed =
            || StoreError::unavailable(format!("writing the log of {}", env.id), Transient::Closed);
        senders
            .get(env.writer)
            .ok_or_else(closed)?
            .send(cmd)
            .map_err(|_| closed())
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        self.close();
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::unavailable("reading the log", Transient::task(e)))?
}

#[async_trait]
impl ImpressionLog for SegmentLog {
    fn usage(&self) -> Vec<crate::log::EnvUsage> {
        let mut usage: Vec<crate::log::EnvUsage> = self
            .shared
            .all_envs()
            .iter()
            .map(|env| {
                let st = env.read();
                crate::log::EnvUsage {
                    env: env.id.clone(),
                    bytes: st.bytes(),
                    segments: st.segments.len() as u64,
                }
            })
            .collect();
        usage.sort_by(|a, b| a.env.cmp(&b.env));
        usage
    }

    async fn append(&self, env: &str, entry: AppendEntry) -> Result<AppendReceipt, StoreError> {
        validate_env_id(env)?;
        if entry.payload.len() > frame::MAX_PAYLOAD {
            return Err(StoreError::EntryTooLarge {
                size: entry.payload.len(),
                limit: frame::MAX_PAYLOAD,
            });
        }
        let env = self.shared.env_or_create(env);
        if entry.count == 0 {
            // Nothing to store: an empty entry consumes no offsets.
            let next = env.read().next;
            return Ok(AppendReceipt {
                base_offset: next,
                next_offset: next,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.send(
            &env,
            writer::Command::Append(writer::AppendReq {
                env: env.clone(),
                entry,
                reply,
            }),
        )?;
        rx.await
            .map_err(|_| StoreError::unavailable("the log writer", Transient::Closed))?
    }

    async fn read(
        &self,
        env: &str,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        validate_env_id(env)?;
        let Some(env) = self.shared.env(env) else {
            return Ok(Vec::new());
        };
        blocking(move || read::read_blocking(&env, from, max_records)).await
    }

    async fn bounds(&self, env: &str) -> Result<LogBounds, StoreError> {
        validate_env_id(env)?;
        let Some(env) = self.shared.env(env) else {
            return Ok(LogBounds::default());
        };
        let st = env.read();
        Ok(LogBounds {
            first: st.first(),
            next: st.next,
        })
    }

    fn subscribe(&self, env: &str) -> watch::Receiver<u64> {
        if validate_env_id(env).is_err() {
            return watch::channel(0).1;
        }
        self.shared.env_or_create(env).watch.subscribe()
    }

    async fn offset_at_ingest_time(&self, env: &str, ingest_ms: i64) -> Result<u64, StoreError> {
        validate_env_id(env)?;
        let Some(env) = self.shared.env(env) else {
            return Ok(0);
        };
        Ok(read::offset_at_ingest_time(&env.read(), ingest_ms))
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
        let Some(env) = self.shared.env(env) else {
            return Ok(Vec::new());
        };
        let shared = self.shared.clone();
        blocking(move || {
            read::scan_time_blocking(&env, &shared.counters, from_ms, to_ms, after, max_records)
        })
        .await
    }

    async fn remove(&self, env: &str) -> Result<(), StoreError> {
        validate_env_id(env)?;
        let Some(env) = self.shared.env(env) else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        self.send(
            &env,
            writer::Command::Remove {
                env: env.clone(),
                reply,
            },
        )?;
        rx.await
            .map_err(|_| StoreError::unavailable("the log writer", Transient::Closed))?
    }
}
