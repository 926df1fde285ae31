//! Conformance of an [`ImpressionLog`]: run [`run_all`] with a [`LogHarness`] on a fresh
//! store. Every check uses environments of its own, so they share one store.

use super::{EVENTUALLY, now_ms, wait_past};
use crate::error::StoreError;
use crate::log::{AppendEntry, ImpressionLog, LogBounds, StoredEntry};
use async_trait::async_trait;

/// What the suite needs beyond the trait: retention is configured differently by every
/// implementation, so the harness applies it.
#[async_trait]
pub trait LogHarness: Send + Sync {
    fn log(&self) -> &dyn ImpressionLog;
    /// Applies age retention so that the entries of `env` ingested before `cutoff_ms`
    /// are removed (whole entries; the log may keep more, never less than those at or
    /// after the cutoff). The suite only asks this when the newest entry is younger.
    async fn expire_before(&self, env: &str, cutoff_ms: i64);
    /// The largest payload the log accepts.
    fn max_entry_bytes(&self) -> usize;
}

/// Runs every log check.
pub async fn run_all(h: &dyn LogHarness) {
    append_read_and_bounds(h).await;
    empty_entries_consume_no_offsets(h).await;
    environments_are_independent(h).await;
    subscribe_follows_the_committed_end(h).await;
    seek_by_ingest_time(h).await;
    scan_by_event_time(h).await;
    retention_removes_a_prefix(h).await;
    remove_drops_the_log(h).await;
    refuses_invalid_environment_ids(h).await;
    refuses_oversized_entries(h).await;
}

/// An entry whose payload starts with `tag` (so that reads can be matched to appends).
pub fn entry(tag: u32, count: u32, min_time: i64, max_time: i64) -> AppendEntry {
    let mut payload = tag.to_le_bytes().to_vec();
    payload.extend(std::iter::repeat_n(
        (tag % 251) as u8,
        12 + tag as usize % 7,
    ));
    AppendEntry {
        payload,
        count,
        min_time,
        max_time,
    }
}

fn tag_of(e: &StoredEntry) -> u32 {
    let b: [u8; 4] = e.payload[..4].try_into().expect("payload carries a tag");
    u32::from_le_bytes(b)
}

fn tags(entries: &[StoredEntry]) -> Vec<u32> {
    entries.iter().map(tag_of).collect()
}

/// Reads everything from `from` on, following the contract (the first entry may start
/// before `from`), and checks that offsets are contiguous.
pub async fn read_from(log: &dyn ImpressionLog, env: &str, from: u64) -> Vec<StoredEntry> {
    let mut out: Vec<StoredEntry> = Vec::new();
    let mut next = from;
    loop {
        let batch = log.read(env, next, 2).await.expect("read");
        let mut progressed = false;
        for e in batch {
            if e.end_offset() <= next {
                continue;
            }
            if !out.is_empty() {
                assert_eq!(e.base_offset, next, "{env}: offsets are contiguous");
            }
            next = e.end_offset();
            progressed = true;
            out.push(e);
        }
        if !progressed {
            return out;
        }
    }
}

async fn bounds(log: &dyn ImpressionLog, env: &str) -> (u64, u64) {
    let b = log.bounds(env).await.expect("bounds");
    (b.first, b.next)
}

