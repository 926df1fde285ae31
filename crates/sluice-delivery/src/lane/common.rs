//! What the lanes of one integration share: the durable cursor record (each lane writes
//! only its environment's position and pinned batch; saves are serialized so the record
//! on disk is always a merge of the latest of each), the integration's in-flight limit,
//! and the probe lock (one probe batch at a time while paused).

use crate::cursor::{self, CursorRecord};
use sluice_store::{MetaStore, StoreError};
use tokio::sync::{Mutex, MutexGuard, Semaphore};

pub(crate) struct LaneCommon {
    integration: String,
    cursor: Mutex<CursorRecord>,
    pub(crate) in_flight: Semaphore,
    pub(crate) probe: Mutex<()>,
}

impl LaneCommon {
    pub(crate) fn new(integration: String, record: CursorRecord, max_in_flight: u32) -> LaneCommon {
        LaneCommon {
            integration,
            cursor: Mutex::new(record),
            in_flight: Semaphore::new(max_in_flight.max(1) as usize),
            probe: Mutex::new(()),
        }
    }

    /// The shared record, locked (never across a send).
    pub(crate) async fn record(&self) -> MutexGuard<'_, CursorRecord> {
        self.cursor.lock().await
    }

    /// Persists the record as it is under the lock. If the write fails, the record still
    /// holds the change in memory and the next save persists it.
    pub(crate) async fn persist(
        &self,
        meta: &dyn MetaStore,
        record: &CursorRecord,
    ) -> Result<(), StoreError> {
        cursor::save(meta, &self.integration, record).await
    }
}
