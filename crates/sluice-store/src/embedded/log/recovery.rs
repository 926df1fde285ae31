//! Start-up recovery of one environment's directory: finds its segments, rebuilds their
//! in-memory indexes and repairs what a crash or bad disk left behind.
//!
//! - Sealed segments are indexed from their sidecar when it checks out (checksum, exact
//!   file length, contiguous offsets, and the first and last frame headers on disk match
//!   it); otherwise they are scanned frame by frame and the sidecar is rewritten.
//! - The last (active) segment is always scanned and checksummed completely. A torn tail
//!   (partial header, partial payload, bad checksum, unexpected offset) is truncated to
//!   the end of the last good frame, with a warning saying how many bytes were dropped.
//! - A bad frame inside a sealed segment is corruption: that segment is truncated there,
//!   later segments are moved aside (renamed `*.log.corrupt`, never read again), and an
//!   error is logged. Offsets continue from the last good entry.
//! - Segments whose base offset overlaps the previous segment are corruption as well; a
//!   gap between segments (e.g. an unlinked old segment reappearing after a crash) is
//!   tolerated and logged.
//!
//! Only genuine I/O errors fail recovery; bad bytes never do.

use super::env::EnvState;
use super::index::{self, IndexEntry};
use super::segment::{self, Segment, idx_path, log_path};
use crate::embedded::disk::{Disk, DiskFile};
use crate::error::StoreError;
use std::io;
use std::path::Path;
use tracing::{error, info, warn};

/// Recovers the log in `dir` for environment `env` (used only in log messages).
pub fn recover_env(disk: &dyn Disk, dir: &Path, env: &str) -> Result<EnvState, StoreError> {
    let mut bases = Vec::new();
    let mut idx_bases = Vec::new();
    for entry in disk.list_dir(dir)? {
        let name = entry.name.as_str();
        if let Some(base) = segment::parse_log_name(name) {
            bases.push(base);
        } else if let Some(base) = segment::parse_idx_name(name) {
            idx_bases.push(base);
        } else if name.ends_with(".idx.tmp") {
            remove_quietly(disk, &dir.join(name));
        }
    }
    bases.sort_unstable();
    // Sidecars without a segment are leftovers of retention interrupted by a crash.
    for base in idx_bases {
        if bases.binary_search(&base).is_err() {
            remove_quietly(disk, &idx_path(dir, base));
        }
    }

    let mut segments: Vec<Segment> = Vec::new();
    let mut dir_changed = false;
    let mut i = 0;
    while i < bases.len() {
        let base = bases[i];
        let is_last = i + 1 == bases.len();
        let path = log_path(dir, base);
        if let Some(prev) = segments.last() {
            let prev_end = prev.end_offset();
            if base < prev_end {
                error!(env, segment = %path.display(), prev_end, "log segment overlaps the previous one; the log stops before it");
                quarantine(disk, dir, &bases[i..]);
                dir_changed = true;
                break;
            }
            if base > prev_end {
                warn!(env, segment = %path.display(), missing_from = prev_end, "gap in the log before this segment (offsets {prev_end}..{base} are missing)");
            }
        }
        let file = disk.open_read(&path)?;
        let file_len = file.size()?;
        if !is_last {
            if let Some(entries) = load_sidecar(disk, dir, base, &*file, file_len)? {
                segments.push(Segment::from_entries(base, file_len, entries));
                i += 1;
                continue;
            }
        } else {
            // The active segment is always scanned; an old sidecar for it is stale.
            remove_quietly(disk, &idx_path(dir, base));
        }
        let scan = segment::scan_file(&*file, base, file_len)?;
        drop(file);
        match scan.problem {
            None if is_last => segments.push(Segment::from_entries(base, file_len, scan.entries)),
            None if scan.entries.is_empty() => {
                warn!(env, segment = %path.display(), "removing an empty sealed log segment");
                remove_quietly(disk, &path);
                remove_quietly(disk, &idx_path(dir, base));
                dir_changed = true;
            }
            None => {
                info!(env, segment = %path.display(), "rebuilt log segment index");
                if let Err(e) =
                    index::write_sidecar(disk, &idx_path(dir, base), base, file_len, &scan.entries)
                {
                    warn!(env, segment = %path.display(), error = %e, "could not write segment index sidecar");
                }
                segments.push(Segment::from_entries(base, file_len, scan.entries));
            }
            Some(problem) => {
                let dropped = file_len - scan.good_len;
                if is_last {
                    warn!(env, segment = %path.display(), dropped_bytes = dropped, kept_bytes = scan.good_len, %problem, "truncating torn tail of the log");
                } else {
                    error!(
                        env,
                        segment = %path.display(),
                        dropped_bytes = dropped,
                        later_segments = bases.len() - i - 1,
                        %problem,
                        "corrupt entry inside a sealed log segment; the log stops there and later segments are moved aside"
                    );
                    remove_quietly(disk, &idx_path(dir, base));
                    quarantine(disk, dir, &bases[i + 1..]);
                    dir_changed = true;
                }
                truncate(disk, &path, scan.good_len);
                segments.push(Segment::from_entries(base, scan.good_len, scan.entries));
                break;
            }
        }
        i += 1;
    }
    if dir_changed && let Err(e) = disk.sync_dir(dir) {
        warn!(env, error = %e, "could not sync log directory after recovery");
    }
    let next = segments.last().map_or(0, Segment::end_offset);
    let last_ingest_ms = segments
        .iter()
        .rev()
        .find_map(Segment::last_ingest)
        .unwrap_or(i64::MIN);
    Ok(EnvState {
        segments,
        next,
        last_ingest_ms,
        dir_exists: true,
        generation: 0,
    })
}

