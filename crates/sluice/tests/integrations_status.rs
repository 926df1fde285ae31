//! `GET /v1/integrations/status` (SPEC §4): every integration's status in one answer,
//! paged by an opaque cursor in id order (no duplicates, no omissions, even when
//! integrations are created between pages), filtered by state and project, and bad
//! parameters answer 400 JSON naming the parameter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// 23 integrations: `int_00`..`int_22`; every 5th is disabled, every 7th paused by hand,
/// ids ≥ 15 in project `p2`.
async fn fleet(s: &Sluice) -> BTreeSet<String> {
    s.environment("env-a", "A", SDK_KEY).await;
    s.post_admin("/v1/projects", json!({"id": "p2", "name": "Two"}))
        .await;
    s.post_admin(
        "/v1/environments",
        json!({"id": "env-b", "name": "B", "project": "p2", "sdkKeys": ["sdk-key-p2-0001"]}),
    )
    .await;
    // Nothing listens on port 9 of loopback; delivery never matters here.
    let url = "http://127.0.0.1:9/hook";
    let mut ids = BTreeSet::new();
    for i in 0..23 {
        let id = format!("int_{i:02}");
        let (env, project) = if i >= 15 {
            ("env-b", "p2")
        } else {
            ("env-a", "default")
        };
        s.integration(
            &id,
            url,
            &[env],
            json!({"project": project, "enabled": i % 5 != 0}),
        )
        .await;
        if i % 7 == 0 && i % 5 != 0 {
            s.post_admin(&format!("/v1/integrations/{id}/pause"), json!({}))
                .await;
        }
        ids.insert(id);
    }
    ids
}

async fn get(s: &Sluice, query: &str) -> (u16, Value) {
    s.admin(
        Method::GET,
        &format!("/v1/integrations/status{query}"),
        None,
    )
    .await
}

/// Follows `nextCursor` from the first page; returns the ids in order and the page count.
async fn all_pages(s: &Sluice, filter: &str, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("?limit={limit}{filter}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = get(s, &q).await;
        assert_eq!(st, 200, "{v}");
        pages += 1;
        let page = v["integrations"].as_array().expect("integrations array");
        assert!(page.len() <= limit);
        for i in page {
            ids.push(i["id"].as_str().expect("id").to_owned());
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(v["nextCursor"].is_null(), "{v}");
                return (ids, pages);
            }
        }
        assert!(pages < 100, "the cursor never ends");
    }
}

#[tokio::test]
async fn pages_cover_every_integration_once_in_id_order() {
    let s = Sluice::start().await;
    let ids = fleet(&s).await;
    // Default limit holds them all in one page, with the status fields and configuration.
    let (st, v) = get(&s, "").await;
    assert_eq!(st, 200, "{v}");
    let all = v["integrations"].as_array().expect("array");
    assert_eq!(all.len(), 23);
    assert!(v["nextCursor"].is_null());
    let one = all.iter().find(|i| i["id"] == "int_07").expect("int_07");
    assert_eq!(one["state"], "paused");
    assert_eq!(one["manuallyPaused"], true);
    assert_eq!(one["name"], "int_07");
    assert_eq!(one["project"], "default");
    assert_eq!(one["environments"], json!(["env-a"]));
    for field in [
        "lagImpressions",
        "lagSeconds",
        "deliveredImpressions",
        "failedAttempts",
        "pausedUntil",
        "lastError",
    ] {
        assert!(one.get(field).is_some(), "{field} missing: {one}");
    }
    // The same answer as the single-integration route.
    let single = s.status("int_07").await;
    assert_eq!(single["state"], one["state"]);
    assert_eq!(single["lagImpressions"], one["lagImpressions"]);

    for limit in [1, 4, 7, 23, 1000] {
        let (got, pages) = all_pages(&s, "", limit).await;
        assert_eq!(
            got,
            ids.iter().cloned().collect::<Vec<_>>(),
            "limit {limit}"
        );
        assert!(pages >= 23usize.div_ceil(limit), "limit {limit}: {pages}");
    }
}

