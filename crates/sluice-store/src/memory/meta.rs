//! [`MemoryMeta`]: a [`MetaStore`] held in memory.

use super::faults::{Faults, Op};
use crate::change_hub::{self, ChangeHub};
use crate::error::StoreError;
use crate::meta::{Bucket, Expect, MetaChange, MetaStore, MetaWatch, Versioned};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct BucketData {
    keys: BTreeMap<String, Versioned>,
    /// Last revision handed out in this bucket: every write gets the next one, as a
    /// JetStream KV bucket's stream sequence does.
    revision: u64,
}

/// A [`MetaStore`] in memory, with fault injection (see the [module documentation](super)).
#[derive(Default)]
pub struct MemoryMeta {
    buckets: Mutex<HashMap<Bucket, BucketData>>,
    faults: Arc<Faults>,
    /// Committed writes, for watches (published under the `buckets` lock, so in order).
    hub: ChangeHub,
}

impl MemoryMeta {
    pub fn new() -> MemoryMeta {
        MemoryMeta::default()
    }

    /// Shares `faults` with other stores (one handle fails operations of all of them).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> MemoryMeta {
        self.faults = faults;
        self
    }

    /// The faults pending on this store.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Bucket, BucketData>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks `expect` against `key` of `bucket` and, when it holds, applies `value`
    /// (`None` deletes). Returns the write's revision.
    fn write(
        &self,
        bucket: Bucket,
        key: &str,
        value: Option<Vec<u8>>,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let mut buckets = self.lock();
        let data = buckets.entry(bucket).or_default();
        let current = data.keys.get(key).map(|v| v.revision);
        let holds = match (expect, current) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::Revision(r), Some(c)) => c == r,
            _ => false,
        };
        if !holds {
            return Err(StoreError::conflict(bucket, key));
        }
        match value {
            Some(value) => {
                data.revision += 1;
                let revision = data.revision;
                if self.hub.watched() {
                    let change = MetaChange {
                        key: key.to_owned(),
                        value: Some(value.clone()),
                        revision,
                    };
                    self.hub.publish(bucket, change);
                }
                data.keys
                    .insert(key.to_owned(), Versioned { value, revision });
                Ok(revision)
            }
            None => {
                if data.keys.remove(key).is_some() {
                    data.revision += 1;
                    let change = MetaChange {
                        key: key.to_owned(),
                        value: None,
                        revision: data.revision,
                    };
                    self.hub.publish(bucket, change);
                }
                Ok(data.revision)
            }
        }
    }
}

#[async_trait]
impl MetaStore for MemoryMeta {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.faults.check(Op::Get)?;
        Ok(self
            .lock()
            .get(&bucket)
            .and_then(|d| d.keys.get(key))
            .cloned())
    }

    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        self.faults.check(Op::List)?;
        let buckets = self.lock();
        let Some(data) = buckets.get(&bucket) else {
            return Ok(Vec::new());
        };
        Ok(data
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        self.faults
            .write(Op::Put, || self.write(bucket, key, Some(value), expect))
    }

    async fn delete(&self, bucket: Bucket, key: &str, expect: Expect) -> Result<(), StoreError> {
        self.faults
            .write(Op::Delete, || self.write(bucket, key, None, expect))
            .map(|_| ())
    }

    async fn watch(&self, bucket: Bucket, prefix: &str) -> Result<MetaWatch, StoreError> {
        self.faults.check(Op::List)?;
        let buckets = self.lock();
        let rx = self.hub.subscribe();
        let (current, since) = buckets.get(&bucket).map_or((Vec::new(), 0), |data| {
            let current = data
                .keys
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (current, data.revision)
        });
        drop(buckets);
        Ok(MetaWatch {
            current,
            changes: change_hub::changes(rx, bucket, prefix, since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Fault;

    #[tokio::test]
    async fn revisions_increase_across_the_bucket() {
        let m = MemoryMeta::new();
        let a = m
            .put(Bucket::State, "a", vec![1], Expect::Absent)
            .await
            .unwrap();
        let b = m
            .put(Bucket::State, "b", vec![1], Expect::Absent)
            .await
            .unwrap();
        let a2 = m
            .put(Bucket::State, "a", vec![2], Expect::Revision(a))
            .await
            .unwrap();
        assert!(a < b && b < a2);
        assert!(matches!(
            m.put(Bucket::State, "a", vec![3], Expect::Revision(a))
                .await,
            Err(StoreError::Conflict { .. })
        ));
        // Another bucket counts on its own.
        assert_eq!(
            m.put(Bucket::Gaps, "a", vec![1], Expect::Any)
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn injected_put_faults() {
        let m = MemoryMeta::new();
        m.faults().fail_next(Op::Put, 1, Fault::Fail);
        assert!(
            m.put(Bucket::State, "k", vec![1], Expect::Any)
                .await
                .is_err()
        );
        assert!(m.get(Bucket::State, "k").await.unwrap().is_none());
        m.faults().fail_next(Op::Put, 1, Fault::ApplyThenFail);
        assert!(
            m.put(Bucket::State, "k", vec![1], Expect::Any)
                .await
                .is_err()
        );
        assert!(m.get(Bucket::State, "k").await.unwrap().is_some());
    }
}
