//! Delivery end to end (SPEC §1 outgoing form, §3 delivery): a real sluice on 127.0.0.1 and
//! real HTTP receivers on 127.0.0.1. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, Outcome, ReceiverHandle};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);
const ENV: &str = "prod";
const ENV_NAME: &str = "Production";
use sluice_core::outgoing::FIELDS;

/// `n` impressions of `flag` with keys `{prefix}-{i:05}` and times increasing with `i`,
/// for `i` in `start..start+n`.
fn bulk_range(flag: &str, prefix: &str, start: usize, n: usize) -> Value {
    let items: Vec<Value> = (start..start + n)
        .map(|i| json!({ "k": format!("{prefix}-{i:05}"), "t": "on", "m": 1_700_000_000_000i64 + i as i64, "c": 42, "r": "default rule", "b": null, "pt": null }))
        .collect();
    json!([{ "f": flag, "i": items }])
}

async fn sluice_with_env() -> Sluice {
    let s = Sluice::start().await;
    s.environment(ENV, ENV_NAME, SDK_KEY).await;
    s
}

async fn ingest(s: &Sluice, body: &Value) {
    assert_eq!(s.send_bulk(SDK_KEY, body).await, 200);
}

async fn wait_unique(rx: &ReceiverHandle, n: u64) -> sluice_receiver::Stats {
    match rx.wait_until(T, |st| st.unique_impressions >= n).await {
        Ok(st) => st,
        Err(st) => panic!("expected {n} unique impressions within {T:?}; receiver stats: {st:?}"),
    }
}

async fn wait_requests(rx: &ReceiverHandle, n: u64) {
    if let Err(st) = rx.wait_until(T, |st| st.requests >= n).await {
        panic!("expected {n} requests within {T:?}; receiver stats: {st:?}");
    }
}

