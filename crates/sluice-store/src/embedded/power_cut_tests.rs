//! Power-cut simulation of the embedded stores (LazyFS as Jepsen uses it, in process, in
//! the manner of FoundationDB's simulation): the segment log and the redb metadata live on
//! one [`SimDisk`]; a randomized sequence of operations — ingest (concurrent appends),
//! pinning a batch, delivering it (cursor saves), retention, power cuts at any disk
//! operation keeping only what was fsynced (or a torn prefix, or any subset, of what was
//! not) — runs against them and a model. After every cut the stores are opened again on
//! the surviving disk and checked:
//!
//! - every acknowledged append is read back at its offsets with its exact bytes (unless
//!   retention removed it before the cut);
//! - every entry read decodes and is one that was submitted (no torn or foreign bytes are
//!   ever served), and offsets never go backwards;
//! - a saved cursor and a pinned batch's range are never ahead of the log's end;
//! - a pinned batch keeps its id, and its range reads back the same entries;
//! - a cursor write that was acknowledged survives (redb commits with immediate
//!   durability); one cut mid-write is either old or new, never anything else.

use super::disk::{CutMode, SimDisk};
use super::log::{LogOptions, SegmentLog};
use super::meta::RedbMeta;
use crate::log::{AppendEntry, ImpressionLog};
use crate::meta::{Bucket, Expect, MetaStore};
use proptest::prelude::*;
use sluice_core::impression::{Context, ImpressionIn};
use sluice_core::record;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

const ENVS: [&str; 2] = ["e0", "e1"];
const LOG_DIR: &str = "/data/log";
const META_FILE: &str = "/data/meta.redb";

#[derive(Debug, Clone)]
enum Op {
    /// Concurrent appends to one environment, one per element (impressions per entry).
    Ingest { env: usize, sizes: Vec<u32> },
    /// Pins the next batch of at most `max` impressions (when none is pinned).
    Pin { env: usize, max: u32 },
    /// Delivers the pinned batch: the cursor moves past it.
    Deliver { env: usize },
    /// Retention now, or as if far in the future (every sealed segment expires).
    Retention { expire_all: bool },
    /// Arms a power cut before the `after`-th next disk operation.
    Arm {
        after: u16,
        mode: CutMode,
        seed: u64,
    },
    /// Cuts the power now.
    Cut { mode: CutMode, seed: u64 },
}

fn mode() -> impl Strategy<Value = CutMode> {
    prop_oneof![
        Just(CutMode::LoseUnsynced),
        Just(CutMode::KeepPrefix),
        Just(CutMode::KeepAnySubset),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ENVS.len(), prop::collection::vec(1u32..5, 1..5))
            .prop_map(|(env, sizes)| Op::Ingest { env, sizes }),
        3 => (0..ENVS.len(), 1u32..12).prop_map(|(env, max)| Op::Pin { env, max }),
        3 => (0..ENVS.len()).prop_map(|env| Op::Deliver { env }),
        1 => any::<bool>().prop_map(|expire_all| Op::Retention { expire_all }),
        2 => (0u16..60, mode(), any::<u64>()).prop_map(|(after, mode, seed)| Op::Arm { after, mode, seed }),
        1 => (mode(), any::<u64>()).prop_map(|(mode, seed)| Op::Cut { mode, seed }),
    ]
}

/// A cursor record as saved in the metadata store: position and the pinned batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CursorRec {
    pos: u64,
    /// `(batch id, from, to)`.
    pin: Option<(u64, u64, u64)>,
}

impl CursorRec {
    fn encode(&self) -> Vec<u8> {
        let (id, from, to) = self.pin.unwrap_or((0, 0, 0));
        [self.pos, u64::from(self.pin.is_some()), id, from, to]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }
    fn decode(b: &[u8]) -> CursorRec {
        assert_eq!(b.len(), 40, "a cursor record is never torn");
        let at = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        CursorRec {
            pos: at(0),
            pin: (at(1) == 1).then(|| (at(2), at(3), at(4))),
        }
    }
}

/// An entry as appended: `(base offset, count, payload)`.
type Entry = (u64, u32, Vec<u8>);

