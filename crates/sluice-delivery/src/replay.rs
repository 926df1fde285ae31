//! Replays: redelivering a window of impressions to an integration on request
//! (`POST /v1/integrations/{id}/replay`), either every impression of the integration's
//! environments whose `time` is in `[from, to)`, or exactly the offsets of a recorded gap.
//!
//! A replay runs on its own task with its own HTTP client: it never blocks live delivery
//! and never moves the live cursor. Its batches carry their own stable ids
//! (`msg_r<job><seq>`): the batch in flight is pinned (offset span + id) in the job record
//! before it is sent, so a retry or a restart resends the same impressions under the same
//! id. Progress is persisted after every delivered batch; running jobs resume at start-up.
//! At most one replay runs per integration.

use crate::encode::{EncodedBody, encode_batch};
use crate::engine::EngineCtx;
use crate::gaps::Gap;
use crate::http::send;
use crate::request::build_request;
use crate::shared::{AttemptInfo, IntegrationShared};
use crate::worker::now_ms;
use serde::{Deserialize, Serialize};
use sluice_core::model::Integration;
use sluice_core::record::decode_entry;
use sluice_store::{Bucket, Expect, MetaStore, StoreError, StoredEntry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PinnedBatch {
    pub id: String,
    pub env: String,
    /// Offsets `[from, to)` the batch was cut from (filtered by the window).
    pub from: u64,
    pub to: u64,
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
    /// `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    pub delivered_impressions: u64,
    pub delivered_batches: u64,
    pub failed_attempts: u64,
    /// Offsets scanned so far / to scan in all (progress).
    pub scanned_offsets: u64,
    pub total_offsets: u64,
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
    let bytes = serde_json::to_vec(job).map_err(|e| StoreError::Meta(e.to_string()))?;
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
        .map(|(k, v)| {
            serde_json::from_slice(&v.value).map_err(|e| StoreError::Corrupt(format!("{k}: {e}")))
        })
        .collect()
}

/// Reads the impressions of `[from, to)` of `env` that fall in the job's window.
async fn collect(
    ctx: &EngineCtx,
    job: &ReplayJob,
    env: &str,
    from: u64,
    to: u64,
) -> Result<Vec<StoredEntry>, StoreError> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let entries = match (job.from, job.to) {
            (Some(f), Some(t)) => {
                ctx.log
                    .scan_time(env, f, t, pos, (to - pos) as usize)
                    .await?
            }
            _ => ctx.log.read(env, pos, (to - pos) as usize).await?,
        };
        let Some(last) = entries.last() else { break };
        let next = last.end_offset();
        out.extend(
            entries
                .into_iter()
                .filter(|e| e.end_offset() > pos && e.base_offset < to),
        );
        if next <= pos {
            break;
        }
        pos = next;
    }
    Ok(out)
}

/// Keeps only the records whose time is in the window by rebuilding entries' payloads is
/// costly; instead the encoder is given the window and skips others.
fn encode_window(
    job: &ReplayJob,
    env: &str,
    entries: &[StoredEntry],
    from: u64,
    to: u64,
    integ: &Integration,
) -> EncodedBody {
    match (job.from, job.to) {
        (Some(f), Some(t)) => {
            // Re-encode each entry keeping only records in the window.
            let filtered: Vec<StoredEntry> = entries
                .iter()
                .filter_map(|e| filter_entry(e, f, t, from, to))
                .collect();
            let lo = filtered.first().map_or(from, |e| e.base_offset);
            let hi = filtered.last().map_or(to, |e| e.end_offset());
            encode_batch(
                env,
                &filtered,
                lo,
                hi,
                integ.effective_format(),
                integ.effective_gzip(),
            )
        }
        _ => encode_batch(
            env,
            entries,
            from,
            to,
            integ.effective_format(),
            integ.effective_gzip(),
        ),
    }
}

/// An entry reduced to its records with `time` in `[f, t)` and offset in `[from, to)`,
/// renumbered densely (offsets only matter for the encoder's range check).
fn filter_entry(e: &StoredEntry, f: i64, t: i64, from: u64, to: u64) -> Option<StoredEntry> {
    use sluice_core::impression::{Context, ImpressionIn};
    let d = decode_entry(&e.payload).ok()?;
    let ctxs: Vec<Context<'_>> = d
        .contexts
        .iter()
        .map(|c| Context {
            environment_name: c.environment_name.into(),
            sdk: c.sdk.into(),
            sdk_version: c.sdk_version.into(),
            machine_name: c.machine_name.map(Into::into),
            machine_ip: c.machine_ip.map(Into::into),
        })
        .collect();
    let imps: Vec<(usize, ImpressionIn<'_>)> = d
        .records
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            let off = e.base_offset + *i as u64;
            r.time >= f && r.time < t && off >= from && off < to
        })
        .map(|(_, r)| {
            (
                r.ctx,
                ImpressionIn {
                    key: r.key.into(),
                    split: r.split.into(),
                    treatment: r.treatment.into(),
                    time: r.time,
                    bucketing_key: r.bucketing_key.map(Into::into),
                    label: r.label.map(Into::into),
                    change_number: r.change_number,
                    properties: r.properties.map(Into::into),
                },
            )
        })
        .collect();
    if imps.is_empty() {
        return None;
    }
    let enc = sluice_core::record::encode_entry(&ctxs, imps.iter().map(|(c, i)| (*c, i)));
    Some(StoredEntry {
        base_offset: e.base_offset,
        count: enc.count,
        ingest_ms: e.ingest_ms,
        min_time: enc.min_time,
        max_time: enc.max_time,
        payload: enc.payload.into(),
    })
}

