//! Conformance of a [`MetaStore`]: run [`run_all`] on a fresh store. Checks use keys of
//! their own, so they share one store.

use super::EVENTUALLY;
use crate::error::StoreError;
use crate::meta::{Bucket, Expect, MetaChange, MetaChanges, MetaStore, MetaWatch, Versioned};
use futures_util::StreamExt;
use std::collections::BTreeMap;

/// Runs every metadata check.
pub async fn run_all(m: &dyn MetaStore) {
    create_if_absent(m).await;
    revisions_and_compare_and_swap(m).await;
    deletes(m).await;
    a_recreated_key_does_not_match_an_old_revision(m).await;
    list_by_prefix(m).await;
    buckets_are_independent(m).await;
    concurrent_compare_and_swap_has_one_winner(m).await;
    keys_with_any_characters(m).await;
    watch_reports_the_current_content_then_every_change(m).await;
    watch_started_during_writes_misses_and_repeats_nothing(m).await;
}

fn is_conflict(r: &Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

async fn get(m: &dyn MetaStore, b: Bucket, key: &str) -> Option<Versioned> {
    m.get(b, key).await.expect("get")
}

pub async fn create_if_absent(m: &dyn MetaStore) {
    let b = Bucket::State;
    assert_eq!(get(m, b, "c-create").await, None, "a key never written");
    let r = m
        .put(b, "c-create", b"one".to_vec(), Expect::Absent)
        .await
        .expect("create");
    assert!(r >= 1, "revisions start at 1");
    assert_eq!(
        get(m, b, "c-create").await,
        Some(Versioned {
            value: b"one".to_vec(),
            revision: r
        })
    );
    let again = m.put(b, "c-create", b"two".to_vec(), Expect::Absent).await;
    assert!(is_conflict(&again), "creating an existing key: {again:?}");
    assert_eq!(
        get(m, b, "c-create").await.map(|v| v.value),
        Some(b"one".to_vec())
    );
}

pub async fn revisions_and_compare_and_swap(m: &dyn MetaStore) {
    let b = Bucket::Cursors;
    let r1 = m
        .put(b, "c-cas", b"1".to_vec(), Expect::Any)
        .await
        .expect("put");
    let r2 = m
        .put(b, "c-cas", b"2".to_vec(), Expect::Revision(r1))
        .await
        .expect("swap at the current revision");
    assert!(r2 > r1, "revisions increase ({r1} then {r2})");
    let stale = m.put(b, "c-cas", b"x".to_vec(), Expect::Revision(r1)).await;
    assert!(is_conflict(&stale), "swap at a stale revision: {stale:?}");
    let r3 = m
        .put(b, "c-cas", b"3".to_vec(), Expect::Any)
        .await
        .expect("unconditional put");
    assert!(r3 > r2);
    assert_eq!(
        get(m, b, "c-cas").await,
        Some(Versioned {
            value: b"3".to_vec(),
            revision: r3
        })
    );
    let missing = m
        .put(b, "c-cas-missing", b"x".to_vec(), Expect::Revision(r3))
        .await;
    assert!(is_conflict(&missing), "swap of a missing key: {missing:?}");
    assert_eq!(get(m, b, "c-cas-missing").await, None);
    // An empty value is a value.
    let r = m
        .put(b, "c-cas-empty", Vec::new(), Expect::Absent)
        .await
        .expect("put");
    assert_eq!(
        get(m, b, "c-cas-empty").await,
        Some(Versioned {
            value: Vec::new(),
            revision: r
        })
    );
}

pub async fn deletes(m: &dyn MetaStore) {
    let b = Bucket::Gaps;
    let r = m
        .put(b, "c-del", b"v".to_vec(), Expect::Any)
        .await
        .expect("put");
    let absent = m.delete(b, "c-del", Expect::Absent).await;
    assert!(is_conflict(&absent), "delete expecting absence: {absent:?}");
    let stale = m.delete(b, "c-del", Expect::Revision(r + 1000)).await;
    assert!(is_conflict(&stale), "delete at another revision: {stale:?}");
    assert!(
        get(m, b, "c-del").await.is_some(),
        "a refused delete deletes nothing"
    );
    m.delete(b, "c-del", Expect::Revision(r))
        .await
        .expect("delete at the current revision");
    assert_eq!(get(m, b, "c-del").await, None);
    m.delete(b, "c-del", Expect::Any)
        .await
        .expect("deleting a missing key unconditionally");
    m.delete(b, "c-del", Expect::Absent)
        .await
        .expect("deleting a missing key expecting absence");
    let gone = m.delete(b, "c-del", Expect::Revision(r)).await;
    assert!(
        is_conflict(&gone),
        "delete of a missing key at a revision: {gone:?}"
    );
    let r2 = m
        .put(b, "c-del", b"w".to_vec(), Expect::Absent)
        .await
        .expect("a deleted key can be created again");
    assert_eq!(get(m, b, "c-del").await.map(|v| v.revision), Some(r2));
    m.delete(b, "c-del", Expect::Any)
        .await
        .expect("unconditional delete");
    assert_eq!(get(m, b, "c-del").await, None);
}

/// A revision read before a key was deleted and created again must not match the new
/// key: compare-and-swap would otherwise overwrite a value its writer never saw.
pub async fn a_recreated_key_does_not_match_an_old_revision(m: &dyn MetaStore) {
    let b = Bucket::Integrations;
    let old = m
        .put(b, "c-aba", b"old".to_vec(), Expect::Absent)
        .await
        .expect("create");
    m.delete(b, "c-aba", Expect::Any).await.expect("delete");
    let new = m
        .put(b, "c-aba", b"new".to_vec(), Expect::Absent)
        .await
        .expect("create again");
    assert!(
        new > old,
        "a re-created key gets a newer revision ({old} then {new})"
    );
    let stale = m
        .put(b, "c-aba", b"lost".to_vec(), Expect::Revision(old))
        .await;
    assert!(
        is_conflict(&stale),
        "swap at the old key's revision: {stale:?}"
    );
    assert_eq!(
        get(m, b, "c-aba").await.map(|v| v.value),
        Some(b"new".to_vec())
    );
}

pub async fn list_by_prefix(m: &dyn MetaStore) {
    let b = Bucket::Environments;
    for k in ["c-list/b", "c-list/a", "c-list/a/x", "c-lisz", "c-lis"] {
        m.put(b, k, k.as_bytes().to_vec(), Expect::Any)
            .await
            .expect("put");
    }
    m.put(b, "c-list/gone", b"x".to_vec(), Expect::Any)
        .await
        .expect("put");
    m.delete(b, "c-list/gone", Expect::Any)
        .await
        .expect("delete");
    let listed = m.list(b, "c-list/").await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["c-list/a", "c-list/a/x", "c-list/b"],
        "the keys with the prefix, in key order, without deleted ones"
    );
    for (k, v) in &listed {
        assert_eq!(v.value, k.as_bytes(), "listed values");
        assert_eq!(get(m, b, k).await.as_ref(), Some(v), "listed revisions");
    }
    assert_eq!(
        m.list(Bucket::Projects, "c-list/")
            .await
            .expect("list")
            .len(),
        0,
        "another bucket's keys are not listed"
    );
    let all = m.list(b, "").await.expect("list");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "an empty prefix lists the whole bucket in key order"
    );
    assert!(all.iter().any(|(k, _)| k == "c-lis"));
}

