//! Metadata in redb: configuration, cursors, gaps. Implements [`MetaStore`].
//!
//! Writes go through one writer thread that group-commits: every write queued while a
//! commit is running joins the next transaction, so a thousand integrations advancing
//! their cursors cost a handful of fsyncs, not a thousand. Each write's compare-and-swap
//! condition is checked inside that transaction, one write after the other.
//!
//! Values are stored as `revision (u64 LE) ++ value`. Revisions count per bucket (the
//! `sluice_revisions` table holds each bucket's last one), as a JetStream KV bucket's
//! stream sequence does: a key deleted and created again never gets back a revision it
//! had, so a compare-and-swap with a revision read before the deletion conflicts.

use crate::change_hub::{self, ChangeHub};
use crate::embedded::disk::{self, Disk, DiskBackend};
use crate::error::{StoreError, Transient};
use crate::meta::{Bucket, Expect, MetaChange, MetaStore, MetaWatch, Versioned};
use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

fn table(b: Bucket) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(b.name())
}

/// Per bucket name, the last revision handed out.
const REVISIONS: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("sluice_revisions");

fn meta_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable("metadata database", Transient::Database(Arc::new(e.into())))
}

fn task_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::unavailable("metadata read", Transient::task(e))
}

fn stopped() -> StoreError {
    StoreError::unavailable("the metadata writer", Transient::Closed)
}

enum Op {
    Put(Vec<u8>),
    Delete,
}

