//! Gaps: backlog an integration skipped (older than its `maxBacklogAgeMs`, or removed by
//! retention before delivery). Each is recorded durably so it can be listed, exported
//! and replayed. Stored in the `gaps` bucket under `{integration}/{recorded_at}-{from}`.

use serde::{Deserialize, Serialize};
use sluice_store::{Bucket, Expect, MetaStore, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    pub id: String,
    pub integration_id: String,
    pub environment_id: String,
    /// Log offsets skipped: `[fromOffset, toOffset)`.
    pub from_offset: u64,
    pub to_offset: u64,
    /// Ingest-time window skipped (ms since epoch), when known.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub impressions: u64,
    pub reason: GapReason,
    pub recorded_at: i64,
    /// The replay job that closed this gap, if any.
    pub closed_by: Option<String>,
    /// Impressions of the gap retention removed before a replay reached them (the gap
    /// then stays open: they can no longer be sent).
    #[serde(default)]
    pub lost_impressions: u64,
}

/// Why a gap was skipped.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum GapReason {
    /// Older than the integration's `maxBacklogAgeMs` when its turn came.
    MaxBacklogAge,
    /// Removed by retention before it was delivered.
    Retention,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::MaxBacklogAge => "maxBacklogAge",
            GapReason::Retention => "retention",
        }
    }
}

pub async fn record_gap(meta: &dyn MetaStore, mut gap: Gap) -> Result<Gap, StoreError> {
    gap.id = format!(
        "{}-{:020}-{}",
        gap.recorded_at, gap.from_offset, gap.environment_id
    );
    let key = format!("{}/{}", gap.integration_id, gap.id);
    let bytes =
        serde_json::to_vec(&gap).map_err(|e| StoreError::encode(format!("gap {key}"), e))?;
    meta.put(Bucket::Gaps, &key, bytes, Expect::Any).await?;
    Ok(gap)
}

pub async fn list_gaps(meta: &dyn MetaStore, integration: &str) -> Result<Vec<Gap>, StoreError> {
    let prefix = format!("{integration}/");
    meta.list(Bucket::Gaps, &prefix)
        .await?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v.value).map_err(|e| StoreError::corrupt(format!("gap {k}"), e))
        })
        .collect()
}