pub async fn append_read_and_bounds(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-append";
    assert_eq!(
        log.bounds(env).await.expect("bounds"),
        LogBounds::default(),
        "a log never written has empty bounds"
    );
    assert!(log.read(env, 0, 10).await.expect("read").is_empty());
    let before = now_ms();
    let r1 = log
        .append(env, entry(1, 3, 100, 110))
        .await
        .expect("append");
    let r2 = log.append(env, entry(2, 5, 90, 200)).await.expect("append");
    let after = now_ms();
    assert_eq!((r1.base_offset, r1.next_offset), (0, 3), "first receipt");
    assert_eq!((r2.base_offset, r2.next_offset), (3, 8), "second receipt");
    assert_eq!(bounds(log, env).await, (0, 8), "bounds after two appends");

    let all = log.read(env, 0, 1000).await.expect("read");
    assert_eq!(
        tags(&all),
        [1, 2],
        "read returns the entries in offset order"
    );
    let (a, b) = (&all[0], &all[1]);
    assert_eq!(
        (a.base_offset, a.count, a.min_time, a.max_time),
        (0, 3, 100, 110)
    );
    assert_eq!(
        (b.base_offset, b.count, b.min_time, b.max_time),
        (3, 5, 90, 200)
    );
    assert_eq!(a.payload.as_ref(), entry(1, 3, 100, 110).payload.as_slice());
    assert_eq!(b.payload.as_ref(), entry(2, 5, 90, 200).payload.as_slice());
    for e in &all {
        assert!(
            (before..=after).contains(&e.ingest_ms),
            "ingest time {} is the time of the append ({before}..={after})",
            e.ingest_ms
        );
    }
    assert!(
        a.ingest_ms <= b.ingest_ms,
        "ingest times never go backwards"
    );

    // The record budget: at least one entry, stopping once it is reached.
    assert_eq!(tags(&log.read(env, 0, 1).await.expect("read")), [1]);
    assert_eq!(tags(&log.read(env, 0, 0).await.expect("read")), [1]);
    // Reading from inside an entry returns that entry first.
    assert_eq!(tags(&log.read(env, 4, 1).await.expect("read")), [2]);
    assert_eq!(tags(&log.read(env, 2, 1000).await.expect("read")), [1, 2]);
    // At and past the end: nothing.
    assert!(log.read(env, 8, 10).await.expect("read").is_empty());
    assert!(log.read(env, 1000, 10).await.expect("read").is_empty());
    assert_eq!(tags(&read_from(log, env, 0).await), [1, 2]);
}

pub async fn empty_entries_consume_no_offsets(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-empty";
    log.append(env, entry(1, 2, 0, 0)).await.expect("append");
    let r = log.append(env, entry(2, 0, 0, 0)).await.expect("append");
    assert_eq!(
        (r.base_offset, r.next_offset),
        (2, 2),
        "an empty entry's receipt"
    );
    let r = log.append(env, entry(3, 1, 0, 0)).await.expect("append");
    assert_eq!((r.base_offset, r.next_offset), (2, 3));
    assert_eq!(
        tags(&read_from(log, env, 0).await),
        [1, 3],
        "an empty entry is not stored"
    );
}

pub async fn environments_are_independent(h: &dyn LogHarness) {
    let log = h.log();
    log.append("c-ind.a", entry(1, 4, 0, 0))
        .await
        .expect("append");
    let r = log
        .append("c-ind_b", entry(2, 2, 0, 0))
        .await
        .expect("append");
    assert_eq!(r.base_offset, 0, "every environment counts its own offsets");
    assert_eq!(bounds(log, "c-ind.a").await, (0, 4));
    assert_eq!(bounds(log, "c-ind_b").await, (0, 2));
    assert_eq!(tags(&read_from(log, "c-ind_b", 0).await), [2]);
}

pub async fn subscribe_follows_the_committed_end(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-watch";
    let mut early = log.subscribe(env);
    assert_eq!(*early.borrow_and_update(), 0, "a new log's end is 0");
    log.append(env, entry(1, 3, 0, 0)).await.expect("append");
    wait_end(&mut early, 3, "a receiver subscribed before the append").await;
    log.append(env, entry(2, 4, 0, 0)).await.expect("append");
    wait_end(&mut early, 7, "the same receiver after the second append").await;
    let mut late = log.subscribe(env);
    wait_end(&mut late, 7, "a receiver subscribed after the appends").await;
}

async fn wait_end(rx: &mut tokio::sync::watch::Receiver<u64>, end: u64, who: &str) {
    let seen = tokio::time::timeout(EVENTUALLY, rx.wait_for(|v| *v >= end))
        .await
        .unwrap_or_else(|_| panic!("{who}: the watch never reached {end}"))
        .map(|v| *v)
        .expect("watch open");
    assert_eq!(seen, end, "{who}: the watch shows the committed end");
}

