//! The delivery engine: follows the configuration catalog and keeps exactly one worker
//! task per enabled integration (restarting it when its configuration changes), and
//! answers the admin API's questions about integrations (status, attempts, pause,
//! resume, test sends).
//!
//! Shared, and bounded: the pool of permits that *degraded* integrations (latest attempt
//! failed, or probing) must hold to send. Healthy integrations never touch it, so no
//! number of failing destinations can delay a healthy one.

use crate::attempts::AttemptRecord;
use crate::cursor;
use crate::encode::encode_batch;
use crate::gaps::{Gap, list_gaps};
use crate::health::Phase;
use crate::http::{ClientOptions, Outcome, build_client, client_tls_config, send};
use crate::replay;
use crate::request::{build_request, user_agent};
use crate::shared::IntegrationShared;
use crate::worker::{Worker, now_ms};
use serde::Serialize;
use sluice_core::address::AddressPolicy;
use sluice_core::impression::{Context, ImpressionIn};
use sluice_core::model::Integration;
use sluice_core::record::encode_entry;
use sluice_store::{Bucket, Catalog, Expect, ImpressionLog, MetaStore, StoreError, StoredEntry};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub policy: Arc<AddressPolicy>,
    /// Requests that degraded (failing or probing) integrations may have in flight in
    /// total.
    pub degraded_concurrency: usize,
    /// Response bytes read from a destination at most.
    pub max_response_bytes: usize,
    /// Wait before the single retry of a failed attempt.
    pub retry_delay: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            policy: Arc::new(AddressPolicy::default()),
            degraded_concurrency: 32,
            max_response_bytes: 64 * 1024,
            retry_delay: Duration::from_millis(300),
        }
    }
}

pub(crate) struct EngineCtx {
    pub log: Arc<dyn ImpressionLog>,
    pub meta: Arc<dyn MetaStore>,
    pub opts: EngineOptions,
    pub degraded: Arc<Semaphore>,
    pub tls: Arc<rustls::ClientConfig>,
}

struct ActiveReplay {
    job: String,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

/// What `POST /v1/integrations/{id}/replay` asks for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub gap_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Running {
    config: Arc<Integration>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

pub struct DeliveryEngine {
    ctx: Arc<EngineCtx>,
    catalog: Arc<Catalog>,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    shared: Mutex<HashMap<String, Arc<IntegrationShared>>>,
    replays: tokio::sync::Mutex<HashMap<String, ActiveReplay>>,
    stop: watch::Sender<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseRecord {
    pub paused_at: i64,
    pub cooldown_ms: u64,
    pub failure_rate_percent: u32,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationStatus {
    pub id: String,
    /// `active`, `paused`, `probing` or `disabled`.
    pub state: &'static str,
    pub manually_paused: bool,
    pub lag_impressions: u64,
    pub lag_seconds: f64,
    pub delivered_impressions: u64,
    pub failed_attempts: u64,
    pub paused_until: Option<i64>,
    pub last_error: Option<String>,
    pub last_success: Option<i64>,
    pub error_rate_percent: u32,
    pub pause_count: u32,
    pub pause_history: Vec<PauseRecord>,
    pub cursors: BTreeMap<String, u64>,
    /// The first batch in flight (kept for single-environment integrations' readers).
    pub pending_batch: Option<cursor::PendingBatch>,
    /// Every batch in flight, one per environment at most.
    pub pending_batches: Vec<cursor::PendingBatch>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub delivered: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub response: String,
    pub batch_id: String,
}

fn manual_key(id: &str) -> String {
    format!("paused/{id}")
}

impl DeliveryEngine {
    pub fn new(
        catalog: Arc<Catalog>,
        log: Arc<dyn ImpressionLog>,
        opts: EngineOptions,
    ) -> Arc<DeliveryEngine> {
        let meta = catalog.meta().clone();
        let ctx = Arc::new(EngineCtx {
            log,
            meta,
            degraded: Arc::new(Semaphore::new(opts.degraded_concurrency.max(1))),
            opts,
            tls: client_tls_config(),
        });
        Arc::new(DeliveryEngine {
            ctx,
            catalog,
            running: tokio::sync::Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            replays: tokio::sync::Mutex::new(HashMap::new()),
            stop: watch::Sender::new(false),
        })
    }

    /// Starts following the catalog. Returns the supervisor task.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut changes = me.catalog.subscribe();
            let mut stop = me.stop.subscribe();
            loop {
                me.reconcile().await;
                tokio::select! {
                    r = changes.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
            }
            me.stop_all().await;
        })
    }

