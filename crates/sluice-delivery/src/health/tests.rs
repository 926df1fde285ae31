//! The health rules alone, with time passed in (the lane-level tests on paused time with a
//! scripted endpoint are in `crate::lane::protection_tests`).

use super::*;

fn cfg() -> Protection {
    Protection::default()
}

/// An attempt that started `took` before `end`.
fn attempt(ok: bool, end: Instant, took: Duration) -> Attempt {
    Attempt {
        ok,
        started: end - took,
        ended: end,
    }
}

fn instant(ok: bool, at: Instant) -> Attempt {
    attempt(ok, at, Duration::ZERO)
}

#[tokio::test(start_paused = true)]
async fn a_regular_tenth_of_failures_never_pauses() {
    let mut h = Health::new(cfg());
    let mut now = Instant::now();
    for i in 0..10_000 {
        now += Duration::from_secs(1);
        assert!(
            !h.record(instant(i % 10 != 0, now), 0, 0.0),
            "paused at {i}"
        );
    }
    // Two failures in a row every so often.
    for i in 0..10_000 {
        now += Duration::from_secs(1);
        assert!(!h.record(instant(i % 7 > 1, now), 0, 0.0), "paused at {i}");
    }
    assert_eq!(h.phase(), Phase::Active);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_for_the_span_pauses_whatever_the_failure_takes() {
    let c = cfg();
    let span = Duration::from_millis(c.failing_for_ms);
    // Instant failures (refused, non-200) every 3 s (fewer than the failure-rate rule
    // needs): paused once the run spans it.
    let mut h = Health::new(c.clone());
    let t0 = Instant::now();
    let mut t = t0;
    while !h.record(instant(false, t), 0, 0.0) {
        assert!(h.failing());
        t += Duration::from_secs(3);
        assert!(t - t0 <= span, "not paused after {:?}", t - t0);
    }
    assert_eq!(t - t0, span);
    assert!(!h.failing(), "paused, not failing");
    assert!(
        h.last_pause()
            .unwrap()
            .reason
            .starts_with("every attempt failed for 15 s")
    );
    // Timeouts: the time an attempt waited counts, but one or two are not a verdict.
    let timeout = Duration::from_secs(10);
    let mut h = Health::new(c.clone());
    let t0 = Instant::now();
    assert!(!h.record(attempt(false, t0 + timeout, timeout), 0, 0.0));
    assert!(!h.record(attempt(false, t0 + timeout * 2, timeout), 0, 0.0));
    assert!(h.failing());
    assert!(h.record(attempt(false, t0 + timeout * 3, timeout), 0, 0.0));
}

#[tokio::test(start_paused = true)]
async fn one_slow_answer_among_successes_never_pauses() {
    let mut h = Health::new(cfg());
    let mut t = Instant::now();
    for i in 0..1_000 {
        t += Duration::from_secs(10);
        // Every 50th attempt times out after a minute; its retry succeeds.
        if i % 50 == 0 {
            let took = Duration::from_secs(60);
            t += took;
            assert!(!h.record(attempt(false, t, took), 0, 0.0));
            assert!(h.failing());
            t += Duration::from_millis(300);
        }
        assert!(!h.record(instant(true, t), 0, 0.0));
        assert!(!h.failing());
    }
}

#[tokio::test(start_paused = true)]
async fn sustained_failures_pause_then_probe_cycle() {
    let c = cfg();
    let mut h = Health::new(c.clone());
    let t0 = Instant::now();
    let mut t = t0;
    while !h.record(instant(false, t), 0, 0.0) {
        t += Duration::from_secs(1);
    }
    let Phase::Paused { until } = h.phase() else {
        panic!("not paused")
    };
    assert_eq!(until - t, Duration::from_millis(c.initial_cooldown_ms));
    assert!(h.unhealthy());
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
    assert!(!h.unhealthy());
    assert!(!h.failing());
    assert_eq!(h.failure_rate_percent(), 0);
    assert_eq!(h.pause_history().count(), 13);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_bounded() {
    let c = cfg();
    for j in [-1.0, -0.5, 0.0, 0.5, 1.0, 7.0] {
        let mut h = Health::new(c.clone());
        let mut t = Instant::now();
        while !h.record(instant(false, t), 0, j) {
            t += Duration::from_secs(1);
        }
        let Phase::Paused { until } = h.phase() else {
            panic!()
        };
        let ms = (until - t).as_millis() as f64;
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
    let mut t = Instant::now();
    let mut paused = false;
    // Fail, fail, succeed: a 67% failure rate, runs of two that last 300 ms.
    for i in 0..60 {
        t += Duration::from_millis(300);
        paused |= h.record(instant(i % 3 == 2, t), 0, 0.0);
    }
    assert!(paused);
    assert!(h.last_pause().unwrap().reason.starts_with("failure rate"));
}

#[tokio::test(start_paused = true)]
async fn failing_is_reported_until_a_success_or_a_pause() {
    let mut h = Health::new(cfg());
    let t = Instant::now();
    for _ in 0..18 {
        h.record(instant(true, t), 0, 0.0);
    }
    assert!(!h.failing() && !h.unhealthy());
    h.record(instant(false, t), 0, 0.0);
    assert!(h.failing() && h.unhealthy());
    assert_eq!(h.failing_since(), Some(t));
    h.record(instant(true, t), 0, 0.0);
    assert!(!h.failing() && !h.unhealthy());
    assert_eq!(h.failing_since(), None);
}

#[tokio::test(start_paused = true)]
async fn manual_reset_clears() {
    let mut h = Health::new(cfg());
    let mut t = Instant::now();
    while !h.record(instant(false, t), 0, 0.0) {
        t += Duration::from_secs(1);
    }
    h.reset();
    assert_eq!(h.phase(), Phase::Active);
    assert!(!h.unhealthy());
}
