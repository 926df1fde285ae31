//! Behavioural tests of [`SegmentLog`] against real files: round trips across segment
//! rolls, group commit, reopen, torn tails, corruption, failed writes, retention, the
//! time index and sidecar rebuilding.

use super::frame::HEADER_LEN;
use super::index;
use super::segment::{idx_path, log_path, parse_log_name};
use super::*;
use crate::log::{AppendEntry, ImpressionLog, StoredEntry};
use std::sync::atomic::Ordering;

const ENV: &str = "env-1";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn opts(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        retention_interval: Duration::ZERO,
        ..LogOptions::default()
    }
}

/// Deterministic pseudo-random payload bytes.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn entry(seed: u64, count: u32, len: usize) -> AppendEntry {
    let t = seed as i64 * 1000;
    AppendEntry {
        payload: payload(seed, len),
        count,
        min_time: t,
        max_time: t + 500,
    }
}

fn entry_at(seed: u64, count: u32, len: usize, min_time: i64, max_time: i64) -> AppendEntry {
    AppendEntry {
        payload: payload(seed, len),
        count,
        min_time,
        max_time,
    }
}

/// Reads everything from `from` to the end.
async fn read_all(log: &SegmentLog, env: &str, from: u64) -> Vec<StoredEntry> {
    let mut out: Vec<StoredEntry> = Vec::new();
    let mut at = from;
    loop {
        let batch = log.read(env, at, 7).await.unwrap();
        let Some(last) = batch.last() else { break };
        at = last.end_offset();
        for e in batch {
            if out.last().is_none_or(|p| p.end_offset() <= e.base_offset) {
                out.push(e);
            }
        }
    }
    out
}

fn assert_same(stored: &[StoredEntry], appended: &[(u64, AppendEntry)]) {
    assert_eq!(stored.len(), appended.len(), "entry count");
    for (s, (base, a)) in stored.iter().zip(appended) {
        assert_eq!(s.base_offset, *base);
        assert_eq!(s.count, a.count);
        assert_eq!(s.min_time, a.min_time);
        assert_eq!(s.max_time, a.max_time);
        assert_eq!(&s.payload[..], &a.payload[..], "payload of entry at {base}");
    }
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse_log_name(e.unwrap().file_name().to_str()?))
        .collect();
    v.sort_unstable();
    v
}

/// Appends `entries` one by one, returning (base offset, entry) pairs.
async fn append_all(
    log: &SegmentLog,
    env: &str,
    entries: Vec<AppendEntry>,
) -> Vec<(u64, AppendEntry)> {
    let mut out = Vec::new();
    for e in entries {
        let r = log.append(env, e.clone()).await.unwrap();
        assert_eq!(r.next_offset - r.base_offset, u64::from(e.count));
        out.push((r.base_offset, e));
    }
    out
}

#[tokio::test]
async fn round_trip_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(1024)).unwrap();
    let entries: Vec<_> = (0..60)
        .map(|i| entry(i, (i % 7 + 1) as u32, (i as usize * 37) % 700))
        .collect();
    let appended = append_all(&log, ENV, entries).await;
    // Offsets are dense and monotonic.
    let mut expect = 0;
    for (base, e) in &appended {
        assert_eq!(*base, expect);
        expect += u64::from(e.count);
    }
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds {
            first: 0,
            next: expect
        }
    );
    assert!(
        segment_files(&dir.path().join(ENV)).len() > 5,
        "segments rolled"
    );
    assert_same(&read_all(&log, ENV, 0).await, &appended);

    // Reading from inside an entry starts with that entry; the budget is honoured.
    for (base, e) in &appended {
        for from in [*base, *base + u64::from(e.count) - 1] {
            let got = log.read(ENV, from, 1).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].base_offset, *base);
        }
    }
    let got = log.read(ENV, 0, 20).await.unwrap();
    let records: u64 = got.iter().map(|e| u64::from(e.count)).sum();
    assert!(records >= 20 && records - u64::from(got.last().unwrap().count) < 20);
    assert!(log.read(ENV, expect, 100).await.unwrap().is_empty());
    assert!(log.read(ENV, expect + 1000, 100).await.unwrap().is_empty());
    assert_eq!(
        log.read(ENV, 0, 0).await.unwrap().len(),
        1,
        "at least one entry"
    );
    let stats = log.stats();
    assert_eq!(stats.entries_appended, 60);
    assert_eq!(stats.total_bytes, stats.bytes_appended);
}