#[tokio::test]
async fn integrations_created_between_pages_do_not_shift_the_cursor() {
    let s = Sluice::start().await;
    let mut ids = fleet(&s).await;
    let (st, first) = get(&s, "?limit=10").await;
    assert_eq!(st, 200);
    let seen: Vec<String> = first["integrations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    // One sorting before the cursor (not in later pages), one after (in them).
    s.integration("int_000", "http://127.0.0.1:9/", &["env-a"], json!({}))
        .await;
    s.integration("int_99", "http://127.0.0.1:9/", &["env-a"], json!({}))
        .await;
    ids.insert("int_99".into());
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let mut rest = Vec::new();
    let mut q = format!("?limit=10&cursor={cursor}");
    loop {
        let (st, v) = get(&s, &q).await;
        assert_eq!(st, 200, "{v}");
        for i in v["integrations"].as_array().expect("array") {
            rest.push(i["id"].as_str().unwrap_or_default().to_owned());
        }
        match v["nextCursor"].as_str() {
            Some(c) => q = format!("?limit=10&cursor={c}"),
            None => break,
        }
    }
    let all: Vec<String> = seen.into_iter().chain(rest).collect();
    assert_eq!(all, ids.into_iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn state_and_project_filters() {
    let s = Sluice::start().await;
    let ids = fleet(&s).await;
    let ids: Vec<usize> = ids
        .iter()
        .map(|i| i[4..].parse().expect("number"))
        .collect();
    let names = |f: &dyn Fn(usize) -> bool| -> Vec<String> {
        ids.iter()
            .copied()
            .filter(|i| f(*i))
            .map(|i| format!("int_{i:02}"))
            .collect()
    };
    let disabled = names(&|i| i % 5 == 0);
    let paused = names(&|i| i % 7 == 0 && i % 5 != 0);
    let active = names(&|i| i % 5 != 0 && i % 7 != 0);
    let p2 = names(&|i| i >= 15);
    let p2_paused = names(&|i| i >= 15 && i % 7 == 0 && i % 5 != 0);
    assert!(!p2_paused.is_empty());
    for limit in [2, 100] {
        assert_eq!(all_pages(&s, "&state=disabled", limit).await.0, disabled);
        assert_eq!(all_pages(&s, "&state=paused", limit).await.0, paused);
        assert_eq!(all_pages(&s, "&state=active", limit).await.0, active);
        assert_eq!(
            all_pages(&s, "&state=probing", limit).await.0,
            Vec::<String>::new()
        );
        assert_eq!(all_pages(&s, "&project=p2", limit).await.0, p2);
        assert_eq!(
            all_pages(&s, "&project=p2&state=paused", limit).await.0,
            p2_paused
        );
        assert_eq!(
            all_pages(&s, "&project=nope", limit).await.0,
            Vec::<String>::new()
        );
    }
    // Text in the id or the name, any case.
    assert_eq!(
        all_pages(&s, "&q=INT_1", 3).await.0,
        names(&|i| (10..20).contains(&i))
    );
    assert_eq!(all_pages(&s, "&q=int_07", 3).await.0, names(&|i| i == 7));
    // Every item of a filtered page has the state asked for.
    let (_, v) = get(&s, "?state=paused").await;
    for i in v["integrations"].as_array().expect("array") {
        assert_eq!(i["state"], "paused");
    }
}

#[tokio::test]
async fn bad_parameters_answer_400_json_naming_them() {
    let s = Sluice::start().await;
    fleet(&s).await;
    for (q, field) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=-3", "limit"),
        ("?limit=many", "limit"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=aW50XzAx", "cursor"),
        ("?state=asleep", "state"),
        ("?limits=5", "limits"),
    ] {
        let (st, v) = get(&s, q).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert_eq!(v["field"], field, "{q}: {v}");
        assert!(
            v["error"].is_string() && v["detail"].is_string(),
            "{q}: {v}"
        );
    }
    // Without the admin token: 401 JSON.
    let resp = s
        .client
        .get(s.url("/v1/integrations/status"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    let v: Value = resp.json().await.expect("JSON error");
    assert!(v["error"].is_string());
}
