//! Retention: deleting whole sealed segments that are too old, or the oldest sealed
//! segments of an environment whose log is over its size budget. The active (last)
//! segment of an environment is never deleted.
//!
//! A segment leaves the in-memory segment list (so readers stop planning reads of it)
//! before its files are unlinked; a reader that already opened it keeps reading it, one
//! that had only planned to re-plans from the new first offset.

use super::Shared;
use super::env::EnvLog;
use super::segment::{idx_path, log_path};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::{info, warn};

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
}

/// Applies the retention policy to every environment as of `now_ms`.
pub(crate) fn enforce(shared: &Shared, now_ms: i64) -> RetentionReport {
    let mut report = RetentionReport::default();
    for env in shared.all_envs() {
        enforce_env(shared, &env, now_ms, &mut report);
    }
    if report.segments_deleted > 0 {
        shared
            .counters
            .segments_deleted
            .fetch_add(report.segments_deleted, Ordering::Relaxed);
        metrics::counter!("sluice_log_retention_deleted_segments_total")
            .increment(report.segments_deleted);
        metrics::counter!("sluice_log_retention_deleted_bytes_total")
            .increment(report.bytes_deleted);
        info!(
            segments = report.segments_deleted,
            bytes = report.bytes_deleted,
            "log retention deleted segments"
        );
    }
    report
}

fn enforce_env(shared: &Shared, env: &Arc<EnvLog>, now_ms: i64, report: &mut RetentionReport) {
    let opts = &shared.opts;
    let cutoff = now_ms.saturating_sub(opts.retention_ms);
    let doomed: Vec<(u64, u64)> = {
        let mut st = env.write();
        let mut size = st.bytes();
        let mut n = 0;
        // `n + 1 <` keeps the active segment.
        while n + 1 < st.segments.len() {
            let seg = &st.segments[n];
            let too_old = seg.last_ingest().is_none_or(|t| t < cutoff);
            let too_big = opts.retention_bytes_per_env.is_some_and(|max| size > max);
            if !too_old && !too_big {
                break;
            }
            size -= seg.len;
            n += 1;
        }
        st.segments.drain(..n).map(|s| (s.base, s.len)).collect()
    };
    if doomed.is_empty() {
        return;
    }
    for (base, len) in doomed {
        shared.release(len);
        report.segments_deleted += 1;
        report.bytes_deleted += len;
        for path in [log_path(&env.dir, base), idx_path(&env.dir, base)] {
            match env.disk.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not delete an expired log segment")
                }
            }
        }
    }
    // Not needed for correctness (a resurrected old segment is simply deleted again),
    // but keeps the on-disk state close to the in-memory one after a crash.
    if let Err(e) = env.disk.sync_dir(&env.dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(env = %env.id, error = %e, "could not sync log directory after retention");
    }
}