#[tokio::test]
async fn missing_logs_and_invalid_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(1024)).unwrap();
    assert_eq!(log.bounds("nope").await.unwrap(), LogBounds::default());
    assert!(log.read("nope", 0, 10).await.unwrap().is_empty());
    assert!(
        log.scan_time("nope", 0, 10, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(log.offset_at_ingest_time("nope", 5).await.unwrap(), 0);
    log.remove("nope").await.unwrap();
    for bad in ["", "../x", "a/b", ".hidden", "..", "x y"] {
        assert!(log.append(bad, entry(1, 1, 10)).await.is_err(), "{bad:?}");
        assert!(log.read(bad, 0, 1).await.is_err());
        assert!(log.bounds(bad).await.is_err());
        assert!(log.remove(bad).await.is_err());
        assert_eq!(*log.subscribe(bad).borrow(), 0);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
    // An empty entry consumes no offsets and writes nothing.
    let r = log
        .append(
            ENV,
            AppendEntry {
                payload: vec![],
                count: 0,
                min_time: 0,
                max_time: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!((r.base_offset, r.next_offset), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentLog::open(dir.path(), opts(64 << 10)).unwrap());
    let envs = ["a", "b", "c"];
    let tasks = 240u64;
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks as usize));
    let mut handles = Vec::new();
    for i in 0..tasks {
        let (log, barrier) = (log.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            let env = envs[(i % 3) as usize];
            let e = entry(i, (i % 5 + 1) as u32, 200 + (i as usize % 50));
            barrier.wait().await;
            let r = log.append(env, e.clone()).await.unwrap();
            (env, r.base_offset, e)
        }));
    }
    let mut per_env: HashMap<&str, Vec<(u64, AppendEntry)>> = HashMap::new();
    for h in handles {
        let (env, base, e) = h.await.unwrap();
        per_env.entry(env).or_default().push((base, e));
    }
    for env in envs {
        let mut appended = per_env.remove(env).unwrap();
        appended.sort_by_key(|(b, _)| *b);
        let mut expect = 0;
        for (base, e) in &appended {
            assert_eq!(*base, expect, "dense offsets in {env}");
            expect += u64::from(e.count);
        }
        assert_eq!(log.bounds(env).await.unwrap().next, expect);
        assert_same(&read_all(&log, env, 0).await, &appended);
    }
    let stats = log.stats();
    assert_eq!(stats.entries_appended, tasks);
    assert!(
        stats.rounds < tasks,
        "rounds {} should be fewer than appends {tasks}",
        stats.rounds
    );
    assert!(
        stats.fsyncs < tasks,
        "fsyncs {} should be fewer than appends {tasks}",
        stats.fsyncs
    );

    // Everything survives a reopen.
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(64 << 10)).unwrap();
    let mut total = 0;
    for env in envs {
        total += read_all(&log, env, 0).await.len();
    }
    assert_eq!(total, tasks as usize);
}

#[tokio::test]
async fn reopen_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut appended = Vec::new();
    for round in 0..3u64 {
        let log = SegmentLog::open(dir.path(), opts(2048)).unwrap();
        assert_same(&read_all(&log, ENV, 0).await, &appended);
        let more = (0..15).map(|i| entry(round * 100 + i, 3, 300)).collect();
        appended.extend(append_all(&log, ENV, more).await);
        log.close();
        // Appending after close is refused, not lost.
        assert!(matches!(
            log.append(ENV, entry(1, 1, 1)).await,
            Err(StoreError::Unavailable { .. })
        ));
    }
    let log = SegmentLog::open(dir.path(), opts(2048)).unwrap();
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds {
            first: 0,
            next: 135
        }
    );
    assert_same(&read_all(&log, ENV, 0).await, &appended);
}

#[tokio::test]
async fn subscribe_sees_committed_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(1024)).unwrap();
    let mut rx = log.subscribe(ENV);
    assert_eq!(*rx.borrow_and_update(), 0);
    log.append(ENV, entry(1, 4, 10)).await.unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 4);
    log.append(ENV, entry(2, 2, 10)).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), 6);
}

