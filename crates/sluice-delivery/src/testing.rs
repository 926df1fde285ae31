//! Test support: a delivery context over in-memory stores, a paused-time clock and a
//! scripted endpoint.

use crate::context::{DeliveryCtx, EngineOptions};
use crate::cursor::{self, CursorRecord};
use crate::endpoint::scripted::{Received, Reply, ScriptedConnector, ScriptedEndpoint};
use crate::integration::IntegrationTask;
use crate::shared::IntegrationShared;
use crate::supervise::Backoff;
use sluice_core::impression::{Context, ImpressionIn};
use sluice_core::model::Integration;
use sluice_core::record::encode_entry;
use sluice_store::memory::{MemoryLog, MemoryMeta, TokioClock};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub(crate) const T0: i64 = 1_800_000_000_000;

pub(crate) struct Harness {
    pub log: Arc<MemoryLog>,
    pub meta: Arc<MemoryMeta>,
    pub ctx: Arc<DeliveryCtx>,
    pub endpoint: Arc<ScriptedEndpoint>,
    pub received: mpsc::UnboundedReceiver<Received>,
}

impl Harness {
    /// Call under `tokio::time::pause()`.
    pub(crate) fn new(script: impl IntoIterator<Item = Reply>) -> Harness {
        Harness::with_fallback(script, Box::new(|| Reply::Status(200)))
    }

    /// An endpoint answering `script`, then `fallback`.
    pub(crate) fn with_fallback(
        script: impl IntoIterator<Item = Reply>,
        fallback: crate::endpoint::scripted::Fallback,
    ) -> Harness {
        let log = Arc::new(MemoryLog::with_clock(Arc::new(TokioClock::starting_at(T0))));
        let meta = Arc::new(MemoryMeta::new());
        let (endpoint, received) = ScriptedEndpoint::with_fallback(script, fallback);
        let ctx = DeliveryCtx::new(log.clone(), meta.clone(), EngineOptions::default())
            .with_clock(Arc::new(TokioClock::starting_at(T0)))
            .with_connector(Arc::new(ScriptedConnector(endpoint.clone())));
        Harness {
            log,
            meta,
            ctx: Arc::new(ctx),
            endpoint,
            received,
        }
    }

    /// Appends one entry of impressions with these keys, stamped now (or at `ingest_ms`).
    pub(crate) async fn append(&self, env: &str, keys: &[&str], ingest_ms: Option<i64>) {
        let ctx = [Context {
            environment_name: "Prod".into(),
            sdk: "python".into(),
            sdk_version: "10.7.0".into(),
            machine_name: None,
            machine_ip: None,
        }];
        let imps: Vec<ImpressionIn> = keys
            .iter()
            .map(|k| ImpressionIn {
                key: (*k).to_owned().into(),
                split: "flag".into(),
                treatment: "on".into(),
                time: T0,
                bucketing_key: None,
                label: None,
                change_number: 1,
                properties: None,
            })
            .collect();
        let e = encode_entry(&ctx, imps.iter().map(|i| (0, i))).into();
        match ingest_ms {
            Some(ms) => self.log.append_at(env, e, ms).await.unwrap(),
            None => sluice_store::ImpressionLog::append(self.log.as_ref(), env, e)
                .await
                .unwrap(),
        };
    }

    /// Positions integration `i1` at offset 0 of each environment.
    pub(crate) async fn cursor_at_start(&self, envs: &[&str]) {
        self.cursor_at_start_of("i1", envs).await;
    }

    /// Positions integration `id` at offset 0 of each environment.
    pub(crate) async fn cursor_at_start_of(&self, id: &str, envs: &[&str]) {
        let mut c = CursorRecord {
            nonce: "t".into(),
            ..CursorRecord::default()
        };
        for e in envs {
            c.offsets.insert((*e).to_owned(), 0);
        }
        cursor::save(self.meta.as_ref(), id, &c).await.unwrap();
    }

    pub(crate) async fn cursor(&self) -> CursorRecord {
        cursor::load(self.meta.as_ref(), "i1")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// The next request the endpoint receives.
    pub(crate) async fn next_request(&mut self) -> Received {
        self.received.recv().await.unwrap()
    }
}

/// Integration `i1` to environment `e1`: JSON, no gzip, batches of 3, flush after 1 s;
/// `extra` (a JSON object) overrides fields.
pub(crate) fn integration(extra: serde_json::Value) -> Arc<Integration> {
    let mut v = serde_json::json!({
        "id": "i1",
        "name": "test",
        "url": "http://127.0.0.1:9/hook",
        "environments": ["e1"],
        "format": "json",
        "gzip": false,
        "flushIntervalMs": 1000,
        "maxBatchImpressions": 3,
    });
    if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in x {
            o.insert(k.clone(), val.clone());
        }
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

/// Integration `id` to environment `e1` with every delivery and protection setting at its
/// default (10 s flush, batches of 5000, default protection); JSON without gzip, so the
/// scripted endpoint can read it.
pub(crate) fn default_integration(id: &str) -> Arc<Integration> {
    let v = serde_json::json!({
        "id": id,
        "name": "defaults",
        "url": "http://127.0.0.1:9/hook",
        "environments": ["e1"],
        "format": "json",
        "gzip": false,
    });
    Arc::new(serde_json::from_value(v).unwrap())
}

/// Waits (on paused time) until `cond` holds; panics if it never does.
pub(crate) async fn eventually<F: AsyncFnMut() -> bool>(mut cond: F) {
    for _ in 0..100_000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

/// An integration task running in a test.
pub(crate) struct Running {
    pub shared: Arc<IntegrationShared>,
    pub stop: watch::Sender<bool>,
    pub join: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        self.join.await.unwrap();
    }
}

/// Starts `integ`'s task over `ctx` (lane restarts after 100 ms).
pub(crate) fn start_on(ctx: &Arc<DeliveryCtx>, integ: Arc<Integration>) -> Running {
    let shared = Arc::new(IntegrationShared::new(&integ, false));
    let (stop, stop_rx) = watch::channel(false);
    let task = IntegrationTask {
        integ,
        ctx: ctx.clone(),
        shared: shared.clone(),
        stop: stop_rx,
        lane_backoff: Backoff {
            initial: Duration::from_millis(100),
            ..Backoff::default()
        },
    };
    Running {
        shared,
        stop,
        join: tokio::spawn(task.run()),
    }
}

/// Starts `integ`'s task over the harness's context.
pub(crate) fn start(h: &Harness, integ: Arc<Integration>) -> Running {
    start_on(&h.ctx, integ)
}
