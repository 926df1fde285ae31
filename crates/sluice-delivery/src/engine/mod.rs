//! The delivery engine supervises: it follows the configuration catalog and keeps exactly
//! one [`IntegrationTask`] per enabled integration (stopped and started again when its
//! configuration changes; started again with backoff if it ends — see
//! [`crate::supervise`]), and one replay task per integration with a running job.
//! The admin API's questions (status, attempts, gaps, pause, resume, test sends, replay
//! requests) are answered in [`admin`] and [`test_send`].
//!
//! Nothing on the sending path is shared between integrations — no pool of permits that
//! failing destinations could fill or queue on — so no number of failing destinations
//! delays another's delivery or its verdict. Each bounds itself: at most `maxInFlight`
//! requests, one while failing, paused or probing.

mod admin;
mod counters;
mod test_send;
#[cfg(test)]
mod tests;

pub use admin::{IntegrationState, IntegrationStatus, PauseRecord};
pub use counters::IntegrationCounters;
pub use test_send::TestResult;

use crate::alerts::AlertService;
use crate::context::{DeliveryCtx, EngineOptions};
use crate::integration::IntegrationTask;
use crate::replay::request::plan;
use crate::replay::run::ReplayRun;
use crate::replay::{self, ReplayError, ReplayJob, ReplayRequest, ReplayState};
use crate::shared::IntegrationShared;
use crate::supervise::{Backoff, supervise};
use sluice_core::model::Integration;
use sluice_store::{Catalog, ImpressionLog};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct ActiveReplay {
    job: String,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

struct Running {
    config: Arc<Integration>,
    stop: watch::Sender<bool>,
    /// The supervisor: it ends only when stopped.
    join: JoinHandle<()>,
}

pub struct DeliveryEngine {
    ctx: Arc<DeliveryCtx>,
    catalog: Arc<Catalog>,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    shared: Mutex<HashMap<String, Arc<IntegrationShared>>>,
    replays: tokio::sync::Mutex<HashMap<String, ActiveReplay>>,
    stop: watch::Sender<bool>,
    backoff: Backoff,
    /// Operator alerts: their own tasks and clients, fed by the state changes.
    alerts: Arc<AlertService>,
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
        DeliveryEngine::with_context(catalog, DeliveryCtx::new(log, meta, opts))
    }

    /// An engine over a given context (clock, endpoints): for tests.
    pub fn with_context(catalog: Arc<Catalog>, ctx: DeliveryCtx) -> Arc<DeliveryEngine> {
        let ctx = Arc::new(ctx);
        Arc::new(DeliveryEngine {
            alerts: AlertService::new(ctx.clone()),
            ctx,
            catalog,
            running: tokio::sync::Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            replays: tokio::sync::Mutex::new(HashMap::new()),
            stop: watch::Sender::new(false),
            backoff: Backoff::default(),
        })
    }

    /// Starts following the catalog. Returns the supervisor task.
    /// Also follows operator pauses made through other nodes ([`Self::follow_pauses`]).
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        drop(self.follow_pauses());
        let me = self.clone();
        let alerts = self.alerts.start(self.catalog.clone());
        tokio::spawn(async move {
            let mut changes = me.catalog.subscribe();
            let mut members = me.ctx.opts.ownership.changes();
            let mut stop = me.stop.subscribe();
            loop {
                me.reconcile().await;
                tokio::select! {
                    r = changes.changed() => if r.is_err() { break },
                    r = members.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
            }
            me.stop_all().await;
            me.alerts.shutdown().await;
            let _ = alerts.await;
        })
    }

    /// Follows operator pauses and resumes made through any node (the `paused/` keys of
    /// the state bucket), so the node delivering an integration honours them at once.
    fn follow_pauses(self: &Arc<Self>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut stop = me.stop.subscribe();
            loop {
                let watch = tokio::select! {
                    w = me.ctx.meta.watch(sluice_store::Bucket::State, "paused/") => w,
                    _ = stop.changed() => return,
                };
                let mut changes = match watch {
                    Ok(w) => {
                        for (key, _) in &w.current {
                            me.apply_pause(key, true);
                        }
                        w.changes
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch pause state; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                            _ = stop.changed() => return,
                        }
                    }
                };
                loop {
                    use futures_util::StreamExt as _;
                    let change = tokio::select! {
                        c = changes.next() => c,
                        _ = stop.changed() => return,
                    };
                    match change {
                        Some(Ok(c)) => me.apply_pause(&c.key, c.value.is_some()),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "pause state watch ended; watching again");
                            break;
                        }
                        None => break,
                    }
                }
            }
        })
    }

    fn apply_pause(&self, key: &str, paused: bool) {
        let Some(id) = key.strip_prefix("paused/") else {
            return;
        };
        let Some(integ) = self.catalog.snapshot().integrations.get(id).cloned() else {
            return;
        };
        self.shared_for(&integ, paused)
            .manual_pause
            .send_if_modified(|p| std::mem::replace(p, paused) != paused);
    }

    /// The operator-alert service (alert destinations and their delivery).
    pub fn alerts(&self) -> &Arc<AlertService> {
        &self.alerts
    }

    /// Stops every task (in-flight requests are abandoned; their batches stay pinned and
    /// are resent with the same id after restart).
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        self.stop_all().await;
        self.alerts.shutdown().await;
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

    fn shared_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<IntegrationShared>>> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn shared_for(&self, integ: &Integration, manual: bool) -> Arc<IntegrationShared> {
        let s = self
            .shared_map()
            .entry(integ.id.clone())
            .or_insert_with(|| Arc::new(IntegrationShared::new(integ, manual)))
            .clone();
        s.configure(integ);
        s
    }

    fn get_shared(&self, id: &str) -> Option<Arc<IntegrationShared>> {
        self.shared_map().get(id).cloned()
    }

    async fn reconcile(&self) {
        let mut running = self.running.lock().await;
        // Read under the lock: `forget` (integration deleted) removes a task under it after
        // the catalog changed, so a snapshot taken before could start the deleted one again.
        let snap = self.catalog.snapshot();
        let ownership = &self.ctx.opts.ownership;
        // Stop tasks whose integration is gone, disabled, changed or now another node's.
        let ids: Vec<String> = running.keys().cloned().collect();
        for id in ids {
            // Unchanged objects keep their `Arc` across catalog changes: compare pointers
            // first, so a change costs no deep comparison of 10,000 configurations.
            let keep = ownership.owns(&id)
                && matches!(snap.integrations.get(&id), Some(i) if i.enabled
                    && (Arc::ptr_eq(i, &running[&id].config) || **i == *running[&id].config));
            if !keep && let Some(r) = running.remove(&id) {
                r.stop.send_replace(true);
                let _ = r.join.await;
                // Handed over: its health is the new owner's to learn; should it come back
                // here, it starts clean as it did there (no stale pause or failure run).
                if !ownership.owns(&id)
                    && let Some(s) = self.get_shared(&id)
                {
                    s.handed_over();
                }
            }
        }
        // Forget state of deleted integrations.
        self.shared_map()
            .retain(|id, _| snap.integrations.contains_key(id));
        for (id, integ) in &snap.integrations {
            if !integ.enabled || running.contains_key(id) || !ownership.owns(id) {
                continue;
            }
            let manual = match self
                .ctx
                .meta
                .get(sluice_store::Bucket::State, &manual_key(id))
                .await
            {
                Ok(v) => v.is_some(),
                Err(e) => {
                    tracing::error!(integration = %id, error = %e, "cannot read pause state");
                    false
                }
            };
            let shared = self.shared_for(integ, manual);
            let (stop_tx, stop_rx) = watch::channel(false);
            let (ctx, integ2, backoff) = (self.ctx.clone(), integ.clone(), self.backoff);
            let stop = stop_rx.clone();
            let join = tokio::spawn(supervise(
                format!("integration {id}"),
                stop_rx,
                backoff,
                move || {
                    IntegrationTask {
                        integ: integ2.clone(),
                        ctx: ctx.clone(),
                        shared: shared.clone(),
                        stop: stop.clone(),
                        lane_backoff: backoff,
                    }
                    .run()
                },
            ));
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
        self.reconcile_replays().await;
    }

    /// Stops replays of deleted or disabled integrations; resumes running jobs (after a
    /// restart) of integrations that have none active.
    async fn reconcile_replays(&self) {
        let mut replays = self.replays.lock().await;
        // Under the lock, as in `reconcile`.
        let snap = self.catalog.snapshot();
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
            // A job left running is resumed by the integration's owner only.
            if !integ.enabled || replays.contains_key(id) || !self.ctx.opts.ownership.owns(id) {
                continue;
            }
            let jobs = match replay::list_jobs(self.ctx.meta.as_ref(), id).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(integration = %id, error = %e, "cannot read replay jobs");
                    continue;
                }
            };
            if let Some(job) = jobs.into_iter().find(|j| j.state == ReplayState::Running) {
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
        job: ReplayJob,
    ) -> Result<ActiveReplay, crate::http::HttpError> {
        let endpoint = self.ctx.connector.connect(&integ)?;
        let shared = self.shared_for(&integ, false);
        let (stop, stop_rx) = watch::channel(false);
        let id = job.id.clone();
        let run = ReplayRun::new(self.ctx.clone(), integ, shared, endpoint, stop_rx);
        let join = tokio::spawn(run.run(job));
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
    ) -> Result<ReplayJob, ReplayError> {
        let mut replays = self.replays.lock().await;
        if let Some(r) = replays.get(&integ.id)
            && !r.join.is_finished()
        {
            return Err(ReplayError::Conflict(format!(
                "replay {} is still running for this integration; wait for it to finish",
                r.job
            )));
        }
        let job = plan(&self.ctx, &integ, &req).await?;
        replay::save_job(self.ctx.meta.as_ref(), &job).await?;
        self.ctx.events.replay_started(&integ, &job);
        let active = self
            .spawn_replay(integ.clone(), job.clone())
            .map_err(|e| ReplayError::Invalid(format!("cannot build HTTP client: {e}")))?;
        replays.insert(integ.id.clone(), active);
        Ok(job)
    }
}