#[derive(Debug, Default)]
struct EnvModel {
    /// Acknowledged appends by base offset.
    acked: BTreeMap<u64, Entry>,
    /// Every payload ever submitted (acknowledged or not).
    submitted: HashSet<Vec<u8>>,
    /// Offsets below this were removed by retention (acknowledged or not).
    retained_from: u64,
    /// What the cursor record may be after a cut: the last saved one, plus the one being
    /// written when the save failed.
    cursor: Vec<CursorRec>,
    /// The entries of the pinned batch, as read when it was pinned.
    pinned_entries: Vec<Entry>,
}

struct World {
    sim: SimDisk,
    log: Option<SegmentLog>,
    meta: Option<RedbMeta>,
    envs: Vec<EnvModel>,
    serial: u64,
    next_batch_id: u64,
    cuts_seen: u64,
}

fn log_opts() -> LogOptions {
    LogOptions {
        segment_bytes: 700,
        retention_bytes_per_env: Some(3000),
        writer_threads: 1,
        retention_interval: std::time::Duration::ZERO,
        ..LogOptions::default()
    }
}

fn payload(serial: u64, env: &str, n: u32) -> AppendEntry {
    let ctx = [Context {
        environment_name: Cow::Borrowed(env),
        sdk: Cow::Borrowed("sim"),
        sdk_version: Cow::Borrowed("1"),
        machine_name: None,
        machine_ip: None,
    }];
    let imps: Vec<ImpressionIn<'static>> = (0..n)
        .map(|i| ImpressionIn {
            key: Cow::Owned(format!("k-{serial}-{i}")),
            split: Cow::Borrowed("s"),
            treatment: Cow::Borrowed("on"),
            time: 1_700_000_000_000 + i64::from(i),
            bucketing_key: None,
            label: None,
            change_number: serial as i64,
            properties: None,
        })
        .collect();
    record::encode_entry(&ctx, imps.iter().map(|i| (0, i))).into()
}

impl World {
    fn new() -> World {
        let mut w = World {
            sim: SimDisk::new(),
            log: None,
            meta: None,
            envs: ENVS
                .iter()
                .map(|_| EnvModel {
                    cursor: vec![CursorRec { pos: 0, pin: None }],
                    ..EnvModel::default()
                })
                .collect(),
            serial: 0,
            next_batch_id: 1,
            cuts_seen: 0,
        };
        w.open();
        w
    }

    fn open(&mut self) {
        let disk = self.sim.disk();
        self.log = Some(SegmentLog::open_on(disk.clone(), Path::new(LOG_DIR), log_opts()).unwrap());
        self.meta = Some(RedbMeta::open_on(&*disk, Path::new(META_FILE)).unwrap());
    }

    fn log(&self) -> &SegmentLog {
        self.log.as_ref().unwrap()
    }

    fn meta(&self) -> &RedbMeta {
        self.meta.as_ref().unwrap()
    }

    async fn run(&mut self, op: &Op) {
        match op {
            Op::Ingest { env, sizes } => self.ingest(*env, sizes).await,
            Op::Pin { env, max } => self.pin(*env, *max).await,
            Op::Deliver { env } => self.deliver(*env).await,
            Op::Retention { expire_all } => {
                let now = if *expire_all {
                    i64::MAX / 2
                } else {
                    super::log::now_ms()
                };
                self.log().enforce_retention(now);
                for (i, env) in ENVS.iter().enumerate() {
                    let first = self.log().bounds(env).await.unwrap().first;
                    let m = &mut self.envs[i];
                    m.retained_from = m.retained_from.max(first);
                }
            }
            Op::Arm { after, mode, seed } => self.sim.arm_cut(u64::from(*after), *mode, *seed),
            Op::Cut { mode, seed } => self.sim.power_cut(*mode, *seed),
        }
        if self.sim.cuts() > self.cuts_seen {
            self.cuts_seen = self.sim.cuts();
            self.restart_and_check().await;
        }
    }

