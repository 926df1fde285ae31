//! Running a replay job to completion (or until stopped). Failures are recorded in the
//! job and retried after a doubling backoff (1 s … 60 s); nothing is sent before its
//! pinned batch is saved.

use super::window::{collect, encode_window};
use super::{ReplayJob, ReplayState, save_job};
use crate::attempts::AttemptKind;
use crate::batch::{PinnedBatch, encode_blocking};
use crate::context::DeliveryCtx;
use crate::endpoint::Endpoint;
use crate::gaps::Gap;
use crate::pace::load_signal;
use crate::request::build_request;
use crate::shared::{AttemptInfo, IntegrationShared};
use crate::supervise::until_stopped;
use sluice_core::model::Integration;
use sluice_store::{Bucket, Expect, MetaStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Everything a replay runs with.
pub(crate) struct ReplayRun {
    pub ctx: Arc<DeliveryCtx>,
    pub integ: Arc<Integration>,
    pub shared: Arc<IntegrationShared>,
    pub endpoint: Arc<dyn Endpoint>,
    pub stop: watch::Receiver<bool>,
    backoff: Duration,
}

impl ReplayRun {
    pub(crate) fn new(
        ctx: Arc<DeliveryCtx>,
        integ: Arc<Integration>,
        shared: Arc<IntegrationShared>,
        endpoint: Arc<dyn Endpoint>,
        stop: watch::Receiver<bool>,
    ) -> ReplayRun {
        ReplayRun {
            ctx,
            integ,
            shared,
            endpoint,
            stop,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Waits out the current backoff (doubling it); false when stopped meanwhile.
    async fn back_off(&mut self, job: &mut ReplayJob, error: String) -> bool {
        tracing::warn!(integration = %job.integration_id, job = %job.id, error = %error, "replay attempt failed; backing off");
        job.last_error = Some(error);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = until_stopped(&mut self.stop) => false,
        }
    }

    /// Runs `job` until done or stopped.
    pub(crate) async fn run(mut self, mut job: ReplayJob) {
        let max = u64::from(self.integ.max_batch_impressions);
        let meta = self.ctx.meta.clone();
        loop {
            if *self.stop.borrow() {
                return;
            }
            // Pin the next batch (or re-use the pinned one after a restart).
            if job.pinned.is_none() {
                let Some(span) = job.spans.iter().position(|s| s.position < s.end) else {
                    self.finish(job).await;
                    return;
                };
                // A window replay jumps to the next entry that overlaps its window.
                if let (Some(f), Some(t)) = (job.from, job.to) {
                    let s = &job.spans[span];
                    match self.ctx.log.scan_time(&s.env, f, t, s.position, 1).await {
                        Ok(entries) => {
                            let next = entries
                                .iter()
                                .find(|e| e.end_offset() > s.position)
                                .map_or(s.end, |e| e.base_offset.max(s.position));
                            let skipped = next.min(s.end) - s.position;
                            job.scanned_offsets += skipped;
                            job.spans[span].position = next.min(job.spans[span].end);
                            if skipped > 0 {
                                continue;
                            }
                        }
                        Err(e) => {
                            if !self.back_off(&mut job, e.to_string()).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
                let s = &job.spans[span];
                // Cut at most `max` offsets at a time; a window replay may find fewer.
                let to = (s.position + max).min(s.end);
                job.seq += 1;
                job.pinned = Some(PinnedBatch {
                    id: format!("msg_r{}{:08}", job.id, job.seq),
                    env: s.env.clone(),
                    from: s.position,
                    to,
                });
                if let Err(e) = save_job(meta.as_ref(), &job).await {
                    // Never send a batch whose id is not saved: a restart would resend its
                    // impressions under another id.
                    job.pinned = None;
                    if !self
                        .back_off(&mut job, format!("cannot save replay progress: {e}"))
                        .await
                    {
                        return;
                    }
                    continue;
                }
            }
            let Some(p) = job.pinned.clone() else {
                continue;
            };
            match self.send_pinned(&mut job, &p).await {
                Step::Sent(lost) => {
                    self.backoff = FIRST_BACKOFF;
                    if let Some(s) = job.spans.iter_mut().find(|s| s.env == p.env) {
                        s.position = p.to;
                    }
                    job.scanned_offsets += p.to - p.from;
                    job.lost_offsets += lost;
                    job.pinned = None;
                    if let Err(e) = save_job(meta.as_ref(), &job).await {
                        tracing::warn!(error = %e, "cannot save replay progress");
                    }
                }
                Step::Retry(error) => {
                    if !self.back_off(&mut job, error).await {
                        return;
                    }
                }
                Step::Stopped => return,
            }
        }
    }

    /// Builds and sends the pinned batch (nothing is sent when nothing of it remains).
    async fn send_pinned(&mut self, job: &mut ReplayJob, p: &PinnedBatch) -> Step {
        // Offsets of the batch retention removed before it was (re)read.
        let lost = match self.ctx.log.bounds(&p.env).await {
            Ok(b) => b.first.saturating_sub(p.from).min(p.to - p.from),
            Err(e) => return Step::Retry(e.to_string()),
        };
        let turn = crate::batch::work_permit().await;
        let entries = match collect(&self.ctx, job, &p.env, p.from, p.to).await {
            Ok(e) => e,
            Err(e) => return Step::Retry(e.to_string()),
        };
        let (j, env, i, (from, to)) = (
            job.clone(),
            p.env.clone(),
            self.integ.clone(),
            (p.from, p.to),
        );
        let body =
            match encode_blocking(move || encode_window(&j, &env, &entries, from, to, &i)).await {
                Ok(b) => b,
                Err(e) => return Step::Retry(e.to_string()),
            };
        drop(turn);
        if body.count == 0 {
            return Step::Sent(lost);
        }
        // Wait while an operator has paused the integration.
        let mut manual = self.shared.manual_pause.subscribe();
        while *manual.borrow_and_update() {
            tokio::select! {
                _ = manual.changed() => {}
                _ = until_stopped(&mut self.stop) => return Step::Stopped,
            }
        }
        // A replay's requests take their turns in the integration's pacing with live
        // delivery's: together they never exceed `maxRequestsPerSecond`.
        let slot = self
            .shared
            .with(|s| s.pace.reserve(tokio::time::Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep_until(slot) => {}
            _ = until_stopped(&mut self.stop) => return Step::Stopped,
        }
        let started_ms = self.ctx.now_ms();
        let req = build_request(&self.integ, &p.id, &body, started_ms / 1000);
        let started = tokio::time::Instant::now();
        let mut outcome = {
            let mut stop = self.stop.clone();
            tokio::select! {
                o = self.endpoint.send(&req) => o,
                _ = until_stopped(&mut stop) => return Step::Stopped,
            }
        };
        outcome.duration = started.elapsed();
        self.shared
            .with(|s| s.pace.observe(started, load_signal(&outcome)));
        self.shared.record_attempt(
            AttemptInfo {
                integration_id: &self.integ.id,
                batch_id: &p.id,
                environment_id: &p.env,
                impressions: body.count,
                bytes: body.wire.len(),
                started_ms,
                kind: AttemptKind::Replay,
            },
            &outcome,
        );
        if !outcome.is_delivered() {
            job.failed_attempts += 1;
            let error = outcome
                .error
                .clone()
                .or(outcome.status.map(|s| format!("HTTP {s}")))
                .unwrap_or_else(|| "failed".into());
            // A destination's Retry-After (capped) replaces the next backoff.
            if let Some(d) = outcome.retry_after {
                self.backoff = d.min(Duration::from_millis(self.integ.protection.max_cooldown_ms));
            }
            let _ = save_job(self.ctx.meta.as_ref(), job).await;
            return Step::Retry(error);
        }
        job.delivered_impressions += u64::from(body.count);
        job.delivered_batches += 1;
        Step::Sent(lost)
    }

    async fn finish(&self, mut job: ReplayJob) {
        job.state = ReplayState::Done;
        job.finished_at = Some(self.ctx.now_ms());
        job.pinned = None;
        if let Err(e) = save_job(self.ctx.meta.as_ref(), &job).await {
            tracing::warn!(error = %e, "cannot save finished replay");
        }
        if let Some(gap) = &job.gap_id {
            settle_gap(self.ctx.meta.as_ref(), &job, gap).await;
        }
        self.ctx.events.replay_finished(&self.integ, &job);
    }
}

enum Step {
    /// Delivered (or nothing left to send); the offsets retention had removed.
    Sent(u64),
    Retry(String),
    Stopped,
}

/// A finished gap replay closes its gap — unless retention removed part of the gap before
/// the replay reached it: then the gap stays open and records what was lost.
async fn settle_gap(meta: &dyn MetaStore, job: &ReplayJob, gap_id: &str) {
    let key = format!("{}/{gap_id}", job.integration_id);
    if let Ok(Some(v)) = meta.get(Bucket::Gaps, &key).await
        && let Ok(mut gap) = serde_json::from_slice::<Gap>(&v.value)
    {
        if job.lost_offsets == 0 {
            gap.closed_by = Some(job.id.clone());
        } else {
            gap.lost_impressions = job.lost_offsets;
        }
        if let Ok(bytes) = serde_json::to_vec(&gap) {
            let _ = meta
                .put(Bucket::Gaps, &key, bytes, Expect::Revision(v.revision))
                .await;
        }
    }
}
