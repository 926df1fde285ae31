//! An integration's task: its endpoint (the shared pool, its own request timeout), its
//! cursor record, and one supervised [`Lane`] per environment. Every integration has its
//! own cursor, its own request timeout, its own timers, and at most `maxInFlight` requests
//! in flight (default 1; one while failing, paused or probing). Nothing here waits on
//! another integration. Health (failing, pause, probe) and pacing live in
//! [`IntegrationShared`] so they outlive restarts.

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
        // Load (or create) and claim the cursor; retry while the store is unavailable or
        // another node writes it meanwhile.
        let (record, revision) = loop {
            if !self.ctx.opts.ownership.owns(&self.integ.id) {
                // The cluster view moved on while this task was starting: the engine stops
                // it; claim nothing meanwhile.
                until_stopped(&mut self.stop).await;
                return;
            }
            match self.claim_cursor().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(integration = %self.integ.id, error = %e, "cannot load or claim cursor; retrying");
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
            revision,
            self.integ.max_in_flight,
        ));
        self.shared.set_live(Arc::downgrade(&common));
        // Lanes stop when this task is stopped or when another node fences it.
        let (lane_stop, lane_stop_rx) = watch::channel(false);
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
                    lane_stop_rx.clone(),
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
                lane_stop_rx.clone(),
                self.lane_backoff,
                move || {
                    let parts = parts();
                    async move { Lane::start(parts).await.run().await }
                },
            ));
        }
        let mut fenced = common.fenced.subscribe();
        tokio::select! {
            _ = until_stopped(&mut self.stop) => {}
            _ = fenced.wait_for(|f| *f) => {}
        }
        lane_stop.send_replace(true);
        while lanes.join_next().await.is_some() {}
    }

    /// Loads the cursor record, brings it up to date with the configuration and claims it
    /// for this node (see [`cursor::claim`]). Returns it with the revision written.
    async fn claim_cursor(&self) -> Result<(CursorRecord, u64), StoreError> {
        let meta = self.ctx.meta.as_ref();
        let envs = &self.integ.environments;
        let (mut c, revision, _) =
            cursor::load_positioned_versioned(meta, self.ctx.log.as_ref(), &self.integ.id, envs)
                .await?;
        // A pinned batch of an environment the integration no longer lists is dropped.
        c.pinned.retain(|env, _| envs.contains(env));
        // Positions past the end of the log (its tail was lost, e.g. cut on recovery after a
        // storage failure) would silently skip the impressions appended there from now on.
        for env in envs {
            let next = self.ctx.log.bounds(env).await?.next;
            if let Some(o) = c.offsets.get_mut(env)
                && *o > next
            {
                tracing::warn!(integration = %self.integ.id, env = %env, cursor = *o, log_end = next, "delivery position is past the end of the log; resuming at its end");
                *o = next;
            }
            if let Some(p) = c.pinned.get(env)
                && p.to > next
            {
                tracing::warn!(integration = %self.integ.id, env = %env, batch = %p.id, to = p.to, log_end = next, "pending batch reaches past the end of the log; rebuilding it");
                c.pinned.remove(env);
            }
        }
        let written = cursor::claim(
            meta,
            &self.integ.id,
            self.ctx.opts.ownership.node(),
            &mut c,
            revision,
        )
        .await?;
        self.shared
            .with(|s| s.delivered = s.delivered.max(c.delivered));
        Ok((c, written))
    }
}
