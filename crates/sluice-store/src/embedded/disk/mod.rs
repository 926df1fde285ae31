//! The file-system layer under the embedded stores: every file the segment log and the
//! metadata database write goes through [`Disk`] and [`DiskFile`], so that a test can put
//! them on [`SimDisk`], a simulated disk that loses what was not fsynced at a power cut
//! (the way LazyFS does for Jepsen, in process, as in FoundationDB's simulation).
//!
//! The product uses [`OsDisk`]: each method is one `std::fs` call, and a file is a
//! `std::fs::File` behind a `Box<dyn DiskFile>` — one virtual call per system call and no
//! extra copy of any buffer (writes and reads take the caller's slices).

mod os;
mod redb_backend;
mod sim;

pub use os::OsDisk;
pub use redb_backend::DiskBackend;
pub use sim::{CutMode, SimDisk};

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// One open file. Positional I/O only (no cursor), so a handle can be shared by threads.
pub trait DiskFile: Send + Sync + Debug {
    /// Fills `buf` from `pos`; `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos` (not durable until [`DiskFile::sync_data`]).
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Current length in bytes (including writes not yet durable).
    fn size(&self) -> io::Result<u64>;
    /// Cuts or extends (with zeros) the file (not durable until `sync_data`).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's content and length durable (`fdatasync`). Its name in its
    /// directory is durable only after [`Disk::sync_dir`] of that directory.
    fn sync_data(&self) -> io::Result<()>;
}

/// A directory entry: its name and whether it is a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// The file-system operations the embedded stores use. Names created, renamed or removed
/// are durable only after [`Disk::sync_dir`] of their directory.
pub trait Disk: Send + Sync + Debug {
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Creates a file (emptied if it exists) for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens a file for reading and writing, creating it if absent.
    fn open_or_create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Atomically renames a file or directory (replacing a file at `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The entries of a directory (names that are not UTF-8 are left out), in no order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes a directory's entries (created, renamed, removed names) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// Creates `dir` (and missing parents) durably: every directory on the way is synced
/// into its parent, so a power cut right after start-up cannot lose the store's directory
/// (and with it everything acknowledged in it). Found by the power-cut simulation.
pub fn create_dir_durable(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    disk.create_dir_all(dir)?;
    sync_parents(disk, dir)
}

/// Syncs every ancestor directory of `path`, so its name (and theirs) is durable.
pub fn sync_parents(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    for parent in path.ancestors().skip(1) {
        if parent.as_os_str().is_empty() {
            // A relative path: its first directory is named in the working directory.
            disk.sync_dir(Path::new("."))?;
            break;
        }
        disk.sync_dir(parent)?;
    }
    Ok(())
}

/// The disk the product runs on.
pub fn os() -> Arc<dyn Disk> {
    Arc::new(OsDisk)
}

/// A read-only file over bytes in memory (what the fuzz targets scan as a segment).
#[derive(Debug)]
pub struct BytesFile<'a>(pub &'a [u8]);

impl DiskFile for BytesFile<'_> {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::ErrorKind::PermissionDenied.into())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(io::ErrorKind::PermissionDenied.into())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}