/// Polls the integration's status until `pred` holds (panics after [`T`]).
async fn wait_status(s: &Sluice, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let st = s.status(id).await;
        if pred(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "status of {id} never matched: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every delivered impression object of all captured requests, in arrival order, after
/// checking each request is a gzip JSON array.
fn delivered_objects(reqs: &[Captured]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in reqs {
        assert!(
            r.is_gzip(),
            "default delivery must be gzip: {:?}",
            r.headers
        );
        match r.json() {
            Value::Array(items) => out.extend(items),
            other => panic!("delivery body is not a JSON array: {other}"),
        }
    }
    out
}

fn assert_exact_fields(obj: &Value) {
    let keys: HashSet<&str> = obj
        .as_object()
        .expect("impression is an object")
        .keys()
        .map(String::as_str)
        .collect();
    let want: HashSet<&str> = FIELDS.into_iter().collect();
    assert_eq!(
        keys, want,
        "outgoing impression must have exactly the 14 fields: {obj}"
    );
}

#[tokio::test]
async fn outgoing_form_of_real_sdk_fixtures_has_every_field_right() {
    let s = Sluice::start().await;
    s.environment(ENV, ENV_NAME, "sdk-key-abc").await;
    let cap = Capture::start(200).await;
    s.integration("all", &cap.url("/hook"), &[ENV], json!({}))
        .await;

    let mut expected = Vec::new();
    let mut total = 0;
    for name in [
        "python-10.7.0-debug-bulk.json",
        "nodejs-11.11.2-debug-bulk-properties.json",
    ] {
        let fx = fixture(name);
        let headers: Vec<(String, String)> = fx["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let a = s
            .post_raw(
                "/api/testImpressions/bulk",
                None,
                &h,
                serde_json::to_vec(&fx["body"]).unwrap(),
            )
            .await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        let hv = |n: &str| fx["headers"][n].as_str().unwrap().to_owned();
        let (sdk, version) = hv("SplitSDKVersion")
            .split_once('-')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        for group in fx["body"].as_array().unwrap() {
            for item in group["i"].as_array().unwrap() {
                total += 1;
                expected.push(json!({
                    "key": item["k"],
                    "split": group["f"],
                    "environmentId": ENV,
                    "environmentName": ENV_NAME,
                    "treatment": item["t"],
                    "time": item["m"],
                    "bucketingKey": null,
                    "label": item["r"],
                    "machineName": hv("SplitSDKMachineName"),
                    "machineIp": hv("SplitSDKMachineIP"),
                    "splitVersionNumber": item["c"],
                    "sdk": sdk,
                    "sdkVersion": version,
                    "properties": item.get("properties").cloned().unwrap_or(Value::Null),
                }));
            }
        }
    }
    assert_eq!(total, 16);
    // Sanity of the expectation itself: the fixtures are what the SPEC says.
    assert_eq!(expected[0]["sdk"], "python");
    assert_eq!(expected[0]["sdkVersion"], "10.7.0");
    assert_eq!(expected[0]["properties"], Value::Null);
    assert_eq!(expected[10]["sdk"], "nodejs");
    assert_eq!(expected[10]["sdkVersion"], "11.11.2");
    assert_eq!(expected[10]["properties"], "{\"page\":\"cart\",\"i\":0}");

    let ok = eventually(T, || delivered_objects(&cap.requests()).len() >= total).await;
    let got = delivered_objects(&cap.requests());
    assert!(ok, "expected {total} impressions, got {}", got.len());
    for obj in &got {
        assert_exact_fields(obj);
        assert!(obj["time"].is_i64(), "time must be an integer: {obj}");
        assert!(
            obj["splitVersionNumber"].is_i64(),
            "splitVersionNumber must be an integer: {obj}"
        );
        assert!(
            obj["properties"].is_null() || obj["properties"].is_string(),
            "properties must be a string or null: {obj}"
        );
    }
    // Same impressions, same values, in the order they were ingested (one environment).
    assert_eq!(got, expected);
    // The node fixture's properties arrive as the JSON-encoded string it sent, decodable.
    let props: Value = serde_json::from_str(got[15]["properties"].as_str().unwrap()).unwrap();
    assert_eq!(props, json!({"page": "cart", "i": 2}));
}

#[tokio::test]
async fn machine_na_is_null_and_native_route_delivers_all_fields() {
    let s = sluice_with_env().await;
    let cap = Capture::start(200).await;
    s.integration("all", &cap.url("/hook"), &[ENV], json!({}))
        .await;

    // Split route: `NA` machine IP → null; absent machine name → null.
    let body = json!([{ "f": "flag_na", "i": [{ "k": "na-1", "t": "on", "m": 1_700_000_000_001i64, "c": 3 }] }]);
    let a = s
        .post_raw(
            "/api/testImpressions/bulk",
            Some(SDK_KEY),
            &[
                ("Content-Type", "application/json"),
                ("SplitSDKVersion", "go-6.1.0"),
                ("SplitSDKMachineIP", "NA"),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let first = cap.wait_for(1, T).await;
    let objs = delivered_objects(&first);
    assert_eq!(
        objs,
        vec![json!({
            "key": "na-1", "split": "flag_na", "environmentId": ENV, "environmentName": ENV_NAME,
            "treatment": "on", "time": 1_700_000_000_001i64, "bucketingKey": null, "label": null,
            "machineName": null, "machineIp": null, "splitVersionNumber": 3, "sdk": "go",
            "sdkVersion": "6.1.0", "properties": null
        })]
    );

    // Native JSON array: the outgoing form; environment fields come from the key, not the body.
    let native = json!([
        { "key": "n-1", "split": "s1", "treatment": "on", "time": 1_700_000_000_010i64,
          "bucketingKey": "bk-1", "label": "rule-a", "splitVersionNumber": 7,
          "machineName": "host-a", "machineIp": "10.9.9.9", "sdk": "java", "sdkVersion": "4.2.0",
          "properties": "{\"plan\":\"pro\"}", "environmentId": "spoofed", "environmentName": "Spoofed" },
        { "key": "n-2", "split": "s1", "treatment": "off", "time": 1_700_000_000_011i64,
          "bucketingKey": null, "label": null, "splitVersionNumber": 8,
          "machineName": "NA", "machineIp": "NA", "sdk": "java", "sdkVersion": "4.2.0", "properties": null }
    ]);
    let a = s
        .post_raw(
            "/v1/impressions",
            Some(SDK_KEY),
            &[("Content-Type", "application/json")],
            serde_json::to_vec(&native).unwrap(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let reqs = cap.wait_for(2, T).await;
    assert_eq!(
        delivered_objects(&reqs).len(),
        3,
        "the native batch holds both impressions"
    );

    // NDJSON.
    let nd = concat!(
        "{\"key\":\"n-3\",\"split\":\"s2\",\"treatment\":\"v1\",\"time\":1700000000020,\"bucketingKey\":\"bk-3\",\"splitVersionNumber\":9,\"sdk\":\"ruby\",\"sdkVersion\":\"8.0.0\",\"properties\":\"{\\\"x\\\":[1,2]}\"}\n",
        "\n",
        "{\"key\":\"n-4\",\"split\":\"s2\",\"treatment\":\"v2\",\"time\":1700000000021,\"label\":\"rule-b\",\"sdk\":\"ruby\",\"sdkVersion\":\"8.0.0\"}\n",
    );
    let a = s
        .post_raw(
            "/v1/impressions",
            Some(SDK_KEY),
            &[("Content-Type", "application/x-ndjson")],
            nd.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ok = eventually(T, || delivered_objects(&cap.requests()).len() >= 5).await;
    let objs = delivered_objects(&cap.requests());
    assert!(ok, "expected 5 impressions, got {objs:?}");
    for o in &objs {
        assert_exact_fields(o);
    }
    assert_eq!(
        objs[1..].to_vec(),
        vec![
            json!({ "key": "n-1", "split": "s1", "environmentId": ENV, "environmentName": ENV_NAME,
                "treatment": "on", "time": 1_700_000_000_010i64, "bucketingKey": "bk-1", "label": "rule-a",
                "machineName": "host-a", "machineIp": "10.9.9.9", "splitVersionNumber": 7, "sdk": "java",
                "sdkVersion": "4.2.0", "properties": "{\"plan\":\"pro\"}" }),
            json!({ "key": "n-2", "split": "s1", "environmentId": ENV, "environmentName": ENV_NAME,
                "treatment": "off", "time": 1_700_000_000_011i64, "bucketingKey": null, "label": null,
                "machineName": null, "machineIp": null, "splitVersionNumber": 8, "sdk": "java",
                "sdkVersion": "4.2.0", "properties": null }),
            json!({ "key": "n-3", "split": "s2", "environmentId": ENV, "environmentName": ENV_NAME,
                "treatment": "v1", "time": 1_700_000_000_020i64, "bucketingKey": "bk-3", "label": null,
                "machineName": null, "machineIp": null, "splitVersionNumber": 9, "sdk": "ruby",
                "sdkVersion": "8.0.0", "properties": "{\"x\":[1,2]}" }),
            json!({ "key": "n-4", "split": "s2", "environmentId": ENV, "environmentName": ENV_NAME,
                "treatment": "v2", "time": 1_700_000_000_021i64, "bucketingKey": null, "label": "rule-b",
                "machineName": null, "machineIp": null, "splitVersionNumber": 0, "sdk": "ruby",
                "sdkVersion": "8.0.0", "properties": null }),
        ]
    );
}

/// Six impressions: flag `f1` on×3 off×1, flag `f2` off×2.
fn mixed_batch() -> Value {
    let item = |k: &str, t: &str| json!({ "k": k, "t": t, "m": 1_700_000_000_000i64, "c": 1, "r": "r", "b": null, "pt": null });
    json!([
        { "f": "f1", "i": [item("a", "on"), item("b", "on"), item("c", "on"), item("d", "off")] },
        { "f": "f2", "i": [item("e", "off"), item("g", "off")] }
    ])
}

#[tokio::test]
async fn gzip_rules_formats_and_headers() {
    let s = sluice_with_env().await;
    let (def, plain, slack, fivetran) = (
        Capture::start(200).await,
        Capture::start(200).await,
        Capture::start(200).await,
        Capture::start(200).await,
    );
    s.integration(
        "def",
        &def.url("/d"),
        &[ENV],
        json!({ "headers": { "X-Team": "growth", "Authorization": "Bearer dest-token" } }),
    )
    .await;
    s.integration("plain", &plain.url("/p"), &[ENV], json!({ "gzip": false }))
        .await;
    s.integration(
        "slack",
        &slack.url("/s"),
        &[ENV],
        json!({ "format": "slack" }),
    )
    .await;
    // gzip: true is overridden by the Fivetran format (SPEC: no gzip for Fivetran).
    s.integration(
        "fivetran",
        &fivetran.url("/f"),
        &[ENV],
        json!({ "format": "fivetran", "gzip": true }),
    )
    .await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ingest(&s, &mixed_batch()).await;

    let d = def.wait_for(1, T).await.remove(0);
    assert_eq!(d.path, "/d");
    assert_eq!(d.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        d.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        d.header("user-agent"),
        Some(format!("sluice/{}", env!("CARGO_PKG_VERSION")))
    );
    let id = d.header("webhook-id").expect("webhook-id");
    assert!(!id.is_empty() && id.len() <= 256, "webhook-id {id:?}");
    let ts: i64 = d
        .header("webhook-timestamp")
        .expect("webhook-timestamp")
        .parse()
        .expect("integer timestamp");
    assert!(
        (ts - started).abs() < 120,
        "webhook-timestamp {ts} is not now ({started})"
    );
    assert_eq!(
        d.header("webhook-signature"),
        None,
        "no secret → no signature"
    );
    assert_eq!(d.header("x-team").as_deref(), Some("growth"));
    assert_eq!(
        d.header("authorization").as_deref(),
        Some("Bearer dest-token")
    );
    let arr = serde_json::from_slice::<Value>(&gunzip(&d.body)).expect("gunzipped body is JSON");
    assert_eq!(arr.as_array().map(Vec::len), Some(6));

    let p = plain.wait_for(1, T).await.remove(0);
    assert_eq!(
        p.header("content-encoding"),
        None,
        "gzip:false → plain body"
    );
    assert_eq!(
        p.header("content-type").as_deref(),
        Some("application/json")
    );
    let arr: Value = serde_json::from_slice(&p.body).expect("plain JSON body");
    assert_eq!(arr.as_array().map(Vec::len), Some(6));
    assert!(p.header("webhook-id").is_some() && p.header("webhook-timestamp").is_some());

    let sl = slack.wait_for(1, T).await.remove(0);
    assert_eq!(
        sl.header("content-encoding"),
        None,
        "Slack bodies are never gzipped"
    );
    assert_eq!(
        sl.header("content-type").as_deref(),
        Some("application/json")
    );
    let msg: Value = serde_json::from_slice(&sl.body).expect("Slack body is plain JSON");
    let obj = msg.as_object().expect("Slack body is an object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"], "{msg}");
    let text = msg["text"].as_str().unwrap();
    assert!(text.contains("6 impressions"), "{text}");
    let line = |flag: &str| {
        text.lines()
            .find(|l| l.contains(flag))
            .unwrap_or_else(|| panic!("no line for {flag}: {text}"))
    };
    assert!(
        line("f1").contains("on: 3") && line("f1").contains("off: 1"),
        "{text}"
    );
    assert!(
        line("f2").contains("off: 2") && !line("f2").contains("on:"),
        "{text}"
    );

    let f = fivetran.wait_for(1, T).await.remove(0);
    assert_eq!(
        f.header("content-encoding"),
        None,
        "Fivetran bodies are never gzipped"
    );
    let arr: Value = serde_json::from_slice(&f.body).expect("plain JSON array");
    assert_eq!(arr.as_array().map(Vec::len), Some(6));
    assert_exact_fields(&arr[0]);
}

#[tokio::test]
async fn signatures_verify_with_the_integration_secret() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let s = sluice_with_env().await;
    let rx = receiver_with_secret(SECRET).await;
    let cap = Capture::start(200).await;
    s.integration(
        "signed",
        &rx.url("/hook"),
        &[ENV],
        json!({ "secret": SECRET }),
    )
    .await;
    s.integration(
        "signed-raw",
        &cap.url("/hook"),
        &[ENV],
        json!({ "secret": "plain-secret" }),
    )
    .await;
    for i in 0..3 {
        ingest(&s, &bulk_range("sig", &format!("r{i}"), 0, 40)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let st = wait_unique(&rx, 120).await;
    assert_eq!(st.bad_signatures, 0, "{st:?}");
    assert!(st.delivered_batches > 0);
    for r in rx.requests() {
        assert!(r.signature_present);
        assert_eq!(r.signature_ok, Some(true), "{r:?}");
    }
    // Independently: the signature is HMAC-SHA256 over "{id}.{timestamp}.{uncompressed body}".
    let ok = eventually(T, || {
        cap.requests()
            .iter()
            .map(|r| r.json().as_array().map_or(0, Vec::len))
            .sum::<usize>()
            >= 120
    })
    .await;
    assert!(ok);
    for r in cap.requests() {
        assert!(r.is_gzip());
        let id = r.header("webhook-id").unwrap();
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        let sig = r.header("webhook-signature").expect("signed");
        assert!(sig.starts_with("v1,"), "{sig}");
        assert!(
            sluice_core::signature::verify("plain-secret", &id, ts, &r.plain(), &sig),
            "signature over the uncompressed body"
        );
        assert!(
            !sluice_core::signature::verify("plain-secret", &id, ts, &r.body, &sig),
            "not over the gzip bytes"
        );
        assert!(!sluice_core::signature::verify(
            "other-secret",
            &id,
            ts,
            &r.plain(),
            &sig
        ));
    }
}

#[tokio::test]
async fn wrong_secret_is_rejected_and_the_batch_kept_until_fixed_with_the_same_id() {
    let s = sluice_with_env().await;
    let rx = receiver_with_secret("receiver-secret").await;
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "secret": "wrong-secret", "flushIntervalMs": 500 }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 5)).await;
    if let Err(st) = rx.wait_until(T, |st| st.bad_signatures >= 2).await {
        panic!("expected rejected deliveries: {st:?}");
    }
    let st = rx.stats();
    assert_eq!(st.unique_impressions, 0);
    let failed: Vec<_> = rx.requests();
    assert!(
        failed
            .iter()
            .all(|r| r.status == Some(401) && r.signature_ok == Some(false)),
        "{failed:?}"
    );
    let id = failed[0].webhook_id.clone().expect("webhook-id");
    assert!(
        failed.iter().all(|r| r.webhook_id.as_deref() == Some(&id)),
        "retries carry the same webhook-id: {failed:?}"
    );
    let status = s.status("int").await;
    assert_eq!(
        status["lagImpressions"], 5,
        "the rejected batch is kept: {status}"
    );
    assert_eq!(status["deliveredImpressions"], 0, "{status}");
    assert!(status["failedAttempts"].as_u64().unwrap() >= 2, "{status}");

    // Fix the secret with PUT; the kept batch is delivered under the same id.
    let mut cfg = s.get_admin("/v1/integrations/int").await;
    assert_eq!(cfg["secret"], "********");
    cfg["secret"] = json!("receiver-secret");
    let (code, v) = s
        .admin(reqwest::Method::PUT, "/v1/integrations/int", Some(cfg))
        .await;
    assert_eq!(code, 200, "{v}");
    let st = wait_unique(&rx, 5).await;
    assert_eq!(st.unique_impressions, 5);
    let delivered: Vec<_> = rx
        .requests()
        .into_iter()
        .filter(|r| r.status == Some(200))
        .collect();
    assert_eq!(
        delivered[0].webhook_id.as_deref(),
        Some(id.as_str()),
        "redelivery keeps the batch's webhook-id"
    );
    assert_eq!(
        rx.impressions()
            .iter()
            .map(|i| i.impression.key.clone())
            .collect::<Vec<_>>(),
        (0..5).map(|i| format!("k-{i:05}")).collect::<Vec<_>>()
    );
    wait_status(&s, "int", |st| st["lagImpressions"] == 0).await;
}

#[tokio::test]
async fn failed_attempt_is_retried_once_after_300ms_then_waits_for_the_flush_interval() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Status(500)).await;
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 2000 }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 5)).await;
    wait_requests(&rx, 2).await;
    let r = rx.requests();
    let t0 = r[0].received_at;
    let gap = r[1].received_at - t0;
    assert!(
        gap >= Duration::from_millis(250) && gap < Duration::from_secs(2),
        "retry came {gap:?} after the first attempt"
    );
    // No third attempt before the flush interval has passed since the retry (judged by
    // arrival times, so a slow test thread cannot make this flaky).
    wait_requests(&rx, 3).await;
    let r = rx.requests();
    let gap2 = r[2].received_at - r[1].received_at;
    assert!(
        gap2 >= Duration::from_millis(1900),
        "third attempt {gap2:?} after the retry, before flushIntervalMs 2000"
    );
    let id = r[0].webhook_id.clone().expect("webhook-id");
    assert!(
        r.iter()
            .all(|x| x.webhook_id.as_deref() == Some(&id) && x.status == Some(500)),
        "{r:?}"
    );
    // The attempts log agrees: a live attempt, then its retry.
    let a = s.get_admin("/v1/integrations/int/attempts").await;
    let attempts = a["attempts"].as_array().unwrap();
    let oldest_first: Vec<&Value> = attempts.iter().rev().collect();
    assert_eq!(oldest_first[0]["kind"], "live", "{a}");
    assert_eq!(oldest_first[1]["kind"], "retry", "{a}");
}

