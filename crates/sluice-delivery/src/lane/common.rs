//! What the lanes of one integration share: the durable cursor record (each lane writes
//! only its environment's position and pinned batch; saves are serialized so the record
//! on disk is always a merge of the latest of each), the integration's in-flight limit,
//! the probe lock (one probe batch at a time while paused), the unhealthy turn (one
//! request at a time while failing, paused or probing), and the fence: the revision
//! this owner last wrote, on which every save is a compare-and-swap (see
//! [`crate::cursor`]). A save that finds another writer's record fences the integration:
//! `fenced` turns true and the integration's task stops its lanes.

use crate::cursor::{self, CursorRecord};
use sluice_store::{Bucket, Expect, MetaStore, StoreError};
use std::sync::{Mutex, PoisonError};
use tokio::sync::{MutexGuard, Semaphore, watch};

/// The revision this owner last wrote and the nonces of writes sent since whose outcome
/// is unknown.
#[derive(Debug, Default)]
struct Fence {
    revision: u64,
    unconfirmed: Vec<String>,
}

pub(crate) struct LaneCommon {
    integration: String,
    cursor: tokio::sync::Mutex<CursorRecord>,
    fence: Mutex<Fence>,
    /// True once another node wrote the record: this node is no longer its owner.
    pub(crate) fenced: watch::Sender<bool>,
    pub(crate) in_flight: Semaphore,
    pub(crate) probe: tokio::sync::Mutex<()>,
    /// Held by each attempt while the integration is failing, paused or probing: then it
    /// has one request in flight at most, whatever `maxInFlight` says.
    pub(crate) unhealthy_turn: tokio::sync::Mutex<()>,
}

impl LaneCommon {
    /// `revision`: the revision of `record` this owner wrote when it claimed it.
    pub(crate) fn new(
        integration: String,
        record: CursorRecord,
        revision: u64,
        max_in_flight: u32,
    ) -> LaneCommon {
        LaneCommon {
            integration,
            cursor: tokio::sync::Mutex::new(record),
            fence: Mutex::new(Fence {
                revision,
                unconfirmed: Vec::new(),
            }),
            fenced: watch::Sender::new(false),
            in_flight: Semaphore::new(max_in_flight.max(1) as usize),
            probe: tokio::sync::Mutex::new(()),
            unhealthy_turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The shared record, locked (never across a send).
    pub(crate) async fn record(&self) -> MutexGuard<'_, CursorRecord> {
        self.cursor.lock().await
    }

    /// A copy of the record, unless a lane holds it now (then `None`).
    pub(crate) fn try_record(&self) -> Option<CursorRecord> {
        self.cursor.try_lock().ok().map(|r| r.clone())
    }

    fn fence(&self) -> std::sync::MutexGuard<'_, Fence> {
        self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Persists the record as it is under the lock: a compare-and-swap on the revision this
    /// owner last wrote. If the write fails, the record still holds the change in memory
    /// and the next save persists it. When the swap fails the stored record tells why: one
    /// of this owner's writes whose answer was lost (adopt its revision and write again),
    /// or another writer (fenced: `Conflict`, and `fenced` turns true).
    pub(crate) async fn persist(
        &self,
        meta: &dyn MetaStore,
        record: &mut CursorRecord,
    ) -> Result<(), StoreError> {
        if *self.fenced.borrow() {
            return Err(self.conflict());
        }
        for _ in 0..2 {
            let revision = self.fence().revision;
            let result =
                cursor::save_cas(meta, &self.integration, record, Expect::Revision(revision)).await;
            match result {
                Ok(r) => {
                    let mut f = self.fence();
                    f.revision = r;
                    f.unconfirmed.clear();
                    return Ok(());
                }
                Err(e @ StoreError::Conflict { .. }) => {
                    if !self.adopt_own_write(meta).await? {
                        self.fenced.send_replace(true);
                        tracing::warn!(integration = %self.integration, "another node took this integration over; this node stops delivering it");
                        return Err(e);
                    }
                }
                Err(e) => {
                    // Applied or not: unknown until read back (on the next conflict).
                    self.fence().unconfirmed.push(record.write.clone());
                    return Err(e);
                }
            }
        }
        Err(self.conflict())
    }

    /// After a lost swap: whether the stored record is one of this owner's own writes
    /// whose answer was lost (its revision is then adopted).
    async fn adopt_own_write(&self, meta: &dyn MetaStore) -> Result<bool, StoreError> {
        let stored = cursor::load_versioned(meta, &self.integration).await?;
        let mut f = self.fence();
        match stored {
            Some((c, r)) if f.unconfirmed.contains(&c.write) => {
                f.revision = r;
                f.unconfirmed.clear();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn conflict(&self) -> StoreError {
        StoreError::Conflict {
            bucket: Bucket::Cursors,
            key: self.integration.clone(),
        }
    }
}
