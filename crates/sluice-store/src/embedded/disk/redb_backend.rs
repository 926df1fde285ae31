//! [`DiskBackend`]: redb's storage on a [`DiskFile`], so the metadata database can live on
//! the simulated disk in tests. The product opens redb on its own file backend (which
//! also takes redb's file locks); both honour `sync_data` the same way.

use super::DiskFile;
use std::io;

/// A redb [`redb::StorageBackend`] over one [`DiskFile`].
#[derive(Debug)]
pub struct DiskBackend(pub Box<dyn DiskFile>);

impl redb::StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.size()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read_exact_at(out, offset)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write_all_at(data, offset)
    }
}