#[tokio::test]
async fn retry_after_is_honoured_and_capped_at_the_max_cooldown() {
    let s = sluice_with_env().await;
    let honoured = receiver(FaultMode::Retry {
        status: 503,
        after_secs: 2,
    })
    .await;
    let capped = receiver(FaultMode::Retry {
        status: 429,
        after_secs: 60,
    })
    .await;
    s.integration(
        "honoured",
        &honoured.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 200 }),
    )
    .await;
    s.integration(
        "capped",
        &capped.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 200, "protection": { "initialCooldownMs": 500, "maxCooldownMs": 1000 } }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 3)).await;
    wait_requests(&honoured, 2).await;
    wait_requests(&capped, 2).await;
    let h = honoured.requests();
    let gap = h[1].received_at - h[0].received_at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 not honoured: retried after {gap:?}"
    );
    let c = capped.requests();
    let gap = c[1].received_at - c[0].received_at;
    assert!(
        gap >= Duration::from_millis(900),
        "retried {gap:?} after a 429 with Retry-After"
    );
    assert!(
        gap < Duration::from_secs(30),
        "Retry-After: 60 not capped at maxCooldownMs 1000: {gap:?}"
    );
    assert_eq!(h[0].webhook_id, h[1].webhook_id);
    // Healed: delivered with the same id.
    honoured.set_mode(FaultMode::Ok);
    capped.set_mode(FaultMode::Ok);
    wait_unique(&honoured, 3).await;
    wait_unique(&capped, 3).await;
    assert_eq!(
        honoured.impressions()[0].webhook_id,
        h[0].webhook_id.clone().unwrap()
    );
}

