//! Delivery protection end to end on paused time (SPEC §3 "Delivery protection"): an
//! integration task with DEFAULT settings against a scripted endpoint. A dead destination
//! — whatever way it fails — is paused within 30 s of its first failed attempt (an
//! attempt that times out fails when its timeout ends), however many others fail at the
//! same time; sporadic errors never pause.

use crate::context::DeliveryCtx;
use crate::endpoint::scripted::{Received, Reply, RoutedConnector, ScriptedEndpoint};
use crate::health::Phase;
use crate::testing::{Harness, Running, T0, default_integration, start, start_on};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sluice_core::model::Protection;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

const DEADLINE: Duration = Duration::from_secs(30);

fn request_timeout() -> Duration {
    Duration::from_millis(Protection::default().request_timeout_ms)
}

/// When the first attempt failed: when its answer came, or when its timeout ended.
fn first_failure(first_request: Instant, reply: &Reply) -> Instant {
    match reply {
        Reply::Hang => first_request + request_timeout(),
        Reply::Delayed(d, _) => first_request + (*d).min(request_timeout()),
        _ => first_request,
    }
}

/// When the integration was first paused, on the paused-time clock that started at `t0`.
fn first_pause(r: &Running, t0: Instant) -> Option<Instant> {
    r.shared.with(|s| {
        s.health
            .pause_history()
            .next()
            .map(|p| t0 + Duration::from_millis((p.paused_at_unix_ms - T0) as u64))
    })
}

struct Verdict {
    /// From the first failed attempt's end to the pause.
    after: Duration,
    attempts_before: usize,
    saw_failing: bool,
}

/// Runs one integration with default settings against an endpoint that always answers
/// `reply`, until it is paused (or two minutes pass).
async fn verdict(reply: Reply) -> Verdict {
    let t0 = Instant::now();
    let r2 = reply.clone();
    let mut h = Harness::with_fallback([], Box::new(move || r2.clone()));
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, default_integration("i1"));
    let mut saw_failing = false;
    while first_pause(&r, t0).is_none() && t0.elapsed() < Duration::from_secs(120) {
        saw_failing |= r.shared.with(|s| s.health.failing());
        sleep(Duration::from_millis(100)).await;
    }
    let paused = first_pause(&r, t0).unwrap_or_else(|| panic!("{reply:?}: never paused"));
    let mut received = Vec::new();
    while let Ok(q) = h.received.try_recv() {
        received.push(q);
    }
    r.stop().await;
    let first = first_failure(received[0].at, &reply);
    Verdict {
        after: paused - first,
        attempts_before: received.iter().filter(|q| q.at < paused).count(),
        saw_failing,
    }
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_dead_destination_is_paused_within_30_s_of_its_first_failure() {
    let kinds = [
        ("refuses connections", Reply::ConnectError),
        ("hangs", Reply::Hang),
        (
            "answers slower than the timeout",
            Reply::Delayed(request_timeout() + Duration::from_secs(2), 200),
        ),
        ("answers 500", Reply::Status(500)),
        ("answers 404", Reply::Status(404)),
        ("answers 429", Reply::Status(429)),
    ];
    for (what, reply) in kinds {
        let v = verdict(reply).await;
        assert!(
            v.after <= DEADLINE,
            "a destination that {what} was paused {:?} after its first failed attempt",
            v.after
        );
        assert!(
            v.saw_failing,
            "{what}: never reported failing before the pause"
        );
        assert!(
            v.attempts_before >= Protection::default().min_failed_attempts as usize,
            "{what}: paused after {} attempts",
            v.attempts_before
        );
    }
}

/// A seeded mix: `percent` % of answers are 500, the rest 200, each after 50 ms.
fn random_500s(percent: u32, seed: u64) -> crate::endpoint::scripted::Fallback {
    let mut rng = StdRng::seed_from_u64(seed);
    Box::new(move || {
        let status = if rng.random_range(0..100) < percent {
            500
        } else {
            200
        };
        Reply::Delayed(Duration::from_millis(50), status)
    })
}

