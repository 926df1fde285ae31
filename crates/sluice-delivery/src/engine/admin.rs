//! The engine's answers to the admin API: status, attempts, gaps, pause and resume,
//! cursors of new and deleted integrations, replay jobs.

use super::{DeliveryEngine, manual_key};
use crate::attempts::AttemptRecord;
use crate::batch::PinnedBatch;
use crate::cursor;
use crate::gaps::{Gap, list_gaps};
use crate::health::Phase;
use crate::replay;
use serde::Serialize;
use sluice_core::address::AddressPolicy;
use sluice_core::model::Integration;
use sluice_store::{Bucket, Expect, StoreError, StoredEntry};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// An integration's delivery state as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationState {
    Active,
    /// Not paused yet, but every attempt since the last success failed (at least one):
    /// the verdict — a success, or a pause — is pending.
    Failing,
    /// Paused automatically (cooldown) or by an operator.
    Paused,
    /// One batch at a time is sent to see whether the destination is back.
    Probing,
    Disabled,
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
    pub state: IntegrationState,
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
    pub pending_batch: Option<PinnedBatch>,
    /// Every batch in flight, one per environment at most.
    pub pending_batches: Vec<PinnedBatch>,
    /// The node that last claimed the integration's delivery (`None` before the first).
    pub owner: Option<String>,
    /// Grows by one each time another node takes the integration over.
    pub epoch: u64,
}

impl DeliveryEngine {
    pub async fn replays(&self, id: &str) -> Result<Vec<replay::ReplayJob>, StoreError> {
        let mut jobs = replay::list_jobs(self.ctx.meta.as_ref(), id).await?;
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
        Ok(jobs)
    }

    /// Gives a new integration (or one that gained environments) a position at the current
    /// end of each environment's log, so it receives impressions from this moment on.
    /// Call before the integration is stored.
    /// A compare-and-swap: the node delivering the integration may write its record
    /// meanwhile (then it is read again).
    pub async fn prepare_cursor(&self, integ: &Integration) -> Result<(), StoreError> {
        let meta = self.ctx.meta.as_ref();
        let mut tries = 0;
        loop {
            let (mut c, revision, changed) = cursor::load_positioned_versioned(
                meta,
                self.ctx.log.as_ref(),
                &integ.id,
                &integ.environments,
            )
            .await?;
            if !changed {
                return Ok(());
            }
            let expect = revision.map_or(Expect::Absent, Expect::Revision);
            match cursor::save_cas(meta, &integ.id, &mut c, expect).await {
                Err(StoreError::Conflict { .. }) if tries < 10 => tries += 1,
                r => return r.map(|_| ()),
            }
        }
    }

    /// Forgets everything of a deleted integration (SPEC §4: a new integration of the same id
    /// starts clean): its delivery and replay tasks are stopped first — so that nothing of
    /// the old one writes after it is removed — then its cursor and pinned batches, pause
    /// state, gaps, replay jobs, attempts, health and pause history are removed.
    pub async fn forget(&self, id: &str) -> Result<(), StoreError> {
        let task = self.running.lock().await.remove(id);
        if let Some(r) = task {
            r.stop.send_replace(true);
            let _ = r.join.await;
        }
        // Held while the state is removed: a replay cannot be resumed from a job being
        // deleted.
        let mut replays = self.replays.lock().await;
        if let Some(r) = replays.remove(id) {
            r.stop.send_replace(true);
            let _ = r.join.await;
        }
        self.shared_map().remove(id);
        let meta = self.ctx.meta.as_ref();
        meta.delete(Bucket::Cursors, id, Expect::Any).await?;
        meta.delete(Bucket::State, &manual_key(id), Expect::Any)
            .await?;
        for (key, _) in meta
            .list(Bucket::State, &crate::replay::job_key(id, ""))
            .await?
        {
            meta.delete(Bucket::State, &key, Expect::Any).await?;
        }
        for (key, _) in meta.list(Bucket::Gaps, &format!("{id}/")).await? {
            meta.delete(Bucket::Gaps, &key, Expect::Any).await?;
        }
        drop(replays);
        Ok(())
    }

    /// The integration's status as this node knows it. Its live health (phase, failure
    /// rate, pause history, last error, attempts counted) is known only to the node that
    /// delivers it: on any other node the status is the store's view (cursor, lag, the
    /// operator's pause), never the health this node kept from when it delivered it.
    pub async fn status(&self, integ: &Integration) -> Result<IntegrationStatus, StoreError> {
        let shared = self.get_shared(&integ.id);
        // Another node's: the operator's pause (followed on every node) but no health.
        let health = shared
            .as_ref()
            .filter(|_| self.ctx.opts.ownership.owns(&integ.id));
        // The running task's record when there is one (no store read: the dashboard's
        // sampler reads every integration's status every 10 s), else the stored one.
        let c = match health.and_then(|s| s.live_record()) {
            Some(c) => c,
            None => cursor::load(self.ctx.meta.as_ref(), &integ.id)
                .await?
                .unwrap_or_default(),
        };
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
        let now = self.ctx.now_ms();
        let lag_seconds = oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
        let manual = shared
            .as_ref()
            .map(|s| *s.manual_pause.borrow())
            .unwrap_or(false);
        let (phase, failing, delivered, failed, last_error, last_success, rate, pauses, history) =
            match health {
                Some(s) => s.with(|st| {
                    (
                        st.health.phase(),
                        st.health.failing(),
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
                None => (
                    Phase::Active,
                    false,
                    c.delivered,
                    0,
                    None,
                    None,
                    0,
                    0,
                    Vec::new(),
                ),
            };
        let (state, paused_until) = if !integ.enabled {
            (IntegrationState::Disabled, None)
        } else if manual {
            (IntegrationState::Paused, None)
        } else {
            match phase {
                Phase::Active if failing => (IntegrationState::Failing, None),
                Phase::Active => (IntegrationState::Active, None),
                Phase::Probing => (IntegrationState::Probing, None),
                Phase::Paused { until } => {
                    let left = until.saturating_duration_since(Instant::now());
                    (
                        IntegrationState::Paused,
                        Some(now + left.as_millis() as i64),
                    )
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
            owner: (!c.owner.is_empty()).then(|| c.owner.clone()),
            epoch: c.epoch,
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
        self.ctx.events.manual(integ, true);
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
        self.ctx.events.manual(integ, false);
        Ok(())
    }

    /// Addresses the policy allows (for configuration-time URL checks).
    pub fn policy(&self) -> &AddressPolicy {
        &self.ctx.opts.policy
    }
}
