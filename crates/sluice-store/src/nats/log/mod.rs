//! [`JetStreamLog`]: an [`ImpressionLog`] on JetStream.
//!
//! Each environment has its own stream `SLUICE_LOG_<token>` (file storage, `replicas`
//! replicas, subject `sluice.log.<token>`), so its sequences count only its messages and
//! its retention and removal are its own. Offsets are not sequences: messages carry their
//! offsets in headers ([`super::frame`]).
//!
//! - `writer.rs`: one group-commit task per environment and node; chained, pipelined
//!   publishes; retries with the same `Nats-Msg-Id`; a transient error after
//!   `write_timeout`.
//! - `read.rs`: offset → sequence search (cached for sequential readers), reading and
//!   reassembling entries, bounds, time seek, time scan.
//! - this file: the trait implementation, stream creation, the committed-end watches
//!   (fed by local appends, by other nodes' announcements on `sluice.end.<token>`, and by
//!   a poll that covers lost announcements), retention by age.
//! - `route.rs`: one appender per environment — appends routed to the environment's
//!   rendezvous owner among the live nodes over core NATS request/reply, so that nodes do
//!   not race each other on one stream's tail ([`JetStreamLog::route_appends`]).

mod read;
mod route;
mod writer;

use super::NatsConnection;
use super::error::{is_stream_not_found, unavailable};
use super::names;
use crate::error::{StoreError, Transient};
use crate::log::{
    AppendEntry, AppendReceipt, ImpressionLog, LogBounds, MAX_ENTRY_BYTES, StoredEntry,
    validate_env_id,
};
use crate::members::Members;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, StorageType};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::warn;

/// Options of a [`JetStreamLog`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Messages ingested longer ago are removed (default 7 days).
    pub max_age: Duration,
    /// Per environment, the oldest messages are removed while the stream is larger
    /// (JetStream `max_bytes`, discard old; default: no limit).
    pub max_bytes_per_env: Option<u64>,
    /// How long an append may wait for JetStream (leader election, lost quorum) before it
    /// fails with `Unavailable` (default 5 s).
    pub write_timeout: Duration,
    /// Bytes of queued entries one group-commit round takes at most (default 8 MiB).
    pub max_round_bytes: usize,
    /// How often age retention runs (default 60 s; zero disables it).
    pub retention_interval: Duration,
    /// How often subscribed environments' ends are polled, covering lost announcements
    /// (default 1 s).
    pub poll_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes_per_env: None,
            write_timeout: Duration::from_secs(5),
            max_round_bytes: 8 << 20,
            retention_interval: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Counters since start, for metrics, tests and the benchmark.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Group-commit rounds.
    pub rounds: AtomicU64,
    /// Messages published and acknowledged.
    pub messages: AtomicU64,
    /// Publishes retried after a conflict with another writer or an unknown outcome.
    pub retries: AtomicU64,
    /// Offset → sequence binary searches (cache misses).
    pub searches: AtomicU64,
    /// Messages fetched by reads and scans.
    pub fetched: AtomicU64,
    /// Appends this node sent to another node (the environment's appender) and got an
    /// answer for.
    pub forwarded: AtomicU64,
    /// Appends meant for another node's appender that were appended here instead, as
    /// certainly not stored there (no responders, not sendable, refused).
    pub fallbacks: AtomicU64,
    /// Appends this node stored for other nodes, as the environment's appender.
    pub served: AtomicU64,
}

