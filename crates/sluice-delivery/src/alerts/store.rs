//! Where alert destinations and their undelivered events live: the `state` bucket, under
//! `alerts/dest/{id}` (the destination), `alerts/outbox/{id}/{key}` (one event each) and
//! `alerts/dropped/{id}` (how many events the full outbox dropped). An event stays until
//! its destination answered 200 or the destination is deleted, so a restart loses none.
//!
//! Outbox keys are unique across the nodes of a cluster and sort in send order (SPEC §7:
//! every node records alerts for the integrations it delivers, into the outbox of every
//! destination that wants them): `{ms:016x}-{n:016x}-{node}` — the recording time in ms
//! (never going back on one node), a per-node counter within that ms, and the recording
//! node. Older versions wrote `{seq:016x}`, a per-destination sequence; such keys are
//! still read, and sort before every new one (a sequence is far below any time in ms).

use serde::{Deserialize, Serialize};
use sluice_core::alert::AlertDestination;
use sluice_store::{Bucket, Expect, MetaStore, StoreError};
use std::collections::BTreeSet;

/// Everything of the alerts (a node watches it to follow changes made through others).
pub const ALERTS_PREFIX: &str = "alerts/";
pub const DEST_PREFIX: &str = "alerts/dest/";
pub const OUTBOX_PREFIX: &str = "alerts/outbox/";
const DROPPED_PREFIX: &str = "alerts/dropped/";

fn dest_key(id: &str) -> String {
    format!("{DEST_PREFIX}{id}")
}

fn outbox_prefix(dest: &str) -> String {
    format!("{OUTBOX_PREFIX}{dest}/")
}

fn dropped_key(dest: &str) -> String {
    format!("{DROPPED_PREFIX}{dest}")
}

/// Where one event is kept in its destination's outbox: unique across nodes, in send
/// order (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub ms: u64,
    pub n: u64,
}

impl Stamp {
    /// The next stamp after `last` at wall-clock `now_ms`: later than `last` even when the
    /// clock went back.
    pub fn next(last: Stamp, now_ms: i64) -> Stamp {
        let now = u64::try_from(now_ms).unwrap_or(0);
        if now > last.ms {
            Stamp { ms: now, n: 0 }
        } else {
            Stamp {
                ms: last.ms,
                n: last.n + 1,
            }
        }
    }

    /// The outbox key (below the destination's prefix) of an event this node records.
    pub fn key_suffix(self, node: &str) -> String {
        format!("{:016x}-{:016x}-{node}", self.ms, self.n)
    }
}

/// What an outbox key says: the destination, and the node that recorded it (`None` for a
/// key of the old per-destination format).
pub fn parse_outbox_key(key: &str) -> Option<(&str, Option<&str>)> {
    let rest = key.strip_prefix(OUTBOX_PREFIX)?;
    let (dest, suffix) = rest.split_once('/')?;
    let node = suffix.splitn(3, '-').nth(2);
    Some((dest, node))
}

/// One undelivered event for one destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The event's id: its `webhook-id` on every attempt.
    pub id: String,
    /// Where it is kept (its full key in the `state` bucket): not part of the value.
    #[serde(skip)]
    pub key: String,
    /// The JSON body exactly as signed and sent.
    pub body: String,
}

impl OutboxEntry {
    /// An event to keep for `dest` under this node's `stamp`.
    pub fn new(dest: &str, node: &str, stamp: Stamp, id: String, body: String) -> OutboxEntry {
        OutboxEntry {
            id,
            key: format!("{}{}", outbox_prefix(dest), stamp.key_suffix(node)),
            body,
        }
    }
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::encode(what, e))
}

/// A destination from its stored value (`None`, logged, when unreadable).
pub fn decode_destination(key: &str, value: &[u8]) -> Option<AlertDestination> {
    match serde_json::from_slice(value) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(key, error = %e, "unreadable alert destination skipped");
            None
        }
    }
}

/// Every destination with its revision.
pub async fn load_destinations(
    meta: &dyn MetaStore,
) -> Result<Vec<(AlertDestination, u64)>, StoreError> {
    let mut out = Vec::new();
    for (key, v) in meta.list(Bucket::State, DEST_PREFIX).await? {
        if let Some(d) = decode_destination(&key, &v.value) {
            out.push((d, v.revision));
        }
    }
    Ok(out)
}

/// One destination with its revision.
pub async fn get_destination(
    meta: &dyn MetaStore,
    id: &str,
) -> Result<Option<(AlertDestination, u64)>, StoreError> {
    let key = dest_key(id);
    Ok(meta
        .get(Bucket::State, &key)
        .await?
        .and_then(|v| decode_destination(&key, &v.value).map(|d| (d, v.revision))))
}

/// Writes a destination when `expect` holds; returns its new revision.
pub async fn save_destination(
    meta: &dyn MetaStore,
    d: &AlertDestination,
    expect: Expect,
) -> Result<u64, StoreError> {
    let bytes = encode("alert destination", d)?;
    meta.put(Bucket::State, &dest_key(&d.id), bytes, expect)
        .await
}

pub async fn delete_destination(
    meta: &dyn MetaStore,
    id: &str,
    expect: Expect,
) -> Result<(), StoreError> {
    meta.delete(Bucket::State, &dest_key(id), expect).await
}

