//! Commit: a delivered batch moves the lane's position past it; the next full batch,
//! prepared while it was in flight, is pinned in the same durable write.

use super::Lane;
use super::prepare::Prefetched;
use super::send::Delivered;
use crate::batch::{Batch, PinnedBatch};
use sluice_store::StoreError;

impl Lane {
    /// A batch id from the integration's shared sequence (persisted with the next save,
    /// before the id is ever sent).
    pub(super) async fn next_batch_id(&self) -> String {
        self.common.record().await.next_batch_id()
    }

    /// Merges this lane's position and pinned batch into the shared record and persists
    /// it. Saves are serialized by the lock, so the record on disk never goes back.
    pub(super) async fn save(&mut self) -> Result<(), StoreError> {
        let mut record = self.common.record().await;
        if let Some(o) = self.position {
            record.offsets.insert(self.env.clone(), o);
        }
        match &self.pinned {
            Some(p) => record.pinned.insert(self.env.clone(), p.clone()),
            None => record.pinned.remove(&self.env),
        };
        record.delivered += std::mem::take(&mut self.delivered_delta);
        self.common
            .persist(self.ctx.meta.as_ref(), &mut record)
            .await
    }

    /// Records a delivered batch: the position moves past it and, when the next full batch
    /// was prepared meanwhile (and starts right there), that batch is pinned (id + range)
    /// in the same durable write and kept ready to send.
    pub(super) async fn commit(
        &mut self,
        delivered: Delivered,
        next: Option<Prefetched>,
    ) -> Result<(), StoreError> {
        let batch = delivered.into_batch();
        self.position = Some(batch.pinned.to);
        self.pinned = None;
        self.delivered_delta += u64::from(batch.body.count);
        let next = next.filter(|n| n.from == batch.pinned.to);
        if let Some(n) = &next {
            self.pinned = Some(PinnedBatch {
                id: self.next_batch_id().await,
                env: self.env.clone(),
                from: n.from,
                to: n.to,
            });
        }
        self.save().await?;
        if let (Some(n), Some(pinned)) = (next, self.pinned.clone()) {
            self.cached = Some(Batch {
                pinned,
                body: n.body,
            });
        }
        Ok(())
    }
}