    async fn ingest(&mut self, env: usize, sizes: &[u32]) {
        let name = ENVS[env];
        let mut pending = Vec::new();
        for &n in sizes {
            self.serial += 1;
            let entry = payload(self.serial, name, n);
            self.envs[env].submitted.insert(entry.payload.clone());
            pending.push(entry);
        }
        let log = self.log();
        let results =
            futures_util::future::join_all(pending.iter().map(|e| log.append(name, e.clone())))
                .await;
        for (e, r) in pending.into_iter().zip(results) {
            if let Ok(receipt) = r {
                assert_eq!(
                    receipt.next_offset - receipt.base_offset,
                    u64::from(e.count)
                );
                self.envs[env].acked.insert(
                    receipt.base_offset,
                    (receipt.base_offset, e.count, e.payload),
                );
            }
        }
    }

    /// The current cursor record (certain between operations: a cut restarts at once).
    fn cursor(&self, env: usize) -> CursorRec {
        let c = &self.envs[env].cursor;
        assert_eq!(c.len(), 1);
        c[0].clone()
    }

    async fn save(&mut self, env: usize, rec: CursorRec) -> bool {
        let r = self
            .meta()
            .put(Bucket::Cursors, ENVS[env], rec.encode(), Expect::Any)
            .await;
        let m = &mut self.envs[env];
        if r.is_ok() {
            m.cursor = vec![rec];
            true
        } else {
            m.cursor.push(rec);
            false
        }
    }

    async fn pin(&mut self, env: usize, max: u32) {
        let cur = self.cursor(env);
        if cur.pin.is_some() {
            return;
        }
        let Ok(entries) = self.log().read(ENVS[env], cur.pos, max as usize).await else {
            return;
        };
        let mut batch: Vec<Entry> = Vec::new();
        let mut n = 0u32;
        for e in entries {
            if e.base_offset < cur.pos || n >= max {
                continue;
            }
            n += e.count;
            batch.push((e.base_offset, e.count, e.payload.to_vec()));
        }
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let rec = CursorRec {
            pos: cur.pos,
            pin: Some((id, first.0, last.0 + u64::from(last.1))),
        };
        self.envs[env].pinned_entries = batch;
        self.save(env, rec).await;
    }

    async fn deliver(&mut self, env: usize) {
        let cur = self.cursor(env);
        let Some((_, _, to)) = cur.pin else { return };
        self.save(env, CursorRec { pos: to, pin: None }).await;
    }

    /// Opens the stores again on what survived the cut and checks every invariant.
    async fn restart_and_check(&mut self) {
        if let Some(log) = self.log.take() {
            tokio::task::spawn_blocking(move || log.close())
                .await
                .unwrap();
        }
        drop(self.meta.take());
        self.open();
        for (i, name) in ENVS.iter().enumerate() {
            let bounds = self.log().bounds(name).await.unwrap();
            let mut all = Vec::new();
            let mut from = bounds.first;
            loop {
                let got = self.log().read(name, from, 1000).await.unwrap();
                let Some(last) = got.last() else { break };
                from = last.end_offset();
                all.extend(got.into_iter().filter(|e| e.end_offset() > bounds.first));
            }
            let m = &self.envs[i];
            let mut prev_end = 0;
            for e in &all {
                assert!(
                    e.base_offset >= prev_end,
                    "{name}: offsets go backwards at {}",
                    e.base_offset
                );
                prev_end = e.end_offset();
                let decoded = record::decode_entry(&e.payload).unwrap_or_else(|err| {
                    panic!("{name}: corrupt entry at {}: {err}", e.base_offset)
                });
                assert_eq!(decoded.records.len() as u32, e.count);
                assert!(
                    m.submitted.contains(&e.payload[..]),
                    "{name}: entry at {} was never submitted",
                    e.base_offset
                );
            }
            assert_eq!(
                prev_end.max(bounds.first),
                bounds.next,
                "{name}: the end is the last entry's end"
            );
            let by_base: BTreeMap<u64, &crate::log::StoredEntry> =
                all.iter().map(|e| (e.base_offset, e)).collect();
            for (base, (_, count, payload)) in &m.acked {
                if *base < m.retained_from {
                    continue;
                }
                let e = by_base.get(base).unwrap_or_else(|| {
                    panic!("{name}: acknowledged entry at {base} lost (log {bounds:?})")
                });
                assert_eq!(
                    (e.count, &e.payload[..]),
                    (*count, &payload[..]),
                    "{name}: entry at {base} changed"
                );
            }

            let saved = self
                .meta()
                .get(Bucket::Cursors, name)
                .await
                .unwrap()
                .map_or(CursorRec { pos: 0, pin: None }, |v| {
                    CursorRec::decode(&v.value)
                });
            assert!(
                m.cursor.contains(&saved),
                "{name}: cursor {saved:?} is none of the possible {:?}",
                m.cursor
            );
            assert!(
                saved.pos <= bounds.next,
                "{name}: cursor {} ahead of the log end {}",
                saved.pos,
                bounds.next
            );
            if let Some((id, from, to)) = saved.pin {
                assert!(
                    to <= bounds.next,
                    "{name}: pinned batch {id} ({from}..{to}) ahead of the log end {}",
                    bounds.next
                );
                if from >= m.retained_from {
                    let again: Vec<Entry> = all
                        .iter()
                        .filter(|e| e.base_offset >= from && e.base_offset < to)
                        .map(|e| (e.base_offset, e.count, e.payload.to_vec()))
                        .collect();
                    assert_eq!(
                        again, m.pinned_entries,
                        "{name}: pinned batch {id} reads back different entries"
                    );
                }
            }
            let m = &mut self.envs[i];
            m.cursor = vec![saved];
            // Appends that survived without an acknowledgement are part of the log now.
            for e in &all {
                m.acked
                    .entry(e.base_offset)
                    .or_insert_with(|| (e.base_offset, e.count, e.payload.to_vec()));
            }
            // Offsets past the recovered end were never acknowledged; new appends reuse them.
            m.acked.retain(|base, _| *base < bounds.next);
            m.retained_from = m.retained_from.min(bounds.next);
        }
    }
}

