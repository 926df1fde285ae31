//! The alert service on paused time, over in-memory stores and a recording endpoint.

use super::store;
use super::{AlertError, AlertService, owner_key};
use crate::context::{DeliveryCtx, EngineOptions};
use crate::endpoint::{Connector, Endpoint};
use crate::gaps::{Gap, GapReason};
use crate::http::{HttpError, Outcome, OutcomeKind, PreparedRequest};
use crate::ownership::{Ownership, owner};
use crate::testing::{T0, eventually, integration};
use sluice_core::alert::{AlertDestination, AlertEvent, AlertEventType};
use sluice_core::limits::MAX_ALERT_OUTBOX_EVENTS;
use sluice_core::model::Integration;
use sluice_store::members::{Members, NodeInfo};
use sluice_store::memory::{MemoryLog, MemoryMeta, TokioClock};
use sluice_store::{Bucket, Catalog, Expect, MetaStore};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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
    url: String,
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
            url: req.url.clone(),
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
        Rig::node(meta, replies, Ownership::sole("local")).await
    }

    /// One node of a cluster: its own clock, endpoint, events and catalog (which follows
    /// the shared store), over the store the others use.
    async fn clustered(
        meta: Arc<MemoryMeta>,
        replies: &[Reply],
        node: &str,
        view: &watch::Sender<Members>,
    ) -> Rig {
        let rig = Rig::node(meta, replies, Ownership::following(node, view.subscribe())).await;
        drop(rig.catalog.follow());
        rig
    }

    async fn node(meta: Arc<MemoryMeta>, replies: &[Reply], ownership: Ownership) -> Rig {
        let (tx, seen) = mpsc::unbounded_channel();
        let recorder = Arc::new(Recorder {
            replies: Mutex::new(replies.iter().copied().collect()),
            seen: tx,
        });
        let log = Arc::new(MemoryLog::with_clock(Arc::new(TokioClock::starting_at(T0))));
        let opts = EngineOptions {
            ownership,
            ..EngineOptions::default()
        };
        let ctx = DeliveryCtx::new(log, meta.clone(), opts)
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

    /// The next alert sent (a failure, not a hang, when none comes: paused time runs on).
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(600), self.seen.recv())
            .await
            .expect("no alert sent within 10 minutes")
            .unwrap()
    }
}

