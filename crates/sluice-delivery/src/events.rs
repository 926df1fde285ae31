//! State changes an operator reads in the server's log: one INFO line per transition
//! (paused with its reason and next probe, probing, resumed, gap recorded, replay started
//! and finished), each naming the integration and its project. Attempts stay at DEBUG.
//! Every line carries `event` (a stable name) so JSON logs can be filtered on it.

use crate::gaps::Gap;
use crate::health::PauseEvent;
use crate::replay::ReplayJob;
use sluice_core::model::Integration;

/// Paused by protection (`reason`: failure rate, consecutive failures, probe failed).
pub fn paused(integ: &Integration, env: &str, p: &PauseEvent) {
    crate::metrics::paused(false);
    let cooldown_ms = p.cooldown.as_millis() as u64;
    tracing::info!(
        event = "paused",
        integration = %integ.id,
        project = %integ.project,
        env,
        reason = %p.reason,
        failure_rate_percent = p.failure_rate_percent,
        cooldown_ms,
        next_probe_at_ms = p.paused_at_unix_ms.saturating_add(cooldown_ms as i64),
        "integration paused: {}; next probe in {} ms",
        p.reason,
        cooldown_ms
    );
}

/// Paused or resumed by an operator through the admin API.
pub fn manual(integ: &Integration, paused: bool) {
    if paused {
        crate::metrics::paused(true);
        tracing::info!(event = "paused", integration = %integ.id, project = %integ.project, reason = "manual", "integration paused by an operator");
    } else {
        tracing::info!(event = "resumed", integration = %integ.id, project = %integ.project, reason = "manual", "integration resumed by an operator");
    }
}

/// The cooldown is over: one probe batch is sent.
pub fn probing(integ: &Integration, env: &str) {
    tracing::info!(event = "probing", integration = %integ.id, project = %integ.project, env, "integration probing: sending one batch");
}

/// The probe succeeded: delivery is active again.
pub fn resumed(integ: &Integration, env: &str) {
    tracing::info!(event = "resumed", integration = %integ.id, project = %integ.project, env, reason = "probe succeeded", "integration resumed: probe delivered");
}

pub fn gap_recorded(integ: &Integration, gap: &Gap) {
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
}

pub fn replay_started(integ: &Integration, job: &ReplayJob) {
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

pub fn replay_finished(integ: &Integration, job: &ReplayJob) {
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
}