fn run_case(ops: &[Op]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut w = World::new();
        for op in ops {
            w.run(op).await;
        }
        // Always end with a cut that loses everything not fsynced.
        w.sim.power_cut(CutMode::LoseUnsynced, 0);
        w.cuts_seen = w.sim.cuts();
        w.restart_and_check().await;
        assert!(w.sim.cuts() >= 1);
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn acknowledged_writes_survive_any_power_cut(ops in prop::collection::vec(op(), 1..60)) {
        run_case(&ops);
    }
}

/// A fixed scenario that cuts in the middle of every kind of write, so the interesting
/// paths are covered whatever the random cases draw.
#[test]
fn a_cut_at_every_operation_of_a_fixed_scenario() {
    let scenario = |cut_at: u16, mode: CutMode| {
        vec![
            Op::Ingest {
                env: 0,
                sizes: vec![3, 2, 4],
            },
            Op::Pin { env: 0, max: 4 },
            Op::Arm {
                after: cut_at,
                mode,
                seed: u64::from(cut_at),
            },
            Op::Ingest {
                env: 0,
                sizes: vec![1, 4, 2, 3],
            },
            Op::Ingest {
                env: 1,
                sizes: vec![2],
            },
            Op::Deliver { env: 0 },
            Op::Pin { env: 0, max: 6 },
            Op::Ingest {
                env: 0,
                sizes: vec![4, 4, 4, 4],
            },
            Op::Retention { expire_all: false },
            Op::Deliver { env: 0 },
        ]
    };
    for mode in [
        CutMode::LoseUnsynced,
        CutMode::KeepPrefix,
        CutMode::KeepAnySubset,
    ] {
        for cut_at in 0..80 {
            run_case(&scenario(cut_at, mode));
        }
    }
}

/// The disk layer adds no copy on the product's path: appends through [`SegmentLog::open`]
/// still land on the real file system and read back.
#[test]
fn the_os_disk_still_serves_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = Arc::new(SegmentLog::open(dir.path(), log_opts()).unwrap());
        let r = log.append("e0", payload(1, "e0", 3)).await.unwrap();
        assert_eq!((r.base_offset, r.next_offset), (0, 3));
        let got = log.read("e0", 0, 10).await.unwrap();
        assert_eq!(got.len(), 1);
    });
}
