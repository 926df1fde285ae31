//! Delivery protection: the per-integration health window and pause state machine
//! (SPEC §3 "Delivery protection"). Pure: the caller passes the time in, so tests drive
//! it with any clock, and `tokio::time::pause()` works for the worker around it.
//!
//! Rules (defaults in `sluice_core::model::Protection`, justified in ARCHITECTURE.md):
//! - every live attempt's outcome enters a sliding window of the last `window` attempts,
//!   and a failed one extends the current *failure run* (the failed attempts since the
//!   last success: when the first of them started, how many);
//! - **dead**: the integration pauses when every attempt has failed for `failing_for`
//!   (counted from the start of the run's first attempt, so the time an attempt spent
//!   timing out counts: a timeout is evidence, not a reason to wait) and the run holds at
//!   least `min_failed_attempts` — time, not a count of attempts, so a hanging destination
//!   is judged as fast as a refusing one;
//! - **sustained failure rate**: it also pauses when the window holds at least
//!   `min_attempts` outcomes, the failure rate reaches `failure_rate_percent` and the
//!   latest attempt failed (mostly failing, with the odd success);
//! - while the latest attempt failed and it is not paused, it is **failing** (reported,
//!   never `active`);
//! - paused: nothing is sent until the cooldown ends; then exactly one probe batch;
//! - probe success: active again at once, window cleared;
//! - probe failure: paused again with the cooldown doubled (±20% jitter), capped.

use sluice_core::model::Protection;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Normal delivery.
    Active,
    /// Paused by protection until the instant; then probing.
    Paused { until: Instant },
    /// Cooldown over: the next batch is a single probe.
    Probing,
}

#[derive(Debug, Clone)]
pub struct PauseEvent {
    pub paused_at_unix_ms: i64,
    pub cooldown: Duration,
    pub failure_rate_percent: u32,
    pub reason: String,
}

/// The failed attempts since the last success.
#[derive(Debug, Clone, Copy)]
struct FailureRun {
    /// When the first failed attempt of the run started.
    since: Instant,
    failures: u32,
}

/// One finished attempt, as health sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub ok: bool,
    /// When it started (its failure counts from then: the time it spent timing out is
    /// time the destination did not answer).
    pub started: Instant,
    /// When it ended (now).
    pub ended: Instant,
}

#[derive(Debug)]
pub struct Health {
    cfg: Protection,
    window: VecDeque<bool>,
    run: Option<FailureRun>,
    phase: Phase,
    /// The cooldown of the current or most recent pause.
    cooldown: Duration,
    pauses: u32,
    history: VecDeque<PauseEvent>,
}

const HISTORY: usize = 20;

impl Health {
    pub fn new(cfg: Protection) -> Health {
        Health {
            window: VecDeque::with_capacity(cfg.window as usize),
            cfg,
            run: None,
            phase: Phase::Active,
            cooldown: Duration::ZERO,
            pauses: 0,
            history: VecDeque::new(),
        }
    }

