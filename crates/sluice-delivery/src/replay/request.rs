//! A replay request, validated against the log and the recorded gaps, becomes a new job.

use super::{ReplayJob, ReplaySpan, ReplayState};
use crate::context::DeliveryCtx;
use crate::gaps::Gap;
use sluice_core::model::Integration;
use sluice_store::{Bucket, StoreError};

/// What `POST /v1/integrations/{id}/replay` asks for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub gap_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The job a request asks for (not yet saved or started): a gap's exact offsets, or every
/// retained offset of the integration's environments filtered by the time window.
pub async fn plan(
    ctx: &DeliveryCtx,
    integ: &Integration,
    req: &ReplayRequest,
) -> Result<ReplayJob, ReplayError> {
    let mut spans = Vec::new();
    let (from, to) = match (&req.gap_id, req.from, req.to) {
        (Some(gap_id), None, None) => {
            let key = format!("{}/{gap_id}", integ.id);
            let gap: Gap = match ctx.meta.get(Bucket::Gaps, &key).await? {
                Some(v) => serde_json::from_slice(&v.value)
                    .map_err(|e| StoreError::corrupt(format!("gaps/{key}"), e))?,
                None => return Err(ReplayError::NotFound(format!("gap {gap_id} not found"))),
            };
            let b = ctx.log.bounds(&gap.environment_id).await?;
            if gap.from_offset < b.first {
                return Err(ReplayError::Gone(format!(
                    "gap {gap_id} is past retention: its first impressions were removed from the log"
                )));
            }
            spans.push(ReplaySpan {
                env: gap.environment_id.clone(),
                start: gap.from_offset,
                end: gap.to_offset,
                position: gap.from_offset,
            });
            (None, None)
        }
        (None, Some(from), Some(to)) => {
            if from < 0 || to <= from {
                return Err(ReplayError::Invalid(
                    "need 0 <= from < to (ms since epoch)".into(),
                ));
            }
            for env in &integ.environments {
                let b = ctx.log.bounds(env).await?;
                if b.first > 0 {
                    // Something was removed by retention: refuse windows reaching before
                    // the oldest retained impression.
                    if let Some(first) = ctx.log.read(env, b.first, 1).await?.first()
                        && from < first.min_time
                    {
                        return Err(ReplayError::Gone(format!(
                            "window starts before the oldest retained impression of environment {env} (time {}); older impressions were removed by retention",
                            first.min_time
                        )));
                    }
                }
                if b.next > b.first {
                    spans.push(ReplaySpan {
                        env: env.clone(),
                        start: b.first,
                        end: b.next,
                        position: b.first,
                    });
                }
            }
            (Some(from), Some(to))
        }
        _ => {
            return Err(ReplayError::Invalid(
                "give either {\"from\", \"to\"} (ms) or {\"gapId\"}".into(),
            ));
        }
    };
    let total = spans.iter().map(|s| s.end - s.start).sum();
    Ok(ReplayJob {
        id: format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
        integration_id: integ.id.clone(),
        from,
        to,
        gap_id: req.gap_id.clone(),
        spans,
        state: ReplayState::Running,
        delivered_impressions: 0,
        delivered_batches: 0,
        failed_attempts: 0,
        scanned_offsets: 0,
        total_offsets: total,
        lost_offsets: 0,
        pinned: None,
        seq: 0,
        created_at: ctx.now_ms(),
        finished_at: None,
        last_error: None,
    })
}