/// A destination's undelivered events, oldest first (unreadable ones are dropped).
pub async fn pending(meta: &dyn MetaStore, dest: &str) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut out = Vec::new();
    for (key, v) in meta.list(Bucket::State, &outbox_prefix(dest)).await? {
        match serde_json::from_slice::<OutboxEntry>(&v.value) {
            Ok(mut e) => {
                e.key = key;
                out.push(e);
            }
            Err(e) => {
                tracing::error!(key, error = %e, "unreadable alert event dropped");
                meta.delete(Bucket::State, &key, Expect::Any).await?;
            }
        }
    }
    Ok(out)
}

pub async fn push(meta: &dyn MetaStore, e: &OutboxEntry) -> Result<(), StoreError> {
    let bytes = encode("alert event", e)?;
    // A key is written once: `Absent` turns a collision into an error instead of a loss.
    meta.put(Bucket::State, &e.key, bytes, Expect::Absent)
        .await
        .map(|_| ())
}

pub async fn remove(meta: &dyn MetaStore, e: &OutboxEntry) -> Result<(), StoreError> {
    meta.delete(Bucket::State, &e.key, Expect::Any).await
}

/// A stored dropped count (decimal text; unreadable counts as 0).
fn count(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How many events the full outbox of `dest` dropped.
pub async fn dropped(meta: &dyn MetaStore, dest: &str) -> Result<u64, StoreError> {
    Ok(meta
        .get(Bucket::State, &dropped_key(dest))
        .await?
        .map_or(0, |v| count(&v.value)))
}

/// Adds `n` to the dropped count of `dest` (compare-and-swap: nodes may drop at once).
pub async fn add_dropped(meta: &dyn MetaStore, dest: &str, n: u64) -> Result<(), StoreError> {
    let key = dropped_key(dest);
    loop {
        let current = meta.get(Bucket::State, &key).await?;
        let (old, expect) = match &current {
            Some(v) => (count(&v.value), Expect::Revision(v.revision)),
            None => (0, Expect::Absent),
        };
        let value = (old + n).to_string().into_bytes();
        match meta.put(Bucket::State, &key, value, expect).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Drops the oldest events of `dest` beyond `max` (counted in its stored dropped count);
/// returns how many there were.
pub async fn trim(meta: &dyn MetaStore, dest: &str, max: usize) -> Result<u64, StoreError> {
    let keys = meta.list(Bucket::State, &outbox_prefix(dest)).await?;
    let over = keys.len().saturating_sub(max);
    for (key, _) in &keys[..over] {
        meta.delete(Bucket::State, key, Expect::Any).await?;
        tracing::warn!(
            destination = dest,
            key,
            "alert outbox full: oldest alert dropped"
        );
    }
    if over > 0 {
        add_dropped(meta, dest, over as u64).await?;
    }
    Ok(keys.len() as u64)
}

/// Removes every undelivered event of `dest`, and its dropped count.
pub async fn purge(meta: &dyn MetaStore, dest: &str) -> Result<(), StoreError> {
    for (key, _) in meta.list(Bucket::State, &outbox_prefix(dest)).await? {
        meta.delete(Bucket::State, &key, Expect::Any).await?;
    }
    meta.delete(Bucket::State, &dropped_key(dest), Expect::Any)
        .await
}

/// The outbox keys and dropped counts of every destination, for [`purge_orphans`]: read
/// *before* the destinations, so that an event recorded for a destination created since
/// is not among them.
pub async fn leftovers(meta: &dyn MetaStore) -> Result<Vec<String>, StoreError> {
    let mut keys: Vec<String> = meta
        .list(Bucket::State, OUTBOX_PREFIX)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.extend(
        meta.list(Bucket::State, DROPPED_PREFIX)
            .await?
            .into_iter()
            .map(|(k, _)| k),
    );
    Ok(keys)
}

/// Removes the `keys` (from [`leftovers`]) of destinations not `known` (a deletion cut short
/// by a crash).
pub async fn purge_orphans(
    meta: &dyn MetaStore,
    keys: &[String],
    known: &BTreeSet<String>,
) -> Result<(), StoreError> {
    for key in keys {
        let dest = match key.strip_prefix(OUTBOX_PREFIX) {
            Some(rest) => rest.split('/').next().unwrap_or(""),
            None => key.strip_prefix(DROPPED_PREFIX).unwrap_or(""),
        };
        if !known.contains(dest) {
            meta.delete(Bucket::State, key, Expect::Any).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow_and_keys_sort_in_stamp_order() {
        let a = Stamp::next(Stamp { ms: 0, n: 0 }, 1_800_000_000_000);
        let b = Stamp::next(a, 1_800_000_000_000);
        let c = Stamp::next(b, 1_799_999_999_000); // the clock went back
        let d = Stamp::next(c, 1_800_000_000_001);
        assert!(a < b && b < c && c < d, "{a:?} {b:?} {c:?} {d:?}");
        let keys: Vec<String> = [a, b, c, d].iter().map(|s| s.key_suffix("n-1")).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // An old key (a per-destination sequence) sorts before any new one.
        assert!(format!("{:016x}", 123_456u64) < keys[0]);
    }

    #[test]
    fn an_outbox_key_names_its_destination_and_node() {
        let e = OutboxEntry::new(
            "d-1",
            "node-a",
            Stamp { ms: 5, n: 2 },
            "evt".into(),
            "{}".into(),
        );
        assert_eq!(parse_outbox_key(&e.key), Some(("d-1", Some("node-a"))));
        assert_eq!(
            parse_outbox_key("alerts/outbox/d-1/0000000000000007"),
            Some(("d-1", None))
        );
        assert_eq!(parse_outbox_key("alerts/dest/d-1"), None);
    }
}