#[tokio::test]
async fn only_200_is_delivered_and_redirects_are_not_followed() {
    let s = sluice_with_env().await;
    let cap = Capture::start(204).await;
    let target = Capture::start(200).await;
    s.integration(
        "int",
        &cap.url("/hook"),
        &[ENV],
        // No protection pause in this test: every attempt counts.
        json!({ "flushIntervalMs": 300, "protection": { "window": 100, "minAttempts": 100, "failingForMs": 3_600_000 } }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 4)).await;
    // 204 No Content is not 200: a failure, retried with the same id.
    let reqs = cap.wait_for(2, T).await;
    let id = reqs[0].header("webhook-id").unwrap();
    assert_eq!(reqs[1].header("webhook-id").as_deref(), Some(id.as_str()));
    let st = s.status("int").await;
    assert_eq!(
        st["deliveredImpressions"], 0,
        "a 204 counted as delivered: {st}"
    );
    assert_eq!(st["lagImpressions"], 4, "{st}");
    // 201 and 202: failures too.
    for code in [201, 202] {
        cap.set_status(code);
        let n = cap.requests().len();
        cap.wait_for(n + 1, T).await;
        assert_eq!(
            s.status("int").await["deliveredImpressions"],
            0,
            "a {code} counted as delivered"
        );
    }
    // A redirect is a failure and is not followed, even to a working endpoint.
    cap.set_location(Some(target.url("/elsewhere")));
    for code in [301, 302, 307, 308] {
        cap.set_status(code);
        let n = cap.requests().len();
        cap.wait_for(n + 1, T).await;
    }
    assert!(target.requests().is_empty(), "sluice followed a redirect");
    let st = s.status("int").await;
    assert_eq!(st["deliveredImpressions"], 0, "{st}");
    assert!(st["failedAttempts"].as_u64().unwrap() >= 6, "{st}");
    // 200: delivered, under the same id.
    cap.set_location(None);
    cap.set_status(200);
    wait_status(&s, "int", |st| {
        st["deliveredImpressions"] == 4 && st["lagImpressions"] == 0
    })
    .await;
    let last = cap.requests().pop().unwrap();
    assert_eq!(last.header("webhook-id").as_deref(), Some(id.as_str()));
    assert!(target.requests().is_empty());
}