#[tokio::test(start_paused = true)]
async fn ten_percent_random_500s_never_pause_over_a_day() {
    let mut h = Harness::with_fallback([], random_500s(10, 7));
    h.cursor_at_start(&["e1"]).await;
    let r = start(&h, default_integration("i1"));
    // A batch every 10 s (the default flush) for 24 hours.
    let batches = 24 * 360;
    let mut drained = 0usize;
    for i in 0..batches {
        let k = format!("k{i}");
        h.append("e1", &[k.as_str()], None).await;
        sleep(Duration::from_secs(10)).await;
        while h.received.try_recv().is_ok() {
            drained += 1;
        }
        let (phase, pauses) = r
            .shared
            .with(|s| (s.health.phase(), s.health.pause_count()));
        assert_eq!(
            (phase, pauses),
            (Phase::Active, 0),
            "paused after {i} batches"
        );
    }
    let (failed, delivered) = r.shared.with(|s| (s.failed_attempts, s.delivered));
    let attempts = drained as f64;
    assert!(
        (0.07..=0.13).contains(&(failed as f64 / attempts)),
        "{failed} of {attempts} attempts failed"
    );
    assert!(delivered as usize >= batches - 1, "{delivered} delivered");
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_slow_answer_among_successes_never_pauses() {
    // The 50th batch's answer takes a minute (past the timeout); its retry succeeds.
    let mut script: Vec<Reply> = vec![Reply::Status(200); 49];
    script.push(Reply::Delayed(Duration::from_secs(60), 200));
    let mut h = Harness::new(script);
    h.cursor_at_start(&["e1"]).await;
    let r = start(&h, default_integration("i1"));
    for i in 0..100 {
        let k = format!("k{i}");
        h.append("e1", &[k.as_str()], None).await;
        sleep(Duration::from_secs(10)).await;
    }
    let (pauses, failed, delivered) = r
        .shared
        .with(|s| (s.health.pause_count(), s.failed_attempts, s.delivered));
    assert_eq!(pauses, 0);
    assert_eq!(failed, 1, "the slow answer timed out");
    assert_eq!(delivered, 100);
    while h.received.try_recv().is_ok() {}
    r.stop().await;
}

/// `n` integrations `h0…` whose endpoint hangs, and `i1` whose endpoint hangs too, all
/// started at once: when `i1` is paused, relative to its first request.
async fn verdict_beside_hanging(n: usize) -> Duration {
    let t0 = Instant::now();
    let h = Harness::new([]);
    let (hanging, _hanging_rx) = ScriptedEndpoint::with_fallback([], Box::new(|| Reply::Hang));
    let (mine, mut mine_rx): (_, mpsc::UnboundedReceiver<Received>) =
        ScriptedEndpoint::with_fallback([], Box::new(|| Reply::Hang));
    let mut routes = HashMap::new();
    routes.insert("i1".to_owned(), mine);
    let ctx = Arc::new(
        DeliveryCtx::new(h.ctx.log.clone(), h.ctx.meta.clone(), h.ctx.opts.clone())
            .with_clock(h.ctx.clock.clone())
            .with_connector(Arc::new(RoutedConnector {
                routes,
                default: hanging,
            })),
    );
    let ids: Vec<String> = (0..n)
        .map(|i| format!("h{i}"))
        .chain(["i1".into()])
        .collect();
    for id in &ids {
        h.cursor_at_start_of(id, &["e1"]).await;
    }
    h.append("e1", &["a", "b", "c"], None).await;
    let running: Vec<Running> = ids
        .iter()
        .map(|id| start_on(&ctx, default_integration(id)))
        .collect();
    let mine_task = running.last().unwrap();
    while first_pause(mine_task, t0).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(120), "i1 never paused");
        sleep(Duration::from_millis(100)).await;
    }
    let paused = first_pause(mine_task, t0).unwrap();
    let first = mine_rx.try_recv().unwrap().at;
    // Every other hanging integration got its verdict in time too.
    for r in &running {
        let p = first_pause(r, t0).expect("every hanging integration is paused");
        assert!(p - first_failure(first, &Reply::Hang) <= DEADLINE);
    }
    for r in running {
        r.stop().await;
    }
    paused - first
}

#[tokio::test(start_paused = true)]
async fn a_thousand_hanging_destinations_do_not_delay_another_ones_verdict() {
    let alone = verdict_beside_hanging(0).await;
    let crowded = verdict_beside_hanging(1000).await;
    assert_eq!(
        crowded, alone,
        "a thousand hanging destinations changed another's time to pause"
    );
    assert!(alone <= request_timeout() + DEADLINE, "{alone:?}");
}
