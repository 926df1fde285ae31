//! Integration series computed at scrape time from the engine's status of every
//! integration (state, lag) and its in-memory counters: integrations per state, total and
//! worst lag always; one series per integration (and state, and failure reason) unless
//! the operator turned them off for a very large fleet
//! (`--metrics-per-integration=false`).
//!
//! The scrape computes the statuses [`CONCURRENCY`] at a time (each reads the cursor
//! record and the log's bounds). Without per-integration series, a fleet larger than
//! [`LIVE_SUMMARY_LIMIT`] is summarised from the dashboard sampler's last round (at most
//! its interval, 10 s, old) instead.

use super::text::{Family, Kind};
use crate::admin::dashboard::LIVE_SUMMARY_LIMIT;
use crate::admin::fleet::STATES;
use crate::history::FleetSummary;
use crate::state::AppState;
use futures_util::StreamExt;
use sluice_core::model::Integration;
use sluice_delivery::metrics::FAILURE_REASONS;
use sluice_delivery::{IntegrationCounters, IntegrationStatus};
use std::sync::Arc;

const CONCURRENCY: usize = 16;

/// One integration as a scrape sees it.
struct Row {
    integ: Arc<Integration>,
    status: IntegrationStatus,
    counters: IntegrationCounters,
}

fn state_name(status: &IntegrationStatus) -> &'static str {
    match status.state {
        sluice_delivery::IntegrationState::Active => "active",
        sluice_delivery::IntegrationState::Failing => "failing",
        sluice_delivery::IntegrationState::Paused => "paused",
        sluice_delivery::IntegrationState::Probing => "probing",
        sluice_delivery::IntegrationState::Disabled => "disabled",
    }
}

async fn rows(s: &AppState) -> Vec<Row> {
    let snapshot = s.catalog.snapshot();
    let integs: Vec<Arc<Integration>> = snapshot.integrations.values().cloned().collect();
    futures_util::stream::iter(integs)
        .map(|integ| {
            let s = s.clone();
            async move {
                // One deleted meanwhile (or a store error) is left out of this scrape.
                let status = s.engine.status(&integ).await.ok()?;
                let counters = s.engine.counters(&integ.id);
                Some(Row {
                    integ,
                    status,
                    counters,
                })
            }
        })
        .buffered(CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Appends the integration families to `out`.
pub async fn write(s: &AppState, out: &mut String) {
    let per_integration = s.config.per_integration_metrics;
    let count = s.catalog.snapshot().integrations.len();
    let cached = (!per_integration && count > LIVE_SUMMARY_LIMIT)
        .then(|| s.history.summary())
        .flatten();
    let (summary, rows) = match cached {
        Some(summary) => (summary, Vec::new()),
        None => {
            let rows = rows(s).await;
            let mut summary = FleetSummary::new(crate::history::now_ms());
            for r in &rows {
                summary.add(
                    state_name(&r.status),
                    r.status.lag_impressions,
                    r.status.lag_seconds,
                );
            }
            (summary, rows)
        }
    };
    write_summary(&summary, out);
    if per_integration {
        write_per_integration(&rows, out);
    }
}

fn write_summary(summary: &FleetSummary, out: &mut String) {
    let mut states = Family::new(
        "sluice_integrations",
        Kind::Gauge,
        "Integrations by delivery state (active, failing, paused, probing, disabled).",
    );
    for state in STATES {
        let n = summary.states.get(state).copied().unwrap_or(0);
        states.sample(&[("state", state)], n as f64);
    }
    states.write(out);
    let mut lag = Family::new(
        "sluice_lag_impressions",
        Kind::Gauge,
        "Impressions stored but not yet delivered, summed over all integrations.",
    );
    lag.sample(&[], summary.lag_impressions as f64);
    lag.write(out);
    let mut worst = Family::new(
        "sluice_max_lag_seconds",
        Kind::Gauge,
        "Age of the oldest undelivered impression over all integrations (0 when none waits).",
    );
    worst.sample(&[], summary.max_lag_seconds);
    worst.write(out);
}

fn write_per_integration(rows: &[Row], out: &mut String) {
    let mut state = Family::new(
        "sluice_integration_state",
        Kind::Gauge,
        "1 for the integration's current delivery state, 0 for the others.",
    );
    let mut lag = Family::new(
        "sluice_integration_lag_impressions",
        Kind::Gauge,
        "Impressions stored for the integration's environments and not yet delivered to it.",
    );
    let mut lag_s = Family::new(
        "sluice_integration_lag_seconds",
        Kind::Gauge,
        "Age of the integration's oldest undelivered impression (0 when none waits).",
    );
    let mut delivered = Family::new(
        "sluice_integration_delivered_impressions_total",
        Kind::Counter,
        "Impressions delivered live to the integration (kept across restarts).",
    );
    let mut failed = Family::new(
        "sluice_integration_failed_attempts_total",
        Kind::Counter,
        "The integration's failed delivery attempts by reason (the reasons that occurred), since the process started.",
    );
    let mut pauses = Family::new(
        "sluice_integration_pauses_total",
        Kind::Counter,
        "Times protection paused the integration (failed probes included), since the process started.",
    );
    let mut gaps = Family::new(
        "sluice_integration_gaps_total",
        Kind::Counter,
        "Gaps recorded for the integration, since the process started.",
    );
    let mut gap_impressions = Family::new(
        "sluice_integration_gap_impressions_total",
        Kind::Counter,
        "Impressions skipped into the integration's gaps, since the process started.",
    );
    for r in rows {
        let id = r.integ.id.as_str();
        let project = r.integ.project.as_str();
        let labels = [("integration", id), ("project", project)];
        let current = state_name(&r.status);
        for st in STATES {
            state.sample(
                &[("integration", id), ("project", project), ("state", st)],
                if st == current { 1.0 } else { 0.0 },
            );
        }
        lag.sample(&labels, r.status.lag_impressions as f64);
        lag_s.sample(&labels, r.status.lag_seconds);
        delivered.sample(&labels, r.status.delivered_impressions as f64);
        // Only the reasons that occurred: nine series per integration would mostly be 0.
        for reason in FAILURE_REASONS {
            if let Some(n) = r.counters.failed_by_reason.get(reason) {
                failed.sample(
                    &[
                        ("integration", id),
                        ("project", project),
                        ("reason", reason),
                    ],
                    *n as f64,
                );
            }
        }
        pauses.sample(&labels, r.counters.pauses as f64);
        gaps.sample(&labels, r.counters.gaps as f64);
        gap_impressions.sample(&labels, r.counters.gap_impressions as f64);
    }
    for f in [
        state,
        lag,
        lag_s,
        delivered,
        failed,
        pauses,
        gaps,
        gap_impressions,
    ] {
        f.write(out);
    }
}
