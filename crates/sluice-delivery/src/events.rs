//! State changes an operator reads in the server's log: one INFO line per transition
//! (paused with its reason and next probe, probing, resumed, gap recorded, replay started
//! and finished), each naming the integration and its project. Attempts stay at DEBUG.
//! Every line carries `event` (a stable name) so JSON logs can be filtered on it.
//!
//! The same transitions are published on [`Events`] (a broadcast: publishing never waits,
//! whoever listens), which the operator-alert service ([`crate::alerts`]) subscribes to.

use crate::gaps::Gap;
use crate::health::PauseEvent;
use crate::replay::ReplayJob;
use sluice_core::model::Integration;
use tokio::sync::broadcast;

/// Events buffered for a slow subscriber before it misses some (and is told how many).
const BUS_CAPACITY: usize = 4096;

/// One state change of an integration, as published on [`Events`].
#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    pub integration: String,
    pub name: String,
    pub project: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// Paused, from active: by protection (`manual: false`) or by an operator.
    Paused {
        env: Option<String>,
        reason: String,
        manual: bool,
        failure_rate_percent: Option<u32>,
        paused_at_ms: Option<i64>,
        next_probe_at_ms: Option<i64>,
    },
    /// Delivering again: the probe succeeded, or an operator resumed it.
    Resumed {
        env: Option<String>,
        reason: &'static str,
        manual: bool,
    },
    GapRecorded(Gap),
    ReplayFinished(ReplayJob),
}

/// The operator's log of state changes, and their broadcast.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<DeliveryEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::Sender::new(BUS_CAPACITY),
        }
    }
}

impl Events {
    /// Every state change published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeliveryEvent> {
        self.tx.subscribe()
    }

    fn publish(&self, integ: &Integration, kind: EventKind) {
        // No subscriber is fine: nobody asked to be told.
        let _ = self.tx.send(DeliveryEvent {
            integration: integ.id.clone(),
            name: integ.name.clone(),
            project: integ.project.clone(),
            kind,
        });
    }

    /// Paused by protection (`reason`: failure rate, consecutive failures).
    pub fn paused(&self, integ: &Integration, env: &str, p: &PauseEvent) {
        let next_probe_at_ms = log_pause(integ, env, p);
        self.publish(
            integ,
            EventKind::Paused {
                env: Some(env.to_owned()),
                reason: p.reason.clone(),
                manual: false,
                failure_rate_percent: Some(p.failure_rate_percent),
                paused_at_ms: Some(p.paused_at_unix_ms),
                next_probe_at_ms: Some(next_probe_at_ms),
            },
        );
    }

    /// A probe failed: still paused, with a longer cooldown (logged; not a new pause).
    pub fn pause_extended(&self, integ: &Integration, env: &str, p: &PauseEvent) {
        log_pause(integ, env, p);
    }

    /// Paused or resumed by an operator through the admin API.
    pub fn manual(&self, integ: &Integration, paused: bool) {
        if paused {
            crate::metrics::paused(true);
            tracing::info!(event = "paused", integration = %integ.id, project = %integ.project, reason = "manual", "integration paused by an operator");
            self.publish(
                integ,
                EventKind::Paused {
                    env: None,
                    reason: "paused by an operator".into(),
                    manual: true,
                    failure_rate_percent: None,
                    paused_at_ms: None,
                    next_probe_at_ms: None,
                },
            );
        } else {
            tracing::info!(event = "resumed", integration = %integ.id, project = %integ.project, reason = "manual", "integration resumed by an operator");
            self.publish(
                integ,
                EventKind::Resumed {
                    env: None,
                    reason: "resumed by an operator",
                    manual: true,
                },
            );
        }
    }

    /// The cooldown is over: one probe batch is sent.
    pub fn probing(&self, integ: &Integration, env: &str) {
        tracing::info!(event = "probing", integration = %integ.id, project = %integ.project, env, "integration probing: sending one batch");
    }

    /// The probe succeeded: delivery is active again.
    pub fn resumed(&self, integ: &Integration, env: &str) {
        tracing::info!(event = "resumed", integration = %integ.id, project = %integ.project, env, reason = "probe succeeded", "integration resumed: probe delivered");
        self.publish(
            integ,
            EventKind::Resumed {
                env: Some(env.to_owned()),
                reason: "probe succeeded",
                manual: false,
            },
        );
    }

    pub fn gap_recorded(&self, integ: &Integration, gap: &Gap) {
        tracing::info!(
            event = "gap_recorded",
            integration = %integ.id,
            project = %integ.project,
            env = %gap.environment_id,
            from_offset = gap.from_offset,
            to_offset = gap.to_offset,
            impressions = gap.impressions,
            reason = gap.reason.as_str(),
            "skipped backlog recorded as a gap ({} impressions)",
            gap.impressions
        );
        self.publish(integ, EventKind::GapRecorded(gap.clone()));
    }

    pub fn replay_started(&self, integ: &Integration, job: &ReplayJob) {
        tracing::info!(
            event = "replay_started",
            integration = %integ.id,
            project = %integ.project,
            job = %job.id,
            gap = job.gap_id.as_deref().unwrap_or(""),
            offsets = job.total_offsets,
            "replay started"
        );
    }

    pub fn replay_finished(&self, integ: &Integration, job: &ReplayJob) {
        tracing::info!(
            event = "replay_finished",
            integration = %integ.id,
            project = %integ.project,
            job = %job.id,
            impressions = job.delivered_impressions,
            lost = job.lost_offsets,
            "replay finished: {} impressions delivered, {} offsets lost to retention",
            job.delivered_impressions,
            job.lost_offsets
        );
        self.publish(integ, EventKind::ReplayFinished(job.clone()));
    }
}

/// The INFO line of a pause; returns the next probe time (ms since the epoch).
fn log_pause(integ: &Integration, env: &str, p: &PauseEvent) -> i64 {
    crate::metrics::paused(false);
    let cooldown_ms = p.cooldown.as_millis() as u64;
    let next_probe_at_ms = p.paused_at_unix_ms.saturating_add(cooldown_ms as i64);
    tracing::info!(
        event = "paused",
        integration = %integ.id,
        project = %integ.project,
        env,
        reason = %p.reason,
        failure_rate_percent = p.failure_rate_percent,
        cooldown_ms,
        next_probe_at_ms,
        "integration paused: {}; next probe in {} ms",
        p.reason,
        cooldown_ms
    );
    next_probe_at_ms
}
