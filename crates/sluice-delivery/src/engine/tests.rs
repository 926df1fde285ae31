//! The engine over a real catalog (in-memory store), paused time and a scripted endpoint.

use super::{DeliveryEngine, IntegrationState};
use crate::endpoint::scripted::{Reply, ScriptedConnector};
use crate::endpoint::{Connector, Endpoint};
use crate::http::HttpError;
use crate::testing::{Harness, eventually, integration};
use serde_json::json;
use sluice_core::model::{Environment, Integration};
use sluice_store::Catalog;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Fails to connect the first `n` times, then connects to the scripted endpoint.
struct FailingFirst {
    left: AtomicU32,
    then: ScriptedConnector,
}

impl Connector for FailingFirst {
    fn connect(&self, integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError> {
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HttpError::UserAgent("scripted connect failure".into()));
        }
        self.then.connect(integ)
    }
}

async fn engine(h: &Harness, connector: Arc<dyn Connector>) -> Arc<DeliveryEngine> {
    let catalog = Arc::new(Catalog::load(h.meta.clone()).await.unwrap());
    let env: Environment =
        serde_json::from_value(json!({"id": "e1", "name": "Production"})).unwrap();
    catalog.create_environment(env).await.unwrap();
    catalog
        .create_integration((*integration(json!({}))).clone())
        .await
        .unwrap();
    let ctx =
        crate::context::DeliveryCtx::new(h.ctx.log.clone(), h.ctx.meta.clone(), h.ctx.opts.clone())
            .with_clock(h.ctx.clock.clone())
            .with_connector(connector);
    DeliveryEngine::with_context(catalog, ctx)
}

/// Defect 1, at the engine: an integration task that ends (here: its endpoint cannot be
/// built, twice) is started again with backoff instead of being lost.
#[tokio::test(start_paused = true)]
async fn an_integration_task_that_ends_is_started_again() {
    let mut h = Harness::new([]);
    h.cursor_at_start(&["e1"]).await;
    let connector = Arc::new(FailingFirst {
        left: AtomicU32::new(2),
        then: ScriptedConnector(h.endpoint.clone()),
    });
    let engine = engine(&h, connector.clone()).await;
    let started = tokio::time::Instant::now();
    let supervisor = engine.start();
    h.append("e1", &["a", "b", "c"], None).await;
    let first = h.next_request().await;
    assert_eq!(first.keys, ["a", "b", "c"]);
    // Two failed starts: restarted after 1 s, then 2 s.
    assert_eq!((first.at - started).as_secs(), 3);
    assert_eq!(connector.left.load(Ordering::SeqCst), 0);
    let integ = integration(json!({}));
    eventually(async || {
        engine
            .status(&integ)
            .await
            .is_ok_and(|s| s.delivered_impressions == 3 && s.state == IntegrationState::Active)
    })
    .await;
    engine.shutdown().await;
    supervisor.await.unwrap();
}

/// SPEC §3: the status never says `active` while every recent attempt failed — a hanging
/// destination is `failing` from its first timed-out attempt until it is `paused`.
#[tokio::test(start_paused = true)]
async fn a_hanging_destination_is_failing_then_paused_never_active_in_between() {
    let h = Harness::with_fallback([], Box::new(|| Reply::Hang));
    h.cursor_at_start(&["e1"]).await;
    let engine = engine(&h, Arc::new(ScriptedConnector(h.endpoint.clone()))).await;
    let supervisor = engine.start();
    h.append("e1", &["a", "b", "c"], None).await;
    let integ = integration(json!({}));
    let mut states: Vec<IntegrationState> = Vec::new();
    let started = tokio::time::Instant::now();
    while states.last() != Some(&IntegrationState::Paused) {
        assert!(started.elapsed() < Duration::from_secs(120), "{states:?}");
        let s = engine.status(&integ).await.unwrap().state;
        if states.last() != Some(&s) {
            states.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        states,
        [
            IntegrationState::Active,
            IntegrationState::Failing,
            IntegrationState::Paused
        ]
    );
    engine.shutdown().await;
    supervisor.await.unwrap();
}

/// The status of a running integration comes from its task's cursor record in memory: the
/// dashboard's sampler reads every integration's status every 10 s, and at 10,000
/// integrations a store read each cost more than 5 % of a core while idle. Shown by
/// failing every metadata read once the integration delivered: status still answers, with
/// the delivered count and position it had.
#[tokio::test(start_paused = true)]
async fn status_of_a_running_integration_reads_no_store() {
    use sluice_store::memory::{Fault, Op};
    let h = Harness::new([]);
    h.cursor_at_start(&["e1"]).await;
    let engine = engine(&h, Arc::new(ScriptedConnector(h.endpoint.clone()))).await;
    let supervisor = engine.start();
    h.append("e1", &["a", "b", "c"], None).await;
    let integ = integration(json!({}));
    eventually(async || {
        engine
            .status(&integ)
            .await
            .is_ok_and(|s| s.delivered_impressions == 3)
    })
    .await;
    h.meta.faults().fail_until_healed(Op::Get, Fault::Fail);
    let s = engine.status(&integ).await.unwrap();
    assert_eq!(s.delivered_impressions, 3);
    assert_eq!(s.lag_impressions, 0);
    assert_eq!(s.state, IntegrationState::Active);
    h.meta.faults().heal();
    engine.shutdown().await;
    supervisor.await.unwrap();
}

/// In a cluster, an integration's live health is its owner's: once another node delivers
/// it, this node reports the store's view — not the pause it saw when it delivered it —
/// and forgets that health, so should the integration come back it starts clean.
#[tokio::test(start_paused = true)]
async fn a_node_that_no_longer_delivers_an_integration_reports_none_of_its_old_health() {
    use crate::ownership::Ownership;
    use sluice_store::members::Members;
    let mut h = Harness::with_fallback([], Box::new(|| Reply::Hang));
    h.cursor_at_start(&["e1"]).await;
    let (view, rx) = tokio::sync::watch::channel(Members::sole("me", ""));
    h.ctx = Arc::new(
        crate::context::DeliveryCtx::new(
            h.ctx.log.clone(),
            h.ctx.meta.clone(),
            crate::context::EngineOptions {
                ownership: Ownership::following("me", rx),
                ..h.ctx.opts.clone()
            },
        )
        .with_clock(h.ctx.clock.clone()),
    );
    let engine = engine(&h, Arc::new(ScriptedConnector(h.endpoint.clone()))).await;
    let supervisor = engine.start();
    h.append("e1", &["a", "b", "c"], None).await;
    let integ = integration(json!({}));
    eventually(async || {
        engine
            .status(&integ)
            .await
            .is_ok_and(|s| s.state == IntegrationState::Paused)
    })
    .await;
    // Another node takes it over: no stale pause, failure rate or error here.
    view.send_replace(Members::sole("other", ""));
    let s = engine.status(&integ).await.unwrap();
    assert_eq!(s.state, IntegrationState::Active);
    assert_eq!((s.error_rate_percent, s.last_error), (0, None));
    assert!(s.paused_until.is_none());
    // Once its task stopped, the health it kept is forgotten too.
    eventually(async || {
        engine.get_shared(&integ.id).is_some_and(|s| {
            s.with(|st| {
                st.health.phase() == crate::health::Phase::Active && st.last_error.is_none()
            })
        })
    })
    .await;
    // An operator's pause (in the store, followed everywhere) is still reported.
    engine.pause(&integ).await.unwrap();
    assert_eq!(
        engine.status(&integ).await.unwrap().state,
        IntegrationState::Paused
    );
    engine.shutdown().await;
    supervisor.await.unwrap();
}