struct Write {
    bucket: Bucket,
    key: String,
    op: Op,
    expect: Expect,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// The redb-backed [`MetaStore`].
pub struct RedbMeta {
    db: Arc<Database>,
    /// Committed writes, for watches (published by the writer thread after each commit).
    hub: Arc<ChangeHub>,
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<Write>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RedbMeta {
    /// Stops the writer thread and waits for it, so the database file (and its lock) is
    /// released when the store is dropped, not some time later: a restart in the same
    /// process can open it right away.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Most writes folded into one transaction.
const MAX_GROUP: usize = 4096;

impl RedbMeta {
    /// Opens (creating if needed) the database file at `path` with redb's own file
    /// backend (which also locks the file against a second process).
    pub fn open(path: &Path) -> Result<RedbMeta, StoreError> {
        let db = Database::create(path).map_err(meta_err)?;
        disk::sync_parents(&disk::OsDisk, path)?;
        RedbMeta::start(db)
    }

    /// Opens the database file at `path` on a given disk through [`DiskBackend`] (tests
    /// put it on a [`SimDisk`](crate::embedded::disk::SimDisk) to cut its power).
    pub fn open_on(disk: &dyn Disk, path: &Path) -> Result<RedbMeta, StoreError> {
        let backend = DiskBackend(disk.open_or_create(path)?);
        disk::sync_parents(disk, path)?;
        RedbMeta::start(
            Database::builder()
                .create_with_backend(backend)
                .map_err(meta_err)?,
        )
    }

    /// Every write commits with [`Durability::Immediate`]: a write is acknowledged only once redb's commit has
    /// been fsynced, so it survives a power cut (`embedded::power_cut_tests`).
    fn start(db: Database) -> Result<RedbMeta, StoreError> {
        let db = Arc::new(db);
        {
            let mut w = db.begin_write().map_err(meta_err)?;
            w.set_durability(Durability::Immediate).map_err(meta_err)?;
            {
                let mut revisions = w.open_table(REVISIONS).map_err(meta_err)?;
                for b in Bucket::ALL {
                    let t = w.open_table(table(b)).map_err(meta_err)?;
                    if revisions.get(b.name()).map_err(meta_err)?.is_none() {
                        // A database written before revisions counted per bucket.
                        let mut last = 0;
                        for item in t.iter().map_err(meta_err)? {
                            let (_, v) = item.map_err(meta_err)?;
                            last = split_value(v.value()).map_or(last, |v| last.max(v.revision));
                        }
                        revisions.insert(b.name(), last).map_err(meta_err)?;
                    }
                }
            }
            w.commit().map_err(meta_err)?;
        }
        let (tx, rx) = mpsc::channel::<Write>();
        let writer_db = db.clone();
        let hub = Arc::new(ChangeHub::default());
        let writer_hub = hub.clone();
        let writer = std::thread::Builder::new()
            .name("sluice-meta-writer".into())
            .spawn(move || writer_loop(&writer_db, &writer_hub, &rx))
            .map_err(StoreError::from)?;
        Ok(RedbMeta {
            db,
            hub,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    async fn submit(
        &self,
        bucket: Bucket,
        key: &str,
        op: Op,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(Write {
                bucket,
                key: key.to_owned(),
                op,
                expect,
                reply,
            })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn split_value(raw: &[u8]) -> Option<Versioned> {
    let (rev, value) = raw.split_at_checked(8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(rev);
    Some(Versioned {
        value: value.to_vec(),
        revision: u64::from_le_bytes(a),
    })
}

fn writer_loop(db: &Database, hub: &ChangeHub, rx: &mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        commit_group(db, hub, group);
    }
}

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// Applies one group of writes in one transaction. Each write's condition is checked in
/// order; if the commit itself fails, every writer of the group is told so.
fn commit_group(db: &Database, hub: &ChangeHub, group: Vec<Write>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
    let mut outcomes: Vec<Result<u64, StoreError>> = Vec::with_capacity(group.len());
    // Built for every group, watched or not: a watch subscribing while this group commits
    // may read its snapshot before the commit and then relies on these changes.
    let mut changes: Vec<(Bucket, MetaChange)> = Vec::with_capacity(group.len());
    let applied = (|| -> Result<(), StoreError> {
        let mut txn = db.begin_write().map_err(meta_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(meta_err)?;
        let mut revisions = txn.open_table(REVISIONS).map_err(meta_err)?;
        for w in group {
            replies.push(w.reply);
            let mut t = txn.open_table(table(w.bucket)).map_err(meta_err)?;
            let last = revisions
                .get(w.bucket.name())
                .map_err(meta_err)?
                .map_or(0, |g| g.value());
            let current = t
                .get(w.key.as_str())
                .map_err(meta_err)?
                .and_then(|g| split_value(g.value()));
            let ok = match (w.expect, &current) {
                (Expect::Any, _) => true,
                (Expect::Absent, None) => true,
                (Expect::Revision(r), Some(c)) => c.revision == r,
                _ => false,
            };
            let outcome = if !ok {
                Err(StoreError::conflict(w.bucket, w.key))
            } else {
                match w.op {
                    Op::Put(value) => {
                        let rev = last + 1;
                        revisions.insert(w.bucket.name(), rev).map_err(meta_err)?;
                        let mut raw = Vec::with_capacity(8 + value.len());
                        raw.extend_from_slice(&rev.to_le_bytes());
                        raw.extend_from_slice(&value);
                        t.insert(w.key.as_str(), raw.as_slice()).map_err(meta_err)?;
                        let change = MetaChange {
                            key: w.key.clone(),
                            value: Some(value),
                            revision: rev,
                        };
                        changes.push((w.bucket, change));
                        Ok(rev)
                    }
                    Op::Delete if current.is_some() => {
                        let rev = last + 1;
                        revisions.insert(w.bucket.name(), rev).map_err(meta_err)?;
                        t.remove(w.key.as_str()).map_err(meta_err)?;
                        let change = MetaChange {
                            key: w.key.clone(),
                            value: None,
                            revision: rev,
                        };
                        changes.push((w.bucket, change));
                        Ok(rev)
                    }
                    Op::Delete => Ok(last),
                }
            };
            outcomes.push(outcome);
        }
        drop(revisions);
        txn.commit().map_err(meta_err)
    })();
    match applied {
        Ok(()) => {
            if hub.watched() {
                for (bucket, change) in changes {
                    hub.publish(bucket, change);
                }
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            // The transaction was aborted: nothing of this group was written.
            tracing::error!(error = %e, "metadata commit failed");
            for reply in replies {
                let _ = reply.send(Err(match &e {
                    StoreError::Unavailable { cause, .. } => {
                        StoreError::unavailable("metadata commit", cause.clone())
                    }
                    other => StoreError::unavailable(
                        "metadata commit",
                        Transient::Database(Arc::new(std::io::Error::other(other.to_string()))),
                    ),
                }));
            }
        }
    }
}

#[async_trait]
impl MetaStore for RedbMeta {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Versioned>, StoreError> {
        let db = self.db.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(meta_err)?;
            let t = r.open_table(table(bucket)).map_err(meta_err)?;
            Ok(t.get(key.as_str())
                .map_err(meta_err)?
                .and_then(|g| split_value(g.value())))
        })
        .await
        .map_err(task_err)?
    }

    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        let db = self.db.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(meta_err)?;
            let t = r.open_table(table(bucket)).map_err(meta_err)?;
            list_table(&t, &prefix)
        })
        .await
        .map_err(task_err)?
    }

    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        self.submit(bucket, key, Op::Put(value), expect).await
    }

    async fn delete(&self, bucket: Bucket, key: &str, expect: Expect) -> Result<(), StoreError> {
        self.submit(bucket, key, Op::Delete, expect)
            .await
            .map(|_| ())
    }

    async fn watch(&self, bucket: Bucket, prefix: &str) -> Result<MetaWatch, StoreError> {
        // Subscribe first: a write committed while the snapshot is read is then either in
        // it (revision <= since) or reported as a change.
        let rx = self.hub.subscribe();
        let db = self.db.clone();
        let owned = prefix.to_owned();
        let (current, since) = tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(meta_err)?;
            let since = r
                .open_table(REVISIONS)
                .map_err(meta_err)?
                .get(bucket.name())
                .map_err(meta_err)?
                .map_or(0, |g| g.value());
            let t = r.open_table(table(bucket)).map_err(meta_err)?;
            Ok::<_, StoreError>((list_table(&t, &owned)?, since))
        })
        .await
        .map_err(task_err)??;
        Ok(MetaWatch {
            current,
            changes: change_hub::changes(rx, bucket, prefix, since),
        })
    }
}

/// The entries of `t` whose keys start with `prefix`, in key order.
fn list_table(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, Versioned)>, StoreError> {
    let mut out = Vec::new();
    for item in t.range(prefix..).map_err(meta_err)? {
        let (k, v) = item.map_err(meta_err)?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        if let Some(v) = split_value(v.value()) {
            out.push((k.to_owned(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete_with_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let m = RedbMeta::open(&dir.path().join("meta.redb")).unwrap();
        assert_eq!(
            m.put(Bucket::Projects, "a", b"1".to_vec(), Expect::Absent)
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            m.put(Bucket::Projects, "a", b"x".to_vec(), Expect::Absent)
                .await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(
            m.put(Bucket::Projects, "a", b"2".to_vec(), Expect::Revision(1))
                .await
                .unwrap(),
            2
        );
        assert!(matches!(
            m.put(Bucket::Projects, "a", b"3".to_vec(), Expect::Revision(1))
                .await,
            Err(StoreError::Conflict { .. })
        ));
        m.put(Bucket::Projects, "ab", b"z".to_vec(), Expect::Any)
            .await
            .unwrap();
        m.put(Bucket::Projects, "b", b"z".to_vec(), Expect::Any)
            .await
            .unwrap();
        let got = m.get(Bucket::Projects, "a").await.unwrap().unwrap();
        assert_eq!(
            got,
            Versioned {
                value: b"2".to_vec(),
                revision: 2
            }
        );
        let keys: Vec<String> = m
            .list(Bucket::Projects, "a")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["a", "ab"]);
        m.delete(Bucket::Projects, "a", Expect::Any).await.unwrap();
        assert!(m.get(Bucket::Projects, "a").await.unwrap().is_none());
        assert!(m.get(Bucket::Environments, "a").await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let m = Arc::new(RedbMeta::open(&path).unwrap());
            let mut tasks = Vec::new();
            for i in 0..200 {
                let m = m.clone();
                tasks.push(tokio::spawn(async move {
                    m.put(
                        Bucket::Cursors,
                        &format!("k{i:03}"),
                        vec![i as u8],
                        Expect::Any,
                    )
                    .await
                    .unwrap()
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        // The writer thread exits when the sender drops; give it a moment to release the file.
        let m = loop {
            match RedbMeta::open(&path) {
                Ok(m) => break m,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        assert_eq!(m.list(Bucket::Cursors, "").await.unwrap().len(), 200);
    }
}
