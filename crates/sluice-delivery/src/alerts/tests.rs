//! The alert service on paused time, over in-memory stores and a recording endpoint.

use super::AlertService;
use super::store;
use crate::context::{DeliveryCtx, EngineOptions};
use crate::endpoint::{Connector, Endpoint};
use crate::gaps::{Gap, GapReason};
use crate::http::{HttpError, Outcome, OutcomeKind, PreparedRequest};
use crate::testing::{T0, eventually, integration};
use sluice_core::alert::{AlertDestination, AlertEvent, AlertEventType};
use sluice_core::limits::MAX_ALERT_OUTBOX_EVENTS;
use sluice_core::model::Integration;
use sluice_store::memory::{MemoryLog, MemoryMeta, TokioClock};
use sluice_store::{Catalog, MetaStore};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    Hang,
}

/// Answers each request with the next reply (200 once they are used up) and reports
/// `(webhook-id, timestamp, signature, body)` of every request.
struct Recorder {
    replies: Mutex<VecDeque<Reply>>,
    seen: mpsc::UnboundedSender<Seen>,
}

#[derive(Debug, Clone)]
struct Seen {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
}

impl Seen {
    fn event(&self) -> AlertEvent {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[async_trait::async_trait]
impl Endpoint for Recorder {
    async fn send(&self, req: &PreparedRequest) -> Outcome {
        let h = |n: &str| req.headers.get(n).unwrap().to_str().unwrap().to_owned();
        let _ = self.seen.send(Seen {
            id: h("webhook-id"),
            timestamp: h("webhook-timestamp").parse().unwrap(),
            signature: h("webhook-signature"),
            body: req.body.to_vec(),
        });
        let reply = self.replies.lock().unwrap().pop_front();
        let status = match reply.unwrap_or(Reply::Status(200)) {
            Reply::Status(s) => s,
            Reply::Hang => std::future::pending().await,
        };
        Outcome {
            kind: if status == 200 {
                OutcomeKind::Delivered
            } else {
                OutcomeKind::HttpStatus
            },
            status: Some(status),
            retry_after: None,
            duration: Duration::ZERO,
            error: None,
            response_snippet: String::new(),
        }
    }
}

struct Connect(Arc<Recorder>);

impl Connector for Connect {
    fn connect(&self, _: &Integration) -> Result<Arc<dyn Endpoint>, HttpError> {
        Ok(self.0.clone())
    }
}

struct Rig {
    meta: Arc<MemoryMeta>,
    ctx: Arc<DeliveryCtx>,
    catalog: Arc<Catalog>,
    alerts: Arc<AlertService>,
    recorder: Arc<Recorder>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Rig {
    async fn new(meta: Arc<MemoryMeta>, replies: &[Reply]) -> Rig {
        let (tx, seen) = mpsc::unbounded_channel();
        let recorder = Arc::new(Recorder {
            replies: Mutex::new(replies.iter().copied().collect()),
            seen: tx,
        });
        let log = Arc::new(MemoryLog::with_clock(Arc::new(TokioClock::starting_at(T0))));
        let ctx = DeliveryCtx::new(log, meta.clone(), EngineOptions::default())
            .with_clock(Arc::new(TokioClock::starting_at(T0)))
            .with_connector(Arc::new(Connect(recorder.clone())));
        let ctx = Arc::new(ctx);
        let catalog = Arc::new(
            Catalog::load(meta.clone() as Arc<dyn MetaStore>)
                .await
                .unwrap(),
        );
        let alerts = AlertService::new(ctx.clone());
        alerts.start(catalog.clone());
        Rig {
            meta,
            ctx,
            catalog,
            alerts,
            recorder,
            seen,
        }
    }

    async fn next(&mut self) -> Seen {
        self.seen.recv().await.unwrap()
    }
}

fn dest(id: &str, project: Option<&str>, events: &[AlertEventType]) -> AlertDestination {
    AlertDestination {
        id: id.into(),
        url: "http://127.0.0.1:9/alerts".into(),
        secret: "alert-secret".into(),
        project: project.map(str::to_owned),
        events: events.to_vec(),
    }
}

fn gap() -> Gap {
    Gap {
        id: "g1".into(),
        integration_id: "i1".into(),
        environment_id: "e1".into(),
        from_offset: 0,
        to_offset: 4,
        from: None,
        to: None,
        impressions: 4,
        reason: GapReason::MaxBacklogAge,
        recorded_at: T0,
        closed_by: None,
        lost_impressions: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_state_change_arrives_signed_under_its_own_id() {
    let mut rig = Rig::new(Arc::new(MemoryMeta::new()), &[]).await;
    rig.alerts
        .create(dest("a1", None, &AlertEventType::ALL))
        .await
        .unwrap();
    let integ = integration(serde_json::json!({}));
    rig.ctx.events.manual(&integ, true);
    let seen = rig.next().await;
    assert!(sluice_core::signature::verify(
        "alert-secret",
        &seen.id,
        seen.timestamp,
        &seen.body,
        &seen.signature
    ));
    let e = seen.event();
    assert_eq!(e.kind, AlertEventType::IntegrationPaused);
    assert_eq!(e.data["integrationId"], "i1");
    assert_eq!(e.data["manual"], true);
    rig.ctx.events.gap_recorded(&integ, &gap());
    let seen2 = rig.next().await;
    assert_eq!(seen2.event().kind, AlertEventType::IntegrationGap);
    assert_eq!(seen2.event().data["gap"]["impressions"], 4);
    assert_ne!(seen.id, seen2.id, "each event has its own webhook-id");
    eventually(async || rig.alerts.status("a1").await.unwrap().delivered_events == 2).await;
    assert!(
        store::pending(rig.meta.as_ref(), "a1")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_paused_and_probed_under_the_same_id() {
    // Six failures pause the destination (the default protection); the probe then succeeds.
    let replies = [Reply::Status(500); 6];
    let mut rig = Rig::new(Arc::new(MemoryMeta::new()), &replies).await;
    rig.alerts
        .create(dest("a1", None, &[AlertEventType::IntegrationResumed]))
        .await
        .unwrap();
    let integ = integration(serde_json::json!({}));
    rig.ctx.events.manual(&integ, false);
    let first = rig.next().await;
    let mut ids = vec![first.id.clone()];
    for _ in 0..6 {
        ids.push(rig.next().await.id);
    }
    assert!(ids.iter().all(|i| *i == first.id), "{ids:?}");
    let st = rig.alerts.status("a1").await.unwrap();
    assert_eq!(st.failed_attempts, 6);
    assert_eq!(st.delivered_events, 1);
    assert_eq!(st.state, "active", "the probe resumed it");
    // The pause held attempts back for the cooldown: 3 retried events, then the probe.
    assert!(rig.recorder.replies.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_destination_gets_only_the_types_and_project_it_asked_for() {
    let mut rig = Rig::new(Arc::new(MemoryMeta::new()), &[]).await;
    rig.alerts
        .create(dest("p1", Some("p1"), &[AlertEventType::IntegrationGap]))
        .await
        .unwrap();
    let other = integration(serde_json::json!({"project": "p2"}));
    let mine = integration(serde_json::json!({"project": "p1"}));
    rig.ctx.events.gap_recorded(&other, &gap());
    rig.ctx.events.manual(&mine, true);
    rig.ctx.events.gap_recorded(&mine, &gap());
    let seen = rig.next().await;
    assert_eq!(seen.event().kind, AlertEventType::IntegrationGap);
    assert_eq!(seen.event().data["project"], "p1");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(rig.seen.try_recv().is_err(), "nothing else was sent");
}

#[tokio::test(start_paused = true)]
async fn undelivered_events_survive_a_restart_and_keep_their_ids() {
    let meta = Arc::new(MemoryMeta::new());
    let mut rig = Rig::new(meta.clone(), &[Reply::Hang]).await;
    rig.alerts
        .create(dest("a1", None, &AlertEventType::ALL))
        .await
        .unwrap();
    let integ = integration(serde_json::json!({}));
    rig.ctx.events.manual(&integ, true);
    rig.ctx.events.manual(&integ, false);
    let hung = rig.next().await;
    eventually(async || store::pending(meta.as_ref(), "a1").await.unwrap().len() == 2).await;
    rig.alerts.shutdown().await;
    drop(rig);

    let mut again = Rig::new(meta.clone(), &[]).await;
    let a = again.next().await;
    let b = again.next().await;
    assert_eq!(a.id, hung.id, "the same event, the same webhook-id");
    assert_eq!(a.event().kind, AlertEventType::IntegrationPaused);
    assert_eq!(b.event().kind, AlertEventType::IntegrationResumed);
    eventually(async || {
        store::pending(meta.as_ref(), "a1")
            .await
            .unwrap()
            .is_empty()
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_outbox_is_bounded_and_drops_the_oldest() {
    let meta = Arc::new(MemoryMeta::new());
    let mut rig = Rig::new(meta.clone(), &[Reply::Hang]).await;
    rig.alerts
        .create(dest("a1", None, &[AlertEventType::IntegrationPaused]))
        .await
        .unwrap();
    let integ = integration(serde_json::json!({}));
    let extra = 5;
    for _ in 0..MAX_ALERT_OUTBOX_EVENTS + extra {
        rig.ctx.events.manual(&integ, true);
        tokio::task::yield_now().await;
    }
    rig.next().await;
    eventually(async || rig.alerts.status("a1").await.unwrap().dropped_events == extra as u64)
        .await;
    let pending = store::pending(meta.as_ref(), "a1").await.unwrap();
    assert_eq!(pending.len(), MAX_ALERT_OUTBOX_EVENTS);
    assert_eq!(pending[0].seq, extra as u64, "the oldest were dropped");
}

#[tokio::test(start_paused = true)]
async fn deleting_a_destination_removes_its_outbox() {
    let meta = Arc::new(MemoryMeta::new());
    let mut rig = Rig::new(meta.clone(), &[Reply::Hang]).await;
    rig.alerts
        .create(dest("a1", None, &AlertEventType::ALL))
        .await
        .unwrap();
    let integ = integration(serde_json::json!({}));
    rig.ctx.events.manual(&integ, true);
    rig.next().await;
    rig.alerts.delete("a1").await.unwrap();
    assert!(
        store::pending(meta.as_ref(), "a1")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(rig.alerts.get("a1").await.is_err());
    // A new destination of the same id starts clean.
    rig.alerts
        .create(dest("a1", None, &AlertEventType::ALL))
        .await
        .unwrap();
    assert_eq!(rig.alerts.status("a1").await.unwrap().pending_events, 0);
}

#[tokio::test(start_paused = true)]
async fn disabling_an_integration_raises_integration_disabled() {
    let mut rig = Rig::new(Arc::new(MemoryMeta::new()), &[]).await;
    rig.alerts
        .create(dest("a1", None, &[AlertEventType::IntegrationDisabled]))
        .await
        .unwrap();
    rig.catalog
        .create_environment(
            serde_json::from_value(serde_json::json!({"id": "e1", "name": "E"})).unwrap(),
        )
        .await
        .unwrap();
    let integ = (*integration(serde_json::json!({}))).clone();
    rig.catalog.create_integration(integ.clone()).await.unwrap();
    // Let the service see it enabled first (a create and a switch-off seen together are
    // an integration that never ran).
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut off = integ;
    off.enabled = false;
    rig.catalog.update_integration(off).await.unwrap();
    let seen = rig.next().await;
    assert_eq!(seen.event().kind, AlertEventType::IntegrationDisabled);
    assert_eq!(seen.event().data["integrationId"], "i1");
}