fn dest(id: &str, project: Option<&str>, events: &[AlertEventType]) -> AlertDestination {
    AlertDestination {
        id: id.into(),
        url: format!("http://127.0.0.1:9/alerts/{id}"),
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
    let first = rig.next().await;
    eventually(async || rig.alerts.status("a1").await.unwrap().dropped_events == extra as u64)
        .await;
    let pending = store::pending(meta.as_ref(), "a1").await.unwrap();
    assert_eq!(pending.len(), MAX_ALERT_OUTBOX_EVENTS);
    assert!(
        pending.iter().all(|e| e.id != first.id),
        "the oldest were dropped"
    );
    assert_eq!(
        rig.alerts.status("a1").await.unwrap().pending_events,
        MAX_ALERT_OUTBOX_EVENTS as u64
    );
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
    let integ = environment_and_integration(&rig.catalog).await;
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

// ---- A cluster: several services over one store, each with its view of the live nodes.

fn view(nodes: &[&str]) -> Members {
    let m: BTreeMap<String, NodeInfo> = nodes
        .iter()
        .map(|n| (n.to_string(), NodeInfo { url: String::new() }))
        .collect();
    Members { nodes: Arc::new(m) }
}

/// `n` destination ids of which `node` sends every one in `members`.
fn owned_by(members: &Members, node: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("d{i}"))
        .filter(|id| owner(members, &owner_key(id)) == Some(node))
        .take(n)
        .collect()
}

/// The destination id at the end of an alert's URL.
fn dest_of(seen: &Seen) -> String {
    seen.url.rsplit('/').next().unwrap().to_owned()
}

/// Everything a rig's endpoint received within `secs` seconds (paused time).
async fn drain(rig: &mut Rig, secs: u64) -> Vec<Seen> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(s)) = tokio::time::timeout_at(deadline, rig.seen.recv()).await {
        out.push(s);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn each_destination_is_sent_by_exactly_one_node_and_each_event_once() {
    let meta = Arc::new(MemoryMeta::new());
    let members = view(&["node-a", "node-b"]);
    let (tx, _) = watch::channel(members.clone());
    let mut a = Rig::clustered(meta.clone(), &[], "node-a", &tx).await;
    let mut b = Rig::clustered(meta.clone(), &[], "node-b", &tx).await;
    let mut ids = owned_by(&members, "node-a", 3);
    ids.extend(owned_by(&members, "node-b", 3));
    for id in &ids {
        a.alerts
            .create(dest(id, None, &AlertEventType::ALL))
            .await
            .unwrap();
    }
    eventually(async || b.alerts.list().await.unwrap().len() == ids.len()).await;
    // Each node records the state changes of the integrations it delivers.
    a.ctx
        .events
        .manual(&integration(serde_json::json!({"id": "i1"})), true);
    b.ctx
        .events
        .manual(&integration(serde_json::json!({"id": "i2"})), true);
    let (sent_a, sent_b) = (drain(&mut a, 10).await, drain(&mut b, 10).await);
    for (node, sent) in [("node-a", &sent_a), ("node-b", &sent_b)] {
        for s in sent {
            assert_eq!(
                owner(&members, &owner_key(&dest_of(s))),
                Some(node),
                "{node} sent for a destination it does not own"
            );
        }
    }
    let all: Vec<(String, String)> = sent_a
        .iter()
        .chain(&sent_b)
        .map(|s| (dest_of(s), s.id.clone()))
        .collect();
    let unique: BTreeSet<&(String, String)> = all.iter().collect();
    assert_eq!(all.len(), unique.len(), "an event was sent twice: {all:?}");
    assert_eq!(all.len(), 2 * ids.len(), "two events to every destination");
    for id in &ids {
        let st = a.alerts.status(id).await.unwrap();
        assert_eq!(st.pending_events, 0);
        assert_eq!(
            st.sent_by,
            owner(&members, &owner_key(id)).map(str::to_owned)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_destination_moves_to_another_node_when_its_sender_leaves() {
    let meta = Arc::new(MemoryMeta::new());
    let members = view(&["node-a", "node-b"]);
    let (tx, _) = watch::channel(members.clone());
    let mut a = Rig::clustered(meta.clone(), &[Reply::Hang], "node-a", &tx).await;
    let mut b = Rig::clustered(meta.clone(), &[], "node-b", &tx).await;
    let id = owned_by(&members, "node-a", 1).remove(0);
    b.alerts
        .create(dest(&id, None, &AlertEventType::ALL))
        .await
        .unwrap();
    eventually(async || a.alerts.get(&id).await.is_ok()).await;
    // Recorded on b, sent by a (woken through the watch), whose endpoint hangs.
    b.ctx
        .events
        .manual(&integration(serde_json::json!({})), true);
    let hung = a.next().await;
    assert_eq!(dest_of(&hung), id);
    // node-a leaves the view: node-b takes the destination over and sends the same event.
    tx.send_replace(view(&["node-b"]));
    let again = b.next().await;
    assert_eq!(again.id, hung.id, "the same event, the same webhook-id");
    eventually(async || store::pending(meta.as_ref(), &id).await.unwrap().is_empty()).await;
    assert_eq!(
        b.alerts.status(&id).await.unwrap().sent_by.as_deref(),
        Some("node-b")
    );
    // And back when node-a returns.
    tx.send_replace(members.clone());
    b.ctx
        .events
        .manual(&integration(serde_json::json!({})), false);
    let back = a.next().await;
    assert_eq!(back.event().kind, AlertEventType::IntegrationResumed);
    assert!(drain(&mut b, 5).await.is_empty(), "node-b sent it too");
}

#[tokio::test(start_paused = true)]
async fn changes_through_one_node_are_seen_by_the_other() {
    let meta = Arc::new(MemoryMeta::new());
    let members = view(&["node-a", "node-b"]);
    let (tx, _) = watch::channel(members.clone());
    let mut a = Rig::clustered(meta.clone(), &[], "node-a", &tx).await;
    let mut b = Rig::clustered(meta.clone(), &[], "node-b", &tx).await;
    // Sent by node-a, changed through node-b.
    let id = owned_by(&members, "node-a", 1).remove(0);
    a.alerts
        .create(dest(&id, None, &AlertEventType::ALL))
        .await
        .unwrap();
    eventually(async || b.alerts.get(&id).await.is_ok()).await;
    assert!(matches!(
        b.alerts.create(dest(&id, None, &[])).await,
        Err(AlertError::Conflict(_))
    ));
    let mut moved = dest(&id, None, &AlertEventType::ALL);
    moved.url = "http://127.0.0.1:9/elsewhere/x".into();
    b.alerts.replace(moved.clone()).await.unwrap();
    eventually(async || a.alerts.get(&id).await.unwrap().url == moved.url).await;
    // The sender on node-a uses the new address.
    b.ctx
        .events
        .manual(&integration(serde_json::json!({})), true);
    let seen = a.next().await;
    assert_eq!(seen.url, moved.url);
    assert!(drain(&mut b, 2).await.is_empty());
    b.alerts.delete(&id).await.unwrap();
    eventually(async || matches!(a.alerts.get(&id).await, Err(AlertError::NotFound(_)))).await;
    assert!(a.alerts.list().await.unwrap().is_empty());
    // Nothing recorded for it any more.
    a.ctx
        .events
        .manual(&integration(serde_json::json!({})), false);
    assert!(drain(&mut a, 5).await.is_empty());
    assert!(store::pending(meta.as_ref(), &id).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn nodes_recording_at_once_never_overwrite_each_others_events() {
    let meta = Arc::new(MemoryMeta::new());
    let members = view(&["node-a", "node-b"]);
    let (tx, _) = watch::channel(members.clone());
    let mut a = Rig::clustered(meta.clone(), &[Reply::Hang], "node-a", &tx).await;
    let b = Rig::clustered(meta.clone(), &[], "node-b", &tx).await;
    let id = owned_by(&members, "node-a", 1).remove(0);
    a.alerts
        .create(dest(&id, None, &AlertEventType::ALL))
        .await
        .unwrap();
    eventually(async || b.alerts.get(&id).await.is_ok()).await;
    let n = 20;
    for _ in 0..n {
        // The same millisecond on both nodes (time is paused).
        a.ctx
            .events
            .manual(&integration(serde_json::json!({})), true);
        b.ctx
            .events
            .manual(&integration(serde_json::json!({})), true);
    }
    a.next().await;
    eventually(async || store::pending(meta.as_ref(), &id).await.unwrap().len() == 2 * n).await;
    let pending = store::pending(meta.as_ref(), &id).await.unwrap();
    let ids: BTreeSet<&str> = pending.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 2 * n, "every event kept once");
    for node in ["node-a", "node-b"] {
        let mine = pending
            .iter()
            .filter(|e| store::parse_outbox_key(&e.key).unwrap().1 == Some(node))
            .count();
        assert_eq!(mine, n, "{node}");
    }
}

#[tokio::test(start_paused = true)]
async fn integration_disabled_is_recorded_by_one_node_of_a_cluster() {
    let meta = Arc::new(MemoryMeta::new());
    let members = view(&["node-a", "node-b"]);
    let (tx, _) = watch::channel(members.clone());
    let mut a = Rig::clustered(meta.clone(), &[], "node-a", &tx).await;
    let mut b = Rig::clustered(meta.clone(), &[], "node-b", &tx).await;
    a.alerts
        .create(dest("a1", None, &[AlertEventType::IntegrationDisabled]))
        .await
        .unwrap();
    eventually(async || b.alerts.get("a1").await.is_ok()).await;
    let integ = environment_and_integration(&a.catalog).await;
    eventually(async || b.catalog.snapshot().integrations.contains_key("i1")).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut off = integ;
    off.enabled = false;
    a.catalog.update_integration(off).await.unwrap();
    let (sent_a, sent_b) = (drain(&mut a, 10).await, drain(&mut b, 10).await);
    let sent: Vec<&Seen> = sent_a.iter().chain(&sent_b).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].event().kind, AlertEventType::IntegrationDisabled);
}

#[tokio::test(start_paused = true)]
async fn events_kept_under_the_old_key_format_are_sent_first() {
    let meta = Arc::new(MemoryMeta::new());
    let d = dest("a1", None, &AlertEventType::ALL);
    put_json(&meta, "alerts/dest/a1", &d).await;
    let old = serde_json::json!({"id": "evt_old", "seq": 7, "body": r#"{"type":"integration.paused","timestamp":1,"data":{}}"#});
    put_json(&meta, "alerts/outbox/a1/0000000000000007", &old).await;
    let mut rig = Rig::new(meta.clone(), &[Reply::Hang]).await;
    rig.ctx
        .events
        .manual(&integration(serde_json::json!({})), false);
    let first = rig.next().await;
    assert_eq!(first.id, "evt_old");
    eventually(async || store::pending(meta.as_ref(), "a1").await.unwrap().len() == 2).await;
    rig.alerts.shutdown().await;
    drop(rig);
    let mut again = Rig::new(meta.clone(), &[]).await;
    assert_eq!(again.next().await.id, "evt_old");
    assert_eq!(
        again.next().await.event().kind,
        AlertEventType::IntegrationResumed
    );
}

/// Environment `e1` and the default integration `i1` on it, created in `catalog`.
async fn environment_and_integration(catalog: &Catalog) -> Integration {
    catalog
        .create_environment(
            serde_json::from_value(serde_json::json!({"id": "e1", "name": "E"})).unwrap(),
        )
        .await
        .unwrap();
    let integ = (*integration(serde_json::json!({}))).clone();
    catalog.create_integration(integ.clone()).await.unwrap();
    integ
}

/// Writes `value` as JSON under `key` of the state bucket, as an older version would have.
async fn put_json(meta: &MemoryMeta, key: &str, value: &impl serde::Serialize) {
    meta.put(
        Bucket::State,
        key,
        serde_json::to_vec(value).unwrap(),
        Expect::Any,
    )
    .await
    .unwrap();
}