#[tokio::test]
async fn failed_batches_are_delivered_later_in_order_nothing_lost() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Status(500)).await;
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 300, "maxBatchImpressions": 50 }),
    )
    .await;
    let mut sent = Vec::new();
    for chunk in 0..10 {
        let body = bulk_range("flag", "k", chunk * 20, 20);
        ingest(&s, &body).await;
        sent.extend((chunk * 20..chunk * 20 + 20).map(|i| format!("k-{i:05}")));
        if chunk == 0 {
            wait_requests(&rx, 2).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = rx.requests();
    assert!(
        failed.iter().all(|r| r.outcome == Outcome::Fault),
        "{failed:?}"
    );
    let first_id = failed[0].webhook_id.clone().expect("webhook-id");
    assert_eq!(failed[1].webhook_id.as_deref(), Some(first_id.as_str()));
    assert_eq!(rx.stats().unique_impressions, 0);
    assert_eq!(s.status("int").await["lagImpressions"], 200);

    rx.set_mode(FaultMode::Ok);
    let st = wait_unique(&rx, 200).await;
    assert_eq!(st.unique_impressions, 200);
    let got = rx.impressions();
    assert_eq!(
        got[0].webhook_id, first_id,
        "the first delivered batch is the one that failed, same id"
    );
    let keys: Vec<String> = got.iter().map(|i| i.impression.key.clone()).collect();
    assert_eq!(keys, sent, "every impression, once, in the order sent");
    assert!(
        got.windows(2)
            .all(|w| w[0].impression.time < w[1].impression.time)
    );
    // No request carried more than maxBatchImpressions.
    assert!(
        rx.requests()
            .iter()
            .all(|r| r.impressions.unwrap_or(0) <= 50)
    );
    wait_status(&s, "int", |st| {
        st["lagImpressions"] == 0 && st["deliveredImpressions"] == 200
    })
    .await;
}

#[tokio::test]
async fn a_kept_batch_spanning_requests_is_resent_whole_after_a_restart() {
    // A failed batch is kept (pinned by offset range); when its worker restarts (here: a
    // configuration change) it is rebuilt from the log and must hold exactly that range,
    // even when it starts inside one stored request and ends two requests later.
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    let put = |changes: Value| {
        let s = &s;
        async move {
            let mut cfg = s.get_admin("/v1/integrations/int").await;
            for (k, v) in changes.as_object().unwrap() {
                cfg[k] = v.clone();
            }
            let (code, v) = s
                .admin(reqwest::Method::PUT, "/v1/integrations/int", Some(cfg))
                .await;
            assert_eq!(code, 200, "{v}");
        }
    };
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 1500, "maxBatchImpressions": 7 }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 10)).await; // offsets 0..10
    wait_unique(&rx, 7).await; // the first batch: 0..7; the cursor is now inside the first request
    s.post_admin("/v1/integrations/int/pause", json!({})).await;
    ingest(&s, &bulk_range("flag", "k", 10, 5)).await; // 10..15
    ingest(&s, &bulk_range("flag", "k", 15, 5)).await; // 15..20
    put(json!({ "maxBatchImpressions": 50 })).await;
    rx.set_mode(FaultMode::Status(500));
    s.post_admin("/v1/integrations/int/resume", json!({})).await;
    wait_requests(&rx, 3).await; // batch 7..20 failed (attempt and retry)
    let failed = rx.requests()[1].clone();
    assert_eq!(failed.status, Some(500));
    put(json!({ "name": "renamed" })).await; // restart: the kept batch is rebuilt from the log
    rx.set_mode(FaultMode::Ok);
    let st = wait_unique(&rx, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.stats().unique_impressions, 20, "{st:?}");
    let keys: Vec<String> = rx
        .impressions()
        .iter()
        .map(|i| i.impression.key.clone())
        .collect();
    assert_eq!(
        keys,
        (0..20).map(|i| format!("k-{i:05}")).collect::<Vec<_>>(),
        "lost or reordered impressions"
    );
    let ok: Vec<_> = rx
        .requests()
        .into_iter()
        .filter(|r| r.status == Some(200))
        .collect();
    assert_eq!(
        ok[1].webhook_id, failed.webhook_id,
        "the kept batch keeps its id"
    );
    assert_eq!(
        ok[1].impressions,
        Some(13),
        "the kept batch 7..20 is resent whole: {ok:?}"
    );
    wait_status(&s, "int", |st| {
        st["lagImpressions"] == 0 && st["deliveredImpressions"] == 20
    })
    .await;
}