/// The index of a sealed segment from its sidecar, if the sidecar checks out.
fn load_sidecar(
    disk: &dyn Disk,
    dir: &Path,
    base: u64,
    file: &dyn DiskFile,
    file_len: u64,
) -> io::Result<Option<Vec<IndexEntry>>> {
    let bytes = match disk.read(&idx_path(dir, base)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            warn!(segment = base, error = %e, "cannot read segment index sidecar; rebuilding it");
            return Ok(None);
        }
    };
    let Some(entries) = index::decode_sidecar(&bytes, base, file_len) else {
        warn!(dir = %dir.display(), segment = base, "segment index sidecar is invalid; rebuilding it");
        return Ok(None);
    };
    for e in [entries.first(), entries.last()].into_iter().flatten() {
        if !segment::header_matches(file, e)? {
            warn!(dir = %dir.display(), segment = base, "segment index sidecar does not match the segment; rebuilding it");
            return Ok(None);
        }
    }
    Ok(Some(entries))
}

/// Cuts a segment file back to `len` bytes. On failure the writer retries before its
/// first write (it always compares the file length with the committed length).
fn truncate(disk: &dyn Disk, path: &Path, len: u64) {
    let res = disk.open_rw(path).and_then(|f| {
        f.set_len(len)?;
        f.sync_data()
    });
    if let Err(e) = res {
        error!(segment = %path.display(), error = %e, "could not truncate log segment; retried before the next append");
    }
}

/// Moves segments out of the log (renamed `<base>.log.corrupt`) and drops their sidecars.
fn quarantine(disk: &dyn Disk, dir: &Path, bases: &[u64]) {
    for &base in bases {
        let path = log_path(dir, base);
        let target = path.with_extension("log.corrupt");
        if let Err(e) = disk.rename(&path, &target) {
            error!(segment = %path.display(), error = %e, "could not move a log segment aside; deleting it");
            remove_quietly(disk, &path);
        }
        remove_quietly(disk, &idx_path(dir, base));
    }
}

fn remove_quietly(disk: &dyn Disk, path: &Path) {
    match disk.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), error = %e, "could not remove a log file"),
    }
}
