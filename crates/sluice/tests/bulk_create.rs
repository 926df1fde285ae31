//! `POST /v1/integrations/bulk` (SPEC §4 admin API; issue 9: creating 10,000 integrations
//! quickly): per-item results in request order, each item checked exactly as a single
//! create, project tokens confined to their project, the created integrations stored and
//! delivering, and the body bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "test-admin-token";

fn item(id: &str, url: &str) -> Value {
    json!({"id": id, "name": id, "url": url, "environments": ["prod"], "flushIntervalMs": 100})
}

async fn with_env(s: &Sluice) {
    s.post_admin(
        "/v1/environments",
        json!({"id": "prod", "name": "Production", "sdkKeys": [SDK_KEY]}),
    )
    .await;
}

#[tokio::test]
async fn items_are_created_or_refused_one_by_one_in_order() {
    let s = Sluice::start().await;
    with_env(&s).await;
    let rx = receiver(sluice_receiver::FaultMode::Ok).await;
    let url = rx.url("/hook");
    s.post_admin("/v1/integrations", item("taken", &url)).await;
    let items = vec![
        item("b1", &url),
        item("taken", &url),
        json!({"id": "b2", "name": "b2", "url": url, "environments": ["prod"], "flushIntervalMs": 1}),
        json!({"id": "b3", "name": "b3", "url": url, "environments": ["nope"]}),
        json!({"id": "b4", "name": "b4", "url": url, "environments": ["prod"], "colour": "red"}),
        item("b1", &url),
        json!({"name": "generated", "url": url, "environments": ["prod"], "secret": "s3cr3t"}),
    ];
    let a = s
        .admin_as(
            Method::POST,
            "/v1/integrations/bulk",
            Some(TOKEN),
            Some(json!({ "integrations": items })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["created"], 2, "{}", a.body);
    assert_eq!(a.body["failed"], 5, "{}", a.body);
    let results = a.body["results"].as_array().expect("results");
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 409, 400, 400, 400, 409, 201], "{}", a.body);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "{r}");
        if r["status"] != 201 {
            assert!(r["error"].is_string() && r["detail"].is_string(), "{r}");
        }
    }
    assert_eq!(results[2]["field"], "flushIntervalMs", "{}", results[2]);
    assert!(
        results[4]["detail"].as_str().unwrap().contains("colour"),
        "{}",
        results[4]
    );
    assert_eq!(results[0]["integration"]["id"], "b1");
    let generated = &results[6]["integration"];
    assert!(
        generated["id"].as_str().unwrap().starts_with("int_"),
        "{generated}"
    );
    assert_ne!(
        generated["secret"], "s3cr3t",
        "secrets are answered redacted"
    );

    // Stored and visible like any other integration, and delivering from now on.
    let listed = s.get_admin("/v1/integrations").await;
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 3, "{listed}");
    assert!(ids.contains(&"b1") && ids.contains(&"taken"));
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 5)).await, 200);
    let b1_got_them = eventually(Duration::from_secs(20), || {
        rx.stats().unique_impressions >= 15
    })
    .await;
    assert!(b1_got_them, "every integration delivers: {:?}", rx.stats());
}

#[tokio::test]
async fn the_body_is_bounded_and_must_be_a_list_of_items() {
    let s = Sluice::start().await;
    with_env(&s).await;
    let post = |body: Value| {
        s.admin_as(
            Method::POST,
            "/v1/integrations/bulk",
            Some(TOKEN),
            Some(body),
        )
    };
    post(json!({"integrations": []}))
        .await
        .assert_error(400, "an empty list");
    let too_many: Vec<Value> = (0..1001)
        .map(|i| item(&format!("i{i}"), "http://127.0.0.1:9/h"))
        .collect();
    let a = post(json!({ "integrations": too_many })).await;
    a.assert_error(400, "more than 1000 items");
    assert_eq!(a.body["field"], "integrations", "{}", a.body);
    post(json!([item("x", "http://127.0.0.1:9/h")]))
        .await
        .assert_error(400, "a bare array");
    post(json!({"integrations": [], "extra": 1}))
        .await
        .assert_error(400, "an unknown member");
    s.admin_as(
        Method::POST,
        "/v1/integrations/bulk",
        None,
        Some(json!({"integrations": [item("x", "http://127.0.0.1:9/h")]})),
    )
    .await
    .assert_error(401, "no token");
    assert_eq!(
        s.get_admin("/v1/integrations").await,
        json!([]),
        "nothing was created by refused requests"
    );
}

#[tokio::test]
async fn a_project_token_creates_only_in_its_project() {
    let s = Sluice::start().await;
    for p in ["acme", "globex"] {
        s.post_admin("/v1/projects", json!({"id": p, "name": p}))
            .await;
    }
    for (e, p, k) in [
        ("env-a", "acme", "sdk-acme-key"),
        ("env-g", "globex", "sdk-globex-key"),
    ] {
        s.post_admin(
            "/v1/environments",
            json!({"id": e, "name": e, "project": p, "sdkKeys": [k]}),
        )
        .await;
    }
    let t = s
        .post_admin("/v1/projects/acme/tokens", json!({"name": "ci"}))
        .await;
    let tok = t["secret"].as_str().unwrap().to_owned();
    let url = "http://127.0.0.1:9/hook";
    let a = s
        .admin_as(
            Method::POST,
            "/v1/integrations/bulk",
            Some(&tok),
            Some(json!({"integrations": [
                {"id": "mine", "name": "mine", "url": url, "environments": ["env-a"], "enabled": false},
                {"id": "theirs", "name": "theirs", "project": "globex", "url": url, "environments": ["env-g"], "enabled": false},
                {"id": "sneaky", "name": "sneaky", "url": url, "environments": ["env-g"], "enabled": false},
            ]})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &a.body["results"];
    assert_eq!(r[0]["status"], 201, "{a:?}");
    assert_eq!(r[0]["integration"]["project"], "acme");
    assert_eq!(r[1]["status"], 403, "another project: {}", r[1]);
    assert_eq!(
        r[2]["status"], 400,
        "another project's environment: {}",
        r[2]
    );
    assert!(
        r[2]["detail"].as_str().unwrap().contains("does not exist"),
        "told it does not exist: {}",
        r[2]
    );
    let all = s.get_admin("/v1/integrations").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
}
