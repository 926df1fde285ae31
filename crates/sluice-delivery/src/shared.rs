//! State an integration's worker shares with the admin API: health, attempts, counters,
//! and the manual pause switch. Outlives worker restarts (configuration changes).

use crate::attempts::AttemptLog;
use crate::health::Health;
use sluice_core::model::Protection;
use std::sync::Mutex;
use tokio::sync::watch;

#[derive(Debug)]
pub struct SharedState {
    pub health: Health,
    pub attempts: AttemptLog,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    pub last_success_ms: Option<i64>,
}

#[derive(Debug)]
pub struct IntegrationShared {
    pub state: Mutex<SharedState>,
    /// True while an operator has paused the integration by hand.
    pub manual_pause: watch::Sender<bool>,
}

impl IntegrationShared {
    pub fn new(protection: Protection, manual: bool) -> IntegrationShared {
        IntegrationShared {
            state: Mutex::new(SharedState {
                health: Health::new(protection),
                attempts: AttemptLog::default(),
                delivered: 0,
                failed_attempts: 0,
                last_error: None,
                last_success_ms: None,
            }),
            manual_pause: watch::Sender::new(manual),
        }
    }

    /// Runs `f` with the state locked. The lock is never held across an await.
    pub fn with<R>(&self, f: impl FnOnce(&mut SharedState) -> R) -> R {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}