/// Runs a job to completion (or until stopped). Errors are recorded in the job.
pub(crate) async fn run(
    ctx: Arc<EngineCtx>,
    integ: Arc<Integration>,
    shared: Arc<IntegrationShared>,
    client: reqwest::Client,
    mut job: ReplayJob,
    mut stop: watch::Receiver<bool>,
) {
    let max = u64::from(integ.max_batch_impressions);
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        // Pin the next batch (or re-use the pinned one after a restart).
        if job.pinned.is_none() {
            let Some(span) = job.spans.iter().position(|s| s.position < s.end) else {
                job.state = "done".into();
                job.finished_at = Some(now_ms());
                job.pinned = None;
                let _ = save_job(ctx.meta.as_ref(), &job).await;
                if let Some(gap) = &job.gap_id {
                    close_gap(ctx.meta.as_ref(), &job.integration_id, gap, &job.id).await;
                }
                tracing::info!(integration = %job.integration_id, job = %job.id, impressions = job.delivered_impressions, "replay done");
                return;
            };
            // A window replay jumps to the next entry that overlaps its window (time index).
            if let (Some(f), Some(t)) = (job.from, job.to) {
                let s = &job.spans[span];
                match ctx.log.scan_time(&s.env, f, t, s.position, 1).await {
                    Ok(entries) => {
                        let next = entries
                            .iter()
                            .find(|e| e.end_offset() > s.position)
                            .map_or(s.end, |e| e.base_offset.max(s.position));
                        let skipped = next.min(s.end) - s.position;
                        job.scanned_offsets += skipped;
                        job.spans[span].position = next.min(job.spans[span].end);
                        if skipped > 0 {
                            continue;
                        }
                    }
                    Err(e) => {
                        job.last_error = Some(e.to_string());
                        tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.changed() => return }
                        continue;
                    }
                }
            }
            let s = &job.spans[span];
            // Cut at most `max` offsets at a time; a window replay may find fewer matches.
            let to = (s.position + max).min(s.end);
            job.seq += 1;
            job.pinned = Some(PinnedBatch {
                id: format!("msg_r{}{:08}", job.id, job.seq),
                env: s.env.clone(),
                from: s.position,
                to,
            });
            if let Err(e) = save_job(ctx.meta.as_ref(), &job).await {
                tracing::warn!(error = %e, "cannot save replay progress");
            }
        }
        let Some(p) = job.pinned.clone() else {
            continue;
        };
        let body = match collect(&ctx, &job, &p.env, p.from, p.to).await {
            Ok(entries) => {
                let (j, env, i) = (job.clone(), p.env.clone(), integ.clone());
                match tokio::task::spawn_blocking(move || {
                    encode_window(&j, &env, &entries, p.from, p.to, &i)
                })
                .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        job.last_error = Some(format!("encoding failed: {e}"));
                        continue;
                    }
                }
            }
            Err(e) => {
                job.last_error = Some(e.to_string());
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.changed() => return }
                continue;
            }
        };
        if body.count > 0 {
            // Wait while an operator has paused the integration.
            let mut manual = shared.manual_pause.subscribe();
            while *manual.borrow_and_update() {
                tokio::select! { _ = manual.changed() => {}, _ = stop.changed() => return }
            }
            let started_ms = now_ms();
            let req = build_request(&integ, &p.id, &body, started_ms / 1000);
            let outcome = {
                let _permit = if job.failed_attempts > 0 {
                    ctx.degraded.clone().acquire_owned().await.ok()
                } else {
                    None
                };
                tokio::select! {
                    o = send(&client, &ctx.opts.policy, &req, ctx.opts.max_response_bytes) => o,
                    _ = stop.changed() => return,
                }
            };
            shared.record_attempt(
                AttemptInfo {
                    integration_id: &integ.id,
                    batch_id: &p.id,
                    environment_id: &p.env,
                    impressions: body.count,
                    bytes: body.wire.len(),
                    started_ms,
                    kind: "replay",
                },
                &outcome,
            );
            if !outcome.is_delivered() {
                job.failed_attempts += 1;
                job.last_error = outcome
                    .error
                    .clone()
                    .or(outcome.status.map(|s| format!("HTTP {s}")));
                let _ = save_job(ctx.meta.as_ref(), &job).await;
                let wait = outcome
                    .retry_after
                    .unwrap_or(backoff)
                    .min(Duration::from_millis(integ.protection.max_cooldown_ms));
                backoff = (backoff * 2).min(Duration::from_secs(60));
                tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = stop.changed() => return }
                continue;
            }
            backoff = Duration::from_secs(1);
            job.delivered_impressions += u64::from(body.count);
            job.delivered_batches += 1;
        }
        if let Some(s) = job.spans.iter_mut().find(|s| s.env == p.env) {
            s.position = p.to;
        }
        job.scanned_offsets += p.to - p.from;
        job.pinned = None;
        if let Err(e) = save_job(ctx.meta.as_ref(), &job).await {
            tracing::warn!(error = %e, "cannot save replay progress");
        }
    }
}

async fn close_gap(meta: &dyn MetaStore, integration: &str, gap_id: &str, job: &str) {
    let key = format!("{integration}/{gap_id}");
    if let Ok(Some(v)) = meta.get(Bucket::Gaps, &key).await
        && let Ok(mut gap) = serde_json::from_slice::<Gap>(&v.value)
    {
        gap.closed_by = Some(job.to_owned());
        if let Ok(bytes) = serde_json::to_vec(&gap) {
            let _ = meta
                .put(Bucket::Gaps, &key, bytes, Expect::Revision(v.revision))
                .await;
        }
    }
}