/// Copies the single environment directory of a closed log into a fresh root.
fn copy_log(src: &Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    std::fs::create_dir(dst.path().join(ENV)).unwrap();
    for e in std::fs::read_dir(src.join(ENV)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.path().join(ENV).join(e.file_name())).unwrap();
    }
    dst
}

/// Recovery after damaging the last entry: exactly the earlier entries survive and new
/// appends continue at the damaged entry's offset.
async fn check_recovers_before_last(
    root: &Path,
    appended: &[(u64, AppendEntry)],
    seg_bytes: u64,
    seg: (u64, u64),
) {
    let log = SegmentLog::open(root, opts(seg_bytes)).unwrap();
    // The damaged segment was cut back to the end of the last good entry.
    let (seg_base, last_pos) = seg;
    assert_eq!(
        std::fs::metadata(log_path(&root.join(ENV), seg_base))
            .unwrap()
            .len(),
        last_pos
    );
    let keep = &appended[..appended.len() - 1];
    let last_base = appended[appended.len() - 1].0;
    assert_eq!(log.bounds(ENV).await.unwrap().next, last_base);
    assert_same(&read_all(&log, ENV, 0).await, keep);
    let r = log.append(ENV, entry(999, 2, 50)).await.unwrap();
    assert_eq!(r.base_offset, last_base);
    log.close();
    let log = SegmentLog::open(root, opts(seg_bytes)).unwrap();
    let all = read_all(&log, ENV, 0).await;
    assert_eq!(all.len(), appended.len());
    assert_eq!(all.last().unwrap().base_offset, last_base);
    assert_eq!(&all.last().unwrap().payload[..], &payload(999, 50)[..]);
}

async fn torn_tail_case(seg_bytes: u64, n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
    let entries = (0..n).map(|i| entry(i, 2, 150)).collect();
    let appended = append_all(&log, ENV, entries).await;
    drop(log);
    let env_dir = dir.path().join(ENV);
    let last_seg = *segment_files(&env_dir).last().unwrap();
    let seg_path = log_path(&env_dir, last_seg);
    let full = std::fs::metadata(&seg_path).unwrap().len();
    let last_len = (HEADER_LEN + 150) as u64;
    let last_pos = full - last_len;

    // Truncation anywhere inside the last entry (header and payload).
    let mut cuts: Vec<u64> = (0..=HEADER_LEN as u64 + 3).collect();
    cuts.extend([60, 100, 149, 170, last_len - 1]);
    for cut in cuts {
        let copy = copy_log(dir.path());
        let p = log_path(&copy.path().join(ENV), last_seg);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(last_pos + cut)
            .unwrap();
        check_recovers_before_last(copy.path(), &appended, seg_bytes, (last_seg, last_pos)).await;
    }
    // A flipped byte in the last entry's payload, header fields, or checksum; and
    // garbage after a complete entry.
    for at in [HEADER_LEN as u64 + 7, last_len - 1, 4, 9, 13, 17, 30, 45] {
        let copy = copy_log(dir.path());
        let p = log_path(&copy.path().join(ENV), last_seg);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[(last_pos + at) as usize] ^= 0x40;
        std::fs::write(&p, bytes).unwrap();
        check_recovers_before_last(copy.path(), &appended, seg_bytes, (last_seg, last_pos)).await;
    }
}

#[tokio::test]
async fn torn_tail_in_single_segment() {
    torn_tail_case(1 << 20, 8).await;
}

#[tokio::test]
async fn torn_tail_when_last_entry_starts_a_segment() {
    // 198-byte frames, 400-byte segments: two entries per segment, the 7th alone in the last.
    torn_tail_case(400, 7).await;
}

#[tokio::test]
async fn garbage_after_last_entry_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(1 << 20)).unwrap();
    let appended = append_all(&log, ENV, (0..4).map(|i| entry(i, 1, 40)).collect()).await;
    drop(log);
    let p = log_path(&dir.path().join(ENV), 0);
    let good = std::fs::metadata(&p).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 1000]).unwrap();
    drop(f);
    let log = SegmentLog::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), good);
    assert_same(&read_all(&log, ENV, 0).await, &appended);
    assert_eq!(
        log.append(ENV, entry(9, 1, 1)).await.unwrap().base_offset,
        4
    );
}

