//! An integration's durable delivery position: one offset per environment, and the batch
//! in flight of each environment (so that a batch keeps its `webhook-id` across retries,
//! restarts, crashes and upgrades). Stored as JSON in the `cursors` bucket under the
//! integration id.
//!
//! **Upgrades.** Versions that had a single batch in flight stored it as `pending`
//! (same fields as [`PinnedBatch`]); [`load`] moves it into `pinned` under its environment
//! ([`upgrade`]), so the batch is resent under the id it was first sent with. The next
//! save writes the current shape only.
//!
//! **Fencing** (SPEC §7). The record names its `owner` (a node) and an `epoch` that grows
//! on every change of owner. A node that starts delivering an integration *claims* the
//! record ([`claim`]: owner = itself, epoch + 1 when it was another's, a compare-and-swap
//! on the revision it read); from then on every write of the record is a compare-and-swap
//! on the revision this owner last wrote ([`crate::lane::common::LaneCommon::persist`]).
//! Another node's claim bumps the revision, so a stale owner's next write fails: it stops,
//! having at most resent its pinned batch, and can never advance the cursor. Each write
//! carries a fresh `write` nonce, so a write whose answer was lost (a timeout) is
//! recognised as applied or not by reading the record back.

use crate::batch::PinnedBatch;
use serde::{Deserialize, Serialize};
use sluice_store::{Bucket, Expect, ImpressionLog, MetaStore, StoreError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CursorRecord {
    /// Next offset to deliver, per environment.
    pub offsets: BTreeMap<String, u64>,
    /// The batch in flight of each environment (pinned: id + range), at most one each.
    #[serde(default)]
    pub pinned: BTreeMap<String, PinnedBatch>,
    /// The single batch in flight of records written before `pinned` existed; only read,
    /// moved into `pinned` by [`upgrade`].
    #[serde(default, skip_serializing)]
    pub pending: Option<PinnedBatch>,
    /// Impressions delivered (answered 200) over the integration's life.
    pub delivered: u64,
    /// Random per-integration-life nonce and a sequence: batch ids never repeat, even
    /// for a deleted and re-created integration with the same id.
    pub nonce: String,
    pub seq: u64,
    /// The node delivering the integration (empty before the first claim).
    #[serde(default)]
    pub owner: String,
    /// Grows by one whenever another node claims the record.
    #[serde(default)]
    pub epoch: u64,
    /// A fresh nonce per write: tells whether a write with a lost answer was applied.
    #[serde(default)]
    pub write: String,
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

/// Brings a record read from the store to the current shape: an old single `pending`
/// batch becomes its environment's pinned batch (unless one is pinned there already),
/// keeping its id.
pub fn upgrade(mut c: CursorRecord) -> CursorRecord {
    if let Some(p) = c.pending.take() {
        c.pinned.entry(p.env.clone()).or_insert(p);
    }
    c
}

pub async fn load(
    meta: &dyn MetaStore,
    integration: &str,
) -> Result<Option<CursorRecord>, StoreError> {
    Ok(load_versioned(meta, integration).await?.map(|(c, _)| c))
}

/// The record and its revision.
pub async fn load_versioned(
    meta: &dyn MetaStore,
    integration: &str,
) -> Result<Option<(CursorRecord, u64)>, StoreError> {
    match meta.get(Bucket::Cursors, integration).await? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v.value)
            .map(|c| Some((upgrade(c), v.revision)))
            .map_err(|e| StoreError::corrupt(format!("cursor of {integration}"), e)),
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
    let (c, _, changed) = load_positioned_versioned(meta, log, integration, environments).await?;
    Ok((c, changed))
}

/// [`load_positioned`] with the revision read (`None`: no record yet).
pub async fn load_positioned_versioned(
    meta: &dyn MetaStore,
    log: &dyn ImpressionLog,
    integration: &str,
    environments: &[String],
) -> Result<(CursorRecord, Option<u64>, bool), StoreError> {
    let (mut c, revision) = match load_versioned(meta, integration).await? {
        Some((c, r)) => (c, Some(r)),
        None => (CursorRecord::default(), None),
    };
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
    Ok((c, revision, changed))
}

pub async fn save(
    meta: &dyn MetaStore,
    integration: &str,
    c: &CursorRecord,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(c)
        .map_err(|e| StoreError::encode(format!("cursor of {integration}"), e))?;
    meta.put(Bucket::Cursors, integration, bytes, Expect::Any)
        .await
        .map(|_| ())
}

/// Writes the record if it is still at `expect` (a fresh `write` nonce is set first);
/// returns the new revision, or `Conflict`.
pub async fn save_cas(
    meta: &dyn MetaStore,
    integration: &str,
    c: &mut CursorRecord,
    expect: Expect,
) -> Result<u64, StoreError> {
    c.write = new_nonce();
    let bytes = serde_json::to_vec(c)
        .map_err(|e| StoreError::encode(format!("cursor of {integration}"), e))?;
    meta.put(Bucket::Cursors, integration, bytes, expect).await
}

/// Makes `node` the owner of the record read at `revision` (`None`: there was none): a
/// new epoch when it was another node's. A compare-and-swap: `Conflict` when someone
/// wrote meanwhile. Returns the revision this owner wrote.
pub async fn claim(
    meta: &dyn MetaStore,
    integration: &str,
    node: &str,
    c: &mut CursorRecord,
    revision: Option<u64>,
) -> Result<u64, StoreError> {
    if c.owner != node {
        if !c.owner.is_empty() {
            tracing::info!(integration, from = %c.owner, to = node, epoch = c.epoch + 1, "taking over delivery of this integration");
        }
        c.owner = node.to_owned();
        c.epoch += 1;
    }
    let expect = revision.map_or(Expect::Absent, Expect::Revision);
    save_cas(meta, integration, c, expect).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::memory::MemoryMeta;

    /// Defect 4: the old single-batch shape used to be dropped on load, so the batch in
    /// flight was re-pinned under a new id after an upgrade.
    #[tokio::test]
    async fn an_old_pending_batch_loads_as_its_environments_pinned_batch() {
        let meta = MemoryMeta::new();
        let old = br#"{"offsets":{"e1":5},"pending":{"id":"msg_old0000000007","env":"e1","from":5,"to":9},"delivered":5,"nonce":"old","seq":7}"#;
        meta.put(Bucket::Cursors, "i1", old.to_vec(), Expect::Any)
            .await
            .unwrap();
        let c = load(&meta, "i1").await.unwrap().unwrap();
        let p = &c.pinned["e1"];
        assert_eq!((p.id.as_str(), p.from, p.to), ("msg_old0000000007", 5, 9));
        assert_eq!(c.pending, None);
        // The next save writes the current shape; it loads the same.
        save(&meta, "i1", &c).await.unwrap();
        let raw = meta.get(Bucket::Cursors, "i1").await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw.value).contains("pending"));
        assert_eq!(load(&meta, "i1").await.unwrap().unwrap(), c);
    }

    #[test]
    fn a_pinned_batch_wins_over_an_old_pending_one() {
        let p = |id: &str| PinnedBatch {
            id: id.into(),
            env: "e1".into(),
            from: 0,
            to: 1,
        };
        let mut c = CursorRecord {
            pending: Some(p("old")),
            ..CursorRecord::default()
        };
        c.pinned.insert("e1".into(), p("new"));
        assert_eq!(upgrade(c).pinned["e1"].id, "new");
    }
}