#[tokio::test]
async fn flush_interval_is_respected() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 1500 }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "a", 0, 3)).await;
    wait_requests(&rx, 1).await;
    let t0 = rx.requests()[0].received_at;
    ingest(&s, &bulk_range("flag", "a", 3, 3)).await;
    wait_unique(&rx, 6).await;
    let r = rx.requests();
    assert_eq!(
        r.len(),
        2,
        "the 3 waiting impressions go out as one batch: {r:?}"
    );
    // Nothing arrived within 0.7 s after the first batch (by arrival time).
    assert!(
        r[1].received_at - t0 >= Duration::from_millis(700),
        "a small batch went out {:?} after the previous one, before flushIntervalMs 1500",
        r[1].received_at - t0
    );
}

#[tokio::test]
async fn max_batch_impressions_is_respected_and_full_batches_do_not_wait() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    // A long flush interval: only "maxBatchImpressions waiting" can make these go out.
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 120_000, "maxBatchImpressions": 100 }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 1000)).await;
    let st = wait_unique(&rx, 1000).await;
    assert_eq!(st.unique_impressions, 1000);
    let r = rx.requests();
    assert!(r.len() >= 10, "{} requests", r.len());
    for x in &r {
        assert!(
            x.impressions.unwrap() <= 100,
            "a request carried {:?} impressions",
            x.impressions
        );
    }
    let keys: Vec<String> = rx
        .impressions()
        .iter()
        .map(|i| i.impression.key.clone())
        .collect();
    assert_eq!(
        keys,
        (0..1000).map(|i| format!("k-{i:05}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn multi_environment_integration_gets_both_and_only_impressions_after_creation() {
    let s = sluice_with_env().await;
    s.environment("stg", "Staging", "sdk-key-test-0002").await;
    // Ingested before the integration exists: never delivered to it.
    ingest(&s, &bulk_range("flag", "old", 0, 5)).await;
    assert_eq!(
        s.send_bulk("sdk-key-test-0002", &bulk_range("flag", "old-s", 0, 5))
            .await,
        200
    );
    let rx = receiver(FaultMode::Ok).await;
    s.integration("both", &rx.url("/hook"), &[ENV, "stg"], json!({}))
        .await;
    ingest(&s, &bulk_range("flag", "new-p", 0, 5)).await;
    assert_eq!(
        s.send_bulk("sdk-key-test-0002", &bulk_range("flag", "new-s", 0, 4))
            .await,
        200
    );
    wait_unique(&rx, 9).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = rx.stats();
    assert_eq!(st.unique_impressions, 9, "{st:?}");
    assert_eq!(st.per_environment.get(ENV_NAME), Some(&5));
    assert_eq!(st.per_environment.get("Staging"), Some(&4));
    for i in rx.impressions() {
        let imp = i.impression;
        assert!(
            imp.key.starts_with("new-"),
            "impression ingested before creation delivered: {imp:?}"
        );
        let want = if imp.key.starts_with("new-p") {
            (ENV, ENV_NAME)
        } else {
            ("stg", "Staging")
        };
        assert_eq!(
            (imp.environment_id.as_str(), imp.environment_name.as_str()),
            want
        );
    }

    // An environment added later by PUT: only what is ingested after the change arrives.
    s.environment("dev", "Development", "sdk-key-test-0003")
        .await;
    assert_eq!(
        s.send_bulk("sdk-key-test-0003", &bulk_range("flag", "old-d", 0, 3))
            .await,
        200
    );
    let mut cfg = s.get_admin("/v1/integrations/both").await;
    cfg["environments"] = json!([ENV, "stg", "dev"]);
    let (code, v) = s
        .admin(reqwest::Method::PUT, "/v1/integrations/both", Some(cfg))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        s.send_bulk("sdk-key-test-0003", &bulk_range("flag", "new-d", 0, 2))
            .await,
        200
    );
    wait_unique(&rx, 11).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = rx.stats();
    assert_eq!(st.unique_impressions, 11, "{st:?}");
    assert_eq!(st.per_environment.get("Development"), Some(&2));
    assert!(
        rx.impressions()
            .iter()
            .all(|i| i.impression.key.starts_with("new-"))
    );
}

#[tokio::test]
async fn operator_pause_and_resume() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration("int", &rx.url("/hook"), &[ENV], json!({}))
        .await;
    let v = s.post_admin("/v1/integrations/int/pause", json!({})).await;
    assert_eq!(v["state"], "paused", "{v}");
    assert_eq!(s.status("int").await["state"], "paused");
    ingest(&s, &bulk_range("flag", "k", 0, 10)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.stats().requests, 0, "delivered while paused");
    let st = s.status("int").await;
    assert_eq!(st["state"], "paused", "{st}");
    assert_eq!(st["lagImpressions"], 10, "{st}");
    let v = s.post_admin("/v1/integrations/int/resume", json!({})).await;
    assert_eq!(v["state"], "active", "{v}");
    wait_unique(&rx, 10).await;
    assert_eq!(rx.stats().unique_impressions, 10);
}

