//! Operator alerts (SPEC §4): where they go ([`AlertDestination`]), what they are
//! ([`AlertEventType`]) and the body sluice POSTs ([`AlertEvent`]). Sent signed (Standard
//! Webhooks, [`crate::signature`]) under a `webhook-id` that is the event's own id.

use crate::error::ValidationError;
use crate::limits::settings;
use crate::model::{REDACTED, check, len, validate_id};
use serde::{Deserialize, Serialize};

/// The events an operator can be alerted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlertEventType {
    /// Delivery protection (or an operator) paused an integration.
    #[serde(rename = "integration.paused")]
    IntegrationPaused,
    /// A paused integration delivers again (probe succeeded, or an operator resumed it).
    #[serde(rename = "integration.resumed")]
    IntegrationResumed,
    /// Backlog was skipped and recorded as a gap.
    #[serde(rename = "integration.gap")]
    IntegrationGap,
    /// An integration's `enabled` was switched off.
    #[serde(rename = "integration.disabled")]
    IntegrationDisabled,
    /// A replay job finished.
    #[serde(rename = "replay.finished")]
    ReplayFinished,
}

impl AlertEventType {
    pub const ALL: [AlertEventType; 5] = [
        AlertEventType::IntegrationPaused,
        AlertEventType::IntegrationResumed,
        AlertEventType::IntegrationGap,
        AlertEventType::IntegrationDisabled,
        AlertEventType::ReplayFinished,
    ];

    /// The name on the wire (`integration.paused`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEventType::IntegrationPaused => "integration.paused",
            AlertEventType::IntegrationResumed => "integration.resumed",
            AlertEventType::IntegrationGap => "integration.gap",
            AlertEventType::IntegrationDisabled => "integration.disabled",
            AlertEventType::ReplayFinished => "replay.finished",
        }
    }
}

impl std::fmt::Display for AlertEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where operator alerts go. Without `project` (admin token only) it receives the events of
/// every project; with one, only that project's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AlertDestination {
    pub id: String,
    pub url: String,
    /// Signs every event (Standard Webhooks); answered redacted.
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub events: Vec<AlertEventType>,
}

impl AlertDestination {
    /// Shape checks (the API also checks the project exists and the URL against the
    /// address policy).
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id("id", &self.id)?;
        check(settings::URL, len(&self.url))?;
        check(settings::SECRET, len(&self.secret))?;
        if let Some(p) = &self.project {
            validate_id("project", p)?;
        }
        check(settings::ALERT_EVENTS, self.events.len() as u64)?;
        let mut sorted = self.events.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.events.len() {
            return Err(ValidationError::new(
                "events",
                "event types must be distinct",
            ));
        }
        Ok(())
    }

    /// Whether an event of `kind` about `project` goes to this destination.
    pub fn wants(&self, kind: AlertEventType, project: &str) -> bool {
        self.events.contains(&kind) && self.project.as_deref().is_none_or(|p| p == project)
    }

    /// A copy safe to show: the secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> AlertDestination {
        AlertDestination {
            secret: REDACTED.to_owned(),
            ..self.clone()
        }
    }
}

/// The body of one alert: `{type, timestamp, data}`; `timestamp` in ms since the epoch,
/// `data` names the integration (`integrationId`, `integrationName`, `project`) and what
/// happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertEvent {
    #[serde(rename = "type")]
    pub kind: AlertEventType,
    pub timestamp: i64,
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dest(events: Vec<AlertEventType>, project: Option<&str>) -> AlertDestination {
        AlertDestination {
            id: "a1".into(),
            url: "https://ops.example.com/hook".into(),
            secret: "s3cret".into(),
            project: project.map(str::to_owned),
            events,
        }
    }

    #[test]
    fn event_types_have_their_wire_names() {
        for t in AlertEventType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        assert!(serde_json::from_value::<AlertEventType>(json!("integration.exploded")).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        assert!(
            dest(vec![AlertEventType::IntegrationGap], None)
                .validate()
                .is_ok()
        );
        assert_eq!(dest(vec![], None).validate().unwrap_err().field, "events");
        let twice = vec![
            AlertEventType::IntegrationGap,
            AlertEventType::IntegrationGap,
        ];
        assert_eq!(dest(twice, None).validate().unwrap_err().field, "events");
        let mut d = dest(vec![AlertEventType::ReplayFinished], Some("bad/project"));
        assert_eq!(d.validate().unwrap_err().field, "project");
        d.project = None;
        d.secret = String::new();
        assert_eq!(d.validate().unwrap_err().field, "secret");
    }

    #[test]
    fn a_project_destination_wants_only_its_projects_events() {
        let d = dest(vec![AlertEventType::IntegrationPaused], Some("p1"));
        assert!(d.wants(AlertEventType::IntegrationPaused, "p1"));
        assert!(!d.wants(AlertEventType::IntegrationPaused, "p2"));
        assert!(!d.wants(AlertEventType::IntegrationGap, "p1"));
        let all = dest(vec![AlertEventType::IntegrationPaused], None);
        assert!(all.wants(AlertEventType::IntegrationPaused, "p2"));
        assert_eq!(d.redacted().secret, REDACTED);
    }

    #[test]
    fn an_event_body_is_type_timestamp_data_and_nothing_else() {
        let e: AlertEvent = serde_json::from_value(
            json!({"type": "replay.finished", "timestamp": 5, "data": {"integrationId": "i"}}),
        )
        .unwrap();
        assert_eq!(e.kind, AlertEventType::ReplayFinished);
        assert!(
            serde_json::from_value::<AlertEvent>(
                json!({"type": "replay.finished", "timestamp": 5, "data": {}, "x": 1})
            )
            .is_err()
        );
    }
}
