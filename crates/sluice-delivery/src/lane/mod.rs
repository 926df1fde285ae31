//! A lane: the delivery of one environment of one integration. Read → pin → send →
//! commit, one batch in flight at a time, so the environment's impressions arrive in
//! order:
//!
//! - [`prepare`]: wait for a full batch or the flush interval; skip backlog older than
//!   `maxBacklogAgeMs` (or removed by retention) into a recorded gap; **pin** the batch
//!   (id + offset range persisted before the first send) → [`Batch`];
//! - [`send`]: one attempt, then (not for probes) one retry after 300 ms or the
//!   destination's `Retry-After`, each in its turn of the integration's pacing and ended
//!   by the request timeout; every outcome feeds the integration's health window
//!   (failing / pause / probe / resume) and pacing → [`send::Delivered`] or the batch
//!   back, sent again after [`FAILED_BATCH_RETRY`] (or the flush interval if shorter);
//! - [`commit`]: only a [`send::Delivered`] moves the cursor; the next full batch,
//!   read and encoded while this one was in flight, is pinned in the same durable write.
//!
//! Lanes of one integration share [`common::LaneCommon`] (cursor record, `maxInFlight`,
//! probe lock) and [`IntegrationShared`] (health, attempts). A lane that ends is
//! restarted by its integration's task (see [`crate::supervise`]).

pub(crate) mod commit;
pub(crate) mod common;
pub(crate) mod prepare;
pub(crate) mod send;

use crate::batch::{Batch, EncodeError, PinnedBatch};
use crate::context::DeliveryCtx;
use crate::endpoint::Endpoint;
use crate::health::Phase;
use crate::shared::IntegrationShared;
use common::LaneCommon;
use prepare::{Next, prefetch_full_batch};
use sluice_core::model::Integration;
use sluice_store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LaneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

pub(crate) struct Lane {
    /// The one environment this lane delivers.
    env: String,
    integ: Arc<Integration>,
    ctx: Arc<DeliveryCtx>,
    shared: Arc<IntegrationShared>,
    endpoint: Arc<dyn Endpoint>,
    common: Arc<LaneCommon>,
    /// Next offset to deliver (this lane's part of the cursor record).
    position: Option<u64>,
    /// This environment's batch in flight, persisted in the cursor record.
    pinned: Option<PinnedBatch>,
    /// Delivered impressions not yet added to the shared record.
    delivered_delta: u64,
    /// The pinned batch's body, when already encoded.
    cached: Option<Batch>,
    stop: watch::Receiver<bool>,
    last_send: Option<Instant>,
    not_before: Option<Instant>,
}

/// A failed batch (attempt and retry) is sent again after this, or after the flush
/// interval if that is shorter: a dead destination gathers evidence at the same pace
/// whatever its flush interval, and is paused within `failingForMs` plus one attempt.
pub(crate) const FAILED_BATCH_RETRY: Duration = Duration::from_secs(5);

enum Wake {
    Stop,
    Go,
}

/// What a lane is made of.
pub(crate) struct LaneParts {
    pub env: String,
    pub integ: Arc<Integration>,
    pub ctx: Arc<DeliveryCtx>,
    pub shared: Arc<IntegrationShared>,
    pub endpoint: Arc<dyn Endpoint>,
    pub common: Arc<LaneCommon>,
    pub stop: watch::Receiver<bool>,
}

impl Lane {
    /// A lane starting from its environment's part of the shared cursor record (so a
    /// restarted lane resumes its pinned batch under the same id).
    pub(crate) async fn start(p: LaneParts) -> Lane {
        let (position, pinned) = {
            let r = p.common.record().await;
            (
                r.offsets.get(&p.env).copied(),
                r.pinned.get(&p.env).cloned(),
            )
        };
        Lane {
            env: p.env,
            integ: p.integ,
            ctx: p.ctx,
            shared: p.shared,
            endpoint: p.endpoint,
            common: p.common,
            position,
            pinned,
            delivered_delta: 0,
            cached: None,
            stop: p.stop,
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

    async fn wait_for(&mut self, d: Duration) -> Wake {
        self.wait(Some(Instant::now() + d)).await
    }

    /// The delivery loop; returns when stopped.
    pub(crate) async fn run(mut self) {
        let mut end_watch = self.ctx.log.subscribe(&self.env);
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
            // Wait for the pacing before cutting the batch, so that a batch held back by
            // `maxRequestsPerSecond` or the catch-up rate is cut as full as it can be.
            let ready = self.shared.with(|s| s.pace.ready_at(Instant::now()));
            if ready > Instant::now() {
                if let Wake::Stop = self.wait(Some(ready)).await {
                    return;
                }
                continue;
            }
            let batch = match self.next_batch().await {
                Ok(Next::Send(b)) => b,
                Ok(Next::WaitUntil(deadline)) => {
                    // Nothing ready: wait for new data, the flush deadline, or stop.
                    end_watch.borrow_and_update();
                    tokio::select! {
                        _ = end_watch.changed() => {}
                        w = self.wait(deadline) => if let Wake::Stop = w { return },
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(integration = %self.integ.id, env = %self.env, error = %e, "cannot prepare batch; retrying in 1s");
                    if let Wake::Stop = self.wait_for(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            let probing = phase == Phase::Probing;
            // While this batch is in flight, read and encode the next full one (if any) on
            // the blocking pool: a draining backlog then costs max(encode, send) per batch,
            // not encode + send. It starts where this one ends.
            let next_from = batch.pinned.to;
            let prefetch = {
                let (ctx, integ, env) = (self.ctx.clone(), self.integ.clone(), self.env.clone());
                async move {
                    if probing {
                        return None;
                    }
                    prefetch_full_batch(ctx, integ, env, next_from).await
                }
            };
            let mut stop = self.stop.clone();
            let (sent, prefetched) = tokio::select! {
                r = async { tokio::join!(self.deliver(batch, probing), prefetch) } => r,
                _ = stop.changed() => return,
            };
            self.last_send = Some(Instant::now());
            match sent {
                Ok(delivered) => {
                    if let Err(e) = self.commit(delivered, prefetched).await {
                        // Delivered but the cursor could not be saved: it will be
                        // redelivered with the same id (at least once; receivers dedupe).
                        tracing::error!(integration = %self.integ.id, env = %self.env, error = %e, "cannot save cursor");
                        if let Wake::Stop = self.wait_for(Duration::from_secs(1)).await {
                            return;
                        }
                    }
                }
                Err(batch) => {
                    // Keep the batch first in line; next attempt after the flush interval
                    // or FAILED_BATCH_RETRY, whichever is shorter (or a later Retry-After).
                    let again =
                        Duration::from_millis(self.integ.flush_interval_ms).min(FAILED_BATCH_RETRY);
                    let next = Instant::now() + again;
                    self.not_before = Some(self.not_before.map_or(next, |nb| nb.max(next)));
                    self.cached = Some(batch);
                }
            }
        }
    }
}

#[cfg(test)]
mod pace_tests;
#[cfg(test)]
mod protection_tests;
#[cfg(test)]
mod tests;
