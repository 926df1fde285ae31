//! Pacing of one integration's requests (SPEC §3: catch-up never floods an endpoint).
//! Pure: the caller passes the time in.
//!
//! - `maxRequestsPerSecond` is a hard cap: request starts are spaced at least `1/cap`
//!   apart, so no one-second window ever holds more than `cap` of them.
//! - Below the cap the rate adapts, AIMD-style: a 429 or 503 (with or without
//!   `Retry-After`), a timeout, or an answer much slower than usual (more than twice the
//!   smoothed response time plus [`SLOW_MARGIN`]) halves the rate — from what was actually
//!   being sent, once per round of requests; every answer in usual time adds back
//!   [`INCREASE_PER_SECOND`] requests per second per second, up to the cap (without a cap
//!   the limit is lifted once it passes [`UNLIMITED_ABOVE`]). A destination recovering
//!   from an outage is thus drained as fast as it keeps up, and no faster.
//! - Unlimited until the first sign of trouble: with no cap and no congestion, nothing
//!   waits (each environment still has one request in flight at a time).

use crate::http::{Outcome, OutcomeKind};
use std::time::Duration;
use tokio::time::Instant;

/// The slowest the adaptive rate goes: one request every ten seconds.
pub const MIN_RATE: f64 = 0.1;
/// How fast the rate grows back while the endpoint keeps up (requests/s per second).
pub const INCREASE_PER_SECOND: f64 = 1.0;
/// Without a cap, a rate grown past this is no limit at all.
pub const UNLIMITED_ABOVE: f64 = 1_000.0;
/// An answer is slow when it takes more than twice the usual time plus this.
pub const SLOW_MARGIN: Duration = Duration::from_millis(500);

/// What an attempt said about the endpoint's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered (200) after this long.
    Answered(Duration),
    /// 429 or 503, or no answer within the timeout: it is overloaded.
    Overloaded,
    /// Another failure (says nothing about load; health deals with it).
    Failed,
}

/// What an attempt's outcome tells the pacing.
pub fn load_signal(o: &Outcome) -> Signal {
    match (o.kind, o.status) {
        (OutcomeKind::Delivered, _) => Signal::Answered(o.duration),
        (OutcomeKind::Timeout, _) | (_, Some(429)) | (_, Some(503)) => Signal::Overloaded,
        _ => Signal::Failed,
    }
}

#[derive(Debug)]
pub struct Pace {
    cap: Option<f64>,
    /// The adaptive rate (requests/s); infinite when nothing limits it.
    rate: f64,
    /// The earliest start of the next request.
    next_free: Option<Instant>,
    last_start: Option<Instant>,
    /// Between the last two request starts.
    interval: Option<Duration>,
    /// Smoothed response time of answered attempts.
    usual: Option<Duration>,
    /// Requests started before this do not lower the rate again (one decrease per round).
    decreased_at: Option<Instant>,
}

impl Pace {
    pub fn new(cap: Option<u32>) -> Pace {
        let cap = cap.map(f64::from);
        Pace {
            cap,
            rate: cap.unwrap_or(f64::INFINITY),
            next_free: None,
            last_start: None,
            interval: None,
            usual: None,
            decreased_at: None,
        }
    }

    /// A new `maxRequestsPerSecond`; the adaptive rate is kept (within the new cap).
    pub fn reconfigure(&mut self, cap: Option<u32>) {
        let cap = cap.map(f64::from);
        if cap != self.cap {
            self.cap = cap;
            self.rate = match cap {
                Some(c) => self.rate.min(c),
                None if self.rate >= UNLIMITED_ABOVE => f64::INFINITY,
                None => self.rate,
            };
        }
    }

    /// The rate requests may start at now (requests/s; infinite: no limit).
    pub fn limit(&self) -> f64 {
        self.cap.map_or(self.rate, |c| c.min(self.rate))
    }

    /// When the next request may start (without reserving it).
    pub fn ready_at(&self, now: Instant) -> Instant {
        self.next_free.map_or(now, |n| n.max(now))
    }

