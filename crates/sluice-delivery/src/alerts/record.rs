//! From a delivery state change to an alert: which event type it is, its `data`, and the
//! `integration.disabled` events that come from configuration rather than delivery.

use crate::events::{DeliveryEvent, EventKind};
use serde_json::{Map, Value, json};
use sluice_core::alert::AlertEventType;
use sluice_core::model::Integration;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An alert to record: its type, the project it is about, and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: AlertEventType,
    /// The integration it is about.
    pub integration: String,
    pub project: String,
    pub data: Map<String, Value>,
}

fn base(integration: &str, name: &str, project: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("integrationId".into(), json!(integration));
    m.insert("integrationName".into(), json!(name));
    m.insert("project".into(), json!(project));
    m
}

fn put(m: &mut Map<String, Value>, k: &str, v: impl serde::Serialize) {
    let v = serde_json::to_value(v).unwrap_or(Value::Null);
    if !v.is_null() {
        m.insert(k.into(), v);
    }
}

/// The alert a state change raises.
pub fn alert_for(e: &DeliveryEvent) -> Alert {
    let mut data = base(&e.integration, &e.name, &e.project);
    let kind = match &e.kind {
        EventKind::Paused {
            env,
            reason,
            manual,
            failure_rate_percent,
            paused_at_ms,
            next_probe_at_ms,
        } => {
            put(&mut data, "reason", reason);
            put(&mut data, "manual", manual);
            put(&mut data, "environmentId", env);
            put(&mut data, "failureRatePercent", failure_rate_percent);
            put(&mut data, "pausedAt", paused_at_ms);
            put(&mut data, "nextProbeAt", next_probe_at_ms);
            AlertEventType::IntegrationPaused
        }
        EventKind::Resumed {
            env,
            reason,
            manual,
        } => {
            put(&mut data, "reason", reason);
            put(&mut data, "manual", manual);
            put(&mut data, "environmentId", env);
            AlertEventType::IntegrationResumed
        }
        EventKind::GapRecorded(gap) => {
            put(&mut data, "gap", gap);
            AlertEventType::IntegrationGap
        }
        EventKind::ReplayFinished(job) => {
            put(&mut data, "replay", job);
            AlertEventType::ReplayFinished
        }
    };
    Alert {
        kind,
        integration: e.integration.clone(),
        project: e.project.clone(),
        data,
    }
}

/// Follows the catalog's integrations and reports those whose `enabled` was switched off.
#[derive(Debug, Default)]
pub struct DisabledWatch {
    enabled: BTreeMap<String, bool>,
}

impl DisabledWatch {
    /// Starts from the integrations as they are (nothing is reported for them).
    pub fn new<'a>(integrations: impl Iterator<Item = &'a Arc<Integration>>) -> DisabledWatch {
        DisabledWatch {
            enabled: integrations.map(|i| (i.id.clone(), i.enabled)).collect(),
        }
    }

    /// The alerts of integrations enabled before and disabled now.
    pub fn changed<'a>(
        &mut self,
        integrations: impl Iterator<Item = &'a Arc<Integration>>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut now = BTreeMap::new();
        for i in integrations {
            if !i.enabled && self.enabled.get(&i.id) == Some(&true) {
                tracing::info!(event = "disabled", integration = %i.id, project = %i.project, "integration disabled");
                out.push(Alert {
                    kind: AlertEventType::IntegrationDisabled,
                    integration: i.id.clone(),
                    project: i.project.clone(),
                    data: base(&i.id, &i.name, &i.project),
                });
            }
            now.insert(i.id.clone(), i.enabled);
        }
        self.enabled = now;
        out
    }
}
