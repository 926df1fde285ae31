//! [`SimDisk`]: a simulated disk for power-cut tests. It keeps two states of everything —
//! what programs see (the page cache) and what is durable — the way LazyFS does under
//! Jepsen: a file's content becomes durable at `sync_data`, a directory's entries at
//! `sync_dir`. At a power cut ([`SimDisk::power_cut`], or [`SimDisk::arm_cut`] after a
//! given number of operations, so a cut can land between any two I/O calls) the disk
//! keeps what was durable and, depending on [`CutMode`], some of what was not: a random
//! prefix of each file's unsynced writes with the last one possibly torn, or any subset
//! of them (writes reach the platter in any order, across and within files). Directory
//! changes not synced are kept or lost name by name.
//!
//! Handles (the [`Disk`] and its open files) belong to one power cycle: after a cut every
//! call through an old handle fails with an I/O error, as a dead machine's processes
//! would never return — the test then opens the stores again on [`SimDisk::disk`].
//! Everything is deterministic for a given seed.

use super::{DirEntry, Disk, DiskFile};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What a power cut keeps of the writes that were not fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing: only fsynced data and synced directory entries survive (LazyFS's default).
    LoseUnsynced,
    /// Per file, a random prefix of its unsynced writes, the last kept one possibly torn
    /// (only a prefix of its bytes reaches the disk); per name, any unsynced change.
    KeepPrefix,
    /// Per file, any subset of its unsynced writes (out-of-order write-back leaves holes
    /// of zeros); per name, any unsynced change.
    KeepAnySubset,
}

type NodeId = u64;
const ROOT: NodeId = 0;

#[derive(Debug, Clone)]
enum Pending {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FileNode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Default)]
struct DirNode {
    entries: BTreeMap<String, NodeId>,
    durable: BTreeMap<String, NodeId>,
}

#[derive(Debug)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug)]
struct State {
    nodes: HashMap<NodeId, Node>,
    next_id: NodeId,
    /// Power cycle; handles of an earlier one fail.
    epoch: u64,
    /// Operations left before an armed cut, and how it cuts.
    armed: Option<(u64, CutMode, u64)>,
    /// Operations run (all cycles).
    ops: u64,
    cuts: u64,
}

/// A small deterministic generator (xorshift64*), so a seed replays a cut exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..=n`.
    fn upto(&mut self, n: usize) -> usize {
        (self.next() % (n as u64 + 1)) as usize
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

fn gone() -> io::Error {
    io::Error::other("simulated power cut: this handle's machine is off")
}

fn not_found() -> io::Error {
    io::ErrorKind::NotFound.into()
}

fn names(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(
                n.to_str()
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
                    .to_string(),
            ),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(io::ErrorKind::InvalidInput.into()),
        }
    }
    Ok(out)
}