    /// Reserves the next start: the instant the caller must wait for before sending.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let at = self.ready_at(now);
        if let Some(prev) = self.last_start {
            self.interval = Some(at.saturating_duration_since(prev));
        }
        self.last_start = Some(at);
        let limit = self.limit();
        self.next_free = limit
            .is_finite()
            .then(|| at + Duration::from_secs_f64(1.0 / limit));
        at
    }

    /// Learns from an attempt that started at `started`.
    pub fn observe(&mut self, started: Instant, signal: Signal) {
        match signal {
            Signal::Answered(took) => {
                let slow = self
                    .usual
                    .is_some_and(|u| took > u.saturating_mul(2) + SLOW_MARGIN);
                self.usual = Some(match self.usual {
                    // Exponential smoothing, 1/8 (as TCP's smoothed round-trip time).
                    Some(u) => (u.saturating_mul(7) + took) / 8,
                    None => took,
                });
                if slow {
                    self.decrease(started, took);
                } else {
                    self.increase();
                }
            }
            Signal::Overloaded => self.decrease(started, Duration::ZERO),
            Signal::Failed => {}
        }
    }

    fn decrease(&mut self, started: Instant, took: Duration) {
        if self.decreased_at.is_some_and(|d| started <= d) {
            return;
        }
        // Halve what was really being sent: the limit may be far above it.
        let spacing = self
            .interval
            .unwrap_or(Duration::ZERO)
            .max(took)
            .max(Duration::from_millis(1));
        let sent = 1.0 / spacing.as_secs_f64();
        self.rate = (self.limit().min(sent) / 2.0).max(MIN_RATE);
        self.decreased_at = self.last_start.map(|s| s.max(started));
        // The next start honours the new rate at once.
        if let Some(last) = self.last_start {
            let next = last + Duration::from_secs_f64(1.0 / self.limit());
            self.next_free = Some(self.next_free.map_or(next, |n| n.max(next)));
        }
    }

    fn increase(&mut self) {
        if !self.rate.is_finite() {
            return;
        }
        self.rate += INCREASE_PER_SECOND / self.rate;
        match self.cap {
            Some(c) => self.rate = self.rate.min(c),
            None if self.rate >= UNLIMITED_ABOVE => self.rate = f64::INFINITY,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_cap_spaces_request_starts() {
        let mut p = Pace::new(Some(4));
        let t0 = Instant::now();
        let starts: Vec<Instant> = (0..9).map(|_| p.reserve(t0)).collect();
        for (i, s) in starts.iter().enumerate() {
            assert_eq!(*s - t0, Duration::from_millis(250) * i as u32);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_cap_or_trouble_nothing_waits() {
        let mut p = Pace::new(None);
        let t0 = Instant::now();
        for _ in 0..100 {
            let s = p.reserve(t0);
            assert_eq!(s, t0);
            p.observe(s, Signal::Answered(Duration::from_millis(20)));
        }
        assert!(p.limit().is_infinite());
    }

    #[tokio::test(start_paused = true)]
    async fn overload_halves_what_was_sent_once_per_round_then_it_grows_back() {
        let mut p = Pace::new(None);
        let mut t = Instant::now();
        // Sending every 100 ms (10/s), answered in 100 ms.
        for _ in 0..5 {
            let s = p.reserve(t);
            p.observe(s, Signal::Answered(Duration::from_millis(100)));
            t += Duration::from_millis(100);
        }
        let s = p.reserve(t);
        p.observe(s, Signal::Overloaded);
        assert!((p.limit() - 5.0).abs() < 1e-9, "{}", p.limit());
        // A request started before the decrease does not lower it again.
        p.observe(s - Duration::from_millis(1), Signal::Overloaded);
        assert!((p.limit() - 5.0).abs() < 1e-9);
        // The next one does.
        let s = p.reserve(t);
        assert_eq!(s - t, Duration::from_millis(200));
        p.observe(s, Signal::Overloaded);
        assert!(p.limit() < 5.0);
        // Floor.
        let mut last = s;
        for _ in 0..20 {
            last = p.reserve(last);
            p.observe(last, Signal::Overloaded);
        }
        assert!((p.limit() - MIN_RATE).abs() < 1e-9);
        // Growing back: about INCREASE_PER_SECOND per second.
        let floor = last;
        while p.limit() < 10.0 {
            last = p.reserve(last);
            p.observe(last, Signal::Answered(Duration::from_millis(100)));
        }
        let took = (last - floor).as_secs_f64();
        assert!((8.0..=20.0).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_much_slower_answer_lowers_the_rate_a_usual_one_does_not() {
        let mut p = Pace::new(Some(10));
        let t = Instant::now();
        for _ in 0..10 {
            let s = p.reserve(t);
            p.observe(s, Signal::Answered(Duration::from_millis(100)));
        }
        assert_eq!(p.limit(), 10.0);
        let s = p.reserve(t);
        p.observe(s, Signal::Answered(Duration::from_millis(600)));
        assert_eq!(
            p.limit(),
            10.0,
            "within twice the usual time plus the margin"
        );
        let s = p.reserve(t);
        p.observe(s, Signal::Answered(Duration::from_secs(2)));
        assert!(p.limit() < 10.0);
        // Other failures say nothing about load.
        let before = p.limit();
        let s = p.reserve(t);
        p.observe(s, Signal::Failed);
        assert_eq!(p.limit(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_cap_applies_at_once_and_removing_it_keeps_the_learned_rate() {
        let mut p = Pace::new(None);
        p.reconfigure(Some(3));
        assert_eq!(p.limit(), 3.0);
        let t = Instant::now();
        let s = p.reserve(t);
        p.observe(s, Signal::Overloaded);
        let learned = p.limit();
        assert!(learned < 3.0);
        p.reconfigure(None);
        assert_eq!(p.limit(), learned);
    }
}