#[tokio::test]
async fn operator_pause_survives_a_restart() {
    let mut s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration("int", &rx.url("/hook"), &[ENV], json!({}))
        .await;
    s.post_admin("/v1/integrations/int/pause", json!({})).await;
    ingest(&s, &bulk_range("flag", "k", 0, 4)).await;
    let tmp = s.stop().await;
    let dir = s.dir.clone();
    let s = Sluice::start_in(&dir, |_| {}).await;
    ingest(&s, &bulk_range("flag", "k", 4, 4)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        rx.stats().requests,
        0,
        "delivered after a restart although paused"
    );
    let st = s.status("int").await;
    assert_eq!(st["state"], "paused", "{st}");
    assert_eq!(st["lagImpressions"], 8, "{st}");
    s.post_admin("/v1/integrations/int/resume", json!({})).await;
    wait_unique(&rx, 8).await;
    let keys: Vec<String> = rx
        .impressions()
        .iter()
        .map(|i| i.impression.key.clone())
        .collect();
    assert_eq!(
        keys,
        (0..8).map(|i| format!("k-{i:05}")).collect::<Vec<_>>()
    );
    drop(tmp);
}

#[tokio::test]
async fn disabled_integration_keeps_its_backlog_and_delivers_it_when_enabled() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration("int", &rx.url("/hook"), &[ENV], json!({ "enabled": false }))
        .await;
    ingest(&s, &bulk_range("flag", "k", 0, 6)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.stats().requests, 0, "a disabled integration delivered");
    let st = s.status("int").await;
    for field in [
        "state",
        "lagImpressions",
        "lagSeconds",
        "deliveredImpressions",
        "failedAttempts",
        "pausedUntil",
        "lastError",
    ] {
        assert!(st.get(field).is_some(), "status lacks {field}: {st}");
    }
    assert_eq!(st["state"], "disabled", "{st}");
    assert_eq!(st["lagImpressions"], 6, "{st}");
    assert!(st["lagSeconds"].as_f64().is_some_and(|x| x >= 0.0), "{st}");
    let mut cfg = s.get_admin("/v1/integrations/int").await;
    cfg["enabled"] = json!(true);
    let (code, v) = s
        .admin(reqwest::Method::PUT, "/v1/integrations/int", Some(cfg))
        .await;
    assert_eq!(code, 200, "{v}");
    wait_unique(&rx, 6).await;
    let st = wait_status(&s, "int", |st| {
        st["deliveredImpressions"] == 6 && st["lagImpressions"] == 0
    })
    .await;
    assert_eq!(st["state"], "active", "{st}");
    assert_eq!(st["failedAttempts"], 0, "{st}");
    assert!(st["lastError"].is_null(), "{st}");
}

