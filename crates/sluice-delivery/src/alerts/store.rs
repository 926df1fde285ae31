//! Where alert destinations and their undelivered events live: the `state` bucket, under
//! `alerts/dest/{id}` (the destination) and `alerts/outbox/{id}/{seq}` (one event each, the
//! sequence in fixed-width hex so key order is send order). An event stays until its
//! destination answered 200 or the destination is deleted, so a restart loses none.

use serde::{Deserialize, Serialize};
use sluice_core::alert::AlertDestination;
use sluice_store::{Bucket, Expect, MetaStore, StoreError};

const DEST_PREFIX: &str = "alerts/dest/";
const OUTBOX_PREFIX: &str = "alerts/outbox/";

fn dest_key(id: &str) -> String {
    format!("{DEST_PREFIX}{id}")
}

fn outbox_prefix(dest: &str) -> String {
    format!("{OUTBOX_PREFIX}{dest}/")
}

/// One undelivered event for one destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The event's id: its `webhook-id` on every attempt.
    pub id: String,
    pub seq: u64,
    /// The JSON body exactly as signed and sent.
    pub body: String,
}

impl OutboxEntry {
    pub fn key(&self, dest: &str) -> String {
        format!("{}{:016x}", outbox_prefix(dest), self.seq)
    }
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::encode(what, e))
}

pub async fn load_destinations(meta: &dyn MetaStore) -> Result<Vec<AlertDestination>, StoreError> {
    let mut out = Vec::new();
    for (key, v) in meta.list(Bucket::State, DEST_PREFIX).await? {
        match serde_json::from_slice(&v.value) {
            Ok(d) => out.push(d),
            Err(e) => tracing::error!(key, error = %e, "unreadable alert destination skipped"),
        }
    }
    Ok(out)
}

pub async fn save_destination(
    meta: &dyn MetaStore,
    d: &AlertDestination,
) -> Result<(), StoreError> {
    let bytes = encode("alert destination", d)?;
    meta.put(Bucket::State, &dest_key(&d.id), bytes, Expect::Any)
        .await
        .map(|_| ())
}

pub async fn delete_destination(meta: &dyn MetaStore, id: &str) -> Result<(), StoreError> {
    meta.delete(Bucket::State, &dest_key(id), Expect::Any).await
}

/// A destination's undelivered events, oldest first (unreadable ones are dropped).
pub async fn pending(meta: &dyn MetaStore, dest: &str) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut out = Vec::new();
    for (key, v) in meta.list(Bucket::State, &outbox_prefix(dest)).await? {
        match serde_json::from_slice(&v.value) {
            Ok(e) => out.push(e),
            Err(e) => {
                tracing::error!(key, error = %e, "unreadable alert event dropped");
                meta.delete(Bucket::State, &key, Expect::Any).await?;
            }
        }
    }
    Ok(out)
}

pub async fn push(meta: &dyn MetaStore, dest: &str, e: &OutboxEntry) -> Result<(), StoreError> {
    let bytes = encode("alert event", e)?;
    meta.put(Bucket::State, &e.key(dest), bytes, Expect::Any)
        .await
        .map(|_| ())
}

pub async fn remove(meta: &dyn MetaStore, dest: &str, e: &OutboxEntry) -> Result<(), StoreError> {
    meta.delete(Bucket::State, &e.key(dest), Expect::Any).await
}

/// Removes every undelivered event of `dest`.
pub async fn purge(meta: &dyn MetaStore, dest: &str) -> Result<(), StoreError> {
    for (key, _) in meta.list(Bucket::State, &outbox_prefix(dest)).await? {
        meta.delete(Bucket::State, &key, Expect::Any).await?;
    }
    Ok(())
}

/// Removes outbox entries of destinations that no longer exist (a deletion cut short by a
/// crash).
pub async fn purge_orphans(meta: &dyn MetaStore, known: &[String]) -> Result<(), StoreError> {
    for (key, _) in meta.list(Bucket::State, OUTBOX_PREFIX).await? {
        let dest = key[OUTBOX_PREFIX.len()..].split('/').next().unwrap_or("");
        if !known.iter().any(|k| k == dest) {
            meta.delete(Bucket::State, &key, Expect::Any).await?;
        }
    }
    Ok(())
}
