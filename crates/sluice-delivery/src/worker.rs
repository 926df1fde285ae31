//! One integration's delivery task. Every integration has its own: its own cursor, its
//! own HTTP client and connection pool, its own timers, and at most `maxInFlight`
//! requests in flight (default 1). It runs one *lane* per environment: each environment
//! has at most one batch in flight, so its impressions arrive in order; lanes share the
//! in-flight limit, the cursor record and the health window.
//! Nothing here waits on another integration; the only shared thing it may wait for is a
//! permit of the bounded pool for *degraded* integrations (so failing destinations
//! together hold at most that many sockets), which healthy integrations never touch.
//!
//! Loop: wait for data (a full batch, or the flush interval) → pin the batch (persist its
//! id and offset range) → send → on 200 advance the cursor; on failure wait 300 ms and
//! retry once, then keep the batch first in line. Protection (pause, probe) is decided
//! by [`crate::health::Health`].

use crate::cursor::{self, CursorRecord, PendingBatch};
use crate::encode::{EncodedBody, encode_batch};
use crate::engine::EngineCtx;
use crate::gaps::{Gap, record_gap};
use crate::health::Phase;
use crate::http::{Outcome, send};
use crate::request::build_request;
use crate::shared::{AttemptInfo, IntegrationShared};
use sluice_core::model::Integration;
use sluice_store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn jitter() -> f64 {
    rand::random::<f64>() * 2.0 - 1.0
}

/// The entries holding offsets `[from, to)`. One log read stops once it has `max_records`
/// impressions counting all of its first entry, which may start before `from` (the
/// previous batch ended inside it): read on until the range is covered, so batches are
/// full and a pinned batch is rebuilt whole.
async fn read_range(
    log: &dyn sluice_store::ImpressionLog,
    env: &str,
    from: u64,
    to: u64,
) -> Result<Vec<sluice_store::StoredEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut at = from;
    while at < to {
        let chunk = log.read(env, at, (to - at) as usize).await?;
        let Some(end) = chunk.last().map(|e| e.end_offset()) else {
            break;
        };
        entries.extend(
            chunk
                .into_iter()
                .filter(|e| e.end_offset() > at && e.base_offset < to),
        );
        if end <= at {
            break;
        }
        at = end;
    }
    Ok(entries)
}

/// A full batch read and encoded ahead of time (not yet pinned).
pub(crate) struct Prefetched {
    env: String,
    from: u64,
    to: u64,
    body: EncodedBody,
}

/// Reads and encodes the full batch starting at `from` of `env`, if a full one is waiting
/// and none of it is older than the backlog age limit (the loop handles those cases).
async fn prefetch_full_batch(
    ctx: Arc<EngineCtx>,
    integ: Arc<Integration>,
    env: String,
    from: u64,
) -> Option<Prefetched> {
    let max = u64::from(integ.max_batch_impressions);
    let bounds = ctx.log.bounds(&env).await.ok()?;
    if from < bounds.first || bounds.next.saturating_sub(from) < max {
        return None;
    }
    let to = from + max;
    let entries = read_range(ctx.log.as_ref(), &env, from, to).await.ok()?;
    let first = entries.iter().find(|e| e.end_offset() > from)?;
    if first.ingest_ms < now_ms() - integ.max_backlog_age_ms as i64 {
        return None;
    }
    let (env_id, format, gzip) = (
        env.clone(),
        integ.effective_format(),
        integ.effective_gzip(),
    );
    let signing = integ.secret.is_some();
    let body = tokio::task::spawn_blocking(move || {
        encode_batch(&env_id, &entries, from, to, format, gzip).shed_raw_unless(signing)
    })
    .await
    .ok()?;
    Some(Prefetched {
        env,
        from,
        to,
        body,
    })
}

/// A batch ready to send.
struct Batch {
    pending: PendingBatch,
    body: EncodedBody,
}

