//! Group commit: the writer threads that own all appends and removals.
//!
//! Each environment is hashed onto one of a small fixed number of writer threads. A
//! writer blocks for the next command, then drains everything else already queued (a
//! *round*). For each environment in the round it encodes all entries into one buffer and
//! writes it with one positional write per segment file touched; then it `fdatasync`s
//! every touched file once (the files of different environments concurrently, so the
//! file system can share journal commits among them), and only then publishes the
//! entries to readers (index, end offset, watch channel) and completes the waiters.
//! Appends that arrive while a round is syncing form the next round, so concurrent
//! appends share fsyncs.
//!
//! Rolling to a new segment first makes the old segment durable (a sealed segment is
//! always complete on disk before its successor holds data), then creates the new file,
//! writes and syncs it, then syncs the directory.
//! A failed write or sync answers the affected waiters [`StoreError::Unavailable`],
//! publishes nothing, drops the file handle (the next round re-opens it and truncates it
//! back to its committed length before writing) and schedules an aborted new segment
//! file for removal before anything else is written to that environment.

use super::env::{EnvLog, EnvState};
use super::frame::{self, FrameMeta, HEADER_LEN, MAX_PAYLOAD};
use super::index::{self, IndexEntry};
use super::segment::{Segment, idx_path, log_path};
use super::{Shared, now_ms, retention};
use crate::embedded::disk::DiskFile;
use crate::error::{StoreError, Transient};
use crate::log::{AppendEntry, AppendReceipt};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use tracing::{error, warn};

/// Most commands taken into one round, and about the most payload bytes.
const MAX_ROUND_COMMANDS: usize = 4096;
const MAX_ROUND_BYTES: usize = 64 << 20;

pub type AppendReply = oneshot::Sender<Result<AppendReceipt, StoreError>>;

pub struct AppendReq {
    pub env: Arc<EnvLog>,
    pub entry: AppendEntry,
    pub reply: AppendReply,
}

