//! A batch: a range of one environment's log offsets under a stable id. The live lanes and
//! replays both pin batches this way (id + range persisted before the first send), so one
//! type serves both.

use crate::encode::EncodedBody;
use serde::{Deserialize, Serialize};
use sluice_store::{ImpressionLog, StoreError, StoredEntry};
use std::sync::OnceLock;
use tokio::sync::{Semaphore, SemaphorePermit};

/// A batch whose id and offset range are persisted: every send of it, whatever happens
/// in between (retry, restart, crash, upgrade), carries the same `webhook-id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PinnedBatch {
    pub id: String,
    pub env: String,
    /// Offsets `[from, to)`.
    pub from: u64,
    pub to: u64,
}

/// A pinned batch with its encoded body, ready to send.
pub(crate) struct Batch {
    pub pinned: PinnedBatch,
    pub body: EncodedBody,
}

/// Encoding failed (the encoding task panicked or was cancelled). Never sent as an empty
/// batch: a 200 to that would move the cursor over impressions never delivered.
#[derive(Debug, thiserror::Error)]
#[error("encoding the batch failed: {0}")]
pub struct EncodeError(String);

/// Reading a batch from the log and encoding it is CPU work; at most this many batches per
/// core are read and encoded at once, all integrations together. Without a bound, 10,000
/// integrations flushing together each held their batch's entries (read, waiting for an
/// encoding thread) at the same time: 525 MiB peak RSS at 20 impressions/s. The permit is
/// held from the read to the end of the encoding, never across a send or a store write, so
/// a failing destination never holds one for longer than its own encoding.
const WORK_PERMITS_PER_CORE: usize = 2;

fn work_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Semaphore::new((cores * WORK_PERMITS_PER_CORE).max(4))
    })
}

/// A turn to read and encode one batch (see [`WORK_PERMITS_PER_CORE`]); hold it until the
/// body is encoded. Fair: turns are given in the order they were asked for.
pub(crate) async fn work_permit() -> Option<SemaphorePermit<'static>> {
    // The semaphore is never closed; were it, work would go on without turns.
    work_permits().acquire().await.ok()
}

/// Runs an encoding job on the blocking pool.
pub(crate) async fn encode_blocking(
    job: impl FnOnce() -> EncodedBody + Send + 'static,
) -> Result<EncodedBody, EncodeError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| EncodeError(e.to_string()))
}

/// The entries holding offsets `[from, to)`. One log read stops once it has `max_records`
/// impressions counting all of its first entry, which may start before `from` (the
/// previous batch ended inside it): read on until the range is covered, so batches are
/// full and a pinned batch is rebuilt whole.
pub(crate) async fn read_range(
    log: &dyn ImpressionLog,
    env: &str,
    from: u64,
    to: u64,
) -> Result<Vec<StoredEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut at = from;
    while at < to {
        let chunk = log.read(env, at, (to - at) as usize).await?;
        let Some(end) = chunk.last().map(|e| e.end_offset()) else {
            break;
        };
        entries.extend(
            chunk
                .into_iter()
                .filter(|e| e.end_offset() > at && e.base_offset < to),
        );
        if end <= at {
            break;
        }
        at = end;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect 2: a failed encoding task used to yield an empty body with a count of 0,
    /// which a 200 turned into a cursor advance over impressions never sent.
    #[tokio::test]
    async fn a_failed_encoding_is_an_error_not_an_empty_batch() {
        let r = encode_blocking(|| panic!("encoder bug")).await;
        assert!(r.is_err());
    }
}