pub(crate) struct Worker {
    integ: Arc<Integration>,
    ctx: Arc<EngineCtx>,
    shared: Arc<IntegrationShared>,
    client: reqwest::Client,
    /// This lane's view of the cursor (its own environment only); persisted through
    /// [`Lanes::cursor`].
    cursor: CursorRecord,
    lanes: Arc<Lanes>,
    /// Delivered impressions not yet added to the shared record.
    delivered_delta: u64,
    cached: Option<Batch>,
    stop: watch::Receiver<bool>,
    last_send: Option<Instant>,
    not_before: Option<Instant>,
}

enum Wake {
    Stop,
    Go,
}

/// What the lanes of one integration share: the durable cursor record (each lane writes
/// only its environment's position and pinned batch; saves are serialized so the record
/// on disk is always a merge of the latest of each), the integration's in-flight limit,
/// and the probe lock (one probe batch at a time while paused).
pub(crate) struct Lanes {
    cursor: tokio::sync::Mutex<CursorRecord>,
    in_flight: tokio::sync::Semaphore,
    probe: tokio::sync::Mutex<()>,
}

impl Worker {
    pub(crate) fn new(
        integ: Arc<Integration>,
        ctx: Arc<EngineCtx>,
        shared: Arc<IntegrationShared>,
        client: reqwest::Client,
        stop: watch::Receiver<bool>,
    ) -> Worker {
        Worker {
            integ,
            ctx,
            shared,
            client,
            cursor: CursorRecord::default(),
            lanes: Arc::new(Lanes {
                cursor: tokio::sync::Mutex::new(CursorRecord::default()),
                in_flight: tokio::sync::Semaphore::new(1),
                probe: tokio::sync::Mutex::new(()),
            }),
            delivered_delta: 0,
            cached: None,
            stop,
            last_send: None,
            not_before: None,
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps until `deadline` (or forever), returning early on stop or a manual-pause
    /// change.
    async fn wait(&mut self, deadline: Option<Instant>) -> Wake {
        let mut manual = self.shared.manual_pause.subscribe();
        let sleeper = async {
            match deadline {
                Some(d) => sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.stop.changed() => Wake::Stop,
            _ = manual.changed() => Wake::Go,
            _ = sleeper => Wake::Go,
        }
    }

    pub(crate) async fn run(mut self) {
        // Load (or create) the cursor; retry while the store is unavailable.
        loop {
            match self.load_cursor().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(integration = %self.integ.id, error = %e, "cannot load cursor; retrying");
                    if let Wake::Stop = self
                        .wait(Some(Instant::now() + Duration::from_secs(1)))
                        .await
                    {
                        return;
                    }
                }
            }
        }
        self.run_lanes().await
    }

    /// Splits the integration into one lane per environment, each running the delivery
    /// loop for its environment alone, and waits for them.
    async fn run_lanes(self) {
        let record = self.cursor.clone();
        let lanes = Arc::new(Lanes {
            cursor: tokio::sync::Mutex::new(record.clone()),
            in_flight: tokio::sync::Semaphore::new(self.integ.max_in_flight.max(1) as usize),
            probe: tokio::sync::Mutex::new(()),
        });
        let mut set = tokio::task::JoinSet::new();
        for env in &self.integ.environments {
            let integ = Arc::new(Integration {
                environments: vec![env.clone()],
                ..(*self.integ).clone()
            });
            let mut view = CursorRecord {
                nonce: record.nonce.clone(),
                seq: record.seq,
                ..CursorRecord::default()
            };
            if let Some(o) = record.offsets.get(env) {
                view.offsets.insert(env.clone(), *o);
            }
            if let Some(p) = record.pinned.get(env) {
                view.pinned.insert(env.clone(), p.clone());
            }
            let lane = Worker {
                integ,
                ctx: self.ctx.clone(),
                shared: self.shared.clone(),
                client: self.client.clone(),
                cursor: view,
                lanes: lanes.clone(),
                delivered_delta: 0,
                cached: None,
                stop: self.stop.clone(),
                last_send: None,
                not_before: None,
            };
            set.spawn(lane.run_lane());
        }
        while set.join_next().await.is_some() {}
    }

    /// The delivery loop of one environment.
    async fn run_lane(mut self) {
        let mut env_watches: Vec<watch::Receiver<u64>> = self
            .integ
            .environments
            .iter()
            .map(|e| self.ctx.log.subscribe(e))
            .collect();
        loop {
            if self.stopped() {
                return;
            }
            if *self.shared.manual_pause.borrow() {
                self.cached = None;
                if let Wake::Stop = self.wait(None).await {
                    return;
                }
                continue;
            }
            let phase = self.shared.with(|s| s.health.tick(Instant::now()));
            if let Phase::Paused { until } = phase {
                // Free the body while paused; the pinned batch is rebuilt for the probe.
                self.cached = None;
                if let Wake::Stop = self.wait(Some(until)).await {
                    return;
                }
                continue;
            }
            if let Some(nb) = self.not_before
                && Instant::now() < nb
            {
                if let Wake::Stop = self.wait(Some(nb)).await {
                    return;
                }
                continue;
            }
            let batch = match self.next_batch().await {
                Ok(Ok(b)) => b,
                Ok(Err(deadline)) => {
                    // Nothing ready: wait for new data, the flush deadline, or stop.
                    for w in env_watches.iter_mut() {
                        w.borrow_and_update();
                    }
                    let data = async {
                        if env_watches.is_empty() {
                            std::future::pending::<()>().await;
                        }
                        let futs = env_watches.iter_mut().map(|w| Box::pin(w.changed()));
                        let _ = futures_util::future::select_all(futs).await;
                    };
                    tokio::select! {
                        _ = data => {}
                        w = self.wait(deadline) => if let Wake::Stop = w { return },
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(integration = %self.integ.id, error = %e, "cannot prepare batch; retrying in 1s");
                    if let Wake::Stop = self
                        .wait(Some(Instant::now() + Duration::from_secs(1)))
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            let probing = phase == Phase::Probing;
            // While this batch is in flight, read and encode the next full one (if any) on
            // the blocking pool: a draining backlog then costs max(encode, send) per batch,
            // not encode + send.
            // The next batch of this lane's environment starts where this one ends.
            let (next_env, next_from) = (batch.pending.env.clone(), batch.pending.to);
            let prefetch = {
                let (ctx, integ) = (self.ctx.clone(), self.integ.clone());
                async move {
                    if probing {
                        return None;
                    }
                    prefetch_full_batch(ctx, integ, next_env, next_from).await
                }
            };
            let mut stop = self.stop.clone();
            let (delivered, prefetched) = tokio::select! {
                r = async { tokio::join!(self.deliver(&batch, probing), prefetch) } => r,
                _ = stop.changed() => return,
            };
            self.last_send = Some(Instant::now());
            if delivered {
                if let Err(e) = self.commit(&batch, prefetched).await {
                    // The batch was delivered but the cursor could not be saved: it will be
                    // redelivered with the same id (at least once; receivers dedupe).
                    tracing::error!(integration = %self.integ.id, error = %e, "cannot save cursor");
                    self.cached = Some(batch);
                    if let Wake::Stop = self
                        .wait(Some(Instant::now() + Duration::from_secs(1)))
                        .await
                    {
                        return;
                    }
                }
            } else {
                // Keep the batch first in line; next attempt after the flush interval (or
                // a later Retry-After).
                let next = Instant::now() + Duration::from_millis(self.integ.flush_interval_ms);
                self.not_before = Some(self.not_before.map_or(next, |nb| nb.max(next)));
                self.cached = Some(batch);
            }
        }
    }

    async fn load_cursor(&mut self) -> Result<(), StoreError> {
        let meta = self.ctx.meta.as_ref();
        let (mut c, mut changed) = cursor::load_positioned(
            meta,
            self.ctx.log.as_ref(),
            &self.integ.id,
            &self.integ.environments,
        )
        .await?;
        // A pinned batch of an environment the integration no longer lists is dropped.
        let before = c.pinned.len();
        c.pinned
            .retain(|env, _| self.integ.environments.contains(env));
        changed |= c.pinned.len() != before;
        // Positions past the end of the log (its tail was lost, e.g. cut on recovery after a
        // storage failure) would silently skip the impressions appended there from now on.
        for env in &self.integ.environments {
            let next = self.ctx.log.bounds(env).await?.next;
            if let Some(o) = c.offsets.get_mut(env)
                && *o > next
            {
                tracing::warn!(integration = %self.integ.id, env = %env, cursor = *o, log_end = next, "delivery position is past the end of the log; resuming at its end");
                *o = next;
                changed = true;
            }
            if let Some(p) = c.pinned.get(env)
                && p.to > next
            {
                tracing::warn!(integration = %self.integ.id, env = %env, batch = %p.id, to = p.to, log_end = next, "pending batch reaches past the end of the log; rebuilding it");
                c.pinned.remove(env);
                changed = true;
            }
        }
        if changed {
            cursor::save(meta, &self.integ.id, &c).await?;
        }
        self.shared
            .with(|s| s.delivered = s.delivered.max(c.delivered));
        self.cursor = c;
        Ok(())
    }

    /// The batch to send now, or the instant the next one may become ready (`None`: only
    /// new data can make one ready).
    async fn next_batch(&mut self) -> Result<Result<Batch, Option<Instant>>, StoreError> {
        if let Some(p) = self.cursor.pinned.values().next().cloned() {
            if let Some(b) = self.cached.take()
                && b.pending == p
            {
                return Ok(Ok(b));
            }
            let entries = self.read_range(&p.env, p.from, p.to).await?;
            let body = self.encode(&p.env, entries, p.from, p.to).await;
            return Ok(Ok(Batch { pending: p, body }));
        }
        let now = Instant::now();
        let flush = Duration::from_millis(self.integ.flush_interval_ms);
        let max = u64::from(self.integ.max_batch_impressions);
        let mut deadline: Option<Instant> = None;
        // A lane lists exactly one environment.
        for env in self.integ.environments.clone() {
            let bounds = self.ctx.log.bounds(&env).await?;
            let mut from = self
                .cursor
                .offsets
                .get(&env)
                .copied()
                .unwrap_or(bounds.next);
            if from < bounds.first {
                // Retention removed impressions this integration had not delivered.
                self.skip(&env, from, bounds.first, None, "retention")
                    .await?;
                from = bounds.first;
            }
            let available = bounds.next.saturating_sub(from);
            if available == 0 {
                continue;
            }
            let due = self.last_send.map_or(now, |t| t + flush);
            if available < max && now < due {
                deadline = Some(deadline.map_or(due, |d: Instant| d.min(due)));
                continue;
            }
            let entries = self
                .read_range(&env, from, (from + max).min(bounds.next))
                .await?;
            let Some(first) = entries.iter().find(|e| e.end_offset() > from) else {
                continue;
            };
            let cutoff = crate::worker::now_ms() - self.integ.max_backlog_age_ms as i64;
            if first.ingest_ms < cutoff {
                let to = self
                    .ctx
                    .log
                    .offset_at_ingest_time(&env, cutoff)
                    .await?
                    .max(from);
                let first_ms = first.ingest_ms;
                self.skip(&env, from, to, Some((first_ms, cutoff)), "maxBacklogAge")
                    .await?;
                return Ok(Err(Some(Instant::now())));
            }
            let end = entries
                .last()
                .map_or(from, |e| e.end_offset())
                .min(bounds.next);
            let to = end.min(from + max);
            if to <= from {
                continue;
            }
            let pending = PendingBatch {
                id: self.next_batch_id().await,
                env: env.clone(),
                from,
                to,
            };
            self.cursor
                .pinned
                .insert(pending.env.clone(), pending.clone());
            self.save().await?;
            let body = self.encode(&env, entries, from, to).await;
            return Ok(Ok(Batch { pending, body }));
        }
        Ok(Err(deadline))
    }

    async fn read_range(
        &self,
        env: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<sluice_store::StoredEntry>, StoreError> {
        read_range(self.ctx.log.as_ref(), env, from, to).await
    }

    async fn encode(
        &self,
        env: &str,
        entries: Vec<sluice_store::StoredEntry>,
        from: u64,
        to: u64,
    ) -> EncodedBody {
        let env_id = env.to_owned();
        let format = self.integ.effective_format();
        let gzip = self.integ.effective_gzip();
        let signing = self.integ.secret.is_some();
        let job = move || {
            encode_batch(&env_id, &entries, from, to, format, gzip).shed_raw_unless(signing)
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "encoding task failed");
                EncodedBody {
                    raw: Default::default(),
                    wire: Default::default(),
                    gzip: false,
                    count: 0,
                }
            }
        }
    }

    /// Skips `[from, to)` of `env` (recording a gap) and moves the cursor past it.
    async fn skip(
        &mut self,
        env: &str,
        from: u64,
        to: u64,
        window: Option<(i64, i64)>,
        reason: &str,
    ) -> Result<(), StoreError> {
        if to <= from {
            return Ok(());
        }
        let gap = Gap {
            id: String::new(),
            integration_id: self.integ.id.clone(),
            environment_id: env.to_owned(),
            from_offset: from,
            to_offset: to,
            from: window.map(|w| w.0),
            to: window.map(|w| w.1),
            impressions: to - from,
            reason: reason.to_owned(),
            recorded_at: now_ms(),
            closed_by: None,
        };
        record_gap(self.ctx.meta.as_ref(), gap).await?;
        tracing::warn!(integration = %self.integ.id, env, from, to, reason, "skipped backlog recorded as a gap");
        self.cursor.offsets.insert(env.to_owned(), to);
        self.save().await?;
        metrics::counter!("sluice_gap_impressions_total", "integration" => self.integ.id.clone())
            .increment(to - from);
        Ok(())
    }

    /// A batch id from the integration's shared sequence (persisted with the next save,
    /// before the id is ever sent).
    async fn next_batch_id(&self) -> String {
        self.lanes.cursor.lock().await.next_batch_id()
    }

    /// Merges this lane's position and pinned batch into the shared record and persists
    /// it. Saves are serialized by the lock, so the record on disk never goes back.
    async fn save(&mut self) -> Result<(), StoreError> {
        let mut shared = self.lanes.cursor.lock().await;
        for env in &self.integ.environments {
            if let Some(o) = self.cursor.offsets.get(env) {
                shared.offsets.insert(env.clone(), *o);
            }
            match self.cursor.pinned.get(env) {
                Some(p) => shared.pinned.insert(env.clone(), p.clone()),
                None => shared.pinned.remove(env),
            };
        }
        // If this write fails, the shared record still holds the change in memory and the
        // next save persists it.
        shared.delivered += std::mem::take(&mut self.delivered_delta);
        cursor::save(self.ctx.meta.as_ref(), &self.integ.id, &shared).await
    }

    /// Records a delivered batch: the cursor moves past it and, when the next full batch was
    /// prepared meanwhile, that batch is pinned (id + range) in the same durable write and
    /// kept ready to send.
    async fn commit(&mut self, batch: &Batch, next: Option<Prefetched>) -> Result<(), StoreError> {
        let p = &batch.pending;
        self.cursor.offsets.insert(p.env.clone(), p.to);
        self.cursor.pinned.remove(&p.env);
        self.delivered_delta += u64::from(batch.body.count);
        let next = next.filter(|n| self.cursor.offsets.get(&n.env).copied() == Some(n.from));
        if let Some(n) = &next {
            let id = self.next_batch_id().await;
            self.cursor.pinned.insert(
                n.env.clone(),
                PendingBatch {
                    id,
                    env: n.env.clone(),
                    from: n.from,
                    to: n.to,
                },
            );
        }
        self.save().await?;
        if let (Some(n), Some(pending)) = (next, self.cursor.pinned.values().next().cloned()) {
            self.cached = Some(Batch {
                pending,
                body: n.body,
            });
        }
        Ok(())
    }

    /// One attempt, recorded in the attempts log and metrics.
    async fn attempt(&self, batch: &Batch, kind: &'static str) -> Outcome {
        let started_ms = now_ms();
        let req = build_request(
            &self.integ,
            &batch.pending.id,
            &batch.body,
            started_ms / 1000,
        );
        let outcome = send(
            &self.client,
            &self.ctx.opts.policy,
            &req,
            self.ctx.opts.max_response_bytes,
        )
        .await;
        let info = AttemptInfo {
            integration_id: &self.integ.id,
            batch_id: &batch.pending.id,
            environment_id: &batch.pending.env,
            impressions: batch.body.count,
            bytes: batch.body.wire.len(),
            started_ms,
            kind,
        };
        self.shared.record_attempt(info, &outcome);
        outcome
    }

    /// Sends a batch: one attempt, then (not for probes) one retry after 300 ms or the
    /// destination's Retry-After. Feeds every outcome to the health window.
    /// A permit of the bounded pool for degraded integrations, when this one is degraded
    /// (healthy ones never wait on it). Held for one attempt, not across retry waits.
    async fn degraded_permit(&self, probing: bool) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let degraded = probing || self.shared.with(|s| s.health.degraded());
        if degraded {
            self.ctx.degraded.clone().acquire_owned().await.ok()
        } else {
            None
        }
    }

    async fn deliver(&mut self, batch: &Batch, probing: bool) -> bool {
        // At most `maxInFlight` lanes of this integration send at once.
        let lanes = self.lanes.clone();
        let Ok(_in_flight) = lanes.in_flight.acquire().await else {
            return false;
        };
        // One probe at a time: if another lane's probe settled it meanwhile, this is no
        // longer a probe (resumed) or not to be sent (paused again).
        let _probe = if probing {
            Some(lanes.probe.lock().await)
        } else {
            None
        };
        let probing = if probing {
            match self.shared.with(|s| s.health.tick(Instant::now())) {
                Phase::Probing => true,
                Phase::Active => false,
                Phase::Paused { .. } => return false,
            }
        } else {
            false
        };
        let permit = self.degraded_permit(probing).await;
        let first = self
            .attempt(batch, if probing { "probe" } else { "live" })
            .await;
        drop(permit);
        let ok = first.is_delivered();
        if probing {
            self.shared.with(|s| {
                s.health
                    .record_probe(ok, Instant::now(), now_ms(), jitter())
            });
            self.note_retry_after(&first);
            return ok;
        }
        let paused = self
            .shared
            .with(|s| s.health.record(ok, Instant::now(), now_ms(), jitter()));
        if ok {
            return true;
        }
        if paused {
            self.note_retry_after(&first);
            return false;
        }
        let delay = self
            .retry_after_capped(&first)
            .unwrap_or(self.ctx.opts.retry_delay);
        sleep(delay).await;
        let permit = self.degraded_permit(false).await;
        let second = self.attempt(batch, "retry").await;
        drop(permit);
        let ok = second.is_delivered();
        self.shared
            .with(|s| s.health.record(ok, Instant::now(), now_ms(), jitter()));
        if !ok {
            self.note_retry_after(&second);
        }
        ok
    }

    fn retry_after_capped(&self, o: &Outcome) -> Option<Duration> {
        match o.status {
            Some(429) | Some(503) => o
                .retry_after
                .map(|d| d.min(Duration::from_millis(self.integ.protection.max_cooldown_ms))),
            _ => None,
        }
    }

    fn note_retry_after(&mut self, o: &Outcome) {
        if let Some(d) = self.retry_after_capped(o) {
            let nb = Instant::now() + d;
            self.not_before = Some(self.not_before.map_or(nb, |x| x.max(nb)));
        }
    }
}
