//! [`JetStreamMeta`]: a [`MetaStore`] on JetStream KV, one bucket per [`Bucket`]
//! (`sluice_<name>`, stream `KV_sluice_<name>`).
//!
//! Revisions are KV revisions (the stream sequence of the key's last write, so they only
//! grow); `Expect::Absent` is a KV create (which also succeeds over a deleted key),
//! `Expect::Revision` an update on the last revision, a delete with an expectation a
//! delete marker published with `Nats-Expected-Last-Subject-Sequence`. Keys are escaped
//! onto KV's alphabet ([`super::names::encode_key`]).
//!
//! The buckets' streams are created explicitly rather than with async-nats's
//! `create_key_value`, which (0.51) fails against servers older than 2.11 while parsing
//! an account field they do not send; the stream settings are those of a KV bucket with
//! history 1.

use super::NatsConnection;
use super::error::{is_wrong_last_sequence, unavailable};
use super::names::{decode_key, encode_key};
use crate::error::{StoreError, Transient};
use crate::meta::{Bucket, Expect, MetaChange, MetaStore, MetaWatch, Versioned};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, StorageType};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// The KV bucket of `bucket`.
pub fn bucket_name(bucket: Bucket) -> String {
    format!("sluice_{}", bucket.name())
}

/// A [`MetaStore`] on JetStream KV (see the module documentation).
pub struct JetStreamMeta {
    conn: NatsConnection,
    stores: HashMap<Bucket, kv::Store>,
}

impl JetStreamMeta {
    /// Opens (creating when missing) every bucket.
    pub async fn open(conn: NatsConnection) -> Result<JetStreamMeta, StoreError> {
        let mut stores = HashMap::new();
        for bucket in Bucket::ALL {
            let name = bucket_name(bucket);
            conn.js
                .get_or_create_stream(StreamConfig {
                    name: format!("KV_{name}"),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 1,
                    storage: StorageType::File,
                    num_replicas: conn.replicas,
                    discard: DiscardPolicy::New,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(format!("creating KV bucket {name}"), e))?;
            let store = conn
                .js
                .get_key_value(&name)
                .await
                .map_err(|e| unavailable(format!("opening KV bucket {name}"), e))?;
            stores.insert(bucket, store);
        }
        Ok(JetStreamMeta { conn, stores })
    }

    fn store(&self, bucket: Bucket) -> Result<&kv::Store, StoreError> {
        self.stores.get(&bucket).ok_or_else(|| {
            StoreError::unavailable(format!("KV bucket {bucket}"), Transient::Closed)
        })
    }
}

impl JetStreamMeta {
    /// The bucket's current content (key order) and every change committed after it, from
    /// one ordered consumer (last value per key, then live updates), so nothing is missed
    /// between the two. This is what every node's catalog mirror follows.
    pub async fn follow(&self, bucket: Bucket) -> Result<MetaWatch, StoreError> {
        self.snapshot(bucket, "").await
    }

