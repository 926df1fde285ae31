//! Lane and integration-task logic on paused time, against in-memory stores and a
//! scripted endpoint.

use crate::attempts::AttemptKind;
use crate::endpoint::scripted::Reply;
use crate::gaps::list_gaps;
use crate::health::Phase;
use crate::testing::{Harness, T0, eventually, integration, start};
use serde_json::json;
use sluice_store::{Bucket, Expect, MetaStore};
use std::time::Duration;

async fn committed(h: &Harness, env: &str, offset: u64) {
    eventually(async || {
        let c = h.cursor().await;
        c.offsets.get(env) == Some(&offset) && !c.pinned.contains_key(env)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_pinned_before_its_first_send_and_resent_under_the_same_id() {
    let mut h = Harness::new([Reply::Status(500), Reply::Status(500)]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    let pinned = h.cursor().await.pinned["e1"].clone();
    assert_eq!(pinned.id, first.webhook_id, "pinned before it was sent");
    assert_eq!((pinned.from, pinned.to), (0, 3));
    assert_eq!(first.keys, ["a", "b", "c"]);
    let retry = h.next_request().await;
    let later = h.next_request().await;
    assert_eq!(retry.webhook_id, first.webhook_id);
    assert_eq!(later.webhook_id, first.webhook_id);
    committed(&h, "e1", 3).await;
    assert_eq!(h.cursor().await.delivered, 3);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn commit_pins_the_prefetched_next_batch_in_the_same_write() {
    let mut h = Harness::new([Reply::Status(200), Reply::Hang]);
    h.cursor_at_start(&["e1"]).await;
    for keys in [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]] {
        h.append("e1", &keys, None).await;
    }
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    let second = h.next_request().await;
    assert_eq!(second.keys, ["d", "e", "f"]);
    assert_ne!(second.webhook_id, first.webhook_id);
    // The second batch hangs: the record shows the first committed and the second pinned.
    let c = h.cursor().await;
    assert_eq!(c.offsets["e1"], 3);
    let p = &c.pinned["e1"];
    assert_eq!(
        (p.id.as_str(), p.from, p.to),
        (second.webhook_id.as_str(), 3, 6)
    );
    assert_eq!(c.delivered, 3);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_once_after_300_ms() {
    let mut h = Harness::new([Reply::Status(500)]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    let retry = h.next_request().await;
    assert_eq!(retry.at - first.at, Duration::from_millis(300));
    assert_eq!(retry.webhook_id, first.webhook_id);
    committed(&h, "e1", 3).await;
    let kinds: Vec<AttemptKind> = r
        .shared
        .with(|s| s.attempts.recent())
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, [AttemptKind::Retry, AttemptKind::Live]);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_when_the_retry_is_sent() {
    let mut h = Harness::new([Reply::RetryAfter(503, Duration::from_secs(7))]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    let retry = h.next_request().await;
    assert_eq!(retry.at - first.at, Duration::from_secs(7));
    committed(&h, "e1", 3).await;
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backlog_older_than_the_age_limit_is_skipped_into_a_gap() {
    let mut h = Harness::new([]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["old1", "old2"], Some(T0 - 120_000)).await;
    h.append("e1", &["new1", "new2", "new3"], None).await;
    let r = start(&h, integration(json!({"maxBacklogAgeMs": 60_000})));
    let first = h.next_request().await;
    assert_eq!(first.keys, ["new1", "new2", "new3"]);
    committed(&h, "e1", 5).await;
    let gaps = list_gaps(h.meta.as_ref(), "i1").await.unwrap();
    assert_eq!(gaps.len(), 1);
    let g = &gaps[0];
    assert_eq!((g.from_offset, g.to_offset, g.impressions), (0, 2, 2));
    assert_eq!(g.reason, crate::gaps::GapReason::MaxBacklogAge);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_pauses_then_a_probe_resumes_delivery() {
    let mut h = Harness::new([Reply::Status(500), Reply::ConnectError]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let protection = json!({
        "window": 4, "minAttempts": 2, "failureRatePercent": 50,
        "initialCooldownMs": 5000, "maxCooldownMs": 60000,
        "connectTimeoutMs": 1000, "requestTimeoutMs": 1000
    });
    let r = start(&h, integration(json!({ "protection": protection })));
    let first = h.next_request().await;
    let retry = h.next_request().await;
    // Two failures of two attempts: paused for 5 s ± 20%.
    assert!(matches!(
        r.shared.with(|s| s.health.phase()),
        Phase::Paused { .. }
    ));
    let probe = h.next_request().await;
    let waited = probe.at - retry.at;
    assert!(
        (Duration::from_secs(4)..=Duration::from_secs(6)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(probe.webhook_id, first.webhook_id);
    committed(&h, "e1", 3).await;
    assert_eq!(r.shared.with(|s| s.health.phase()), Phase::Active);
    let kinds: Vec<AttemptKind> = r
        .shared
        .with(|s| s.attempts.recent())
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        kinds,
        [AttemptKind::Probe, AttemptKind::Retry, AttemptKind::Live]
    );
    r.stop().await;
}

/// Defect 1: a lane whose task ended was never started again.
#[tokio::test(start_paused = true)]
async fn a_lane_that_dies_is_restarted_and_resends_its_pinned_batch() {
    let mut h = Harness::new([Reply::Panic]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    let again = h.next_request().await;
    assert_eq!(again.webhook_id, first.webhook_id);
    assert_eq!(
        again.at - first.at,
        Duration::from_millis(100),
        "after the lane backoff"
    );
    committed(&h, "e1", 3).await;
    r.stop().await;
}

/// Defect 4: a record written before `pinned` existed keeps its batch's id.
#[tokio::test(start_paused = true)]
async fn after_an_upgrade_the_old_pending_batch_is_resent_under_its_id() {
    let mut h = Harness::new([]);
    let old = br#"{"offsets":{"e1":0},"pending":{"id":"msg_old0000000001","env":"e1","from":0,"to":2},"delivered":0,"nonce":"old","seq":1}"#;
    h.meta
        .put(Bucket::Cursors, "i1", old.to_vec(), Expect::Any)
        .await
        .unwrap();
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    assert_eq!(first.webhook_id, "msg_old0000000001");
    assert_eq!(first.keys, ["a", "b"]);
    let second = h.next_request().await;
    assert_eq!(second.keys, ["c"]);
    assert_eq!(second.webhook_id, "msg_old0000000002");
    committed(&h, "e1", 3).await;
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_environment_has_its_own_lane_and_position() {
    let mut h = Harness::new([]);
    h.cursor_at_start(&["e1", "e2"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    h.append("e2", &["x", "y", "z"], None).await;
    let r = start(&h, integration(json!({"environments": ["e1", "e2"]})));
    let mut keys = vec![h.next_request().await.keys, h.next_request().await.keys];
    keys.sort();
    assert_eq!(keys, [["a", "b", "c"], ["x", "y", "z"]]);
    committed(&h, "e1", 3).await;
    committed(&h, "e2", 3).await;
    r.stop().await;
}

/// Fencing (SPEC §7): another node claims the integration while this one has a batch in
/// flight. This node's delivered batch cannot move the cursor: its commit is a
/// compare-and-swap on the revision it last wrote, which the claim replaced; it stops
/// and the record stays as the new owner wrote it.
#[tokio::test(start_paused = true)]
async fn a_stale_owner_cannot_advance_the_cursor_after_a_takeover() {
    let mut h = Harness::new([Reply::Delayed(Duration::from_secs(5), 200)]);
    h.cursor_at_start(&["e1"]).await;
    h.append("e1", &["a", "b", "c"], None).await;
    let r = start(&h, integration(json!({})));
    let first = h.next_request().await;
    let mine = h.cursor().await;
    assert_eq!(mine.owner, "local");
    // Node "b" takes over (its claim: new owner, new epoch).
    let (mut theirs, rev) = crate::cursor::load_versioned(h.meta.as_ref(), "i1")
        .await
        .unwrap()
        .unwrap();
    crate::cursor::claim(h.meta.as_ref(), "i1", "node-b", &mut theirs, Some(rev))
        .await
        .unwrap();
    assert_eq!(theirs.epoch, mine.epoch + 1);
    // The request in flight is answered 200 after the claim (the stalled owner's send
    // completes).
    h.append("e1", &["d", "e", "f"], None).await;
    eventually(async || r.join.is_finished()).await;
    let after = h.cursor().await;
    assert_eq!(after.owner, "node-b");
    assert_eq!(after.epoch, theirs.epoch);
    assert_eq!(
        after.offsets["e1"], 0,
        "the stale owner never advanced the cursor"
    );
    assert_eq!(
        after.pinned["e1"].id, first.webhook_id,
        "the pinned batch stays for the new owner"
    );
    // Nothing but the pinned batch was ever sent by the stale owner.
    while let Ok(more) = h.received.try_recv() {
        assert_eq!(more.webhook_id, first.webhook_id);
    }
    r.stop().await;
}

/// A cursor write whose answer was lost (applied, then reported failed) is recognised by
/// its nonce when the next write finds the revision moved: the owner is not fenced.
#[tokio::test(start_paused = true)]
async fn a_cursor_write_whose_answer_was_lost_does_not_fence_its_owner() {
    use sluice_store::memory::{Fault, Op};
    let mut h = Harness::new([]);
    h.cursor_at_start(&["e1"]).await;
    let r = start(&h, integration(json!({})));
    h.append("e1", &["a", "b", "c"], None).await;
    let _ = h.next_request().await;
    committed(&h, "e1", 3).await;
    // The next pin is applied but reported failed.
    h.meta.faults().fail_next(Op::Put, 1, Fault::ApplyThenFail);
    h.append("e1", &["d", "e", "f"], None).await;
    let _ = h.next_request().await;
    committed(&h, "e1", 6).await;
    h.append("e1", &["g", "h", "i"], None).await;
    let _ = h.next_request().await;
    committed(&h, "e1", 9).await;
    assert!(!r.join.is_finished(), "still delivering");
    assert_eq!(h.cursor().await.owner, "local");
    r.stop().await;
}