#[tokio::test]
async fn corruption_in_a_sealed_segment_stops_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let seg_bytes = 600; // three 198-byte frames per segment
    let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
    let appended = append_all(&log, ENV, (0..15).map(|i| entry(i, 2, 150)).collect()).await;
    drop(log);
    let env_dir = dir.path().join(ENV);
    let segs = segment_files(&env_dir);
    assert_eq!(segs, vec![0, 6, 12, 18, 24]);
    // Damage the second entry of the second segment (offsets 8..10).
    let p = log_path(&env_dir, 6);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[198 + HEADER_LEN + 20] ^= 1;
    std::fs::write(&p, &bytes).unwrap();

    // While the sidecar vouches for the segment, start-up trusts it and the read reports
    // the damage instead of returning bad bytes.
    {
        let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
        assert_eq!(log.bounds(ENV).await.unwrap().next, 30);
        assert!(matches!(
            log.read(ENV, 8, 1).await,
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(log.read(ENV, 6, 1).await.unwrap()[0].base_offset, 6);
    }
    // Without a sidecar, start-up scans the segment, finds the damage and stops the log.
    std::fs::remove_file(idx_path(&env_dir, 6)).unwrap();
    let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds { first: 0, next: 8 }
    );
    assert_same(&read_all(&log, ENV, 0).await, &appended[..4]);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 198);
    assert_eq!(segment_files(&env_dir), vec![0, 6]);
    assert!(
        log_path(&env_dir, 12)
            .with_extension("log.corrupt")
            .exists()
    );
    let r = log.append(ENV, entry(77, 3, 10)).await.unwrap();
    assert_eq!(r.base_offset, 8);
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
    assert_eq!(log.bounds(ENV).await.unwrap().next, 11);
}

#[tokio::test]
async fn a_missing_middle_segment_leaves_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(600)).unwrap();
    let appended = append_all(&log, ENV, (0..9).map(|i| entry(i, 2, 150)).collect()).await;
    drop(log);
    let env_dir = dir.path().join(ENV);
    std::fs::remove_file(log_path(&env_dir, 6)).unwrap();
    let log = SegmentLog::open(dir.path(), opts(600)).unwrap();
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds { first: 0, next: 18 }
    );
    let got = read_all(&log, ENV, 0).await;
    let expect: Vec<_> = appended
        .iter()
        .filter(|(b, _)| !(6..12).contains(b))
        .cloned()
        .collect();
    assert_same(&got, &expect);
    assert_eq!(log.read(ENV, 7, 1).await.unwrap()[0].base_offset, 12);
}

#[tokio::test]
async fn failed_write_is_invisible_and_the_log_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(1000)).unwrap();
    let mut appended = append_all(&log, ENV, (0..2).map(|i| entry(i, 2, 100)).collect()).await;
    let p = log_path(&dir.path().join(ENV), 0);
    let committed = std::fs::metadata(&p).unwrap().len();

    log.shared.fail_writes.store(1, Ordering::Relaxed);
    let mut rx = log.subscribe(ENV);
    rx.borrow_and_update();
    let err = log.append(ENV, entry(50, 5, 100)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(!rx.has_changed().unwrap());
    assert!(
        std::fs::metadata(&p).unwrap().len() > committed,
        "bytes reached the file"
    );
    assert_eq!(log.bounds(ENV).await.unwrap().next, 4);
    assert_same(&read_all(&log, ENV, 0).await, &appended);

    // The next append truncates the failed bytes away and takes the same offsets.
    appended.extend(append_all(&log, ENV, vec![entry(51, 1, 30)]).await);
    assert_eq!(appended[2].0, 4);
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        committed + (HEADER_LEN + 30) as u64
    );
    assert_same(&read_all(&log, ENV, 0).await, &appended);

    // A failure while rolling to a new segment removes the half-made segment file.
    let big = entry(52, 2, 900);
    log.shared.fail_writes.store(1, Ordering::Relaxed);
    assert!(log.append(ENV, big.clone()).await.is_err());
    assert!(
        !log_path(&dir.path().join(ENV), 5).exists(),
        "aborted segment file removed"
    );
    appended.extend(append_all(&log, ENV, vec![big]).await);
    assert_eq!(appended[3].0, 5);
    assert_eq!(segment_files(&dir.path().join(ENV)), vec![0, 5]);
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(1000)).unwrap();
    assert_same(&read_all(&log, ENV, 0).await, &appended);
    assert_eq!(
        log.stats().total_bytes,
        3 * HEADER_LEN as u64 + 230 + HEADER_LEN as u64 + 900
    );
}

