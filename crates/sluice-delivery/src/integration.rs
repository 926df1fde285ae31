//! An integration's task: its endpoint (own client and pool), its cursor record, and one
//! supervised [`Lane`] per environment. Every integration has its own: its own cursor,
//! its own HTTP client, its own timers, and at most `maxInFlight` requests in flight
//! (default 1). Nothing here waits on another integration; the only shared thing a lane
//! may wait for is a permit of the bounded pool for *degraded* integrations, which healthy
//! integrations never touch. Health (pause, probe) lives in [`IntegrationShared`] so it
//! outlives restarts.

use crate::context::DeliveryCtx;
use crate::cursor::{self, CursorRecord};
use crate::lane::common::LaneCommon;
use crate::lane::{Lane, LaneParts};
use crate::shared::IntegrationShared;
use crate::supervise::{Backoff, supervise, until_stopped};
use sluice_core::model::Integration;
use sluice_store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(crate) struct IntegrationTask {
    pub integ: Arc<Integration>,
    pub ctx: Arc<DeliveryCtx>,
    pub shared: Arc<IntegrationShared>,
    pub stop: watch::Receiver<bool>,
    /// Between restarts of a lane that ended.
    pub lane_backoff: Backoff,
}

impl IntegrationTask {
    /// Runs until stopped. Returns early only when the endpoint cannot be built (its
    /// supervisor starts it again after a backoff).
    pub(crate) async fn run(mut self) {
        let endpoint = match self.ctx.connector.connect(&self.integ) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(integration = %self.integ.id, error = %e, "cannot build HTTP client");
                return;
            }
        };
        // Load (or create) the cursor; retry while the store is unavailable.
        let record = loop {
            match self.load_cursor().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(integration = %self.integ.id, error = %e, "cannot load cursor; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = until_stopped(&mut self.stop) => return,
                    }
                }
            }
        };
        let common = Arc::new(LaneCommon::new(
            self.integ.id.clone(),
            record,
            self.integ.max_in_flight,
        ));
        let mut lanes = tokio::task::JoinSet::new();
        for env in &self.integ.environments {
            let parts = {
                let (env, integ, ctx, shared, endpoint, common, stop) = (
                    env.clone(),
                    self.integ.clone(),
                    self.ctx.clone(),
                    self.shared.clone(),
                    endpoint.clone(),
                    common.clone(),
                    self.stop.clone(),
                );
                move || LaneParts {
                    env: env.clone(),
                    integ: integ.clone(),
                    ctx: ctx.clone(),
                    shared: shared.clone(),
                    endpoint: endpoint.clone(),
                    common: common.clone(),
                    stop: stop.clone(),
                }
            };
            lanes.spawn(supervise(
                format!("lane {}/{env}", self.integ.id),
                self.stop.clone(),
                self.lane_backoff,
                move || {
                    let parts = parts();
                    async move { Lane::start(parts).await.run().await }
                },
            ));
        }
        while lanes.join_next().await.is_some() {}
    }

    async fn load_cursor(&self) -> Result<CursorRecord, StoreError> {
        let meta = self.ctx.meta.as_ref();
        let envs = &self.integ.environments;
        let (mut c, mut changed) =
            cursor::load_positioned(meta, self.ctx.log.as_ref(), &self.integ.id, envs).await?;
        // A pinned batch of an environment the integration no longer lists is dropped.
        let before = c.pinned.len();
        c.pinned.retain(|env, _| envs.contains(env));
        changed |= c.pinned.len() != before;
        // Positions past the end of the log (its tail was lost, e.g. cut on recovery after a
        // storage failure) would silently skip the impressions appended there from now on.
        for env in envs {
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
        Ok(c)
    }
}