pub async fn buckets_are_independent(m: &dyn MetaStore) {
    m.put(Bucket::Projects, "c-both", b"p".to_vec(), Expect::Absent)
        .await
        .expect("put");
    m.put(Bucket::State, "c-both", b"s".to_vec(), Expect::Absent)
        .await
        .expect("the same key in another bucket is another key");
    m.delete(Bucket::Projects, "c-both", Expect::Any)
        .await
        .expect("delete");
    assert_eq!(
        get(m, Bucket::State, "c-both").await.map(|v| v.value),
        Some(b"s".to_vec())
    );
}

pub async fn concurrent_compare_and_swap_has_one_winner(m: &dyn MetaStore) {
    let b = Bucket::Cursors;
    let r = m
        .put(b, "c-race", b"0".to_vec(), Expect::Any)
        .await
        .expect("put");
    let writes = (0..8u8).map(|i| m.put(b, "c-race", vec![i], Expect::Revision(r)));
    let outcomes = futures_util::future::join_all(writes).await;
    let won: Vec<u8> = (0..8u8)
        .zip(&outcomes)
        .filter(|(_, o)| o.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one swap at the same revision wins: {outcomes:?}"
    );
    assert!(
        outcomes.iter().filter(|o| o.is_err()).all(is_conflict),
        "the others conflict: {outcomes:?}"
    );
    assert_eq!(get(m, b, "c-race").await.map(|v| v.value), Some(won));
}