pub async fn seek_by_ingest_time(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-seek";
    assert_eq!(
        log.offset_at_ingest_time(env, 0).await.expect("seek"),
        0,
        "seeking in a log never written"
    );
    log.append(env, entry(1, 2, 0, 0)).await.expect("append");
    log.append(env, entry(2, 3, 0, 0)).await.expect("append");
    let first = log.read(env, 0, 1000).await.expect("read");
    wait_past(first[1].ingest_ms).await;
    log.append(env, entry(3, 4, 0, 0)).await.expect("append");
    let all = read_from(log, env, 0).await;
    let t3 = all[2].ingest_ms;
    let seek = |ms| log.offset_at_ingest_time(env, ms);
    assert_eq!(seek(i64::MIN).await.expect("seek"), 0, "before everything");
    assert_eq!(seek(all[0].ingest_ms).await.expect("seek"), 0);
    assert_eq!(
        seek(first[1].ingest_ms + 1).await.expect("seek"),
        5,
        "the first entry stored after the time"
    );
    assert_eq!(seek(t3).await.expect("seek"), 5);
    assert_eq!(
        seek(t3 + 1).await.expect("seek"),
        9,
        "after everything: the end"
    );
}

pub async fn scan_by_event_time(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-scan";
    let windows = [(100, 110), (200, 210), (150, 160), (300, 400), (205, 205)];
    for (tag, (lo, hi)) in (1..).zip(windows) {
        log.append(env, entry(tag, 2, lo, hi))
            .await
            .expect("append");
    }
    let scan = |from, to, after, max| log.scan_time(env, from, to, after, max);
    let overlapping = |from: i64, to: i64| -> Vec<u32> {
        (1..)
            .zip(windows)
            .filter(|(_, (lo, hi))| *lo < to && *hi >= from)
            .map(|(t, _)| t)
            .collect()
    };
    for (from, to) in [(0, 1000), (150, 201), (205, 206), (111, 150), (401, 500)] {
        let got = scan(from, to, 0, 1000).await.expect("scan");
        let got_tags = tags(&got);
        for want in overlapping(from, to) {
            assert!(
                got_tags.contains(&want),
                "scan [{from}, {to}) misses entry {want}: got {got_tags:?}"
            );
        }
        assert!(
            got.windows(2).all(|w| w[0].base_offset < w[1].base_offset),
            "scan results are in offset order"
        );
    }
    assert!(
        scan(300, 300, 0, 1000).await.expect("scan").is_empty(),
        "an empty window matches nothing"
    );
    // Paging with a budget of one impression: every match exactly once, then empty.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = scan(200, 211, after, 1).await.expect("scan");
        let Some(last) = page.last() else { break };
        after = last.end_offset();
        paged.extend(tags(&page).into_iter().filter(|t| [2, 5].contains(t)));
    }
    assert_eq!(paged, [2, 5], "paging a scan returns every match once");
    // Starting after an entry skips it.
    let skipped = scan(0, 1000, 4, 1000).await.expect("scan");
    assert!(skipped.iter().all(|e| e.end_offset() > 4));
    assert!(tags(&skipped).contains(&3) && !tags(&skipped).contains(&2));
}