pub enum Command {
    Append(AppendReq),
    Remove {
        env: Arc<EnvLog>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Starts writer thread number `n`. It exits once every sender is dropped and the queue
/// is drained.
pub fn spawn(shared: Arc<Shared>, n: usize) -> io::Result<(Sender<Command>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("sluice-log-writer-{n}"))
        .spawn(move || {
            Writer {
                shared,
                envs: HashMap::new(),
            }
            .run(rx)
        })?;
    Ok((tx, handle))
}

/// Per-environment state private to the writer thread.
#[derive(Default)]
struct WriterEnv {
    /// Write handle of the active segment, if open and trusted to be at its committed length.
    active: Option<ActiveFile>,
    /// Files of aborted new segments that must be gone before the next write.
    stale: Vec<PathBuf>,
}

struct ActiveFile {
    base: u64,
    file: Box<dyn DiskFile>,
}

/// Entries of one environment destined for one segment file within a round.
struct Chunk {
    seg_base: u64,
    new_segment: bool,
    /// Committed length of the file before this chunk.
    start_len: u64,
    buf: Vec<u8>,
    entries: Vec<IndexEntry>,
    waiters: Vec<(AppendReply, AppendReceipt)>,
}

impl Chunk {
    fn new(seg_base: u64, new_segment: bool, start_len: u64) -> Chunk {
        Chunk {
            seg_base,
            new_segment,
            start_len,
            buf: Vec::new(),
            entries: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn fail(self, shared: &Shared, what: &str, cause: &Transient) {
        shared.release(self.buf.len() as u64);
        for (reply, _) in self.waiters {
            let _ = reply.send(Err(StoreError::unavailable(what, cause.clone())));
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    envs: HashMap<String, WriterEnv>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut bytes = cmd_bytes(&first);
            let mut batch = vec![first];
            while batch.len() < MAX_ROUND_COMMANDS && bytes < MAX_ROUND_BYTES {
                match rx.try_recv() {
                    Ok(cmd) => {
                        bytes += cmd_bytes(&cmd);
                        batch.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.round(batch);
        }
    }

    fn round(&mut self, batch: Vec<Command>) {
        self.shared.counters.rounds.fetch_add(1, Ordering::Relaxed);
        let mut groups: Vec<(Arc<EnvLog>, Vec<AppendReq>)> = Vec::new();
        let mut slot: HashMap<*const EnvLog, usize> = HashMap::new();
        for cmd in batch {
            match cmd {
                Command::Append(req) => {
                    let key = Arc::as_ptr(&req.env);
                    let i = *slot.entry(key).or_insert_with(|| {
                        groups.push((req.env.clone(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[i].1.push(req);
                }
                Command::Remove { env, reply } => {
                    // Everything queued before the removal is written first.
                    self.append_groups(std::mem::take(&mut groups));
                    slot.clear();
                    let _ = reply.send(self.remove(&env));
                }
            }
        }
        self.append_groups(groups);
    }

    /// Writes, syncs and publishes a round's appends. The first chunk of every
    /// environment is written, then all those files are synced concurrently (concurrent
    /// syncs share journal commits), then published. Chunks after a segment roll (rare)
    /// follow one at a time, each written and synced before the next.
    fn append_groups(&mut self, groups: Vec<(Arc<EnvLog>, Vec<AppendReq>)>) {
        let shared = &*self.shared;
        let mut written: Vec<(Arc<EnvLog>, Chunk, VecDeque<Chunk>)> = Vec::new();
        for (env, reqs) in groups {
            let we = self.envs.entry(env.id.clone()).or_default();
            if let Err(e) = prepare(shared, &env, we) {
                let what = format!("preparing to write the log of {}", env.id);
                error!(env = %env.id, error = %e, "log write preparation failed");
                let cause = Transient::io(e);
                for req in reqs {
                    let _ = req
                        .reply
                        .send(Err(StoreError::unavailable(&what, cause.clone())));
                }
                continue;
            }
            let mut chunks: VecDeque<Chunk> = plan(shared, &env, reqs)
                .into_iter()
                .filter(|c| !c.entries.is_empty())
                .collect();
            let Some(first) = chunks.pop_front() else {
                continue;
            };
            match write_chunk(shared, &env, we, &first) {
                Ok(()) => written.push((env, first, chunks)),
                Err(e) => fail_chunks(shared, &env, we, first, chunks, &e),
            }
        }
        let synced = sync_many(shared, &self.envs, &written);
        for ((env, first, mut rest), res) in written.into_iter().zip(synced) {
            let we = self.envs.entry(env.id.clone()).or_default();
            if let Err(e) = res {
                fail_chunks(shared, &env, we, first, rest, &e);
                continue;
            }
            settle(&env, we, &first);
            commit(shared, &env, first);
            while let Some(chunk) = rest.pop_front() {
                let res = write_chunk(shared, &env, we, &chunk).and_then(|()| match &we.active {
                    Some(a) => sync_chunk(shared, &env, &*a.file, chunk.new_segment),
                    None => Err(io::Error::other("segment file handle missing")),
                });
                if let Err(e) = res {
                    fail_chunks(shared, &env, we, chunk, rest, &e);
                    break;
                }
                settle(&env, we, &chunk);
                commit(shared, &env, chunk);
            }
        }
    }

    /// Deletes an environment's log: renames its directory out of the way (atomic), forgets
    /// its segments, then deletes the renamed directory.
    fn remove(&mut self, env: &Arc<EnvLog>) -> Result<(), StoreError> {
        self.envs.remove(&env.id);
        let shared = &*self.shared;
        let trash = shared
            .root
            .join(format!(".trash-{}-{}", env.id, unique_suffix()));
        let freed;
        let moved = {
            let mut st = env.write();
            let moved = match shared.disk.rename(&env.dir, &trash) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            };
            freed = st.bytes();
            let generation = st.generation + 1;
            *st = EnvState {
                generation,
                ..EnvState::empty()
            };
            moved
        };
        shared.release(freed);
        env.watch.send_replace(0);
        if moved {
            if let Err(e) = shared.disk.sync_dir(&shared.root) {
                warn!(error = %e, "could not sync the log directory after removing an environment");
            }
            if let Err(e) = shared.disk.remove_dir_all(&trash) {
                warn!(path = %trash.display(), error = %e, "could not delete a removed environment's log; it is deleted at next start");
            }
        }
        Ok(())
    }
}

fn cmd_bytes(cmd: &Command) -> usize {
    match cmd {
        Command::Append(req) => req.entry.payload.len() + HEADER_LEN,
        Command::Remove { .. } => 0,
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Makes sure the environment can be written: aborted files gone, directory present.
fn prepare(shared: &Shared, env: &EnvLog, we: &mut WriterEnv) -> io::Result<()> {
    clean_stale(shared, env, we)?;
    if !env.read().dir_exists {
        shared.disk.create_dir_all(&env.dir)?;
        shared.disk.sync_dir(&shared.root)?;
        shared.counters.dir_fsyncs.fetch_add(1, Ordering::Relaxed);
        env.write().dir_exists = true;
    }
    Ok(())
}

/// Removes files of aborted new segments (and makes the removal durable).
fn clean_stale(shared: &Shared, env: &EnvLog, we: &mut WriterEnv) -> io::Result<()> {
    if we.stale.is_empty() {
        return Ok(());
    }
    for path in &we.stale {
        match shared.disk.remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    shared.disk.sync_dir(&env.dir)?;
    shared.counters.dir_fsyncs.fetch_add(1, Ordering::Relaxed);
    we.stale.clear();
    Ok(())
}

/// Assigns offsets and ingest times and encodes the frames, splitting into chunks where
/// the active segment must roll. Refused appends are answered here.
fn plan(shared: &Shared, env: &EnvLog, reqs: Vec<AppendReq>) -> Vec<Chunk> {
    let opts = &shared.opts;
    let (active, mut next, mut last_ingest) = {
        let st = env.read();
        (
            st.segments
                .last()
                .map(|s| (s.base, s.len, s.first_ingest())),
            st.next,
            st.last_ingest_ms,
        )
    };
    let now = now_ms();
    let mut cur = match active {
        Some((base, len, first_ingest))
            if first_ingest.is_none_or(|t| now.saturating_sub(t) < opts.segment_max_age_ms) =>
        {
            Chunk::new(base, false, len)
        }
        _ => Chunk::new(next, true, 0),
    };
    let mut chunks = Vec::new();
    let mut retention_tried = false;
    for AppendReq { entry, reply, .. } in reqs {
        if entry.payload.len() > MAX_PAYLOAD {
            let _ = reply.send(Err(StoreError::EntryTooLarge {
                size: entry.payload.len(),
                limit: MAX_PAYLOAD,
            }));
            continue;
        }
        if entry.count == 0 {
            // `SegmentLog::append` answers empty entries itself; never stored.
            let _ = reply.send(Ok(AppendReceipt {
                base_offset: next,
                next_offset: next,
            }));
            continue;
        }
        let frame_len = (HEADER_LEN + entry.payload.len()) as u64;
        let used = cur.start_len + cur.buf.len() as u64;
        if used > 0 && used + frame_len > opts.segment_bytes {
            chunks.push(std::mem::replace(&mut cur, Chunk::new(next, true, 0)));
        }
        if !shared.try_reserve(frame_len) {
            if !retention_tried {
                retention_tried = true;
                retention::enforce(shared, now);
            }
            if !shared.try_reserve(frame_len) {
                let _ = reply.send(Err(StoreError::unavailable(
                    format!("appending to {}", env.id),
                    Transient::Full,
                )));
                continue;
            }
        }
        let ingest_ms = now.max(last_ingest);
        let meta = FrameMeta {
            count: entry.count,
            base_offset: next,
            ingest_ms,
            min_time: entry.min_time,
            max_time: entry.max_time,
        };
        let pos = cur.start_len + cur.buf.len() as u64;
        if let Err(e) = frame::encode(&mut cur.buf, &meta, &entry.payload) {
            shared.release(frame_len);
            let _ = reply.send(Err(StoreError::EntryTooLarge {
                size: entry.payload.len(),
                limit: MAX_PAYLOAD,
            }));
            error!(env = %env.id, error = %e, "frame encoding refused a checked entry");
            continue;
        }
        last_ingest = ingest_ms;
        let end = next.saturating_add(u64::from(entry.count));
        cur.entries.push(IndexEntry {
            pos,
            base_offset: next,
            count: entry.count,
            payload_len: entry.payload.len() as u32,
            ingest_ms,
            min_time: entry.min_time,
            max_time: entry.max_time,
        });
        cur.waiters.push((
            reply,
            AppendReceipt {
                base_offset: next,
                next_offset: end,
            },
        ));
        next = end;
    }
    chunks.push(cur);
    chunks
}

/// Writes one chunk (not yet durable). For a new segment this creates the file, which
/// stays registered as provisional (`stale`) until [`settle`].
fn write_chunk(shared: &Shared, env: &EnvLog, we: &mut WriterEnv, chunk: &Chunk) -> io::Result<()> {
    if chunk.new_segment {
        we.active = None;
        let path = log_path(&env.dir, chunk.seg_base);
        we.stale.push(path.clone());
        let file = shared.disk.create(&path)?;
        file.write_all_at(&chunk.buf, 0)?;
        we.active = Some(ActiveFile {
            base: chunk.seg_base,
            file,
        });
    } else {
        let file = active_file(env, we, chunk.seg_base, chunk.start_len)?;
        file.write_all_at(&chunk.buf, chunk.start_len)?;
    }
    shared.failpoint()
}

/// Makes a written chunk durable: the file's data, and the directory for a new file.
fn sync_chunk(
    shared: &Shared,
    env: &EnvLog,
    file: &dyn DiskFile,
    new_segment: bool,
) -> io::Result<()> {
    let began = std::time::Instant::now();
    file.sync_data()?;
    metrics::histogram!("sluice_log_fsync_duration_seconds").record(began.elapsed().as_secs_f64());
    shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    if new_segment {
        shared.disk.sync_dir(&env.dir)?;
        shared.counters.dir_fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Most threads used to sync one round's files concurrently.
const MAX_SYNC_THREADS: usize = 16;

/// Syncs the files of every written first chunk, concurrently when there are several.
fn sync_many(
    shared: &Shared,
    envs: &HashMap<String, WriterEnv>,
    written: &[(Arc<EnvLog>, Chunk, VecDeque<Chunk>)],
) -> Vec<io::Result<()>> {
    let jobs: Vec<(&EnvLog, Option<&dyn DiskFile>, bool)> = written
        .iter()
        .map(|(env, chunk, _)| {
            let file = envs
                .get(&env.id)
                .and_then(|we| we.active.as_ref())
                .map(|a| &*a.file);
            (&**env, file, chunk.new_segment)
        })
        .collect();
    let run = |i: usize| -> io::Result<()> {
        let (env, file, new_segment) = jobs[i];
        let file = file.ok_or_else(|| io::Error::other("segment file handle missing"))?;
        sync_chunk(shared, env, file, new_segment)
    };
    let n = jobs.len();
    let threads = n.min(MAX_SYNC_THREADS);
    if threads <= 1 {
        return (0..n).map(run).collect();
    }
    let mut results: Vec<Option<io::Result<()>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let run = &run;
        let mut handles = Vec::new();
        for t in 1..threads {
            let work = move || {
                (t..n)
                    .step_by(threads)
                    .map(|i| (i, run(i)))
                    .collect::<Vec<_>>()
            };
            match std::thread::Builder::new()
                .name("sluice-log-sync".into())
                .spawn_scoped(scope, work)
            {
                Ok(h) => handles.push(h),
                Err(_) => {
                    for i in (t..n).step_by(threads) {
                        results[i] = Some(run(i));
                    }
                }
            }
        }
        for i in (0..n).step_by(threads) {
            results[i] = Some(run(i));
        }
        for h in handles {
            if let Ok(done) = h.join() {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("sync thread failed"))))
        .collect()
}

/// A chunk is durable: a new segment file stops being provisional.
fn settle(env: &EnvLog, we: &mut WriterEnv, chunk: &Chunk) {
    if chunk.new_segment {
        let path = log_path(&env.dir, chunk.seg_base);
        we.stale.retain(|p| *p != path);
    }
}

/// Fails a chunk and those after it: answers their waiters, drops the file handle (the
/// next write re-opens the file and truncates it to its committed length) and removes a
/// provisional new segment file.
fn fail_chunks(
    shared: &Shared,
    env: &EnvLog,
    we: &mut WriterEnv,
    chunk: Chunk,
    rest: VecDeque<Chunk>,
    e: &io::Error,
) {
    error!(env = %env.id, segment = chunk.seg_base, error = %e, "log write failed; failing this round's appends");
    we.active = None;
    if let Err(e) = clean_stale(shared, env, we) {
        warn!(env = %env.id, error = %e, "could not yet remove an aborted segment file");
    }
    let what = format!("writing the log of {}", env.id);
    let cause = Transient::io(io::Error::new(e.kind(), e.to_string()));
    chunk.fail(shared, &what, &cause);
    for c in rest {
        c.fail(shared, &what, &cause);
    }
}

/// The write handle of the active segment, (re)opened if needed. A freshly opened file
/// is cut back to its committed length, dropping bytes of any failed earlier write.
fn active_file<'w>(
    env: &EnvLog,
    we: &'w mut WriterEnv,
    base: u64,
    committed: u64,
) -> io::Result<&'w dyn DiskFile> {
    if let Some(active) = we.active.take_if(|a| a.base == base) {
        return Ok(&*we.active.insert(active).file);
    }
    let path = log_path(&env.dir, base);
    let file = env.disk.open_rw(&path)?;
    let len = file.size()?;
    if len < committed {
        return Err(io::Error::other(format!(
            "segment {} is {len} bytes, shorter than its committed length {committed}",
            path.display()
        )));
    }
    if len > committed {
        warn!(env = %env.id, segment = base, dropped = len - committed, "truncating uncommitted bytes of a failed write");
        file.set_len(committed)?;
        file.sync_data()?;
    }
    Ok(&*we.active.insert(ActiveFile { base, file }).file)
}

/// Publishes a durable chunk to readers and completes its waiters.
fn commit(shared: &Shared, env: &EnvLog, chunk: Chunk) {
    let Chunk {
        seg_base,
        new_segment,
        buf,
        entries,
        waiters,
        ..
    } = chunk;
    let mut sealed = None;
    let next = {
        let mut st = env.write();
        let reuse_last = st.segments.last().is_some_and(|s| s.base == seg_base);
        if new_segment && !reuse_last {
            if let Some(prev) = st.segments.last_mut() {
                prev.entries.shrink_to_fit();
                sealed = Some((prev.base, prev.len, prev.entries.clone()));
            }
            st.segments.push(Segment::new(seg_base));
        }
        if st.segments.last().is_none_or(|s| s.base != seg_base) {
            // Cannot happen: only this thread adds segments and retention keeps the last.
            error!(env = %env.id, segment = seg_base, "active segment vanished; re-creating its index entry");
            st.segments.push(Segment::new(seg_base));
        }
        let n = entries.len();
        if let Some(last) = entries.last() {
            st.next = last.end_offset();
            st.last_ingest_ms = last.ingest_ms;
        }
        if let Some(seg) = st.segments.last_mut() {
            seg.entries.reserve(n);
            for e in entries {
                seg.push(e);
            }
        }
        st.next
    };
    env.watch.send_replace(next);
    shared
        .counters
        .entries_appended
        .fetch_add(waiters.len() as u64, Ordering::Relaxed);
    shared
        .counters
        .bytes_appended
        .fetch_add(buf.len() as u64, Ordering::Relaxed);
    for (reply, receipt) in waiters {
        let _ = reply.send(Ok(receipt));
    }
    if let Some((base, len, entries)) = sealed
        && let Err(e) =
            index::write_sidecar(&*env.disk, &idx_path(&env.dir, base), base, len, &entries)
    {
        warn!(env = %env.id, segment = base, error = %e, "could not write segment index sidecar (it is rebuilt at start-up)");
    }
}