fn apply(data: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { pos, bytes } => {
            let start = *pos as usize;
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl State {
    fn dir(&self, id: NodeId) -> io::Result<&DirNode> {
        match self.nodes.get(&id) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(io::ErrorKind::NotADirectory.into()),
            None => Err(not_found()),
        }
    }
    fn dir_mut(&mut self, id: NodeId) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&id) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(io::ErrorKind::NotADirectory.into()),
            None => Err(not_found()),
        }
    }
    fn file_mut(&mut self, id: NodeId) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&id) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir(_)) => Err(io::ErrorKind::IsADirectory.into()),
            None => Err(gone()),
        }
    }
    fn lookup(&self, path: &[String]) -> io::Result<NodeId> {
        let mut at = ROOT;
        for n in path {
            at = *self.dir(at)?.entries.get(n).ok_or_else(not_found)?;
        }
        Ok(at)
    }
    /// The parent directory's id and the last name of `path`.
    fn parent<'p>(&self, path: &'p [String]) -> io::Result<(NodeId, &'p str)> {
        let (last, dir) = path
            .split_last()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok((self.lookup(dir)?, last))
    }
    fn add(&mut self, node: Node) -> NodeId {
        self.next_id += 1;
        self.nodes.insert(self.next_id, node);
        self.next_id
    }

    fn cut(&mut self, mode: CutMode, seed: u64) {
        let mut rng = Rng::new(seed);
        self.epoch += 1;
        self.armed = None;
        self.cuts += 1;
        let mut ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        for id in &ids {
            match self.nodes.get_mut(id) {
                Some(Node::Dir(d)) => {
                    let mut after = d.durable.clone();
                    if mode != CutMode::LoseUnsynced {
                        let changed: Vec<String> = d
                            .entries
                            .keys()
                            .chain(d.durable.keys())
                            .filter(|k| d.entries.get(*k) != d.durable.get(*k))
                            .cloned()
                            .collect();
                        for name in changed {
                            if rng.coin() {
                                match d.entries.get(&name) {
                                    Some(&v) => after.insert(name, v),
                                    None => after.remove(&name),
                                };
                            }
                        }
                    }
                    d.entries = after.clone();
                    d.durable = after;
                }
                Some(Node::File(f)) => {
                    let mut data = std::mem::take(&mut f.durable);
                    let pending = std::mem::take(&mut f.pending);
                    match mode {
                        CutMode::LoseUnsynced => {}
                        CutMode::KeepPrefix => {
                            let k = rng.upto(pending.len());
                            for (i, op) in pending[..k].iter().enumerate() {
                                match op {
                                    Pending::Write { pos, bytes } if i + 1 == k && rng.coin() => {
                                        let torn = rng.upto(bytes.len());
                                        apply(
                                            &mut data,
                                            &Pending::Write {
                                                pos: *pos,
                                                bytes: bytes[..torn].to_vec(),
                                            },
                                        );
                                    }
                                    op => apply(&mut data, op),
                                }
                            }
                        }
                        CutMode::KeepAnySubset => {
                            for op in &pending {
                                if rng.coin() {
                                    apply(&mut data, op);
                                }
                            }
                        }
                    }
                    f.data = data.clone();
                    f.durable = data;
                }
                None => {}
            }
        }
        // What no directory names any more is gone.
        let mut reachable = vec![ROOT];
        let mut i = 0;
        while i < reachable.len() {
            if let Some(Node::Dir(d)) = self.nodes.get(&reachable[i]) {
                reachable.extend(d.entries.values().copied());
            }
            i += 1;
        }
        self.nodes.retain(|id, _| reachable.contains(id));
    }
}

