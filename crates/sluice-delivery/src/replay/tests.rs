//! Replay logic on paused time, against in-memory stores and a scripted endpoint.

use super::request::{ReplayRequest, plan};
use super::run::ReplayRun;
use super::{ReplayJob, ReplayState, job_key, save_job};
use crate::endpoint::Endpoint;
use crate::endpoint::scripted::{Reply, ScriptedEndpoint};
use crate::gaps::{Gap, list_gaps, record_gap};
use crate::shared::IntegrationShared;
use crate::testing::{Harness, T0, integration};
use serde_json::json;
use sluice_core::model::Integration;
use sluice_store::memory::{Fault, Op};
use sluice_store::{Bucket, MetaStore};
use std::sync::Arc;
use tokio::sync::watch;

async fn gap(h: &Harness, from: u64, to: u64) -> Gap {
    let g = Gap {
        id: String::new(),
        integration_id: "i1".into(),
        environment_id: "e1".into(),
        from_offset: from,
        to_offset: to,
        from: None,
        to: None,
        impressions: to - from,
        reason: crate::gaps::GapReason::MaxBacklogAge,
        recorded_at: T0,
        closed_by: None,
        lost_impressions: 0,
    };
    record_gap(h.meta.as_ref(), g).await.unwrap()
}

async fn gap_job(h: &Harness, integ: &Integration, gap_id: &str) -> ReplayJob {
    let req = ReplayRequest {
        from: None,
        to: None,
        gap_id: Some(gap_id.into()),
    };
    let job = plan(&h.ctx, integ, &req).await.unwrap();
    save_job(h.meta.as_ref(), &job).await.unwrap();
    job
}

fn run(
    h: &Harness,
    integ: &Arc<Integration>,
    endpoint: Arc<dyn Endpoint>,
    job: ReplayJob,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let shared = Arc::new(IntegrationShared::new(integ, false));
    let (stop, stop_rx) = watch::channel(false);
    let r = ReplayRun::new(h.ctx.clone(), integ.clone(), shared, endpoint, stop_rx);
    (stop, tokio::spawn(r.run(job)))
}

async fn stored_job(h: &Harness, id: &str) -> ReplayJob {
    let v = h
        .meta
        .get(Bucket::State, &job_key("i1", id))
        .await
        .unwrap()
        .unwrap();
    serde_json::from_slice(&v.value).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_replay_resumes_after_a_restart_under_the_same_id() {
    let mut h = Harness::new([Reply::Hang]);
    for keys in [["a", "b", "c"], ["d", "e", "f"]] {
        h.append("e1", &keys, None).await;
    }
    let g = gap(&h, 0, 6).await;
    let integ = integration(json!({}));
    let job = gap_job(&h, &integ, &g.id).await;
    let (stop, join) = run(&h, &integ, h.endpoint.clone(), job.clone());
    let first = h.next_request().await;
    assert!(first.webhook_id.starts_with(&format!("msg_r{}", job.id)));
    stop.send_replace(true);
    join.await.unwrap();
    // "Restart": the job as stored, on a new task and endpoint.
    let stored = stored_job(&h, &job.id).await;
    assert_eq!(
        stored.pinned.as_ref().map(|p| p.id.as_str()),
        Some(first.webhook_id.as_str())
    );
    let (endpoint, mut received) = ScriptedEndpoint::new([]);
    let (_stop, join) = run(&h, &integ, endpoint, stored);
    let again = received.recv().await.unwrap();
    assert_eq!(again.webhook_id, first.webhook_id);
    assert_eq!(again.keys, ["a", "b", "c"]);
    let next = received.recv().await.unwrap();
    assert_eq!(next.keys, ["d", "e", "f"]);
    join.await.unwrap();
    let done = stored_job(&h, &job.id).await;
    assert_eq!(done.state, ReplayState::Done);
    assert_eq!(done.delivered_impressions, 6);
    let gaps = list_gaps(h.meta.as_ref(), "i1").await.unwrap();
    assert_eq!(gaps[0].closed_by.as_deref(), Some(job.id.as_str()));
}

/// Defect 3: when saving the pinned batch failed, the batch was sent anyway.
#[tokio::test(start_paused = true)]
async fn nothing_is_sent_before_its_pinned_batch_is_saved() {
    let mut h = Harness::new([Reply::Hang]);
    h.append("e1", &["a", "b", "c"], None).await;
    let g = gap(&h, 0, 3).await;
    let integ = integration(json!({}));
    let job = gap_job(&h, &integ, &g.id).await;
    h.meta.faults().fail_next(Op::Put, 2, Fault::Fail);
    let (stop, join) = run(&h, &integ, h.endpoint.clone(), job.clone());
    let first = h.next_request().await;
    let stored = stored_job(&h, &job.id).await;
    assert_eq!(
        stored.pinned.map(|p| p.id),
        Some(first.webhook_id),
        "the id sent is the id saved"
    );
    stop.send_replace(true);
    join.await.unwrap();
}

/// Defect 3: a gap was marked closed although retention had removed part of it during
/// the replay.
#[tokio::test(start_paused = true)]
async fn a_gap_partly_removed_during_its_replay_stays_open_and_records_the_loss() {
    let mut h = Harness::new([Reply::Status(500)]);
    for keys in [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]] {
        h.append("e1", &keys, None).await;
    }
    let g = gap(&h, 0, 9).await;
    let integ = integration(json!({}));
    let job = gap_job(&h, &integ, &g.id).await;
    let (_stop, join) = run(&h, &integ, h.endpoint.clone(), job.clone());
    let first = h.next_request().await;
    assert_eq!(first.keys, ["a", "b", "c"]);
    // While the replay backs off, retention removes the first two entries.
    h.log.remove_before("e1", 6);
    let next = h.next_request().await;
    assert_eq!(next.keys, ["g", "h", "i"]);
    join.await.unwrap();
    let done = stored_job(&h, &job.id).await;
    assert_eq!((done.state, done.lost_offsets), (ReplayState::Done, 6));
    assert_eq!(done.delivered_impressions, 3);
    let gaps = list_gaps(h.meta.as_ref(), "i1").await.unwrap();
    assert_eq!(gaps[0].closed_by, None);
    assert_eq!(gaps[0].lost_impressions, 6);
}

#[tokio::test(start_paused = true)]
async fn a_window_replay_sends_only_impressions_in_the_window() {
    let mut h = Harness::new([]);
    h.append("e1", &["a", "b"], None).await;
    let integ = integration(json!({}));
    let req = ReplayRequest {
        from: Some(T0 + 1),
        to: Some(T0 + 2),
        gap_id: None,
    };
    let job = plan(&h.ctx, &integ, &req).await.unwrap();
    assert_eq!(job.total_offsets, 2);
    let bad = ReplayRequest {
        from: Some(5),
        to: Some(5),
        gap_id: None,
    };
    assert!(matches!(
        plan(&h.ctx, &integ, &bad).await,
        Err(super::ReplayError::Invalid(_))
    ));
    let (_stop, join) = run(&h, &integ, h.endpoint.clone(), job.clone());
    join.await.unwrap();
    // Every impression's time is T0, outside [T0+1, T0+2): nothing is sent.
    assert!(h.received.try_recv().is_err());
    let done = stored_job(&h, &job.id).await;
    assert_eq!(
        (done.state, done.delivered_impressions),
        (ReplayState::Done, 0)
    );
}