#[tokio::test]
async fn retention_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let o = LogOptions {
        retention_bytes_per_env: Some(1000),
        ..opts(400)
    };
    let log = SegmentLog::open(dir.path(), o.clone()).unwrap();
    let appended = append_all(&log, ENV, (0..10).map(|i| entry(i, 2, 150)).collect()).await;
    append_all(&log, "other", (0..2).map(|i| entry(i, 1, 10)).collect()).await;
    let env_dir = dir.path().join(ENV);
    assert_eq!(segment_files(&env_dir), vec![0, 4, 8, 12, 16]);
    let now = now_ms();

    // Size: 5 segments of 396 bytes; keep deleting the oldest while over 1000 bytes.
    let report = log.enforce_retention(now);
    assert_eq!(
        report,
        RetentionReport {
            segments_deleted: 3,
            bytes_deleted: 3 * 396
        }
    );
    assert_eq!(segment_files(&env_dir), vec![12, 16]);
    assert!(!idx_path(&env_dir, 0).exists());
    // What `/metrics` reports per environment follows retention.
    let usage = log.usage();
    assert_eq!(
        usage.iter().map(|u| u.env.as_str()).collect::<Vec<_>>(),
        [ENV, "other"],
        "in id order"
    );
    let env_usage = usage.iter().find(|u| u.env == ENV).unwrap();
    assert_eq!((env_usage.segments, env_usage.bytes), (2, 2 * 396));
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds {
            first: 12,
            next: 20
        }
    );
    assert_same(&read_all(&log, ENV, 0).await, &appended[6..]);
    assert_eq!(log.offset_at_ingest_time(ENV, 0).await.unwrap(), 12);

    // Age: nothing is old yet; a week later every sealed segment goes, never the active one.
    let o = LogOptions {
        retention_bytes_per_env: None,
        ..o
    };
    drop(log);
    let log = SegmentLog::open(dir.path(), o).unwrap();
    assert_eq!(log.enforce_retention(now + DAY_MS).segments_deleted, 0);
    let report = log.enforce_retention(now + 8 * DAY_MS);
    assert_eq!(report.segments_deleted, 1);
    assert_eq!(segment_files(&env_dir), vec![16]);
    assert_eq!(
        segment_files(&dir.path().join("other")),
        vec![0],
        "active segment kept"
    );
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds {
            first: 16,
            next: 20
        }
    );
    assert_same(&read_all(&log, ENV, 3).await, &appended[8..]);
    assert_eq!(log.stats().segments_deleted, 1);
    let r = log.append(ENV, entry(5, 1, 1)).await.unwrap();
    assert_eq!(r.base_offset, 20);
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(400)).unwrap();
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds {
            first: 16,
            next: 21
        }
    );
}

