//! One environment's log in memory: its directory, the committed segment list (what
//! readers may see), and the watch channel of its committed end offset. Also the
//! environment id check that guards every path built from an id.

use super::segment::Segment;
use crate::embedded::disk::Disk;
pub use crate::log::validate_env_id;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::watch;

/// Committed state of one environment's log. Only the environment's writer thread adds
/// entries and segments; retention removes sealed segments from the front.
#[derive(Debug)]
pub struct EnvState {
    /// Segments in offset order; the last one is the active segment.
    pub segments: Vec<Segment>,
    /// Committed end offset: the offset the next appended impression gets.
    pub next: u64,
    /// Ingest time of the last committed entry (`i64::MIN` if none).
    pub last_ingest_ms: i64,
    /// Whether the environment's directory exists on disk.
    pub dir_exists: bool,
    /// Bumped when the log is removed, so a reader that planned against the old log can
    /// tell a recreated file from a corrupt one.
    pub generation: u64,
}

impl EnvState {
    pub fn empty() -> EnvState {
        EnvState {
            segments: Vec::new(),
            next: 0,
            last_ingest_ms: i64::MIN,
            dir_exists: false,
            generation: 0,
        }
    }

    /// Committed bytes on disk over all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// First retained offset (`next` when nothing is retained).
    pub fn first(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.next, |s| s.base.min(self.next))
    }
}

/// One environment's log.
#[derive(Debug)]
pub struct EnvLog {
    pub id: String,
    pub dir: PathBuf,
    /// Which writer thread owns this environment's appends.
    pub writer: usize,
    /// The disk the log's files are on.
    pub disk: Arc<dyn Disk>,
    state: RwLock<EnvState>,
    pub watch: watch::Sender<u64>,
}

impl EnvLog {
    pub fn new(
        id: String,
        root: &Path,
        writer: usize,
        disk: Arc<dyn Disk>,
        state: EnvState,
    ) -> EnvLog {
        let dir = root.join(&id);
        let (watch, _) = watch::channel(state.next);
        EnvLog {
            id,
            dir,
            writer,
            disk,
            state: RwLock::new(state),
            watch,
        }
    }

    /// Read access to the committed state (never fails: a poisoned lock still holds
    /// consistent data because every mutation is a few in-memory assignments).
    pub fn read(&self) -> RwLockReadGuard<'_, EnvState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, EnvState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_ids() {
        for ok in ["a", "prod", "env_1.2-x", &"x".repeat(64)] {
            assert!(validate_env_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "é",
            "a\0",
            &"x".repeat(65),
        ] {
            assert!(validate_env_id(bad).is_err(), "{bad:?}");
        }
    }
}