    /// [`Self::follow`] restricted to the keys starting with `prefix`.
    async fn snapshot(&self, bucket: Bucket, prefix: &str) -> Result<MetaWatch, StoreError> {
        let name = bucket_name(bucket);
        let what = move || format!("reading KV bucket {bucket}");
        let lost = move |e: async_nats::Error| unavailable(what(), e);
        let stream = self
            .conn
            .js
            .get_stream_no_info(format!("KV_{name}"))
            .await
            .map_err(|e| unavailable(what(), e))?;
        let subject_prefix = format!("$KV.{name}.");
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.conn.client.new_inbox(),
                filter_subject: format!("{subject_prefix}>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(what(), e))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(what(), e))?;
        let mut current = Vec::new();
        while pending > 0 {
            let msg = tokio::time::timeout(SNAPSHOT_TIMEOUT, messages.next())
                .await
                .map_err(|_| StoreError::unavailable(what(), Transient::Timeout(SNAPSHOT_TIMEOUT)))?
                .ok_or_else(|| StoreError::unavailable(what(), Transient::Closed))?
                .map_err(|e| unavailable(what(), e))?;
            let (change, left) = change_of(&msg, &subject_prefix).map_err(lost)?;
            pending = left;
            if let Some(MetaChange {
                key,
                value: Some(value),
                revision,
            }) = change
                && key.starts_with(prefix)
            {
                current.push((key, Versioned { value, revision }));
            }
        }
        current.sort_by(|a, b| a.0.cmp(&b.0));
        let prefix = prefix.to_owned();
        let changes = messages
            .filter_map(move |m| {
                let out = match m {
                    Err(e) => Some(Err(unavailable(what(), e))),
                    Ok(msg) => match change_of(&msg, &subject_prefix) {
                        Ok((change, _)) => change.filter(|c| c.key.starts_with(&prefix)).map(Ok),
                        Err(e) => Some(Err(lost(e))),
                    },
                };
                std::future::ready(out)
            })
            .boxed();
        Ok(MetaWatch { current, changes })
    }
}

/// How long reading a bucket's current content may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// The change a KV message records (`None` for a subject that is not a key of ours),
/// and how many messages the consumer still has to deliver.
fn change_of(
    msg: &async_nats::jetstream::Message,
    subject_prefix: &str,
) -> Result<(Option<MetaChange>, u64), async_nats::Error> {
    let info = msg.info()?;
    let deleted = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some();
    let key = msg
        .subject
        .as_str()
        .strip_prefix(subject_prefix)
        .and_then(decode_key);
    let change = key.map(|key| MetaChange {
        key,
        value: (!deleted).then(|| msg.payload.to_vec()),
        revision: info.stream_sequence,
    });
    Ok((change, info.pending))
}

fn key_of(key: &str) -> Result<String, StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey(String::new()));
    }
    Ok(encode_key(key))
}

fn conflict(bucket: Bucket, key: &str) -> StoreError {
    StoreError::conflict(bucket, key)
}

#[async_trait]
impl MetaStore for JetStreamMeta {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Versioned>, StoreError> {
        let entry = self
            .store(bucket)?
            .entry(key_of(key)?)
            .await
            .map_err(|e| unavailable(format!("reading {}/{key}", bucket.name()), e))?;
        Ok(entry.and_then(|e| match e.operation {
            Operation::Put => Some(Versioned {
                value: e.value.to_vec(),
                revision: e.revision,
            }),
            Operation::Delete | Operation::Purge => None,
        }))
    }

    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        Ok(self.snapshot(bucket, prefix).await?.current)
    }

    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let store = self.store(bucket)?;
        let k = key_of(key)?;
        let what = || format!("writing {}/{key}", bucket.name());
        match expect {
            Expect::Any => store
                .put(k, value.into())
                .await
                .map_err(|e| unavailable(what(), e)),
            Expect::Absent => store
                .create(k, value.into())
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => conflict(bucket, key),
                    _ if is_wrong_last_sequence(&e) => conflict(bucket, key),
                    _ => unavailable(what(), e),
                }),
            Expect::Revision(rev) => store.update(k, value.into(), rev).await.map_err(|e| match e
                .kind()
            {
                kv::UpdateErrorKind::WrongLastRevision => conflict(bucket, key),
                _ if is_wrong_last_sequence(&e) => conflict(bucket, key),
                _ => unavailable(what(), e),
            }),
        }
    }

    async fn delete(&self, bucket: Bucket, key: &str, expect: Expect) -> Result<(), StoreError> {
        let store = self.store(bucket)?;
        let k = key_of(key)?;
        let expected = match expect {
            Expect::Any => None,
            Expect::Absent => {
                return match self.get(bucket, key).await? {
                    None => Ok(()),
                    Some(_) => Err(conflict(bucket, key)),
                };
            }
            Expect::Revision(rev) => Some(rev),
        };
        if expected.is_none() && self.get(bucket, key).await?.is_none() {
            return Ok(());
        }
        store
            .delete_expect_revision(k, expected)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => conflict(bucket, key),
                _ if is_wrong_last_sequence(&e) => conflict(bucket, key),
                _ => unavailable(format!("deleting {}/{key}", bucket.name()), e),
            })
    }

    async fn watch(&self, bucket: Bucket, prefix: &str) -> Result<MetaWatch, StoreError> {
        self.snapshot(bucket, prefix).await
    }
}