#[tokio::test]
async fn storage_full_and_retention_making_room() {
    let dir = tempfile::tempdir().unwrap();
    let frame = (HEADER_LEN + 150) as u64;
    let o = LogOptions {
        max_total_bytes: Some(5 * frame),
        ..opts(400)
    };
    let log = SegmentLog::open(dir.path(), o).unwrap();
    append_all(&log, ENV, (0..5).map(|i| entry(i, 1, 150)).collect()).await;
    let err = log.append(ENV, entry(5, 1, 150)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Unavailable {
                cause: crate::error::Transient::Full,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(log.bounds(ENV).await.unwrap().next, 5);
    // Even a small entry is refused while the budget is used up.
    assert!(log.append(ENV, entry(6, 1, 0)).await.is_err());
    drop(log);

    // With a per-environment size budget, retention frees room and appends keep working.
    let o = LogOptions {
        max_total_bytes: Some(5 * frame),
        retention_bytes_per_env: Some(3 * frame),
        ..opts(400)
    };
    let log = SegmentLog::open(dir.path(), o).unwrap();
    for i in 0..20 {
        log.append(ENV, entry(i, 1, 150)).await.unwrap();
        assert!(log.stats().total_bytes <= 5 * frame);
    }
    assert_eq!(log.bounds(ENV).await.unwrap().next, 25);
}

#[tokio::test]
async fn remove_deletes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(400)).unwrap();
    append_all(&log, ENV, (0..6).map(|i| entry(i, 2, 150)).collect()).await;
    append_all(&log, "keep", vec![entry(1, 1, 1)]).await;
    let rx = log.subscribe(ENV);
    log.remove(ENV).await.unwrap();
    assert!(!dir.path().join(ENV).exists());
    assert_eq!(log.bounds(ENV).await.unwrap(), LogBounds::default());
    assert!(log.read(ENV, 0, 10).await.unwrap().is_empty());
    assert_eq!(*rx.borrow(), 0);
    assert_eq!(log.stats().total_bytes, (HEADER_LEN + 1) as u64);
    let r = log.append(ENV, entry(9, 3, 10)).await.unwrap();
    assert_eq!(r.base_offset, 0);
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(400)).unwrap();
    assert_eq!(log.bounds(ENV).await.unwrap().next, 3);
    assert_eq!(log.bounds("keep").await.unwrap().next, 1);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no trash left"
    );
}

#[tokio::test]
async fn offset_at_ingest_time_finds_first_entry_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(500)).unwrap();
    for i in 0..12 {
        log.append(ENV, entry(i, 3, 100)).await.unwrap();
        if i % 3 == 2 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    let stored = read_all(&log, ENV, 0).await;
    assert!(stored.windows(2).all(|w| w[0].ingest_ms <= w[1].ingest_ms));
    assert!(stored.first().unwrap().ingest_ms < stored.last().unwrap().ingest_ms);
    for probe in stored
        .iter()
        .flat_map(|e| [e.ingest_ms - 1, e.ingest_ms, e.ingest_ms + 1])
    {
        let expect = stored
            .iter()
            .find(|e| e.ingest_ms >= probe)
            .map_or(36, |e| e.base_offset);
        assert_eq!(
            log.offset_at_ingest_time(ENV, probe).await.unwrap(),
            expect,
            "probe {probe}"
        );
    }
    assert_eq!(log.offset_at_ingest_time(ENV, i64::MIN).await.unwrap(), 0);
    assert_eq!(log.offset_at_ingest_time(ENV, i64::MAX).await.unwrap(), 36);
}