pub async fn keys_with_any_characters(m: &dyn MetaStore) {
    let b = Bucket::State;
    let keys = [
        "c-chars/with space",
        "c-chars/dots.and_underscores",
        "c-chars/colon:star*gt>",
        "c-chars/ünïcode",
    ];
    for k in keys {
        m.put(b, k, k.as_bytes().to_vec(), Expect::Absent)
            .await
            .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
        assert_eq!(
            get(m, b, k).await.map(|v| v.value),
            Some(k.as_bytes().to_vec())
        );
    }
    let listed: Vec<String> = m
        .list(b, "c-chars/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut want: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    want.sort();
    assert_eq!(listed, want, "keys come back as written, in key order");
}

async fn next_change(changes: &mut MetaChanges, what: &str) -> MetaChange {
    tokio::time::timeout(EVENTUALLY, changes.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no change reported"))
        .unwrap_or_else(|| panic!("{what}: the watch ended"))
        .unwrap_or_else(|e| panic!("{what}: the watch failed: {e}"))
}

fn change(key: &str, value: Option<&[u8]>, revision: u64) -> MetaChange {
    MetaChange {
        key: key.to_owned(),
        value: value.map(<[u8]>::to_vec),
        revision,
    }
}

pub async fn watch_reports_the_current_content_then_every_change(m: &dyn MetaStore) {
    let b = Bucket::Projects;
    let ra = m
        .put(b, "c-watch/a", b"1".to_vec(), Expect::Absent)
        .await
        .expect("put");
    m.put(b, "c-watch/gone", b"x".to_vec(), Expect::Absent)
        .await
        .expect("put");
    m.delete(b, "c-watch/gone", Expect::Any)
        .await
        .expect("delete");
    m.put(b, "c-watchx", b"x".to_vec(), Expect::Any)
        .await
        .expect("put");
    let MetaWatch {
        current,
        mut changes,
    } = m.watch(b, "c-watch/").await.expect("watch");
    assert_eq!(
        current,
        [(
            "c-watch/a".to_owned(),
            Versioned {
                value: b"1".to_vec(),
                revision: ra
            }
        )],
        "a watch starts with the current keys of its prefix, without deleted ones"
    );
    let rb = m
        .put(b, "c-watch/b", b"2".to_vec(), Expect::Absent)
        .await
        .expect("put");
    let ra2 = m
        .put(b, "c-watch/a", b"3".to_vec(), Expect::Revision(ra))
        .await
        .expect("swap");
    // Not reported: a refused write, other prefixes and buckets, deleting a missing key.
    assert!(
        m.put(b, "c-watch/a", b"no".to_vec(), Expect::Revision(ra))
            .await
            .is_err()
    );
    m.put(b, "c-watchy", b"y".to_vec(), Expect::Any)
        .await
        .expect("put");
    m.put(Bucket::State, "c-watch/a", b"s".to_vec(), Expect::Any)
        .await
        .expect("put");
    m.delete(b, "c-watch/never", Expect::Any)
        .await
        .expect("delete");
    m.delete(b, "c-watch/b", Expect::Revision(rb))
        .await
        .expect("delete");
    let rz = m
        .put(b, "c-watch/z", b"end".to_vec(), Expect::Any)
        .await
        .expect("put");
    let what = "watch of c-watch/";
    assert_eq!(
        next_change(&mut changes, what).await,
        change("c-watch/b", Some(b"2"), rb)
    );
    assert_eq!(
        next_change(&mut changes, what).await,
        change("c-watch/a", Some(b"3"), ra2)
    );
    let deleted = next_change(&mut changes, what).await;
    assert_eq!(
        (deleted.key.as_str(), deleted.value.as_deref()),
        ("c-watch/b", None)
    );
    assert!(deleted.revision > ra2, "a deletion has a newer revision");
    assert_eq!(
        next_change(&mut changes, what).await,
        change("c-watch/z", Some(b"end"), rz),
        "nothing else was reported in between"
    );
    let again = m.watch(b, "c-watch/").await.expect("watch");
    let keys: Vec<(&str, u64)> = again
        .current
        .iter()
        .map(|(k, v)| (k.as_str(), v.revision))
        .collect();
    assert_eq!(keys, [("c-watch/a", ra2), ("c-watch/z", rz)]);
}

pub async fn watch_started_during_writes_misses_and_repeats_nothing(m: &dyn MetaStore) {
    let b = Bucket::Cursors;
    const N: usize = 40;
    let writes = async {
        for i in 0..N {
            m.put(b, &format!("c-wrace/{i:02}"), vec![i as u8], Expect::Any)
                .await
                .expect("put");
        }
    };
    let watch = async {
        tokio::task::yield_now().await;
        m.watch(b, "c-wrace/").await.expect("watch")
    };
    let (
        (),
        MetaWatch {
            current,
            mut changes,
        },
    ) = futures_util::future::join(writes, watch).await;
    let mut seen: BTreeMap<String, u64> =
        current.into_iter().map(|(k, v)| (k, v.revision)).collect();
    while seen.len() < N {
        let c = next_change(&mut changes, "watch started during writes").await;
        assert!(
            seen.insert(c.key.clone(), c.revision).is_none(),
            "{} reported twice",
            c.key
        );
    }
    let rz = m
        .put(b, "c-wrace/zz", vec![], Expect::Any)
        .await
        .expect("put");
    assert_eq!(
        next_change(&mut changes, "watch started during writes").await,
        change("c-wrace/zz", Some(b""), rz),
        "no write was reported twice"
    );
}