/// The simulated disk. Cloning gives another reference to the same disk.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl SimDisk {
    /// An empty disk (one empty root directory).
    pub fn new() -> SimDisk {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        SimDisk {
            state: Arc::new(Mutex::new(State {
                nodes,
                next_id: ROOT,
                epoch: 0,
                armed: None,
                ops: 0,
                cuts: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle for the current power cycle (give it to the stores being opened).
    pub fn disk(&self) -> Arc<dyn Disk> {
        Arc::new(SimHandle {
            state: self.state.clone(),
            epoch: self.lock().epoch,
        })
    }

    /// Cuts the power now: see the module documentation.
    pub fn power_cut(&self, mode: CutMode, seed: u64) {
        self.lock().cut(mode, seed);
    }

    /// Cuts the power just before the `after_ops`-th next disk operation (that operation
    /// and everything after it through this cycle's handles fail).
    pub fn arm_cut(&self, after_ops: u64, mode: CutMode, seed: u64) {
        self.lock().armed = Some((after_ops, mode, seed));
    }

    /// Whether an armed cut is still waiting.
    pub fn is_armed(&self) -> bool {
        self.lock().armed.is_some()
    }

    /// Power cuts so far.
    pub fn cuts(&self) -> u64 {
        self.lock().cuts
    }

    /// Disk operations run so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }
}

#[derive(Debug)]
struct SimHandle {
    state: Arc<Mutex<State>>,
    epoch: u64,
}

/// Locks the state for one operation of a handle of power cycle `epoch`: fails if that
/// cycle is over, or if an armed cut fires now.
fn enter(state: &Mutex<State>, epoch: u64) -> io::Result<MutexGuard<'_, State>> {
    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
    if st.epoch != epoch {
        return Err(gone());
    }
    st.ops += 1;
    if let Some((left, mode, seed)) = st.armed {
        if left == 0 {
            st.cut(mode, seed);
            return Err(gone());
        }
        st.armed = Some((left - 1, mode, seed));
    }
    Ok(st)
}

impl SimHandle {
    fn enter(&self) -> io::Result<MutexGuard<'_, State>> {
        enter(&self.state, self.epoch)
    }

    fn file(&self, node: NodeId, writable: bool) -> Box<dyn DiskFile> {
        Box::new(SimFile {
            state: self.state.clone(),
            epoch: self.epoch,
            node,
            writable,
        })
    }

    fn open(
        &self,
        path: &Path,
        writable: bool,
        create: bool,
        truncate: bool,
    ) -> io::Result<Box<dyn DiskFile>> {
        let path = names(path)?;
        let mut st = self.enter()?;
        let (dir, name) = st.parent(&path)?;
        let existing = st.dir(dir)?.entries.get(name).copied();
        let node = match existing {
            Some(id) => {
                let f = st.file_mut(id)?;
                if truncate && !f.data.is_empty() {
                    f.data.clear();
                    f.pending.push(Pending::SetLen(0));
                }
                id
            }
            None if create => {
                let id = st.add(Node::File(FileNode::default()));
                st.dir_mut(dir)?.entries.insert(name.to_string(), id);
                id
            }
            None => return Err(not_found()),
        };
        Ok(self.file(node, writable))
    }
}

impl Disk for SimHandle {
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, false, false, false)
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, true, false, false)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, true, true, true)
    }
    fn open_or_create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, true, true, false)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = names(path)?;
        let mut st = self.enter()?;
        let id = st.lookup(&path)?;
        Ok(st.file_mut(id)?.data.clone())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (names(from)?, names(to)?);
        let mut st = self.enter()?;
        let (fdir, fname) = st.parent(&from)?;
        let (tdir, tname) = st.parent(&to)?;
        let id = *st.dir(fdir)?.entries.get(fname).ok_or_else(not_found)?;
        if let Some(&old) = st.dir(tdir)?.entries.get(tname)
            && matches!(st.nodes.get(&old), Some(Node::Dir(_)))
        {
            return Err(io::ErrorKind::DirectoryNotEmpty.into());
        }
        st.dir_mut(fdir)?.entries.remove(fname);
        st.dir_mut(tdir)?.entries.insert(tname.to_string(), id);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = names(path)?;
        let mut st = self.enter()?;
        let (dir, name) = st.parent(&path)?;
        let id = *st.dir(dir)?.entries.get(name).ok_or_else(not_found)?;
        if matches!(st.nodes.get(&id), Some(Node::Dir(_))) {
            return Err(io::ErrorKind::IsADirectory.into());
        }
        st.dir_mut(dir)?.entries.remove(name);
        Ok(())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = names(path)?;
        let mut st = self.enter()?;
        let mut at = ROOT;
        for n in &path {
            at = match st.dir(at)?.entries.get(n) {
                Some(&id) => {
                    st.dir(id)?;
                    id
                }
                None => {
                    let id = st.add(Node::Dir(DirNode::default()));
                    st.dir_mut(at)?.entries.insert(n.clone(), id);
                    id
                }
            };
        }
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = names(path)?;
        let mut st = self.enter()?;
        let (dir, name) = st.parent(&path)?;
        st.dir_mut(dir)?
            .entries
            .remove(name)
            .map(drop)
            .ok_or_else(not_found)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let path = names(path)?;
        let st = self.enter()?;
        let id = st.lookup(&path)?;
        Ok(st
            .dir(id)?
            .entries
            .iter()
            .map(|(name, id)| DirEntry {
                name: name.clone(),
                is_dir: matches!(st.nodes.get(id), Some(Node::Dir(_))),
            })
            .collect())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = names(path)?;
        let mut st = self.enter()?;
        let id = st.lookup(&path)?;
        let d = st.dir_mut(id)?;
        d.durable = d.entries.clone();
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    epoch: u64,
    node: NodeId,
    writable: bool,
}

impl SimFile {
    fn enter(&self, write: bool) -> io::Result<MutexGuard<'_, State>> {
        if write && !self.writable {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        enter(&self.state, self.epoch)
    }
}