#[tokio::test]
async fn scan_time_returns_overlapping_entries_and_skips_segments() {
    let dir = tempfile::tempdir().unwrap();
    // 148-byte frames, three per 450-byte segment; entry i covers [i*100, i*100+50].
    let log = SegmentLog::open(dir.path(), opts(450)).unwrap();
    let n = 30u64;
    let entries = (0..n)
        .map(|i| entry_at(i, 2, 100, i as i64 * 100, i as i64 * 100 + 50))
        .collect();
    let appended = append_all(&log, ENV, entries).await;
    assert_eq!(segment_files(&dir.path().join(ENV)).len(), 10);

    let scan = |from_ms: i64, to_ms: i64, after: u64, max: usize| {
        log.scan_time(ENV, from_ms, to_ms, after, max)
    };
    let expect = |from_ms: i64, to_ms: i64| -> Vec<u64> {
        appended
            .iter()
            .filter(|(_, e)| e.min_time < to_ms && e.max_time >= from_ms)
            .map(|(b, _)| *b)
            .collect()
    };

    // A narrow window in the middle: only its segment's entries are examined.
    let before = log.stats();
    let got = scan(1220, 1330, 0, 1000).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.base_offset).collect::<Vec<_>>(),
        expect(1220, 1330)
    );
    assert_eq!(
        got.iter().map(|e| e.base_offset).collect::<Vec<_>>(),
        vec![24, 26]
    );
    let after = log.stats();
    assert_eq!(
        after.scan_segments_examined - before.scan_segments_examined,
        1
    );
    assert_eq!(
        after.scan_entries_examined - before.scan_entries_examined,
        3
    );
    assert_same(&got, &appended[12..14]);

    // Windows of all kinds, paged with small budgets, match a brute-force filter.
    for (from_ms, to_ms) in [
        (0, 1),
        (50, 51),
        (51, 100),
        (0, 3000),
        (-100, 0),
        (2950, 9999),
        (3000, 4000),
        (740, 2210),
    ] {
        let mut got = Vec::new();
        let mut at = 0;
        loop {
            let page = scan(from_ms, to_ms, at, 3).await.unwrap();
            let Some(last) = page.last() else { break };
            at = last.end_offset();
            got.extend(page.iter().map(|e| e.base_offset));
        }
        assert_eq!(got, expect(from_ms, to_ms), "window [{from_ms}, {to_ms})");
    }
    // `after` inside an entry includes that entry; an empty window is empty.
    assert_eq!(scan(0, 100_000, 25, 1).await.unwrap()[0].base_offset, 24);
    assert!(scan(500, 500, 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sidecar_index_missing_or_garbage_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), opts(500)).unwrap();
    let appended = append_all(
        &log,
        ENV,
        (0..20)
            .map(|i| entry(i, 1 + i as u32 % 3, 50 + i as usize * 7))
            .collect(),
    )
    .await;
    drop(log);
    let env_dir = dir.path().join(ENV);
    let segs = segment_files(&env_dir);
    assert!(segs.len() >= 6);
    let sealed = &segs[..segs.len() - 1];
    for &b in sealed {
        assert!(
            idx_path(&env_dir, b).exists(),
            "sidecar of sealed segment {b}"
        );
    }
    // Missing, garbage, short, swapped with another segment's, and stale (wrong length).
    std::fs::remove_file(idx_path(&env_dir, sealed[0])).unwrap();
    std::fs::write(
        idx_path(&env_dir, sealed[1]),
        b"garbage garbage garbage garbage garbage",
    )
    .unwrap();
    let good = std::fs::read(idx_path(&env_dir, sealed[2])).unwrap();
    std::fs::write(idx_path(&env_dir, sealed[2]), &good[..good.len() / 2]).unwrap();
    std::fs::copy(idx_path(&env_dir, sealed[4]), idx_path(&env_dir, sealed[3])).unwrap();
    let p = log_path(&env_dir, sealed[4]);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::write(
        idx_path(&env_dir, sealed[4]),
        index::encode_sidecar(sealed[4], len - 10, &[]),
    )
    .unwrap();

    let log = SegmentLog::open(dir.path(), opts(500)).unwrap();
    assert_same(&read_all(&log, ENV, 0).await, &appended);
    for &b in sealed {
        let bytes = std::fs::read(idx_path(&env_dir, b)).unwrap();
        let seg_len = std::fs::metadata(log_path(&env_dir, b)).unwrap().len();
        assert!(
            index::decode_sidecar(&bytes, b, seg_len).is_some(),
            "sidecar {b} rebuilt"
        );
    }
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(500)).unwrap();
    assert_same(&read_all(&log, ENV, 0).await, &appended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_concurrently_with_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentLog::open(dir.path(), opts(4096)).unwrap());
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                log.append(ENV, entry(i, 2, 300)).await.unwrap();
            }
        })
    };
    let mut rx = log.subscribe(ENV);
    let mut at = 0;
    while at < 300 {
        let end = *rx.borrow_and_update();
        for e in log.read(ENV, at, 1000).await.unwrap() {
            assert!(e.end_offset() <= end.max(log.bounds(ENV).await.unwrap().next));
            assert_eq!(&e.payload[..], &payload(e.base_offset / 2, 300)[..]);
            at = e.end_offset();
        }
        if at < 300 && at >= *rx.borrow() {
            rx.changed().await.unwrap();
        }
    }
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_flushes_queued_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentLog::open(dir.path(), opts(4096)).unwrap());
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            log.append(ENV, entry(i, 1, 64)).await
        }));
    }
    let closer = log.clone();
    tokio::task::spawn_blocking(move || closer.close())
        .await
        .unwrap();
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Unavailable { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    drop(log);
    let log = SegmentLog::open(dir.path(), opts(4096)).unwrap();
    assert_eq!(
        log.bounds(ENV).await.unwrap().next,
        ok,
        "every acknowledged append is stored"
    );
}

