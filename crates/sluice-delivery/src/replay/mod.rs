//! Replays: redelivering a window of impressions to an integration on request
//! (`POST /v1/integrations/{id}/replay`), either every impression of the integration's
//! environments whose `time` is in `[from, to)`, or exactly the offsets of a recorded gap.
//!
//! - [`request`]: validating a request against the log and the gaps → a new [`ReplayJob`];
//! - [`run`](mod@run): running a job to completion on its own task and endpoint;
//! - [`window`]: reading a span and keeping only the impressions in the time window.
//!
//! A replay never blocks live delivery and never moves the live cursor. Its batches carry
//! their own stable ids (`msg_r<job><seq>`): the batch in flight is pinned (offset span +
//! id) in the job record before it is sent — if that write fails nothing is sent — so a
//! retry or a restart resends the same impressions under the same id. Progress is
//! persisted after every delivered batch; running jobs resume at start-up. At most one
//! replay runs per integration.

pub mod request;
pub(crate) mod run;
mod window;

use crate::batch::PinnedBatch;
use serde::{Deserialize, Serialize};
use sluice_store::{Bucket, Expect, MetaStore, StoreError};

pub use request::{ReplayError, ReplayRequest};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySpan {
    pub env: String,
    /// Offsets `[start, end)` of the environment's log to scan.
    pub start: u64,
    pub end: u64,
    /// Next offset to scan.
    pub position: u64,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplayState {
    /// Sending (or waiting to resend); resumed after a restart.
    Running,
    /// Every span scanned.
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayJob {
    pub id: String,
    pub integration_id: String,
    /// Impression-time window `[from, to)` (ms), for window replays.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// The gap replayed, for gap replays.
    pub gap_id: Option<String>,
    pub spans: Vec<ReplaySpan>,
    pub state: ReplayState,
    pub delivered_impressions: u64,
    pub delivered_batches: u64,
    pub failed_attempts: u64,
    /// Offsets scanned so far / to scan in all (progress).
    pub scanned_offsets: u64,
    pub total_offsets: u64,
    /// Offsets retention removed before the replay reached them (never sent).
    #[serde(default)]
    pub lost_offsets: u64,
    pub pinned: Option<PinnedBatch>,
    pub seq: u64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn job_key(integration: &str, job: &str) -> String {
    format!("replay/{integration}/{job}")
}

pub async fn save_job(meta: &dyn MetaStore, job: &ReplayJob) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(job)
        .map_err(|e| StoreError::encode(format!("replay job {}", job.id), e))?;
    meta.put(
        Bucket::State,
        &job_key(&job.integration_id, &job.id),
        bytes,
        Expect::Any,
    )
    .await
    .map(|_| ())
}

pub async fn list_jobs(
    meta: &dyn MetaStore,
    integration: &str,
) -> Result<Vec<ReplayJob>, StoreError> {
    meta.list(Bucket::State, &format!("replay/{integration}/"))
        .await?
        .into_iter()
        .map(|(k, v)| serde_json::from_slice(&v.value).map_err(|e| StoreError::corrupt(k, e)))
        .collect()
}

#[cfg(test)]
mod tests;
