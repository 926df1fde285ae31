//! Reading a replay's span and keeping only what it replays: for a window replay, the
//! impressions whose `time` is in the window.

use super::ReplayJob;
use crate::context::DeliveryCtx;
use crate::encode::{EncodedBody, encode_batch};
use sluice_core::model::Integration;
use sluice_core::record::decode_entry;
use sluice_store::{StoreError, StoredEntry};

/// Reads the impressions of `[from, to)` of `env` that fall in the job's window.
pub(super) async fn collect(
    ctx: &DeliveryCtx,
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
pub(super) fn encode_window(
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
