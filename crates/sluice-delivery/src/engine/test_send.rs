//! A test send: one synthetic impression to the integration's endpoint, as a live batch
//! would be sent; nothing is recorded as delivered.

use super::DeliveryEngine;
use crate::encode::encode_batch;
use crate::request::build_request;
use serde::Serialize;
use sluice_core::impression::{Context, ImpressionIn};
use sluice_core::model::Integration;
use sluice_core::record::encode_entry;
use sluice_store::StoredEntry;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub delivered: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub response: String,
    pub batch_id: String,
}

impl DeliveryEngine {
    /// Sends one sample batch (a single synthetic impression) to the integration's URL, as
    /// a live batch would be sent, and reports the answer. Nothing is recorded as
    /// delivered.
    pub async fn test_send(&self, integ: &Integration) -> TestResult {
        let env = integ.environments.first().cloned().unwrap_or_default();
        let env_name = self
            .catalog
            .snapshot()
            .environments
            .get(&env)
            .map(|e| e.name.clone())
            .unwrap_or_default();
        let imp = ImpressionIn {
            key: "sluice-test-key".into(),
            split: "sluice_test_flag".into(),
            treatment: "on".into(),
            time: self.ctx.now_ms(),
            bucketing_key: None,
            label: Some("sluice test".into()),
            change_number: 0,
            properties: None,
        };
        let ctx = [Context {
            environment_name: env_name.into(),
            sdk: "sluice".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            machine_name: None,
            machine_ip: None,
        }];
        let e = encode_entry(&ctx, std::iter::once((0usize, &imp)));
        let entry = StoredEntry {
            base_offset: 0,
            count: 1,
            ingest_ms: self.ctx.now_ms(),
            min_time: imp.time,
            max_time: imp.time,
            payload: e.payload.into(),
        };
        let body = encode_batch(
            &env,
            &[entry],
            0,
            1,
            integ.effective_format(),
            integ.effective_gzip(),
        );
        let batch_id = format!("msg_test{:016x}", rand::random::<u64>());
        let req = build_request(integ, &batch_id, &body, self.ctx.now_ms() / 1000);
        let outcome = match self.ctx.connector.connect(integ) {
            Ok(endpoint) => endpoint.send(&req).await,
            Err(e) => {
                return TestResult {
                    delivered: false,
                    status: None,
                    error: Some(e.to_string()),
                    duration_ms: 0,
                    response: String::new(),
                    batch_id,
                };
            }
        };
        TestResult {
            delivered: outcome.is_delivered(),
            status: outcome.status,
            error: outcome.error.clone(),
            duration_ms: outcome.duration.as_millis() as u64,
            response: outcome.response_snippet.clone(),
            batch_id,
        }
    }
}
