//! Queries: deciding which index entries answer a read, a time scan or an ingest-time
//! lookup (in memory, under the environment's read lock), then fetching and verifying
//! their frames with positional reads on a fresh read handle, with no lock held. Only
//! committed entries are ever in the index, so uncommitted bytes are never read.
//!
//! The blocking functions here run on `spawn_blocking` threads.

use super::Counters;
use super::env::{EnvLog, EnvState};
use super::index::IndexEntry;
use super::segment::{self, log_path};
use crate::error::StoreError;
use crate::log::StoredEntry;
use std::io;
use std::sync::atomic::Ordering;

/// Soft cap on the frame bytes one call returns (at least one entry is always returned).
const MAX_READ_BYTES: u64 = 32 << 20;
/// How often a read re-plans after retention or removal pulled a segment from under it.
const MAX_ATTEMPTS: usize = 4;

/// Consecutive (in offset order) index entries of one segment.
struct Span {
    base: u64,
    entries: Vec<IndexEntry>,
}

struct Plan {
    spans: Vec<Span>,
    generation: u64,
}

/// Collects entries into spans until a record or byte budget is reached.
struct Collector {
    spans: Vec<Span>,
    records: usize,
    bytes: u64,
    max_records: usize,
}

impl Collector {
    fn new(max_records: usize) -> Self {
        Collector {
            spans: Vec::new(),
            records: 0,
            bytes: 0,
            max_records,
        }
    }

    /// Adds an entry; returns true once the budget is used up.
    fn push(&mut self, seg_base: u64, e: &IndexEntry) -> bool {
        match self.spans.last_mut() {
            Some(span) if span.base == seg_base => span.entries.push(*e),
            _ => self.spans.push(Span {
                base: seg_base,
                entries: vec![*e],
            }),
        }
        self.records = self.records.saturating_add(e.count as usize);
        self.bytes += e.frame_len();
        self.records >= self.max_records || self.bytes >= MAX_READ_BYTES
    }
}

fn plan_read(st: &EnvState, from: u64, max_records: usize) -> Plan {
    let mut c = Collector::new(max_records);
    let si = st.segments.partition_point(|s| s.end_offset() <= from);
    'segments: for seg in &st.segments[si..] {
        let ei = seg.entries.partition_point(|e| e.end_offset() <= from);
        for e in &seg.entries[ei..] {
            if c.push(seg.base, e) {
                break 'segments;
            }
        }
    }
    Plan {
        spans: c.spans,
        generation: st.generation,
    }
}

/// Plans a time scan segment by segment, taking the read lock once per segment so that a
/// long scan never holds up the writer for long.
fn plan_scan(
    env: &EnvLog,
    counters: &Counters,
    from_ms: i64,
    to_ms: i64,
    after: u64,
    max_records: usize,
) -> Plan {
    let mut c = Collector::new(max_records);
    let generation = env.read().generation;
    let mut cursor = after;
    loop {
        let st = env.read();
        let si = st.segments.partition_point(|s| s.end_offset() <= cursor);
        let Some(seg) = st.segments.get(si) else {
            break;
        };
        // partition_point guarantees seg.end_offset() > cursor: the loop always advances.
        let seg_end = seg.end_offset();
        if !seg.overlaps(from_ms, to_ms) {
            cursor = cursor.max(seg_end);
            continue;
        }
        counters
            .scan_segments_examined
            .fetch_add(1, Ordering::Relaxed);
        let ei = seg.entries.partition_point(|e| e.end_offset() <= cursor);
        let mut examined = 0u64;
        let mut done = false;
        for e in &seg.entries[ei..] {
            examined += 1;
            if e.overlaps(from_ms, to_ms) && c.push(seg.base, e) {
                done = true;
                break;
            }
        }
        counters
            .scan_entries_examined
            .fetch_add(examined, Ordering::Relaxed);
        if done {
            break;
        }
        cursor = cursor.max(seg_end);
    }
    Plan {
        spans: c.spans,
        generation,
    }
}

enum Fetched {
    Entries(Vec<StoredEntry>),
    /// A planned segment vanished (retention or removal): plan again.
    Replan,
}

fn fetch(env: &EnvLog, plan: &Plan) -> Result<Fetched, StoreError> {
    let mut out = Vec::new();
    for span in &plan.spans {
        let path = log_path(&env.dir, span.base);
        let file = match env.disk.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Retention deletes oldest first, so what was read so far is a valid prefix.
                return Ok(if out.is_empty() {
                    Fetched::Replan
                } else {
                    Fetched::Entries(out)
                });
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = segment::read_entries(&*file, &path, &span.entries, &mut out) {
            if env.read().generation != plan.generation {
                return Ok(Fetched::Replan);
            }
            return Err(e);
        }
    }
    Ok(Fetched::Entries(out))
}

fn run(env: &EnvLog, mut plan: impl FnMut() -> Plan) -> Result<Vec<StoredEntry>, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let plan = plan();
        if plan.spans.is_empty() {
            return Ok(Vec::new());
        }
        if let Fetched::Entries(v) = fetch(env, &plan)? {
            return Ok(v);
        }
    }
    Ok(Vec::new())
}

/// [`crate::ImpressionLog::read`], blocking.
pub fn read_blocking(
    env: &EnvLog,
    from: u64,
    max_records: usize,
) -> Result<Vec<StoredEntry>, StoreError> {
    run(env, || plan_read(&env.read(), from, max_records))
}

/// [`crate::ImpressionLog::scan_time`], blocking.
pub fn scan_time_blocking(
    env: &EnvLog,
    counters: &Counters,
    from_ms: i64,
    to_ms: i64,
    after: u64,
    max_records: usize,
) -> Result<Vec<StoredEntry>, StoreError> {
    if from_ms >= to_ms {
        return Ok(Vec::new());
    }
    run(env, || {
        plan_scan(env, counters, from_ms, to_ms, after, max_records)
    })
}

/// The base offset of the first entry ingested at or after `ingest_ms` (else the end).
pub fn offset_at_ingest_time(st: &EnvState, ingest_ms: i64) -> u64 {
    // Only the last segment can be empty, so this predicate is monotone.
    let si = st
        .segments
        .partition_point(|s| s.last_ingest().is_none_or(|t| t < ingest_ms));
    let Some(seg) = st.segments.get(si) else {
        return st.next;
    };
    let ei = seg.entries.partition_point(|e| e.ingest_ms < ingest_ms);
    seg.entries.get(ei).map_or(st.next, |e| e.base_offset)
}
