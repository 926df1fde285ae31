//! Delivery protection: the per-integration health window and pause state machine
//! (SPEC §3 "Delivery protection"). Pure: the caller passes the time in, so tests drive
//! it with any clock, and `tokio::time::pause()` works for the worker around it.
//!
//! Rules (defaults in `sluice_core::model::Protection`, justified in ARCHITECTURE.md):
//! - every HTTP attempt's outcome enters a sliding window of the last `window` attempts;
//! - the integration pauses when the window holds at least `min_attempts` outcomes and
//!   the failure rate reaches `failure_rate_percent` **and** the latest attempt failed, or
//!   when `min_attempts` (at least 3) attempts in a row failed — sustained failure, not
//!   sporadic (at a 10% random failure rate, six in a row happen once in a million);
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

#[derive(Debug)]
pub struct Health {
    cfg: Protection,
    window: VecDeque<bool>,
    consecutive_failures: u32,
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
            consecutive_failures: 0,
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

    /// True when the integration is degraded: paused or probing, or its latest attempt
    /// failed while its failure rate is at the pause threshold. Degraded integrations'
    /// sends draw from the shared bounded pool for failing integrations; one with only
    /// sporadic errors is not degraded, so it never queues behind failing destinations.
    pub fn degraded(&self) -> bool {
        self.phase != Phase::Active
            || (self.consecutive_failures > 0
                && self.failure_rate_percent() >= self.cfg.failure_rate_percent)
    }

    fn consecutive_limit(&self) -> u32 {
        self.cfg.min_attempts.max(3)
    }

    /// Records one HTTP attempt's outcome during normal delivery (not a probe).
    /// `jitter` in [-1, 1] scales the ±20% cooldown jitter (the caller supplies
    /// randomness so this stays deterministic under test). Returns true if this paused.
    pub fn record(&mut self, ok: bool, now: Instant, now_unix_ms: i64, jitter: f64) -> bool {
        if self.window.len() == self.cfg.window as usize {
            self.window.pop_front();
        }
        self.window.push_back(ok);
        if ok {
            self.consecutive_failures = 0;
            return false;
        }
        self.consecutive_failures += 1;
        if self.phase != Phase::Active {
            return false;
        }
        let rate = self.failure_rate_percent();
        let by_rate = self.window.len() >= self.cfg.min_attempts as usize
            && rate >= self.cfg.failure_rate_percent;
        let by_run = self.consecutive_failures >= self.consecutive_limit();
        if by_rate || by_run {
            self.cooldown = Duration::from_millis(self.cfg.initial_cooldown_ms);
            let reason = if by_rate {
                format!(
                    "failure rate {rate}% over the last {} attempts",
                    self.window.len()
                )
            } else {
                format!("{} consecutive failed attempts", self.consecutive_failures)
            };
            self.enter_pause(now, now_unix_ms, jitter, reason);
            return true;
        }
        false
    }

