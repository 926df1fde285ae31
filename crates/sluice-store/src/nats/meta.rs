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
use super::error::unavailable;
use super::names::{decode_key, encode_key};
use crate::error::StoreError;
use crate::meta::{Bucket, Expect, MetaStore, Versioned};
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
        self.stores
            .get(&bucket)
            .ok_or_else(|| StoreError::Meta(format!("bucket {} not open", bucket.name())))
    }
}

fn key_of(key: &str) -> Result<String, StoreError> {
    if key.is_empty() {
        return Err(StoreError::Meta("empty key".into()));
    }
    Ok(encode_key(key))
}

fn conflict(bucket: Bucket, key: &str) -> StoreError {
    StoreError::Conflict(format!("{}/{key}", bucket.name()))
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
        let name = bucket_name(bucket);
        let fail = |e: &dyn std::fmt::Display| unavailable(format!("listing {name}"), e);
        let stream = self
            .conn
            .js
            .get_stream_no_info(format!("KV_{name}"))
            .await
            .map_err(|e| fail(&e))?;
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
            .map_err(|e| fail(&e))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut out = Vec::new();
        if pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| fail(&e))?;
        while pending > 0 {
            let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .map_err(|_| fail(&"timed out"))?
                .ok_or_else(|| fail(&"listing ended early"))?
                .map_err(|e| fail(&e))?;
            let info = msg.info().map_err(|e| fail(&e))?;
            pending = info.pending;
            let revision = info.stream_sequence;
            let deleted = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some();
            let Some(key) = msg
                .subject
                .as_str()
                .strip_prefix(&subject_prefix)
                .and_then(decode_key)
            else {
                continue;
            };
            if deleted || !key.starts_with(prefix) {
                continue;
            }
            out.push((
                key,
                Versioned {
                    value: msg.payload.to_vec(),
                    revision,
                },
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
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
                    _ => unavailable(what(), e),
                }),
            Expect::Revision(rev) => store.update(k, value.into(), rev).await.map_err(|e| match e
                .kind()
            {
                kv::UpdateErrorKind::WrongLastRevision => conflict(bucket, key),
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
                _ => unavailable(format!("deleting {}/{key}", bucket.name()), e),
            })
    }
}
