//! State an integration's task shares with the admin API and its replays: health, pacing,
//! attempts, counters, and the manual pause switch. Outlives task restarts (configuration
//! changes).

use crate::attempts::{AttemptKind, AttemptLog};
use crate::cursor::CursorRecord;
use crate::health::Health;
use crate::lane::common::LaneCommon;
use crate::pace::Pace;
use sluice_core::model::Integration;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, Weak};
use tokio::sync::watch;

#[derive(Debug)]
pub struct SharedState {
    pub health: Health,
    /// Request pacing: `maxRequestsPerSecond` and the adaptive catch-up rate, shared by the
    /// integration's lanes and its replay.
    pub pace: Pace,
    pub attempts: AttemptLog,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    pub last_success_ms: Option<i64>,
    /// Failed attempts by [`crate::metrics::failure_reason`] (for per-integration metrics).
    pub failed_by_reason: BTreeMap<&'static str, u64>,
    /// Gaps recorded and the impressions they skipped, since the process started.
    pub gaps: u64,
    pub gap_impressions: u64,
}

#[derive(Debug)]
pub struct IntegrationShared {
    pub state: Mutex<SharedState>,
    /// True while an operator has paused the integration by hand.
    pub manual_pause: watch::Sender<bool>,
    /// The running task's cursor record (gone once its lanes stopped): status reads it
    /// from memory instead of the metadata store, so sampling a large fleet costs no I/O.
    live: Mutex<Weak<LaneCommon>>,
}

impl IntegrationShared {
    pub fn new(integ: &Integration, manual: bool) -> IntegrationShared {
        IntegrationShared {
            state: Mutex::new(SharedState {
                health: Health::new(integ.protection.clone()),
                pace: Pace::new(integ.max_requests_per_second),
                attempts: AttemptLog::default(),
                delivered: 0,
                failed_attempts: 0,
                last_error: None,
                last_success_ms: None,
                failed_by_reason: BTreeMap::new(),
                gaps: 0,
                gap_impressions: 0,
            }),
            manual_pause: watch::Sender::new(manual),
            live: Mutex::new(Weak::new()),
        }
    }

    /// The running task's cursor record from now on.
    pub(crate) fn set_live(&self, common: Weak<LaneCommon>) {
        *self.live.lock().unwrap_or_else(PoisonError::into_inner) = common;
    }

    /// A copy of the running task's cursor record, when a task runs and no save holds the
    /// record at this instant (`None`: read the stored one).
    pub(crate) fn live_record(&self) -> Option<CursorRecord> {
        let common = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .upgrade()?;
        common.try_record()
    }

    /// Applies an integration's (possibly changed) settings, keeping what was learned.
    pub fn configure(&self, integ: &Integration) {
        self.with(|s| {
            s.health.reconfigure(integ.protection.clone());
            s.pace.reconfigure(integ.max_requests_per_second);
        });
    }

    /// Another node delivers the integration now: forgets its phase, failure window and
    /// last error (the counters since this process started stay, for the metrics).
    pub fn handed_over(&self) {
        self.with(|s| {
            s.health.reset();
            s.last_error = None;
        });
    }

    /// Runs `f` with the state locked. The lock is never held across an await.
    pub fn with<R>(&self, f: impl FnOnce(&mut SharedState) -> R) -> R {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// What one attempt sent, for the attempts log.
pub struct AttemptInfo<'a> {
    pub integration_id: &'a str,
    pub batch_id: &'a str,
    pub environment_id: &'a str,
    pub impressions: u32,
    pub bytes: usize,
    pub started_ms: i64,
    pub kind: AttemptKind,
}

impl IntegrationShared {
    /// Records an attempt's outcome in the attempts log, the counters and metrics. Replay
    /// attempts are logged but never counted as live delivery.
    pub fn record_attempt(&self, a: AttemptInfo<'_>, outcome: &crate::http::Outcome) {
        let ok = outcome.is_delivered();
        let error = (!ok).then(|| {
            outcome
                .error
                .clone()
                .unwrap_or_else(|| match outcome.status {
                    Some(s) => format!("HTTP {s}"),
                    None => "failed".into(),
                })
        });
        let live = a.kind != AttemptKind::Replay;
        self.with(|s| {
            s.attempts.push(crate::attempts::AttemptRecord {
                time: a.started_ms,
                batch_id: a.batch_id.to_owned(),
                environment_id: a.environment_id.to_owned(),
                impressions: a.impressions,
                bytes: a.bytes,
                status: outcome.status,
                error: error.clone(),
                duration_ms: outcome.duration.as_millis() as u64,
                kind: a.kind,
            });
            if ok && live {
                s.delivered += u64::from(a.impressions);
                s.last_success_ms = Some(a.started_ms + outcome.duration.as_millis() as i64);
            } else if !ok {
                s.failed_attempts += 1;
                s.last_error = error;
                *s.failed_by_reason
                    .entry(crate::metrics::failure_reason(outcome))
                    .or_default() += 1;
            }
        });
        crate::metrics::attempt(a.kind, outcome, a.impressions);
    }
}