    /// Records the probe's outcome. Success resumes at once; failure extends the pause.
    pub fn record_probe(&mut self, ok: bool, now: Instant, now_unix_ms: i64, jitter: f64) {
        if ok {
            self.phase = Phase::Active;
            self.window.clear();
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
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
        self.consecutive_failures = 0;
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
mod tests {
    use super::*;

    fn cfg() -> Protection {
        Protection::default()
    }

    #[tokio::test(start_paused = true)]
    async fn sporadic_failures_never_pause() {
        let mut h = Health::new(cfg());
        let now = Instant::now();
        // One failure in ten, for a long time.
        for i in 0..10_000 {
            assert!(!h.record(i % 10 != 0, now, 0, 0.0), "paused at attempt {i}");
        }
        // Two failures in a row every so often.
        for i in 0..10_000 {
            assert!(!h.record(i % 7 > 1, now, 0, 0.0), "paused at attempt {i}");
        }
        assert_eq!(h.phase(), Phase::Active);
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_failures_pause_then_probe_cycle() {
        let c = cfg();
        let mut h = Health::new(c.clone());
        let t0 = Instant::now();
        let mut paused_after = None;
        for i in 1..=20 {
            if h.record(false, t0, 0, 0.0) {
                paused_after = Some(i);
                break;
            }
        }
        let n = paused_after.expect("sustained failures must pause");
        assert!(n <= 6, "paused only after {n} failures");
        let Phase::Paused { until } = h.phase() else {
            panic!("not paused")
        };
        assert_eq!(until - t0, Duration::from_millis(c.initial_cooldown_ms));
        assert!(h.degraded());
        // Still paused just before the cooldown ends; probing after.
        assert!(matches!(
            h.tick(until - Duration::from_millis(1)),
            Phase::Paused { .. }
        ));
        assert_eq!(h.tick(until), Phase::Probing);
        // Probe failures double the cooldown up to the cap.
        let mut expected = c.initial_cooldown_ms;
        let mut now = until;
        for _ in 0..12 {
            h.record_probe(false, now, 0, 0.0);
            expected = (expected * 2).min(c.max_cooldown_ms);
            let Phase::Paused { until } = h.phase() else {
                panic!()
            };
            assert_eq!(until - now, Duration::from_millis(expected));
            now = until;
            assert_eq!(h.tick(now), Phase::Probing);
        }
        assert_eq!(expected, c.max_cooldown_ms);
        // Probe success resumes immediately.
        h.record_probe(true, now, 0, 0.0);
        assert_eq!(h.phase(), Phase::Active);
        assert!(!h.degraded());
        assert_eq!(h.failure_rate_percent(), 0);
        assert_eq!(h.pause_history().count(), 13);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_is_bounded() {
        let c = cfg();
        for j in [-1.0, -0.5, 0.0, 0.5, 1.0, 7.0] {
            let mut h = Health::new(c.clone());
            let t0 = Instant::now();
            while !h.record(false, t0, 0, j) {}
            let Phase::Paused { until } = h.phase() else {
                panic!()
            };
            let ms = (until - t0).as_millis() as f64;
            let base = c.initial_cooldown_ms as f64;
            assert!(
                ms >= base * 0.8 - 1.0 && ms <= base * 1.2 + 1.0,
                "{j}: {ms}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn high_failure_rate_pauses_even_without_a_long_run() {
        let mut h = Health::new(cfg());
        let t0 = Instant::now();
        let mut paused = false;
        // Fail, fail, succeed: a 67% failure rate, runs of only two.
        for i in 0..60 {
            paused |= h.record(i % 3 == 2, t0, 0, 0.0);
        }
        assert!(paused);
    }

    #[tokio::test(start_paused = true)]
    async fn sporadic_failures_are_not_degraded_sustained_ones_are() {
        let mut h = Health::new(cfg());
        let t0 = Instant::now();
        for _ in 0..18 {
            h.record(true, t0, 0, 0.0);
        }
        // A failed batch (attempt and retry) after a healthy history: not degraded, so it
        // never waits behind failing destinations for the shared pool.
        h.record(false, t0, 0, 0.0);
        h.record(false, t0, 0, 0.0);
        assert!(!h.degraded());
        assert_eq!(h.phase(), Phase::Active);
        // Failing most of the time: degraded before the pause rule trips.
        let mut h = Health::new(cfg());
        h.record(false, t0, 0, 0.0);
        assert!(h.degraded(), "first attempt failed: 100% failure rate");
        h.record(true, t0, 0, 0.0);
        assert!(!h.degraded());
    }

    #[tokio::test(start_paused = true)]
    async fn manual_reset_clears() {
        let mut h = Health::new(cfg());
        let t0 = Instant::now();
        while !h.record(false, t0, 0, 0.0) {}
        h.reset();
        assert_eq!(h.phase(), Phase::Active);
        assert!(!h.degraded());
    }
}