    /// Applies new settings, keeping the current phase and outcomes.
    pub fn reconfigure(&mut self, cfg: Protection) {
        while self.window.len() > cfg.window as usize {
            self.window.pop_front();
        }
        self.cfg = cfg;
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Moves Paused → Probing once the cooldown has passed.
    pub fn tick(&mut self, now: Instant) -> Phase {
        if let Phase::Paused { until } = self.phase
            && now >= until
        {
            self.phase = Phase::Probing;
        }
        self.phase
    }

    /// Failures / attempts in the window, in percent.
    pub fn failure_rate_percent(&self) -> u32 {
        if self.window.is_empty() {
            return 0;
        }
        let failures = self.window.iter().filter(|ok| !**ok).count();
        (failures * 100 / self.window.len()) as u32
    }

    pub fn pause_history(&self) -> impl Iterator<Item = &PauseEvent> {
        self.history.iter()
    }

    /// True while not paused and the latest attempt failed: every attempt since the last
    /// success has failed, and the verdict (pause, or a success) is pending. The status
    /// then says `failing`, never `active`.
    pub fn failing(&self) -> bool {
        self.phase == Phase::Active && self.run.is_some()
    }

    /// True when the integration is failing, paused or probing: its lanes then send one
    /// request at a time between them, whatever `maxInFlight` says.
    pub fn unhealthy(&self) -> bool {
        self.phase != Phase::Active || self.run.is_some()
    }

    /// When the current failure run started (its first failed attempt's start).
    pub fn failing_since(&self) -> Option<Instant> {
        self.run.map(|r| r.since)
    }

    /// Records one HTTP attempt's outcome during normal delivery (not a probe).
    /// `jitter` in [-1, 1] scales the ±20% cooldown jitter (the caller supplies
    /// randomness so this stays deterministic under test). Returns true if this paused.
    pub fn record(&mut self, a: Attempt, now_unix_ms: i64, jitter: f64) -> bool {
        if self.window.len() >= self.cfg.window as usize {
            self.window.pop_front();
        }
        self.window.push_back(a.ok);
        if a.ok {
            self.run = None;
            return false;
        }
        let run = self.run.get_or_insert(FailureRun {
            since: a.started,
            failures: 0,
        });
        run.failures += 1;
        let run = *run;
        if self.phase != Phase::Active {
            return false;
        }
        let failing_for = a.ended.saturating_duration_since(run.since);
        let dead = run.failures >= self.cfg.min_failed_attempts
            && failing_for >= Duration::from_millis(self.cfg.failing_for_ms);
        let rate = self.failure_rate_percent();
        let by_rate = self.window.len() >= self.cfg.min_attempts as usize
            && rate >= self.cfg.failure_rate_percent;
        if !dead && !by_rate {
            return false;
        }
        let reason = if dead {
            format!(
                "every attempt failed for {} s ({} attempts)",
                failing_for.as_secs(),
                run.failures
            )
        } else {
            format!(
                "failure rate {rate}% over the last {} attempts",
                self.window.len()
            )
        };
        self.cooldown = Duration::from_millis(self.cfg.initial_cooldown_ms);
        self.enter_pause(a.ended, now_unix_ms, jitter, reason);
        true
    }

    /// Records the probe's outcome. Success resumes at once; failure extends the pause.
    pub fn record_probe(&mut self, ok: bool, now: Instant, now_unix_ms: i64, jitter: f64) {
        if ok {
            self.phase = Phase::Active;
            self.window.clear();
            self.run = None;
        } else {
            if let Some(run) = self.run.as_mut() {
                run.failures += 1;
            }
            let doubled = self
                .cooldown
                .saturating_mul(2)
                .max(Duration::from_millis(self.cfg.initial_cooldown_ms));
            self.cooldown = doubled.min(Duration::from_millis(self.cfg.max_cooldown_ms));
            self.enter_pause(now, now_unix_ms, jitter, "probe failed".into());
        }
    }

    fn enter_pause(&mut self, now: Instant, now_unix_ms: i64, jitter: f64, reason: String) {
        let jitter = jitter.clamp(-1.0, 1.0) * 0.2;
        let cap = Duration::from_millis(self.cfg.max_cooldown_ms);
        let wait = self.cooldown.mul_f64(1.0 + jitter).min(cap);
        self.phase = Phase::Paused { until: now + wait };
        self.pauses += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(PauseEvent {
            paused_at_unix_ms: now_unix_ms,
            cooldown: wait,
            failure_rate_percent: self.failure_rate_percent(),
            reason,
        });
    }

    /// An operator resumed by hand: active at once with a clean window.
    pub fn reset(&mut self) {
        self.phase = Phase::Active;
        self.window.clear();
        self.run = None;
    }

    /// The most recent pause (for the log line of a transition just made).
    pub fn last_pause(&self) -> Option<&PauseEvent> {
        self.history.back()
    }

    pub fn pause_count(&self) -> u32 {
        self.pauses
    }
}

#[cfg(test)]
mod tests;
