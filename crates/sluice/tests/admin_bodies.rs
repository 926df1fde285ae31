//! Admin request bodies through HTTP (issue 10, issue 11): every numeric setting is
//! bounded and a value outside its bounds is a 400 naming the field; unknown fields are a
//! 400 naming the field; PATCH applies a JSON merge patch, validated as PUT is.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::FaultMode;
use std::time::Duration;

const TOKEN: &str = "test-admin-token";

/// Sends `body` as is (raw bytes: numbers beyond what JSON libraries hold) as JSON.
async fn send_raw(s: &Sluice, method: Method, path: &str, body: &str) -> Answer {
    answer(
        s.client
            .request(method, s.url(path))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("admin request"),
    )
    .await
}

#[track_caller]
fn assert_names_field(a: &Answer, field: &str, what: &str) {
    a.assert_error(400, what);
    assert_eq!(a.body["field"], field, "{what}: {}", a.body);
    assert!(
        a.detail().contains(field),
        "{what}: detail does not name {field}: {}",
        a.body
    );
}

async fn seeded() -> Sluice {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    s
}

/// Issue 11's exact scenario: `maxBacklogAgeMs: 18446744073709551615` was accepted, became
/// -1 and sent every impression into a gap. Now it is refused naming the field, and so are
/// values beyond 2^64, negative values and every other setting outside its range.
#[tokio::test]
async fn settings_outside_their_bounds_answer_400_naming_the_field() {
    let s = seeded().await;
    let base = r#""name": "x", "url": "http://127.0.0.1:9/", "environments": ["prod"]"#;
    let cases = [
        (
            r#""maxBacklogAgeMs": 18446744073709551615"#,
            "maxBacklogAgeMs",
        ),
        (
            r#""maxBacklogAgeMs": 18446744073709551616"#,
            "maxBacklogAgeMs",
        ),
        (
            r#""maxBacklogAgeMs": 9223372036854775808"#,
            "maxBacklogAgeMs",
        ),
        (r#""maxBacklogAgeMs": 31536000001"#, "maxBacklogAgeMs"),
        (r#""maxBacklogAgeMs": -1"#, "maxBacklogAgeMs"),
        (r#""maxBacklogAgeMs": 999"#, "maxBacklogAgeMs"),
        (r#""flushIntervalMs": 99"#, "flushIntervalMs"),
        (r#""flushIntervalMs": 3600001"#, "flushIntervalMs"),
        (r#""flushIntervalMs": 1e3"#, "flushIntervalMs"),
        (r#""maxBatchImpressions": 0"#, "maxBatchImpressions"),
        (
            r#""maxBatchImpressions": 4294967296"#,
            "maxBatchImpressions",
        ),
        (r#""maxInFlight": 17"#, "maxInFlight"),
        (r#""maxRequestsPerSecond": 0"#, "maxRequestsPerSecond"),
        (r#""maxRequestsPerSecond": 10001"#, "maxRequestsPerSecond"),
        (r#""protection": {"window": 0}"#, "protection.window"),
        (r#""protection": {"window": 1001}"#, "protection.window"),
        (
            r#""protection": {"window": 5, "minAttempts": 6}"#,
            "protection.minAttempts",
        ),
        (
            r#""protection": {"failureRatePercent": 101}"#,
            "protection.failureRatePercent",
        ),
        (
            r#""protection": {"initialCooldownMs": 18446744073709551615}"#,
            "protection.initialCooldownMs",
        ),
        (
            r#""protection": {"maxCooldownMs": 86400001}"#,
            "protection.maxCooldownMs",
        ),
        (
            r#""protection": {"connectTimeoutMs": 60001}"#,
            "protection.connectTimeoutMs",
        ),
        (
            r#""protection": {"requestTimeoutMs": 99}"#,
            "protection.requestTimeoutMs",
        ),
        (r#""secret": """#, "secret"),
        (r#""environments": []"#, "environments"),
    ];
    for (i, (field_json, field)) in cases.iter().enumerate() {
        let id = format!("bad-{i}");
        let body = format!(r#"{{"id": "{id}", {base}, {field_json}}}"#);
        let a = send_raw(&s, Method::POST, "/v1/integrations", &body).await;
        assert_names_field(&a, field, &format!("POST {field_json}"));
        let (code, _) = s
            .admin(Method::GET, &format!("/v1/integrations/{id}"), None)
            .await;
        assert_eq!(code, 404, "{field_json}: nothing created");
    }
    // Name and id lengths, header counts and lengths.
    let long_name = "n".repeat(201);
    let a = send_raw(
        &s,
        Method::POST,
        "/v1/projects",
        &format!(r#"{{"name": "{long_name}"}}"#),
    )
    .await;
    assert_names_field(&a, "name", "project name of 201 bytes");
    let a = send_raw(
        &s,
        Method::POST,
        "/v1/environments",
        &format!(r#"{{"id": "{}", "name": "E"}}"#, "e".repeat(65)),
    )
    .await;
    assert_names_field(&a, "id", "environment id of 65 bytes");
    let headers: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let body = json!({"id": "hdrs", "name": "x", "url": "http://127.0.0.1:9/",
                      "environments": ["prod"], "headers": headers});
    let a = send_raw(&s, Method::POST, "/v1/integrations", &body.to_string()).await;
    assert_names_field(&a, "headers", "21 custom headers");

    // The same bounds hold on PUT.
    s.integration("ok", "http://127.0.0.1:9/", &["prod"], json!({}))
        .await;
    let body = format!(r#"{{{base}, "maxBacklogAgeMs": 18446744073709551615}}"#);
    let a = send_raw(&s, Method::PUT, "/v1/integrations/ok", &body).await;
    assert_names_field(&a, "maxBacklogAgeMs", "PUT maxBacklogAgeMs u64::MAX");
    assert_eq!(
        s.get_admin("/v1/integrations/ok").await["maxBacklogAgeMs"],
        86_400_000
    );
}

/// The largest accepted backlog age does not overflow into "everything is too old": what
/// is ingested is delivered, and no gap is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_backlog_age_delivers_everything() {
    let s = seeded().await;
    let rx = receiver(FaultMode::Ok).await;
    let max = sluice_core::limits::settings::MAX_BACKLOG_AGE_MS.max;
    let created = s
        .integration(
            "long",
            &rx.url("/hook"),
            &["prod"],
            json!({ "maxBacklogAgeMs": max, "maxRequestsPerSecond": 50 }),
        )
        .await;
    assert_eq!(created["maxBacklogAgeMs"], max);
    assert_eq!(created["maxRequestsPerSecond"], 50, "stored and shown");
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 25)).await, 200);
    assert!(
        eventually(Duration::from_secs(20), || rx.stats().unique_impressions
            == 25)
        .await,
        "delivered: {:?}",
        rx.stats()
    );
    let gaps = s.get_admin("/v1/integrations/long/gaps").await;
    assert_eq!(gaps["gaps"], json!([]), "no gap");
}

/// Issue 10: `"flushIntervalMS": 100` was silently ignored (201 with the default). Every
/// admin body refuses a field it does not know, naming it, and stores nothing.
#[tokio::test]
async fn unknown_fields_answer_400_naming_the_field() {
    let s = seeded().await;
    s.integration("i1", "http://127.0.0.1:9/", &["prod"], json!({}))
        .await;
    let integ = r#""name": "x", "url": "http://127.0.0.1:9/", "environments": ["prod"]"#;
    let cases: Vec<(Method, &str, String, &str)> = vec![
        (
            Method::POST,
            "/v1/integrations",
            format!(r#"{{"id": "typo", {integ}, "flushIntervalMS": 100}}"#),
            "flushIntervalMS",
        ),
        (
            Method::POST,
            "/v1/integrations",
            format!(r#"{{"id": "typo", {integ}, "protection": {{"windw": 10}}}}"#),
            "protection.windw",
        ),
        (
            Method::PUT,
            "/v1/integrations/i1",
            format!(r#"{{{integ}, "flushIntervalMS": 100}}"#),
            "flushIntervalMS",
        ),
        (
            Method::PATCH,
            "/v1/integrations/i1",
            r#"{"flushIntervalMS": 100}"#.into(),
            "flushIntervalMS",
        ),
        (
            Method::PATCH,
            "/v1/integrations/i1",
            r#"{"protection": {"minAttempt": 2}}"#.into(),
            "protection.minAttempt",
        ),
        (
            Method::POST,
            "/v1/projects",
            r#"{"id": "typo", "name": "P", "nmae": "Q"}"#.into(),
            "nmae",
        ),
        (
            Method::PUT,
            "/v1/projects/default",
            r#"{"name": "P", "owner": "me"}"#.into(),
            "owner",
        ),
        (
            Method::PATCH,
            "/v1/projects/default",
            r#"{"owner": "me"}"#.into(),
            "owner",
        ),
        (
            Method::POST,
            "/v1/environments",
            r#"{"id": "typo", "name": "E", "sdkKey": "abcdefgh1"}"#.into(),
            "sdkKey",
        ),
        (
            Method::PUT,
            "/v1/environments/prod",
            r#"{"name": "E", "sdk_keys": []}"#.into(),
            "sdk_keys",
        ),
        (
            Method::PATCH,
            "/v1/environments/prod",
            r#"{"projects": "default"}"#.into(),
            "projects",
        ),
        (
            Method::POST,
            "/v1/integrations/i1/replay",
            r#"{"from": 0, "to": 1, "since": 0}"#.into(),
            "since",
        ),
    ];
    for (method, path, body, field) in cases {
        let a = send_raw(&s, method.clone(), path, &body).await;
        a.assert_error(400, &format!("{method} {path} {body}"));
        assert!(
            a.detail().contains(field),
            "{method} {path}: detail does not name {field}: {}",
            a.body
        );
    }
    for path in [
        "/v1/integrations/typo",
        "/v1/projects/typo",
        "/v1/environments/typo",
    ] {
        assert_eq!(s.admin(Method::GET, path, None).await.0, 404, "{path}");
    }
    let i1 = s.get_admin("/v1/integrations/i1").await;
    assert_eq!(
        i1["flushIntervalMs"], 200,
        "unchanged by the refused bodies"
    );
    assert_eq!(i1["protection"]["minAttempts"], 10);
    assert_eq!(s.get_admin("/v1/projects/default").await["name"], "Default");
    assert_eq!(
        s.get_admin("/v1/integrations/i1/replays").await["replays"],
        json!([])
    );
}

#[tokio::test]
async fn patch_updates_only_what_it_names() {
    let s = seeded().await;
    let created = s
        .integration(
            "i1",
            "http://127.0.0.1:9/hook",
            &["prod"],
            json!({ "secret": "whsec-patch-secret", "headers": {"X-A": "1", "X-B": "2"},
                    "protection": {"window": 30} }),
        )
        .await;
    let patch = |body: Value| {
        let s = &s;
        async move {
            answer(
                s.client
                    .patch(s.url("/v1/integrations/i1"))
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/merge-patch+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("PATCH"),
            )
            .await
        }
    };

    // One setting; everything else (secret included) kept; the answer is redacted.
    let a = patch(json!({ "flushIntervalMs": 1500 })).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut expected = created.clone();
    expected["flushIntervalMs"] = json!(1500);
    assert_eq!(a.body, expected);
    assert_eq!(a.body["secret"], "********");

    // Objects merge member by member; null removes a member.
    let a = patch(json!({ "headers": {"X-B": null, "X-C": "3"},
                          "protection": {"minAttempts": 10} }))
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["headers"], json!({"X-A": "1", "X-C": "3"}));
    assert_eq!(a.body["protection"]["window"], 30, "kept");
    assert_eq!(a.body["protection"]["minAttempts"], 10);
    assert_eq!(
        a.body["protection"]["failureRatePercent"], 50,
        "default kept"
    );

    // The redacted placeholder keeps the secret; null removes it.
    let a = patch(json!({ "secret": "********", "name": "renamed" })).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["secret"], "********");
    assert_eq!(a.body["name"], "renamed");
    let a = patch(json!({ "secret": null })).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["secret"].is_null(), "{}", a.body);

    // Validated as PUT is: out of bounds, cross-field rules, the destination, the id.
    let before = s.get_admin("/v1/integrations/i1").await;
    let refused = [
        (json!({ "maxBacklogAgeMs": u64::MAX }), "maxBacklogAgeMs"),
        (
            json!({ "protection": {"minAttempts": 31} }),
            "protection.minAttempts",
        ),
        (json!({ "environments": ["nowhere"] }), "environments"),
        (json!({ "id": "other" }), "id"),
        (json!({ "maxInFlight": "2" }), "maxInFlight"),
    ];
    for (body, field) in refused {
        let a = patch(body.clone()).await;
        assert_names_field(&a, field, &format!("PATCH {body}"));
    }
    let a = patch(json!(["not", "an", "object"])).await;
    a.assert_error(400, "PATCH with an array");
    assert_eq!(
        s.get_admin("/v1/integrations/i1").await,
        before,
        "unchanged"
    );

    // Unknown ids are 404; projects and environments patch too.
    let a = s
        .admin_as(
            Method::PATCH,
            "/v1/integrations/nope",
            Some(TOKEN),
            Some(json!({"name": "x"})),
        )
        .await;
    a.assert_error(404, "PATCH unknown integration");
    let a = s
        .admin_as(
            Method::PATCH,
            "/v1/projects/default",
            Some(TOKEN),
            Some(json!({"name": "Main"})),
        )
        .await;
    assert_eq!(a.body, json!({"id": "default", "name": "Main"}));
    let a = s
        .admin_as(
            Method::PATCH,
            "/v1/environments/prod",
            Some(TOKEN),
            Some(json!({"name": "Prod"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"id": "prod", "name": "Prod", "project": "default", "sdkKeys": [SDK_KEY]})
    );
    let a = s
        .admin_as(
            Method::PATCH,
            "/v1/environments/prod",
            Some(TOKEN),
            Some(json!({"sdkKeys": ["short"]})),
        )
        .await;
    assert_names_field(&a, "sdkKeys", "PATCH an SDK key too short");
}

/// A PATCH that changes what delivery does takes effect: the new secret signs the next
/// batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_secret_signs_the_next_delivery() {
    let s = seeded().await;
    let rx = receiver_with_secret("whsec-new-secret-1").await;
    s.integration(
        "i1",
        &rx.url("/hook"),
        &["prod"],
        json!({ "secret": "whsec-old-secret-1" }),
    )
    .await;
    let a = s
        .admin_as(
            Method::PATCH,
            "/v1/integrations/i1",
            Some(TOKEN),
            Some(json!({"secret": "whsec-new-secret-1"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["secret"], "********");
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 5)).await, 200);
    assert!(
        eventually(Duration::from_secs(20), || rx.stats().unique_impressions
            == 5)
        .await,
        "{:?}",
        rx.stats()
    );
    assert_eq!(rx.stats().bad_signatures, 0);
}