#[tokio::test]
async fn test_endpoint_returns_the_receivers_answer() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration("int", &rx.url("/hook"), &[ENV], json!({}))
        .await;
    let v = s.post_admin("/v1/integrations/int/test", json!({})).await;
    assert_eq!(v["delivered"], true, "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        rx.stats().requests,
        1,
        "the test batch reached the receiver"
    );
    assert_eq!(
        rx.stats().bad_bodies + rx.stats().bad_headers,
        0,
        "the sample batch is a valid delivery"
    );
    rx.set_mode(FaultMode::Status(500));
    let v = s.post_admin("/v1/integrations/int/test", json!({})).await;
    assert_eq!(v["delivered"], false, "{v}");
    assert_eq!(v["status"], 500, "{v}");
    assert_eq!(rx.stats().requests, 2);
    // A test send is not a delivery.
    assert_eq!(s.status("int").await["deliveredImpressions"], 0);

    // A test send is signed like a live batch.
    let signed = receiver_with_secret("test-secret").await;
    s.integration(
        "signed",
        &signed.url("/hook"),
        &[ENV],
        json!({ "secret": "test-secret" }),
    )
    .await;
    let v = s
        .post_admin("/v1/integrations/signed/test", json!({}))
        .await;
    assert_eq!(v["delivered"], true, "{v}");
    assert_eq!(signed.stats().bad_signatures, 0);
    assert_eq!(signed.requests()[0].signature_ok, Some(true));
}

#[tokio::test]
async fn attempts_endpoint_lists_attempts() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Status(500)).await;
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 300 }),
    )
    .await;
    ingest(&s, &bulk_range("flag", "k", 0, 7)).await;
    wait_requests(&rx, 2).await;
    rx.set_mode(FaultMode::Ok);
    wait_unique(&rx, 7).await;
    let id = rx.requests()[0].webhook_id.clone().unwrap();
    let a = s.get_admin("/v1/integrations/int/attempts").await;
    let attempts = a["attempts"].as_array().expect("attempts list");
    assert!(attempts.len() >= 3, "{a}");
    for at in attempts {
        assert_eq!(at["batchId"], id.as_str(), "{at}");
        assert!(at["time"].is_i64(), "{at}");
        assert!(at["durationMs"].is_u64(), "{at}");
        assert_eq!(at["impressions"], 7, "{at}");
    }
    let failed: Vec<&Value> = attempts.iter().filter(|a| a["status"] == 500).collect();
    assert!(failed.len() >= 2, "{a}");
    assert!(
        failed
            .iter()
            .all(|f| f["error"].as_str().is_some_and(|e| !e.is_empty())),
        "{a}"
    );
    let okd: Vec<&Value> = attempts.iter().filter(|a| a["status"] == 200).collect();
    assert_eq!(okd.len(), 1, "{a}");
    assert!(okd[0]["error"].is_null());
    // Newest first.
    assert_eq!(attempts[0]["status"], 200, "{a}");
}

#[tokio::test]
async fn batches_are_full_when_the_cursor_is_inside_a_stored_request() {
    let s = sluice_with_env().await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration(
        "int",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 120_000, "maxBatchImpressions": 7 }),
    )
    .await;
    // Requests of 10: every batch after the first starts inside a stored request.
    for r in 0..7 {
        ingest(&s, &bulk_range("flag", "k", r * 10, 10)).await;
    }
    let st = wait_unique(&rx, 70).await;
    assert_eq!(st.unique_impressions, 70);
    let sizes: Vec<u64> = rx.requests().iter().filter_map(|x| x.impressions).collect();
    assert_eq!(sizes, vec![7; 10], "every batch is full: {sizes:?}");
}

/// `maxInFlight` lets the environments of one integration send concurrently; each
/// environment still has one batch in flight at a time (order is kept).
#[tokio::test]
async fn max_in_flight_sends_environments_concurrently() {
    for (in_flight, concurrent) in [(1u32, false), (2u32, true)] {
        let s = sluice_with_env().await;
        s.environment("env-b", "Env B", "sdk-key-env-b-0001").await;
        let rx = receiver(FaultMode::Slow(Duration::from_millis(800))).await;
        s.integration(
            "int",
            &rx.url("/hook"),
            &[ENV, "env-b"],
            json!({ "flushIntervalMs": 120_000, "maxBatchImpressions": 10, "maxInFlight": in_flight }),
        )
        .await;
        ingest(&s, &bulk_range("flag", "a", 0, 10)).await;
        assert_eq!(
            s.send_bulk("sdk-key-env-b-0001", &bulk_range("flag", "b", 0, 10))
                .await,
            200
        );
        wait_unique(&rx, 20).await;
        let r = rx.requests();
        assert_eq!(r.len(), 2, "{r:?}");
        let gap = r[1].received_at.duration_since(r[0].received_at);
        if concurrent {
            assert!(
                gap < Duration::from_millis(600),
                "maxInFlight 2: second request {gap:?} after the first"
            );
        } else {
            assert!(
                gap >= Duration::from_millis(750),
                "maxInFlight 1: second request only {gap:?} after the first"
            );
        }
    }
}