/// State shared by the log handle and its tasks.
pub(crate) struct Inner {
    conn: NatsConnection,
    cfg: LogConfig,
    /// Largest message body (server `max_payload` less room for headers).
    max_body: usize,
    /// Unique per process: the prefix of every `Nats-Msg-Id` this log publishes.
    nonce: String,
    next_id: AtomicU64,
    writers: Mutex<HashMap<String, mpsc::UnboundedSender<writer::Pending>>>,
    watches: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Streams this process created or found.
    streams: Mutex<HashSet<String>>,
    /// Per environment, offsets at which a message starts → its sequence (for readers
    /// continuing where they stopped).
    starts: Mutex<HashMap<String, BTreeMap<u64, u64>>>,
    pub(crate) counters: LogCounters,
    /// Set by [`JetStreamLog::route_appends`]: whom appends go to.
    route: OnceLock<route::Route>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Most message starts remembered per environment.
const STARTS_KEPT: usize = 4096;

impl Inner {
    fn msg_id(&self) -> String {
        format!(
            "{}-{}",
            self.nonce,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn stream_config(&self, env: &str) -> StreamConfig {
        StreamConfig {
            name: names::log_stream(env),
            subjects: vec![names::log_subject(env)],
            storage: StorageType::File,
            num_replicas: self.conn.replicas,
            discard: DiscardPolicy::Old,
            max_bytes: self
                .cfg
                .max_bytes_per_env
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Creates `env`'s stream unless this process already knows it exists.
    async fn ensure_stream(&self, env: &str) -> Result<(), StoreError> {
        let name = names::log_stream(env);
        if lock(&self.streams).contains(&name) {
            return Ok(());
        }
        self.conn
            .js
            .get_or_create_stream(self.stream_config(env))
            .await
            .map_err(|e| unavailable(format!("creating stream {name}"), e))?;
        lock(&self.streams).insert(name);
        Ok(())
    }

    fn forget_stream(&self, env: &str) {
        lock(&self.streams).remove(&names::log_stream(env));
        lock(&self.starts).remove(env);
    }

    async fn stream(
        &self,
        env: &str,
    ) -> Result<async_nats::jetstream::stream::Stream<()>, StoreError> {
        self.conn
            .js
            .get_stream_no_info(names::log_stream(env))
            .await
            .map_err(|e| unavailable("stream handle", e))
    }

    fn remember_start(&self, env: &str, offset: u64, seq: u64) {
        let mut starts = lock(&self.starts);
        let map = starts.entry(env.to_owned()).or_default();
        map.insert(offset, seq);
        while map.len() > STARTS_KEPT {
            map.pop_first();
        }
    }

    fn known_start(&self, env: &str, offset: u64) -> Option<u64> {
        lock(&self.starts).get(env)?.get(&offset).copied()
    }

    /// Raises `env`'s committed-end watch to `end` (never lowers it).
    fn publish_end_locally(&self, env: &str, end: u64) {
        let watches = lock(&self.watches);
        if let Some(tx) = watches.get(env) {
            tx.send_if_modified(|v| {
                if end > *v {
                    *v = end;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Tells every node (and this one) that `env`'s committed end is now `end`.
    async fn announce_end(&self, env: &str, end: u64) {
        self.publish_end_locally(env, end);
        if let Err(e) = self
            .conn
            .client
            .publish(names::end_subject(env), end.to_string().into())
            .await
        {
            warn!(env, error = %e, "announcing a new log end failed (the poll will cover it)");
        }
    }
}

/// The JetStream impression log (see the module documentation).
pub struct JetStreamLog {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl JetStreamLog {
    /// A log on `conn`; starts the announcement listener, the end poll and retention.
    pub async fn open(conn: NatsConnection, cfg: LogConfig) -> Result<JetStreamLog, StoreError> {
        let max_payload = conn.client.server_info().max_payload.max(64 * 1024);
        let mut nonce_bytes = [0u8; 8];
        getrandom_nonce(&mut nonce_bytes);
        let inner = Arc::new(Inner {
            max_body: max_payload - 4096,
            nonce: nonce_bytes.iter().map(|b| format!("{b:02x}")).collect(),
            next_id: AtomicU64::new(0),
            writers: Mutex::new(HashMap::new()),
            watches: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashSet::new()),
            starts: Mutex::new(HashMap::new()),
            counters: LogCounters::default(),
            route: OnceLock::new(),
            cfg,
            conn,
        });
        let sub = inner
            .conn
            .client
            .subscribe(format!("{}>", names::END_SUBJECT_PREFIX))
            .await
            .map_err(|e| unavailable("subscribing to log ends", e))?;
        let mut tasks = vec![tokio::spawn(listen_ends(Arc::downgrade(&inner), sub))];
        tasks.push(tokio::spawn(poll_ends(Arc::downgrade(&inner))));
        if !inner.cfg.retention_interval.is_zero() {
            tasks.push(tokio::spawn(retention_loop(Arc::downgrade(&inner))));
        }
        Ok(JetStreamLog {
            inner,
            tasks: Mutex::new(tasks),
        })
    }

    /// Routes appends to each environment's appender from now on (see `route.rs`): this
    /// node is `node` in `view`, and takes appends for the environments it is the appender
    /// of on [`names::append_subject`]`(node)`. Without it (and while `view` is empty, or
    /// names only this node) every append is written by this node, as on a single node.
    /// Only the first call has an effect.
    pub async fn route_appends(
        &self,
        node: &str,
        view: watch::Receiver<Members>,
    ) -> Result<(), StoreError> {
        if self.inner.route.get().is_some() {
            return Ok(());
        }
        let sub = self
            .inner
            .conn
            .client
            .subscribe(names::append_subject(node))
            .await
            .map_err(|e| unavailable("subscribing to forwarded appends", e))?;
        let task = tokio::spawn(route::serve(Arc::downgrade(&self.inner), sub));
        lock(&self.tasks).push(task);
        let _ = self.inner.route.set(route::Route {
            node: node.to_owned(),
            view,
        });
        Ok(())
    }

    /// Counters since open.
    pub fn counters(&self) -> &LogCounters {
        &self.inner.counters
    }

    /// Applies age retention to every environment now; returns messages removed.
    pub async fn enforce_retention(&self) -> Result<u64, StoreError> {
        enforce_retention(&self.inner).await
    }

    /// Removes the messages of every environment ingested before `cutoff_ms`, always
    /// keeping the last one: what age retention does with `cutoff_ms = now - max_age`.
    pub async fn remove_ingested_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        remove_ingested_before(&self.inner, cutoff_ms).await
    }

    /// The largest message body this log publishes (entries above it are split).
    pub fn max_body(&self) -> usize {
        self.inner.max_body
    }
}

/// A random nonce without another dependency: hash the time, the process id and a
/// stack address with the standard library's randomly keyed hasher.
fn getrandom_nonce(out: &mut [u8; 8]) {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.write_usize(out as *const _ as usize);
    *out = h.finish().to_le_bytes();
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

async fn listen_ends(inner: Weak<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let token = msg
            .subject
            .as_str()
            .trim_start_matches(names::END_SUBJECT_PREFIX);
        let end = std::str::from_utf8(&msg.payload)
            .ok()
            .and_then(|s| s.parse().ok());
        if let (Some(env), Some(end)) = (names::env_from_token(token), end) {
            inner.publish_end_locally(&env, end);
        }
    }
}

async fn poll_ends(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong.cfg.poll_interval;
        let envs: Vec<String> = lock(&strong.watches)
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(env, _)| env.clone())
            .collect();
        for env in envs {
            if let Ok(b) = read::bounds(&strong, &env).await {
                strong.publish_end_locally(&env, b.next);
            }
        }
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

async fn retention_loop(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong.cfg.retention_interval;
        if let Err(e) = enforce_retention(&strong).await {
            warn!(error = %e, "JetStream log retention failed; will retry");
        }
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

/// Purges, per environment, the messages ingested before `now - max_age`, always keeping
/// the last one (it holds the committed end offset).
async fn enforce_retention(inner: &Inner) -> Result<u64, StoreError> {
    let max_age = i64::try_from(inner.cfg.max_age.as_millis()).unwrap_or(i64::MAX);
    remove_ingested_before(inner, read::now_ms().saturating_sub(max_age)).await
}

async fn remove_ingested_before(inner: &Inner, cutoff: i64) -> Result<u64, StoreError> {
    let mut names = inner.conn.js.stream_names();
    let mut envs = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(|e| unavailable("listing streams", e))?;
        if let Some(env) = name
            .strip_prefix(names::LOG_STREAM_PREFIX)
            .and_then(names::env_from_token)
        {
            envs.push(env);
        }
    }
    let mut removed = 0;
    for env in envs {
        let Some((first_kept, last)) = read::first_seq_ingested_at(inner, &env, cutoff).await?
        else {
            continue;
        };
        let keep_from = first_kept.min(last);
        let stream = inner.stream(&env).await?;
        let purged = stream
            .purge()
            .sequence(keep_from)
            .await
            .map_err(|e| unavailable(format!("purging {env}"), e))?;
        removed += purged.purged;
    }
    Ok(removed)
}

/// Appends `entry` through this node's own group-commit writer of `env` (starting it).
async fn append_local(
    inner: &Arc<Inner>,
    env: &str,
    entry: AppendEntry,
) -> Result<AppendReceipt, StoreError> {
    let rx = {
        let mut writers = lock(&inner.writers);
        let tx = writers.entry(env.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer::run(inner.clone(), env.to_owned(), rx));
            tx
        });
        let (reply, rx) = tokio::sync::oneshot::channel();
        let pending = writer::Pending::new(entry, reply);
        if let Err(mpsc::error::SendError(p)) = tx.send(pending) {
            // The writer stopped (its environment was removed): start a new one.
            let (tx2, rx2) = mpsc::unbounded_channel();
            tokio::spawn(writer::run(inner.clone(), env.to_owned(), rx2));
            let _ = tx2.send(p);
            *tx = tx2;
        }
        rx
    };
    rx.await
        .map_err(|_| StoreError::unavailable("the JetStream log writer", Transient::Closed))?
}

#[async_trait]
impl ImpressionLog for JetStreamLog {
    async fn prepare(&self, env: &str) -> Result<(), StoreError> {
        validate_env_id(env)?;
        self.inner.ensure_stream(env).await
    }

    async fn append(&self, env: &str, entry: AppendEntry) -> Result<AppendReceipt, StoreError> {
        validate_env_id(env)?;
        if entry.payload.len() > MAX_ENTRY_BYTES {
            return Err(StoreError::EntryTooLarge {
                size: entry.payload.len(),
                limit: MAX_ENTRY_BYTES,
            });
        }
        route::append(&self.inner, env, entry).await
    }

    async fn read(
        &self,
        env: &str,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        validate_env_id(env)?;
        read::read(&self.inner, env, from, max_records, None).await
    }

    async fn bounds(&self, env: &str) -> Result<LogBounds, StoreError> {
        validate_env_id(env)?;
        read::bounds(&self.inner, env).await
    }

    fn subscribe(&self, env: &str) -> watch::Receiver<u64> {
        if validate_env_id(env).is_err() {
            return watch::channel(0).1;
        }
        let (rx, fresh) = {
            let mut watches = lock(&self.inner.watches);
            let fresh = !watches.contains_key(env);
            let tx = watches
                .entry(env.to_owned())
                .or_insert_with(|| watch::Sender::new(0));
            (tx.subscribe(), fresh)
        };
        if fresh {
            let inner = self.inner.clone();
            let env = env.to_owned();
            tokio::spawn(async move {
                if let Ok(b) = read::bounds(&inner, &env).await {
                    inner.publish_end_locally(&env, b.next);
                }
            });
        }
        rx
    }

    async fn offset_at_ingest_time(&self, env: &str, ingest_ms: i64) -> Result<u64, StoreError> {
        validate_env_id(env)?;
        read::offset_at_ingest_time(&self.inner, env, ingest_ms).await
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
        read::read(&self.inner, env, after, max_records, Some((from_ms, to_ms))).await
    }

    async fn remove(&self, env: &str) -> Result<(), StoreError> {
        validate_env_id(env)?;
        lock(&self.inner.writers).remove(env);
        match self
            .inner
            .conn
            .js
            .delete_stream(names::log_stream(env))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let not_found = matches!(
                    e.kind(),
                    async_nats::jetstream::context::DeleteStreamErrorKind::JetStream(ref j)
                        if is_stream_not_found(j)
                );
                if !not_found {
                    return Err(unavailable(format!("deleting the log of {env}"), e));
                }
            }
        }
        self.inner.forget_stream(env);
        if let Some(tx) = lock(&self.inner.watches).get(env) {
            tx.send_replace(0);
        }
        Ok(())
    }
}