impl DiskFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let mut st = self.enter(false)?;
        let f = st.file_mut(self.node)?;
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| f.data.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut st = self.enter(true)?;
        let f = st.file_mut(self.node)?;
        let op = Pending::Write {
            pos,
            bytes: buf.to_vec(),
        };
        apply(&mut f.data, &op);
        f.pending.push(op);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        let mut st = self.enter(false)?;
        Ok(st.file_mut(self.node)?.data.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.enter(true)?;
        let f = st.file_mut(self.node)?;
        let op = Pending::SetLen(len);
        apply(&mut f.data, &op);
        f.pending.push(op);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.enter(false)?;
        let f = st.file_mut(self.node)?;
        f.durable = f.data.clone();
        f.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn only_what_was_synced_survives_a_cut() {
        let sim = SimDisk::new();
        let d = sim.disk();
        d.create_dir_all(p("/a")).unwrap();
        d.sync_dir(p("/")).unwrap();
        let f = d.create(p("/a/f")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        d.sync_dir(p("/a")).unwrap();
        f.write_all_at(b" world", 5).unwrap();
        let g = d.create(p("/a/g")).unwrap();
        g.write_all_at(b"unsynced name", 0).unwrap();
        g.sync_data().unwrap();
        sim.power_cut(CutMode::LoseUnsynced, 1);
        // Old handles are dead.
        assert!(f.size().is_err());
        assert!(d.list_dir(p("/a")).is_err());
        let d = sim.disk();
        assert_eq!(d.read(p("/a/f")).unwrap(), b"hello");
        assert_eq!(
            d.read(p("/a/g")).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a file's name needs its directory synced"
        );
    }

    #[test]
    fn a_kept_prefix_may_tear_the_last_write() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let sim = SimDisk::new();
            let d = sim.disk();
            let f = d.create(p("/f")).unwrap();
            d.sync_dir(p("/")).unwrap();
            f.write_all_at(b"abcd", 0).unwrap();
            f.write_all_at(b"efgh", 4).unwrap();
            sim.power_cut(CutMode::KeepPrefix, seed);
            let got = sim.disk().read(p("/f")).unwrap();
            assert!(b"abcdefgh".starts_with(&got), "{got:?}");
            seen.insert(got.len());
        }
        assert_eq!(seen.len(), 9, "every prefix length appears: {seen:?}");
    }

    #[test]
    fn any_subset_leaves_holes() {
        let mut hole = false;
        for seed in 0..100 {
            let sim = SimDisk::new();
            let d = sim.disk();
            let f = d.create(p("/f")).unwrap();
            d.sync_dir(p("/")).unwrap();
            f.write_all_at(b"ab", 0).unwrap();
            f.write_all_at(b"cd", 2).unwrap();
            sim.power_cut(CutMode::KeepAnySubset, seed);
            let got = sim.disk().read(p("/f")).unwrap();
            assert!(
                [&b""[..], b"ab", b"\0\0cd", b"abcd"].contains(&&got[..]),
                "{got:?}"
            );
            hole |= got == b"\0\0cd";
        }
        assert!(hole);
    }

    #[test]
    fn an_armed_cut_fires_at_its_operation() {
        let sim = SimDisk::new();
        let d = sim.disk();
        let f = d.create(p("/f")).unwrap();
        d.sync_dir(p("/")).unwrap();
        sim.arm_cut(2, CutMode::LoseUnsynced, 0);
        f.write_all_at(b"one", 0).unwrap();
        f.sync_data().unwrap();
        assert!(f.write_all_at(b"two", 3).is_err());
        assert!(!sim.is_armed());
        assert_eq!(sim.disk().read(p("/f")).unwrap(), b"one");
    }

    #[test]
    fn renames_and_removals_follow_directory_syncs() {
        let sim = SimDisk::new();
        let d = sim.disk();
        d.create_dir_all(p("/x/y")).unwrap();
        d.sync_dir(p("/")).unwrap();
        d.sync_dir(p("/x")).unwrap();
        let f = d.create(p("/x/y/f")).unwrap();
        f.write_all_at(b"1", 0).unwrap();
        f.sync_data().unwrap();
        d.sync_dir(p("/x/y")).unwrap();
        d.rename(p("/x/y"), p("/x/z")).unwrap();
        d.remove_file(p("/x/z/f")).unwrap();
        assert!(d.read(p("/x/y/f")).is_err());
        sim.power_cut(CutMode::LoseUnsynced, 0);
        let d = sim.disk();
        assert_eq!(d.read(p("/x/y/f")).unwrap(), b"1");
        assert!(d.list_dir(p("/x/z")).is_err());
    }
}