    /// Stops every worker (in-flight requests are abandoned; their batches stay pinned and
    /// are resent with the same id after restart).
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        self.stop_all().await;
    }

    async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            r.stop.send_replace(true);
            let _ = r.join.await;
        }
        let mut replays = self.replays.lock().await;
        for (_, r) in replays.drain() {
            r.stop.send_replace(true);
            let _ = r.join.await;
        }
    }

    fn shared_for(&self, integ: &Integration, manual: bool) -> Arc<IntegrationShared> {
        let mut map = match self.shared.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let s = map
            .entry(integ.id.clone())
            .or_insert_with(|| Arc::new(IntegrationShared::new(integ.protection.clone(), manual)))
            .clone();
        s.with(|st| st.health.reconfigure(integ.protection.clone()));
        s
    }

    fn get_shared(&self, id: &str) -> Option<Arc<IntegrationShared>> {
        match self.shared.lock() {
            Ok(m) => m.get(id).cloned(),
            Err(p) => p.into_inner().get(id).cloned(),
        }
    }

    async fn reconcile(&self) {
        let snap = self.catalog.snapshot();
        let mut running = self.running.lock().await;
        // Stop workers whose integration is gone, disabled or changed.
        let ids: Vec<String> = running.keys().cloned().collect();
        for id in ids {
            let keep = matches!(snap.integrations.get(&id), Some(i) if i.enabled && **i == *running[&id].config);
            if !keep && let Some(r) = running.remove(&id) {
                r.stop.send_replace(true);
                let _ = r.join.await;
            }
        }
        // Forget state of deleted integrations.
        if let Ok(mut shared) = self.shared.lock() {
            shared.retain(|id, _| snap.integrations.contains_key(id));
        }
        for (id, integ) in &snap.integrations {
            if !integ.enabled || running.contains_key(id) {
                continue;
            }
            let manual = match self.ctx.meta.get(Bucket::State, &manual_key(id)).await {
                Ok(v) => v.is_some(),
                Err(e) => {
                    tracing::error!(integration = %id, error = %e, "cannot read pause state");
                    false
                }
            };
            let shared = self.shared_for(integ, manual);
            let client = match build_client(&self.client_options(integ), self.ctx.tls.clone()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(integration = %id, error = %e, "cannot build HTTP client");
                    continue;
                }
            };
            let (stop_tx, stop_rx) = watch::channel(false);
            let worker = Worker::new(integ.clone(), self.ctx.clone(), shared, client, stop_rx);
            let join = tokio::spawn(worker.run());
            running.insert(
                id.clone(),
                Running {
                    config: integ.clone(),
                    stop: stop_tx,
                    join,
                },
            );
        }
        drop(running);
        self.reconcile_replays(&snap).await;
    }

    /// Stops replays of deleted or disabled integrations; resumes running jobs (after a
    /// restart) of integrations that have none active.
    async fn reconcile_replays(&self, snap: &sluice_store::catalog::Snapshot) {
        let mut replays = self.replays.lock().await;
        replays.retain(|_, r| !r.join.is_finished());
        let ids: Vec<String> = replays.keys().cloned().collect();
        for id in ids {
            if !matches!(snap.integrations.get(&id), Some(i) if i.enabled)
                && let Some(r) = replays.remove(&id)
            {
                r.stop.send_replace(true);
                let _ = r.join.await;
            }
        }
        for (id, integ) in &snap.integrations {
            if !integ.enabled || replays.contains_key(id) {
                continue;
            }
            let jobs = match replay::list_jobs(self.ctx.meta.as_ref(), id).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(integration = %id, error = %e, "cannot read replay jobs");
                    continue;
                }
            };
            if let Some(job) = jobs.into_iter().find(|j| j.state == "running") {
                match self.spawn_replay(integ.clone(), job) {
                    Ok(active) => {
                        replays.insert(id.clone(), active);
                    }
                    Err(e) => {
                        tracing::error!(integration = %id, error = %e, "cannot resume replay")
                    }
                }
            }
        }
    }

    fn spawn_replay(
        &self,
        integ: Arc<Integration>,
        job: replay::ReplayJob,
    ) -> Result<ActiveReplay, crate::http::HttpError> {
        let client = build_client(&self.client_options(&integ), self.ctx.tls.clone())?;
        let shared = self.shared_for(&integ, false);
        let (stop, stop_rx) = watch::channel(false);
        let id = job.id.clone();
        let join = tokio::spawn(replay::run(
            self.ctx.clone(),
            integ,
            shared,
            client,
            job,
            stop_rx,
        ));
        Ok(ActiveReplay {
            job: id,
            stop,
            join,
        })
    }

    /// Starts a replay of a time window or of a recorded gap.
    pub async fn start_replay(
        &self,
        integ: Arc<Integration>,
        req: ReplayRequest,
    ) -> Result<replay::ReplayJob, ReplayError> {
        let mut replays = self.replays.lock().await;
        if let Some(r) = replays.get(&integ.id)
            && !r.join.is_finished()
        {
            return Err(ReplayError::Conflict(format!(
                "replay {} is still running for this integration; wait for it to finish",
                r.job
            )));
        }
        let mut spans = Vec::new();
        let (from, to) = match (&req.gap_id, req.from, req.to) {
            (Some(gap_id), None, None) => {
                let key = format!("{}/{gap_id}", integ.id);
                let gap: Gap = match self.ctx.meta.get(Bucket::Gaps, &key).await? {
                    Some(v) => serde_json::from_slice(&v.value)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    None => return Err(ReplayError::NotFound(format!("gap {gap_id} not found"))),
                };
                let b = self.ctx.log.bounds(&gap.environment_id).await?;
                if gap.from_offset < b.first {
                    return Err(ReplayError::Gone(format!(
                        "gap {gap_id} is past retention: its first impressions were removed from the log"
                    )));
                }
                spans.push(replay::ReplaySpan {
                    env: gap.environment_id.clone(),
                    start: gap.from_offset,
                    end: gap.to_offset,
                    position: gap.from_offset,
                });
                (None, None)
            }
            (None, Some(from), Some(to)) => {
                if from < 0 || to <= from {
                    return Err(ReplayError::Invalid(
                        "need 0 <= from < to (ms since epoch)".into(),
                    ));
                }
                for env in &integ.environments {
                    let b = self.ctx.log.bounds(env).await?;
                    if b.first > 0 {
                        // Something was removed by retention: refuse windows reaching before
                        // the oldest retained impression.
                        if let Some(first) = self.ctx.log.read(env, b.first, 1).await?.first()
                            && from < first.min_time
                        {
                            return Err(ReplayError::Gone(format!(
                                "window starts before the oldest retained impression of environment {env} (time {}); older impressions were removed by retention",
                                first.min_time
                            )));
                        }
                    }
                    if b.next > b.first {
                        spans.push(replay::ReplaySpan {
                            env: env.clone(),
                            start: b.first,
                            end: b.next,
                            position: b.first,
                        });
                    }
                }
                (Some(from), Some(to))
            }
            _ => {
                return Err(ReplayError::Invalid(
                    "give either {\"from\", \"to\"} (ms) or {\"gapId\"}".into(),
                ));
            }
        };
        let total = spans.iter().map(|s| s.end - s.start).sum();
        let job = replay::ReplayJob {
            id: format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            integration_id: integ.id.clone(),
            from,
            to,
            gap_id: req.gap_id.clone(),
            spans,
            state: "running".into(),
            delivered_impressions: 0,
            delivered_batches: 0,
            failed_attempts: 0,
            scanned_offsets: 0,
            total_offsets: total,
            pinned: None,
            seq: 0,
            created_at: now_ms(),
            finished_at: None,
            last_error: None,
        };
        replay::save_job(self.ctx.meta.as_ref(), &job).await?;
        let active = self
            .spawn_replay(integ.clone(), job.clone())
            .map_err(|e| ReplayError::Invalid(format!("cannot build HTTP client: {e}")))?;
        replays.insert(integ.id.clone(), active);
        Ok(job)
    }

    pub async fn replays(&self, id: &str) -> Result<Vec<replay::ReplayJob>, StoreError> {
        let mut jobs = replay::list_jobs(self.ctx.meta.as_ref(), id).await?;
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
        Ok(jobs)
    }

    fn client_options(&self, integ: &Integration) -> ClientOptions {
        ClientOptions {
            policy: self.ctx.opts.policy.clone(),
            connect_timeout: Duration::from_millis(integ.protection.connect_timeout_ms),
            request_timeout: Duration::from_millis(integ.protection.request_timeout_ms),
            user_agent: user_agent(),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 2,
        }
    }

    /// Gives a new integration (or one that gained environments) a position at the current
    /// end of each environment's log, so it receives impressions from this moment on.
    /// Call before the integration is stored.
    pub async fn prepare_cursor(&self, integ: &Integration) -> Result<(), StoreError> {
        let meta = self.ctx.meta.as_ref();
        let (c, changed) =
            cursor::load_positioned(meta, self.ctx.log.as_ref(), &integ.id, &integ.environments)
                .await?;
        if changed {
            cursor::save(meta, &integ.id, &c).await?;
        }
        Ok(())
    }

    /// Forgets a deleted integration's cursor and pause state.
    pub async fn forget(&self, id: &str) -> Result<(), StoreError> {
        self.ctx
            .meta
            .delete(Bucket::Cursors, id, Expect::Any)
            .await?;
        self.ctx
            .meta
            .delete(Bucket::State, &manual_key(id), Expect::Any)
            .await
    }

    pub async fn status(&self, integ: &Integration) -> Result<IntegrationStatus, StoreError> {
        let c = cursor::load(self.ctx.meta.as_ref(), &integ.id)
            .await?
            .unwrap_or_default();
        let mut lag = 0u64;
        let mut oldest: Option<i64> = None;
        for env in &integ.environments {
            let b = self.ctx.log.bounds(env).await?;
            let from = c.offsets.get(env).copied().unwrap_or(b.next).max(b.first);
            let from = match c.pinned.get(env) {
                Some(p) => p.from.max(b.first),
                None => from,
            };
            if b.next > from {
                lag += b.next - from;
                let e: Vec<StoredEntry> = self.ctx.log.read(env, from, 1).await?;
                if let Some(first) = e.first() {
                    oldest = Some(oldest.map_or(first.ingest_ms, |o| o.min(first.ingest_ms)));
                }
            }
        }
        let now = now_ms();
        let lag_seconds = oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
        let shared = self.get_shared(&integ.id);
        let manual = shared
            .as_ref()
            .map(|s| *s.manual_pause.borrow())
            .unwrap_or(false);
        let (phase, delivered, failed, last_error, last_success, rate, pauses, history) =
            match &shared {
                Some(s) => s.with(|st| {
                    (
                        st.health.phase(),
                        st.delivered.max(c.delivered),
                        st.failed_attempts,
                        st.last_error.clone(),
                        st.last_success_ms,
                        st.health.failure_rate_percent(),
                        st.health.pause_count(),
                        st.health
                            .pause_history()
                            .map(|p| PauseRecord {
                                paused_at: p.paused_at_unix_ms,
                                cooldown_ms: p.cooldown.as_millis() as u64,
                                failure_rate_percent: p.failure_rate_percent,
                                reason: p.reason.clone(),
                            })
                            .collect(),
                    )
                }),
                None => (Phase::Active, c.delivered, 0, None, None, 0, 0, Vec::new()),
            };
        let (state, paused_until) = if !integ.enabled {
            ("disabled", None)
        } else if manual {
            ("paused", None)
        } else {
            match phase {
                Phase::Active => ("active", None),
                Phase::Probing => ("probing", None),
                Phase::Paused { until } => {
                    let left = until.saturating_duration_since(Instant::now());
                    ("paused", Some(now + left.as_millis() as i64))
                }
            }
        };
        Ok(IntegrationStatus {
            id: integ.id.clone(),
            state,
            manually_paused: manual,
            lag_impressions: lag,
            lag_seconds,
            delivered_impressions: delivered,
            failed_attempts: failed,
            paused_until,
            last_error,
            last_success,
            error_rate_percent: rate,
            pause_count: pauses,
            pause_history: history,
            cursors: c.offsets,
            pending_batch: c.pinned.values().next().cloned(),
            pending_batches: c.pinned.values().cloned().collect(),
        })
    }

    pub fn attempts(&self, id: &str) -> Vec<AttemptRecord> {
        self.get_shared(id)
            .map(|s| s.with(|st| st.attempts.recent()))
            .unwrap_or_default()
    }

    pub async fn gaps(&self, id: &str) -> Result<Vec<Gap>, StoreError> {
        list_gaps(self.ctx.meta.as_ref(), id).await
    }

    /// Operator pause: persisted, so it survives restarts.
    pub async fn pause(&self, integ: &Integration) -> Result<(), StoreError> {
        self.ctx
            .meta
            .put(
                Bucket::State,
                &manual_key(&integ.id),
                b"1".to_vec(),
                Expect::Any,
            )
            .await?;
        self.shared_for(integ, true).manual_pause.send_replace(true);
        Ok(())
    }

    /// Operator resume: also clears an automatic pause (the operator says it is fixed).
    pub async fn resume(&self, integ: &Integration) -> Result<(), StoreError> {
        self.ctx
            .meta
            .delete(Bucket::State, &manual_key(&integ.id), Expect::Any)
            .await?;
        let s = self.shared_for(integ, false);
        s.with(|st| st.health.reset());
        s.manual_pause.send_replace(false);
        Ok(())
    }

    /// Sends one sample batch (a single synthetic impression) to the integration's URL, as
    /// a live batch would be sent, and reports the answer. Nothing is recorded as
    /// delivered.
    pub async fn test_send(&self, integ: &Integration) -> TestResult {
        let env = integ.environments.first().cloned().unwrap_or_default();
        let env_name = self
            .catalog
            .snapshot()
            .environments
            .get(&env)
            .map(|e| e.name.clone())
            .unwrap_or_default();
        let imp = ImpressionIn {
            key: "sluice-test-key".into(),
            split: "sluice_test_flag".into(),
            treatment: "on".into(),
            time: now_ms(),
            bucketing_key: None,
            label: Some("sluice test".into()),
            change_number: 0,
            properties: None,
        };
        let ctx = [Context {
            environment_name: env_name.into(),
            sdk: "sluice".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            machine_name: None,
            machine_ip: None,
        }];
        let e = encode_entry(&ctx, std::iter::once((0usize, &imp)));
        let entry = StoredEntry {
            base_offset: 0,
            count: 1,
            ingest_ms: now_ms(),
            min_time: imp.time,
            max_time: imp.time,
            payload: e.payload.into(),
        };
        let body = encode_batch(
            &env,
            &[entry],
            0,
            1,
            integ.effective_format(),
            integ.effective_gzip(),
        );
        let batch_id = format!("msg_test{:016x}", rand::random::<u64>());
        let req = build_request(integ, &batch_id, &body, now_ms() / 1000);
        let outcome: Outcome = match build_client(&self.client_options(integ), self.ctx.tls.clone())
        {
            Ok(client) => {
                send(
                    &client,
                    &self.ctx.opts.policy,
                    &req,
                    self.ctx.opts.max_response_bytes,
                )
                .await
            }
            Err(e) => {
                return TestResult {
                    delivered: false,
                    status: None,
                    error: Some(e.to_string()),
                    duration_ms: 0,
                    response: String::new(),
                    batch_id,
                };
            }
        };
        TestResult {
            delivered: outcome.is_delivered(),
            status: outcome.status,
            error: outcome.error.clone(),
            duration_ms: outcome.duration.as_millis() as u64,
            response: outcome.response_snippet.clone(),
            batch_id,
        }
    }

    /// Addresses the policy allows (for configuration-time URL checks).
    pub fn policy(&self) -> &AddressPolicy {
        &self.ctx.opts.policy
    }
}
