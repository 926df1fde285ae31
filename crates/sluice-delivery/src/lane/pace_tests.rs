//! Catch-up pacing end to end on paused time (SPEC §3: "catch-up never floods an
//! endpoint"): an integration draining a backlog against a scripted endpoint.
//! `maxRequestsPerSecond` is never exceeded; 429/503 (with or without `Retry-After`) and
//! rising response times slow the drain; it speeds up again while the endpoint keeps up;
//! batches stay full-size.

use crate::endpoint::scripted::{Received, Reply};
use crate::testing::{Harness, Running, integration, start};
use serde_json::json;
use std::time::Duration;

const BATCH: usize = 3;

/// A backlog of `batches` full batches of `i1` (batches of 3, flush 1 s), an endpoint
/// answering `script` then 200 after `latency`, and the integration started.
async fn draining(
    batches: usize,
    script: Vec<Reply>,
    latency: Duration,
    extra: serde_json::Value,
) -> (Harness, Running) {
    let h = Harness::with_fallback(script, Box::new(move || Reply::Delayed(latency, 200)));
    h.cursor_at_start(&["e1"]).await;
    for b in 0..batches {
        let keys: Vec<String> = (0..BATCH).map(|k| format!("b{b}k{k}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        h.append("e1", &keys, None).await;
    }
    let r = start(&h, integration(extra));
    (h, r)
}

async fn requests(h: &mut Harness, n: usize) -> Vec<Received> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(h.next_request().await);
    }
    out
}

fn gaps(reqs: &[Received]) -> Vec<Duration> {
    reqs.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn max_requests_per_second_is_never_exceeded_and_batches_stay_full() {
    let (mut h, r) = draining(
        100,
        vec![],
        Duration::from_millis(10),
        json!({"maxRequestsPerSecond": 5}),
    )
    .await;
    let reqs = requests(&mut h, 100).await;
    for (i, q) in reqs.iter().enumerate() {
        let in_a_second = reqs[i..]
            .iter()
            .take_while(|x| x.at < q.at + Duration::from_secs(1))
            .count();
        assert!(
            in_a_second <= 5,
            "{in_a_second} requests in the second from #{i}"
        );
        assert_eq!(q.impressions, BATCH, "request #{i} is not a full batch");
    }
    // And the cap is what limits it: 100 requests take 99 intervals of 200 ms.
    let took = reqs[99].at - reqs[0].at;
    assert_eq!(took, Duration::from_millis(200) * 99);
    r.stop().await;
}

/// Requests before the trouble, the trouble, and the drain after it, for a backlog
/// answered in 100 ms (10 requests/s with one in flight) with `trouble` after 20.
async fn drain_around(trouble: Vec<Reply>) -> (Vec<Received>, Vec<Received>) {
    let mut script = vec![Reply::Delayed(Duration::from_millis(100), 200); 20];
    let n_trouble = trouble.len();
    script.extend(trouble);
    let (mut h, r) = draining(200, script, Duration::from_millis(100), json!({})).await;
    let reqs = requests(&mut h, 150).await;
    r.stop().await;
    let after = reqs[20 + n_trouble..].to_vec();
    (reqs[..20 + n_trouble].to_vec(), after)
}

/// The drain after trouble: slower at first, then back to the endpoint's own pace, growing
/// steadily (no jump straight back).
fn assert_backs_off_then_recovers(before: &[Received], after: &[Received]) {
    let usual = Duration::from_millis(100);
    for g in gaps(&before[..20]) {
        assert_eq!(g, usual, "unhindered drain before the trouble");
    }
    let g = gaps(after);
    assert!(
        g[0] >= usual * 2,
        "no backoff after the trouble: {:?}",
        &g[..5]
    );
    // Recovering: the gaps shrink (never grow) until the endpoint's own pace is back.
    let back = g
        .iter()
        .position(|x| *x == usual)
        .unwrap_or_else(|| panic!("never back to 100 ms: {g:?}"));
    assert!(back >= 3, "straight back to full speed: {:?}", &g[..5]);
    for w in g[..=back].windows(2) {
        assert!(
            w[1] <= w[0],
            "the drain slowed down again while recovering: {g:?}"
        );
    }
    let recovered_after = after[back].at - after[0].at;
    assert!(
        recovered_after <= Duration::from_secs(30),
        "{recovered_after:?}"
    );
    assert!(g[back..].iter().all(|x| *x == usual), "{g:?}");
}

#[tokio::test(start_paused = true)]
async fn catch_up_backs_off_on_429_without_retry_after_and_speeds_up_again() {
    let (before, after) = drain_around(vec![Reply::Status(429), Reply::Status(429)]).await;
    assert_backs_off_then_recovers(&before, &after);
}

#[tokio::test(start_paused = true)]
async fn catch_up_honours_503_retry_after_backs_off_and_speeds_up_again() {
    let wait = Duration::from_secs(2);
    let (before, after) = drain_around(vec![Reply::RetryAfter(503, wait)]).await;
    let trouble = before.last().unwrap();
    assert!(after[0].at - trouble.at >= wait, "Retry-After not honoured");
    assert_backs_off_then_recovers(&before, &after);
}

#[tokio::test(start_paused = true)]
async fn rising_response_times_slow_the_drain_and_it_speeds_up_again() {
    let slow = Duration::from_secs(2);
    let (before, after) = drain_around(vec![
        Reply::Delayed(slow, 200),
        Reply::Delayed(slow, 200),
        Reply::Delayed(slow, 200),
    ])
    .await;
    // The slow answers themselves were spaced wider than they took: the drain slowed
    // below what the endpoint's answers alone would allow.
    let slow_reqs = &before[20..];
    for w in slow_reqs.windows(2) {
        assert!(w[1].at - w[0].at > slow, "{:?}", gaps(slow_reqs));
    }
    assert!(after[0].at - slow_reqs[2].at > slow);
    let usual = Duration::from_millis(100);
    let g = gaps(&after);
    let back = g
        .iter()
        .position(|x| *x == usual)
        .unwrap_or_else(|| panic!("never back to 100 ms: {g:?}"));
    assert!(g[back..].iter().all(|x| *x == usual), "{g:?}");
}