#[tokio::test]
async fn background_retention_runs_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let o = LogOptions {
        retention_bytes_per_env: Some(400),
        retention_interval: Duration::from_millis(10),
        ..opts(400)
    };
    let log = SegmentLog::open(dir.path(), o).unwrap();
    append_all(&log, ENV, (0..8).map(|i| entry(i, 1, 150)).collect()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.stats().segments_deleted < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention thread did not run"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        log.bounds(ENV).await.unwrap(),
        LogBounds { first: 6, next: 8 }
    );
    let t = std::time::Instant::now();
    log.close();
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// Child half of [`acknowledged_appends_survive_kill_9`]: appends forever, printing each
/// acknowledgement. Runs only when started by that test.
#[test]
#[ignore = "run as a child process by acknowledged_appends_survive_kill_9"]
fn kill9_child() {
    let Ok(dir) = std::env::var("SLUICE_LOG_KILL9_DIR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = Arc::new(SegmentLog::open(Path::new(&dir), opts(16 << 10)).unwrap());
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let env = ["k0", "k1"][(t % 2) as usize];
                for i in 0.. {
                    let seed = t * 1_000_000 + i;
                    let len = (seed as usize * 131) % 3000;
                    let r = log
                        .append(env, entry(seed, 1 + (i % 4) as u32, len))
                        .await
                        .unwrap();
                    println!("ack {env} {} {} {seed} {len}", r.base_offset, r.next_offset);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_appends_survive_kill_9() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedded::log::tests::kill9_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SLUICE_LOG_KILL9_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The reader owns the child so that it is SIGKILLed while still appending (before
        // its stdout closes).
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 6 && f[0] == "ack" {
                    let n = |i: usize| f[i].parse::<u64>().unwrap();
                    acks.push((f[1].to_string(), n(2), n(3), n(4), n(5) as usize));
                }
                if acks.len() >= 300 + round * 50 {
                    break;
                }
            }
            child.kill().unwrap(); // SIGKILL, mid-write
            child.wait().unwrap();
            acks
        });
        let acks = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert!(!acks.is_empty(), "child produced no acknowledgements");

        let log = SegmentLog::open(dir.path(), opts(16 << 10)).unwrap();
        for (env, base, next, seed, len) in &acks {
            assert!(log.bounds(env).await.unwrap().next >= *next);
            let got = log.read(env, *base, 1).await.unwrap();
            assert_eq!(
                got[0].base_offset, *base,
                "acknowledged entry at {env}/{base} present"
            );
            assert_eq!(got[0].end_offset(), *next);
            assert_eq!(&got[0].payload[..], &payload(*seed, *len)[..]);
        }
        for env in ["k0", "k1"] {
            let all = read_all(&log, env, 0).await;
            assert!(
                all.windows(2)
                    .all(|w| w[0].end_offset() == w[1].base_offset),
                "dense after recovery"
            );
        }
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn random_appends_survive_reopen(
            seg_bytes in 256u64..4096,
            specs in proptest::collection::vec((1u32..60, 0usize..2500, 0u8..3), 1..40),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let envs = ["p0", "p1", "p2"];
                let mut appended: HashMap<&str, Vec<(u64, AppendEntry)>> = HashMap::new();
                {
                    let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
                    for (i, (count, len, env)) in specs.iter().enumerate() {
                        let env = envs[*env as usize];
                        let e = entry(i as u64, *count, *len);
                        let r = log.append(env, e.clone()).await.unwrap();
                        appended.entry(env).or_default().push((r.base_offset, e));
                    }
                }
                let log = SegmentLog::open(dir.path(), opts(seg_bytes)).unwrap();
                for env in envs {
                    let want = appended.remove(env).unwrap_or_default();
                    let mut expect = 0;
                    for (base, e) in &want {
                        assert_eq!(*base, expect);
                        expect += u64::from(e.count);
                    }
                    assert_eq!(log.bounds(env).await.unwrap().next, expect);
                    assert_same(&read_all(&log, env, 0).await, &want);
                    let r = log.append(env, entry(7, 1, 3)).await.unwrap();
                    assert_eq!(r.base_offset, expect);
                }
            });
        }
    }
}
