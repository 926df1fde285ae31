//! An integration's durable delivery position: one offset per environment, and the batch
//! in flight (so that a batch keeps its `webhook-id` across retries, restarts and crashes).
//! Stored as JSON in the `cursors` bucket under the integration id.

use serde::{Deserialize, Serialize};
use sluice_store::{Bucket, Expect, ImpressionLog, MetaStore, StoreError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PendingBatch {
    pub id: String,
    pub env: String,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CursorRecord {
    /// Next offset to deliver, per environment.
    pub offsets: BTreeMap<String, u64>,
    /// The batch in flight of each environment (pinned: id + range), at most one each.
    #[serde(default)]
    pub pinned: BTreeMap<String, PendingBatch>,
    /// Written by versions that had a single batch in flight; moved into `pinned` on load.
    #[serde(default, skip_serializing)]
    pub pending: Option<PendingBatch>,
    /// Impressions delivered (answered 200) over the integration's life.
    pub delivered: u64,
    /// Random per-integration-life nonce and a sequence: batch ids never repeat, even
    /// for a deleted and re-created integration with the same id.
    pub nonce: String,
    pub seq: u64,
}

impl CursorRecord {
    pub fn next_batch_id(&mut self) -> String {
        self.seq += 1;
        format!("msg_{}{:010}", self.nonce, self.seq)
    }
}

pub fn new_nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub async fn load(
    meta: &dyn MetaStore,
    integration: &str,
) -> Result<Option<CursorRecord>, StoreError> {
    match meta.get(Bucket::Cursors, integration).await? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v.value)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("cursor of {integration}: {e}"))),
    }
}

/// Loads an integration's record (or a new one), gives it a nonce, and positions every
/// listed environment it has no position in at the current end of that environment's
/// log: an integration receives impressions from the moment it (or the environment's
/// membership) exists. Returns the record and whether it changed (and needs saving).
pub async fn load_positioned(
    meta: &dyn MetaStore,
    log: &dyn ImpressionLog,
    integration: &str,
    environments: &[String],
) -> Result<(CursorRecord, bool), StoreError> {
    let mut c = load(meta, integration).await?.unwrap_or_default();
    let mut changed = false;
    if c.nonce.is_empty() {
        c.nonce = new_nonce();
        changed = true;
    }
    for env in environments {
        if !c.offsets.contains_key(env) {
            c.offsets.insert(env.clone(), log.bounds(env).await?.next);
            changed = true;
        }
    }
    Ok((c, changed))
}

pub async fn save(
    meta: &dyn MetaStore,
    integration: &str,
    c: &CursorRecord,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(c).map_err(|e| StoreError::Meta(e.to_string()))?;
    meta.put(Bucket::Cursors, integration, bytes, Expect::Any)
        .await
        .map(|_| ())
}
