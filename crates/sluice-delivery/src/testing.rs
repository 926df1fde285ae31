//! Test support: a delivery context over in-memory stores, a paused-time clock and a
//! scripted endpoint.

use crate::context::{DeliveryCtx, EngineOptions};
use crate::cursor::{self, CursorRecord};
use crate::endpoint::scripted::{Received, Reply, ScriptedConnector, ScriptedEndpoint};
use sluice_core::impression::{Context, ImpressionIn};
use sluice_core::model::Integration;
use sluice_core::record::encode_entry;
use sluice_store::memory::{MemoryLog, MemoryMeta, TokioClock};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
        let log = Arc::new(MemoryLog::with_clock(Arc::new(TokioClock::starting_at(T0))));
        let meta = Arc::new(MemoryMeta::new());
        let (endpoint, received) = ScriptedEndpoint::new(script);
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
        let mut c = CursorRecord {
            nonce: "t".into(),
            ..CursorRecord::default()
        };
        for e in envs {
            c.offsets.insert((*e).to_owned(), 0);
        }
        cursor::save(self.meta.as_ref(), "i1", &c).await.unwrap();
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