pub async fn retention_removes_a_prefix(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-retention";
    for tag in 1..=3 {
        log.append(env, entry(tag, 2, 100, 100))
            .await
            .expect("append");
    }
    let old = read_from(log, env, 0).await;
    wait_past(old[2].ingest_ms).await;
    log.append(env, entry(4, 3, 100, 100))
        .await
        .expect("append");
    log.append(env, entry(5, 1, 100, 100))
        .await
        .expect("append");
    let kept = read_from(log, env, 0).await;
    let cutoff = kept[3].ingest_ms;
    h.expire_before(env, cutoff).await;

    assert_eq!(
        bounds(log, env).await,
        (6, 10),
        "retention moves the first offset to the first kept entry, keeps the end"
    );
    assert_eq!(
        tags(&log.read(env, 0, 1).await.expect("read")),
        [4],
        "reading below the retained range starts at its first entry"
    );
    assert_eq!(tags(&read_from(log, env, 0).await), [4, 5]);
    assert_eq!(
        log.offset_at_ingest_time(env, i64::MIN)
            .await
            .expect("seek"),
        6,
        "seeking before the retained range gives its first offset"
    );
    let scanned = log.scan_time(env, 0, 1000, 0, 1000).await.expect("scan");
    assert_eq!(tags(&scanned), [4, 5], "a scan sees only retained entries");
    let r = log.append(env, entry(6, 2, 0, 0)).await.expect("append");
    assert_eq!(
        (r.base_offset, r.next_offset),
        (10, 12),
        "appends continue at the end"
    );
}

pub async fn remove_drops_the_log(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-remove";
    log.append(env, entry(1, 5, 0, 0)).await.expect("append");
    log.remove(env).await.expect("remove");
    assert_eq!(
        log.bounds(env).await.expect("bounds"),
        LogBounds::default(),
        "a removed log is empty"
    );
    assert!(log.read(env, 0, 10).await.expect("read").is_empty());
    let r = log.append(env, entry(2, 1, 0, 0)).await.expect("append");
    assert_eq!(
        r.base_offset, 0,
        "a log written again after removal starts over"
    );
    log.remove("c-never-written")
        .await
        .expect("removing a log never written is fine");
}

fn is_invalid_id(e: &StoreError) -> bool {
    matches!(e, StoreError::InvalidEnvId(_))
}

pub async fn refuses_invalid_environment_ids(h: &dyn LogHarness) {
    let log = h.log();
    let long = "x".repeat(65);
    for bad in ["", ".hidden", "a/b", "a b", "é", long.as_str()] {
        let e = log.append(bad, entry(1, 1, 0, 0)).await.err();
        assert!(
            e.as_ref().is_some_and(is_invalid_id),
            "append to {bad:?}: {e:?}"
        );
        let e = log.read(bad, 0, 1).await.err();
        assert!(e.as_ref().is_some_and(is_invalid_id), "read {bad:?}: {e:?}");
        let e = log.bounds(bad).await.err();
        assert!(
            e.as_ref().is_some_and(is_invalid_id),
            "bounds {bad:?}: {e:?}"
        );
        let e = log.scan_time(bad, 0, 1, 0, 1).await.err();
        assert!(e.as_ref().is_some_and(is_invalid_id), "scan {bad:?}: {e:?}");
        let e = log.offset_at_ingest_time(bad, 0).await.err();
        assert!(e.as_ref().is_some_and(is_invalid_id), "seek {bad:?}: {e:?}");
        let e = log.remove(bad).await.err();
        assert!(
            e.as_ref().is_some_and(is_invalid_id),
            "remove {bad:?}: {e:?}"
        );
    }
    log.append(&"y".repeat(64), entry(1, 1, 0, 0))
        .await
        .expect("a 64-character id is valid");
}

pub async fn refuses_oversized_entries(h: &dyn LogHarness) {
    let log = h.log();
    let env = "c-oversized";
    log.append(env, entry(1, 1, 0, 0)).await.expect("append");
    let max = h.max_entry_bytes();
    let big = AppendEntry {
        payload: vec![0; max + 1],
        count: 1,
        min_time: 0,
        max_time: 0,
    };
    match log.append(env, big).await {
        Err(StoreError::EntryTooLarge { size, limit }) => {
            assert_eq!((size, limit), (max + 1, max), "the refusal says the sizes");
        }
        other => panic!("an oversized entry is refused as too large, got {other:?}"),
    }
    assert_eq!(bounds(log, env).await, (0, 1), "nothing was stored");
}
