//! Bad ingest input (SPEC §2): each bad request gets its documented status and a JSON
//! `{"error","detail"}` body, stores NOTHING (checked in the log, in the integration's lag,
//! and at a receiver), and leaves the server fine for the next request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use serde_json::{Value, json};
use sluice::serve::ServeOptions;
use sluice_receiver::{FaultMode, ReceiverHandle};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const ENV: &str = "prod";
/// A second environment nobody watches: used to show the server still accepts good input
/// right after each bad request, without touching the watched environment.
const PROBE_KEY: &str = "sdk-key-probe-0001";
const BULK: &str = "/api/testImpressions/bulk";
const NATIVE: &str = "/v1/impressions";
const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

async fn setup_with(f: impl FnOnce(&mut ServeOptions)) -> (Sluice, ReceiverHandle) {
    let s = Sluice::start_with(f).await;
    s.environment(ENV, "Production", SDK_KEY).await;
    s.environment("probe", "Probe", PROBE_KEY).await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration(
        "watch",
        &rx.url("/hook"),
        &[ENV],
        json!({ "flushIntervalMs": 200 }),
    )
    .await;
    (s, rx)
}

async fn setup() -> (Sluice, ReceiverHandle) {
    setup_with(|_| {}).await
}

fn item(k: &str) -> Value {
    json!({ "k": k, "t": "on", "m": 1_700_000_000_000i64, "c": 1, "r": "rule", "b": null, "pt": null })
}

fn good_bulk(prefix: &str, n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n).map(|i| item(&format!("{prefix}-{i}"))).collect();
    serde_json::to_vec(&json!([{ "f": "flag", "i": items }])).unwrap()
}

/// The server still takes good input (in the unwatched environment).
async fn assert_healthy(s: &Sluice, what: &str) {
    let a = s
        .post_raw(BULK, Some(PROBE_KEY), &[JSON_CT], good_bulk("probe", 1))
        .await;
    assert_eq!(
        a.status, 200,
        "after {what}: a good request failed: {}",
        a.body
    );
}

/// Nothing reached the watched environment: its log is empty, the integration has no lag,
/// and the receiver got nothing.
async fn assert_nothing_stored(s: &Sluice, rx: &ReceiverHandle, what: &str) {
    assert_eq!(s.stored(ENV).await, 0, "{what}: impressions were stored");
    let st = s.status("watch").await;
    assert_eq!(st["lagImpressions"], 0, "{what}: {st}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rx.stats().requests,
        0,
        "{what}: the receiver got a delivery: {:?}",
        rx.impressions()
    );
    assert_eq!(s.stored(ENV).await, 0, "{what}: impressions were stored");
}

/// A good request to the watched environment is stored and delivered.
async fn assert_good_delivered(s: &Sluice, rx: &ReceiverHandle, n: usize) {
    let before = rx.stats().unique_impressions;
    let a = s
        .post_raw(BULK, Some(SDK_KEY), &[JSON_CT], good_bulk("good", n))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    if let Err(st) = rx
        .wait_until(T, |st| st.unique_impressions >= before + n as u64)
        .await
    {
        panic!("a good request was not delivered: {st:?}");
    }
}

struct Case {
    name: &'static str,
    path: &'static str,
    key: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
}

fn case(name: &'static str, path: &'static str, body: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        path,
        key: Some(SDK_KEY),
        headers: vec![("Content-Type", "application/json".into())],
        body: body.into(),
        status,
    }
}

fn json_case(name: &'static str, path: &'static str, body: Value, status: u16) -> Case {
    case(name, path, serde_json::to_vec(&body).unwrap(), status)
}

impl Case {
    fn header(mut self, k: &'static str, v: &str) -> Case {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        self.headers.push((k, v.to_owned()));
        self
    }
    fn key(mut self, key: Option<&'static str>) -> Case {
        self.key = key;
        self
    }
}

async fn run_cases(s: &Sluice, cases: Vec<Case>) {
    for c in cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = s.post_raw(c.path, c.key, &headers, c.body).await;
        a.assert_error(c.status, c.name);
        assert_healthy(s, c.name).await;
    }
}

#[tokio::test]
async fn malformed_and_invalid_bodies_are_rejected_and_store_nothing() {
    let (s, rx) = setup().await;
    let long = "x".repeat(1025);
    let big_props = serde_json::to_string(&json!({ "p": "y".repeat(33 * 1024) })).unwrap();
    let mut props_item = item("bad-props");
    props_item["properties"] = json!(big_props);
    let cases = vec![
        case("malformed JSON", BULK, r#"[{"f":"flag","i":[{"k":"bad-1","t":"on""#, 400),
        case("empty body", BULK, "", 400),
        case("not JSON at all", BULK, "hello", 400),
        json_case("object instead of array", BULK, json!({ "f": "flag", "i": [item("bad-2")] }), 400),
        json_case("m as string", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-3", "t": "on", "m": "1700000000000", "c": 1 }] }]), 400),
        json_case("k as number", BULK, json!([{ "f": "flag", "i": [{ "k": 12345, "t": "on", "m": 1, "c": 1 }] }]), 400),
        json_case("c as string", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-4", "t": "on", "m": 1, "c": "x" }] }]), 400),
        json_case("missing k", BULK, json!([{ "f": "flag", "i": [{ "t": "on", "m": 1, "c": 1 }] }]), 400),
        json_case("missing t", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-5", "m": 1, "c": 1 }] }]), 400),
        json_case("missing m", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-6", "t": "on", "c": 1 }] }]), 400),
        json_case("missing f", BULK, json!([{ "i": [item("bad-7")] }]), 400),
        json_case("i not an array", BULK, json!([{ "f": "flag", "i": item("bad-8") }]), 400),
        json_case("empty key", BULK, json!([{ "f": "flag", "i": [item("")] }]), 400),
        json_case("empty flag", BULK, json!([{ "f": "", "i": [item("bad-9")] }]), 400),
        json_case("empty treatment", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-10", "t": "", "m": 1 }] }]), 400),
        json_case("negative time", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-11", "t": "on", "m": -5 }] }]), 400),
        json_case("key too long", BULK, json!([{ "f": "flag", "i": [item(&long)] }]), 400),
        json_case(
            "valid impression then an invalid one",
            BULK,
            json!([{ "f": "flag", "i": [item("bad-12"), item("bad-13"), { "k": "", "t": "on", "m": 1 }] }]),
            400,
        ),
        json_case(
            "valid group then a group of the wrong type",
            BULK,
            json!([{ "f": "flag", "i": [item("bad-14")] }, { "f": "flag2", "i": [{ "k": "bad-15", "t": "on", "m": "x" }] }]),
            400,
        ),
        json_case("properties too long", BULK, json!([{ "f": "flag", "i": [item("bad-16"), props_item] }]), 400),
        json_case("properties not a string", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-17", "t": "on", "m": 1, "properties": 5 }] }]), 400),
        json_case("wrong Content-Type on the SDK route", BULK, json!([{ "f": "flag", "i": [item("bad-18")] }]), 415)
            .header("Content-Type", "application/xml"),
        // Native route.
        json_case("native: missing split", NATIVE, json!([{ "key": "bad-19", "treatment": "on", "time": 1 }]), 400),
        json_case("native: missing time", NATIVE, json!([{ "key": "bad-20", "split": "s", "treatment": "on" }]), 400),
        json_case("native: time as string", NATIVE, json!([{ "key": "bad-21", "split": "s", "treatment": "on", "time": "1" }]), 400),
        json_case(
            "native: valid then invalid",
            NATIVE,
            json!([{ "key": "bad-22", "split": "s", "treatment": "on", "time": 1 }, { "key": "", "split": "s", "treatment": "on", "time": 1 }]),
            400,
        ),
        json_case(
            "native: properties too long",
            NATIVE,
            json!([{ "key": "bad-23", "split": "s", "treatment": "on", "time": 1, "properties": "z".repeat(33 * 1024) }]),
            400,
        ),
        json_case("native: wrong Content-Type", NATIVE, json!([{ "key": "bad-24", "split": "s", "treatment": "on", "time": 1 }]), 415)
            .header("Content-Type", "text/plain"),
        case(
            "native: NDJSON with a bad line",
            NATIVE,
            concat!(
                "{\"key\":\"bad-25\",\"split\":\"s\",\"treatment\":\"on\",\"time\":1}\n",
                "{\"key\":\"bad-26\",\"split\":\"s\",\"treatment\":\"on\",\"time\":\n",
                "{\"key\":\"bad-27\",\"split\":\"s\",\"treatment\":\"on\",\"time\":3}\n"
            ),
            400,
        )
        .header("Content-Type", "application/x-ndjson"),
        case(
            "native: NDJSON with an invalid impression",
            NATIVE,
            "{\"key\":\"bad-28\",\"split\":\"s\",\"treatment\":\"on\",\"time\":1}\n{\"key\":\"bad-29\",\"treatment\":\"on\",\"time\":2}\n",
            400,
        )
        .header("Content-Type", "application/x-ndjson"),
        // Encodings.
        case("invalid gzip", BULK, b"this is not gzip".to_vec(), 400).header("Content-Encoding", "gzip"),
        case("truncated gzip", BULK, gzip(&good_bulk("bad-30", 50))[..40].to_vec(), 400).header("Content-Encoding", "gzip"),
        case("unsupported Content-Encoding", BULK, good_bulk("bad-31", 1), 415).header("Content-Encoding", "br"),
        // Hostile JSON: the server must answer, not crash or stall.
        case("deeply nested JSON", BULK, "[".repeat(200_000), 400),
        case("deeply nested JSON (native)", NATIVE, "[{\"key\":".to_owned() + &"[".repeat(200_000), 400),
        case("invalid UTF-8 in a key", BULK, b"[{\"f\":\"flag\",\"i\":[{\"k\":\"bad-\xff\xfe\",\"t\":\"on\",\"m\":1}]}]".to_vec(), 400),
        case("lone surrogate escape in a key", BULK, r#"[{"f":"flag","i":[{"k":"bad-\ud800","t":"on","m":1}]}]"#, 400),
        case("trailing garbage", BULK, [good_bulk("bad-32", 2), b" [1]".to_vec()].concat(), 400),
        case("JSON null", BULK, "null", 400),
        json_case("m as float", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-33", "t": "on", "m": 1.5 }] }]), 400),
        json_case("m beyond i64", BULK, json!([{ "f": "flag", "i": [{ "k": "bad-34", "t": "on", "m": 1e30 }] }]), 400),
        case("native: JSON object instead of array", NATIVE, r#"{"key":"bad-35","split":"s","treatment":"on","time":1}"#, 400),
    ];
    run_cases(&s, cases).await;
    assert_nothing_stored(&s, &rx, "bad bodies").await;
    assert_good_delivered(&s, &rx, 5).await;
    for imp in rx.impressions() {
        assert!(
            imp.impression.key.starts_with("good-"),
            "a rejected impression was delivered: {imp:?}"
        );
    }
}

#[tokio::test]
async fn bad_keys_are_401_and_store_nothing() {
    let (s, rx) = setup().await;
    let body = || good_bulk("bad", 3);
    let native = || {
        serde_json::to_vec(&json!([{ "key": "bad-n", "split": "s", "treatment": "on", "time": 1 }]))
            .unwrap()
    };
    let cases = vec![
        case("unknown SDK key", BULK, body(), 401).key(Some("sdk-key-unknown-999")),
        case("missing Authorization", BULK, body(), 401).key(None),
        case("empty bearer", BULK, body(), 401)
            .key(None)
            .header("Authorization", "Bearer "),
        case("Basic auth with the SDK key", BULK, body(), 401)
            .key(None)
            .header("Authorization", &format!("Basic {SDK_KEY}")),
        case("key with a suffix", BULK, body(), 401).key(Some("sdk-key-test-0001x")),
        case("native: unknown SDK key", NATIVE, native(), 401).key(Some("sdk-key-unknown-999")),
        case("native: missing Authorization", NATIVE, native(), 401).key(None),
        // Authentication comes first: a bad key with a bad body is still a 401.
        case("unknown key and malformed body", BULK, "[{", 401).key(Some("sdk-key-unknown-999")),
    ];
    run_cases(&s, cases).await;
    for path in [
        "/api/testImpressions/count",
        "/api/events/bulk",
        "/api/v1/keys/ss",
        "/api/v1/keys/cs",
        "/api/v1/metrics/config",
        "/api/v1/metrics/usage",
    ] {
        s.post_raw(
            path,
            Some("sdk-key-unknown-999"),
            &[JSON_CT],
            b"{}".to_vec(),
        )
        .await
        .assert_error(401, path);
        s.post_raw(path, None, &[JSON_CT], b"{}".to_vec())
            .await
            .assert_error(401, path);
    }
    assert_nothing_stored(&s, &rx, "bad keys").await;
    assert_good_delivered(&s, &rx, 2).await;
}

#[tokio::test]
async fn oversized_bodies_are_413_and_store_nothing() {
    let (s, rx) = setup().await;
    // > 16 MiB on the wire: a valid bulk body padded with whitespace.
    let mut big = good_bulk("bad-big", 10);
    big.extend(std::iter::repeat_n(b' ', 17 << 20));
    // A gzip bomb: ~70 KB that inflates to 65 MiB (a valid JSON prefix, then spaces).
    let mut bomb_raw = good_bulk("bad-bomb", 10);
    bomb_raw.extend(std::iter::repeat_n(b' ', 65 << 20));
    let bomb = gzip(&bomb_raw);
    drop(bomb_raw);
    assert!(
        bomb.len() < 1 << 20,
        "the bomb is small on the wire ({} bytes)",
        bomb.len()
    );
    // > 100,000 impressions in one request (a small body otherwise).
    let many: Vec<Value> = (0..100_001)
        .map(|i| json!({ "k": format!("m{i}"), "t": "on", "m": 1 }))
        .collect();
    let many = serde_json::to_vec(&json!([{ "f": "flag", "i": many }])).unwrap();
    assert!(many.len() < 16 << 20);
    let many_native: String = (0..100_001)
        .map(|i| format!("{{\"key\":\"m{i}\",\"split\":\"s\",\"treatment\":\"on\",\"time\":1}}\n"))
        .collect();
    let cases = vec![
        case("body over 16 MiB", BULK, big, 413),
        case("gzip bomb", BULK, bomb.clone(), 413).header("Content-Encoding", "gzip"),
        case("native: gzip bomb", NATIVE, bomb, 413).header("Content-Encoding", "gzip"),
        case("more than 100000 impressions", BULK, many.clone(), 413),
        case("gzip: more than 100000 impressions", BULK, gzip(&many), 413)
            .header("Content-Encoding", "gzip"),
        case(
            "native NDJSON: more than 100000 impressions",
            NATIVE,
            many_native,
            413,
        )
        .header("Content-Type", "application/x-ndjson"),
    ];
    run_cases(&s, cases).await;
    assert_nothing_stored(&s, &rx, "oversized bodies").await;
    // Exactly at the limit is fine.
    let max: Vec<Value> = (0..100_000)
        .map(|i| json!({ "k": format!("ok{i}"), "t": "on", "m": 1 }))
        .collect();
    let a = s
        .post_raw(
            BULK,
            Some(PROBE_KEY),
            &[JSON_CT],
            serde_json::to_vec(&json!([{ "f": "flag", "i": max }])).unwrap(),
        )
        .await;
    assert_eq!(
        a.status, 200,
        "100000 impressions is within the limit: {}",
        a.body
    );
    assert_eq!(s.stored("probe").await, 100_000 + 6, "6 probes + 100000");
    assert_good_delivered(&s, &rx, 3).await;
}

#[tokio::test]
async fn a_big_chunked_body_without_content_length_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, rx) = setup().await;
    // Streamed (chunked, no Content-Length): the limit must hold while reading, too.
    let addr = s.server.as_ref().unwrap().addr;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {BULK} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {SDK_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut first = good_bulk("bad-stream", 3);
    first.truncate(first.len() - 1); // leave the array open so it is never valid JSON
    let spaces = vec![b' '; 1 << 20];
    let mut write_failed = false;
    for i in 0..20 {
        let data: &[u8] = if i == 0 { &first } else { &spaces };
        let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(b"\r\n");
        // The server may stop reading and answer early; a failed write is fine then.
        if conn.write_all(&chunk).await.is_err() {
            write_failed = true;
            break;
        }
    }
    if !write_failed {
        let _ = conn.write_all(b"0\r\n\r\n").await;
    }
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(T, conn.read_to_end(&mut resp))
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "streamed body over 16 MiB: got {:?}",
        &text[..text.len().min(300)]
    );
    let body = &text[text.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    assert!(
        body.contains("\"error\"") && body.contains("\"detail\""),
        "{text}"
    );
    assert_healthy(&s, "streamed oversized body").await;
    assert_nothing_stored(&s, &rx, "streamed oversized body").await;
}

#[tokio::test]
async fn gzip_compressed_valid_bodies_are_stored_and_delivered() {
    let (s, rx) = setup().await;
    let a = s
        .post_raw(
            BULK,
            Some(SDK_KEY),
            &[
                JSON_CT,
                ("Content-Encoding", "gzip"),
                ("SplitSDKVersion", "python-10.7.0"),
            ],
            gzip(&good_bulk("gz", 25)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let nd: String = (0..5)
        .map(|i| {
            format!("{{\"key\":\"gzn-{i}\",\"split\":\"s\",\"treatment\":\"on\",\"time\":{i}}}\n")
        })
        .collect();
    let a = s
        .post_raw(
            NATIVE,
            Some(SDK_KEY),
            &[
                ("Content-Type", "application/x-ndjson"),
                ("Content-Encoding", "gzip"),
            ],
            gzip(nd.as_bytes()),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let st = match rx.wait_until(T, |st| st.unique_impressions >= 30).await {
        Ok(st) => st,
        Err(st) => panic!("gzip bodies not delivered: {st:?}"),
    };
    assert_eq!(st.unique_impressions, 30);
    let keys: Vec<String> = rx
        .impressions()
        .into_iter()
        .map(|i| i.impression.key)
        .collect();
    let want: Vec<String> = (0..25)
        .map(|i| format!("gz-{i}"))
        .chain((0..5).map(|i| format!("gzn-{i}")))
        .collect();
    assert_eq!(keys, want);
    assert_eq!(rx.impressions()[0].impression.sdk, "python");
}

#[tokio::test]
async fn other_sdk_routes_accept_and_deliver_nothing() {
    let (s, rx) = setup().await;
    let bodies: Vec<(&str, Value)> = vec![
        (
            "/api/testImpressions/count",
            json!({ "pf": [{ "f": "dark_mode", "m": 1_795_353_299_000i64, "rc": 12 }] }),
        ),
        (
            "/api/events/bulk",
            json!([{ "key": "user-0", "trafficTypeName": "user", "eventTypeId": "checkout", "value": 9.5, "timestamp": 1_795_353_299_000i64, "properties": { "a": 1 } }]),
        ),
        (
            "/api/v1/keys/ss",
            json!({ "keys": [{ "f": "dark_mode", "ks": ["user-0", "user-1"] }] }),
        ),
        (
            "/api/v1/keys/cs",
            json!({ "keys": [{ "k": "user-0", "fs": ["dark_mode"] }] }),
        ),
        (
            "/api/v1/metrics/config",
            json!({ "oM": 0, "st": "memory", "sE": true, "rR": { "sp": 60 }, "iQ": 10000, "eQ": 10000, "iM": 0, "iL": false, "hP": false, "aF": 1, "rF": 0, "tR": 0, "nR": 0, "i": [], "uC": 0, "t": [] }),
        ),
        (
            "/api/v1/metrics/usage",
            json!({ "lS": { "sp": 1 }, "mL": {}, "mE": {}, "hE": {}, "hL": {}, "tR": 0, "aR": 0, "iQ": 1, "iDe": 0, "iDr": 0, "spC": 2, "seC": 0, "skC": 0, "sL": 1000, "eQ": 0, "eD": 0, "t": [] }),
        ),
    ];
    for (path, body) in &bodies {
        let a = s.post_json(path, SDK_KEY, body).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        // Gzip works there too.
        let a = s
            .post_raw(
                path,
                Some(SDK_KEY),
                &[JSON_CT, ("Content-Encoding", "gzip")],
                gzip(&serde_json::to_vec(body).unwrap()),
            )
            .await;
        assert_eq!(a.status, 200, "{path} gzip: {}", a.body);
    }
    assert_nothing_stored(&s, &rx, "other SDK routes").await;
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_impression_counts_total"),
        "counts are counted in metrics"
    );
    // Malformed JSON there is still a 400 (and still nothing stored).
    s.post_raw(
        "/api/events/bulk",
        Some(SDK_KEY),
        &[JSON_CT],
        b"[{".to_vec(),
    )
    .await
    .assert_error(400, "events: malformed");
    s.post_raw(
        "/api/testImpressions/count",
        Some(SDK_KEY),
        &[JSON_CT],
        b"{\"pf\":5}".to_vec(),
    )
    .await
    .assert_error(400, "count: wrong type");
    assert_good_delivered(&s, &rx, 1).await;
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_and_stores_nothing() {
    let (s, rx) = setup_with(|o| o.ingest_rate_limit = 100).await;
    let a = s
        .post_raw(BULK, Some(SDK_KEY), &[JSON_CT], good_bulk("bad-rate", 1000))
        .await;
    a.assert_error(429, "1000 impressions at 100/s");
    let retry: u64 = a
        .headers
        .get("retry-after")
        .expect("429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_nothing_stored(&s, &rx, "rate limited").await;
    // The limit is per environment: the probe environment is not affected.
    assert_healthy(&s, "rate limit").await;
    // A request within the limit goes through (the refused one took no budget).
    assert_good_delivered(&s, &rx, 50).await;
    assert_eq!(rx.stats().unique_impressions, 50);
}

#[tokio::test]
async fn storage_full_is_503_with_retry_after_and_nothing_acknowledged_is_lost() {
    let (s, rx) = setup_with(|o| o.max_storage_bytes = 64 * 1024).await;
    let mut acked: Vec<String> = Vec::new();
    let mut refused = None;
    for r in 0..2000 {
        let prefix = format!("full-{r:04}");
        let a = s
            .post_raw(BULK, Some(SDK_KEY), &[JSON_CT], good_bulk(&prefix, 20))
            .await;
        match a.status {
            200 => acked.extend((0..20).map(|i| format!("{prefix}-{i}"))),
            _ => {
                refused = Some(a);
                break;
            }
        }
    }
    let a = refused.expect("storage never filled up");
    a.assert_error(503, "storage full");
    let retry: u64 = a
        .headers
        .get("retry-after")
        .expect("503 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(!acked.is_empty(), "the first requests should fit");
    // Still full: refused again, never a 200 for data that was not stored.
    let b = s
        .post_raw(BULK, Some(SDK_KEY), &[JSON_CT], good_bulk("full-again", 20))
        .await;
    b.assert_error(503, "storage still full");
    assert!(b.headers.contains_key("retry-after"));
    // The server is fine otherwise.
    let h = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    // Everything acknowledged is delivered, exactly the acknowledged impressions.
    let n = acked.len() as u64;
    let st = match rx.wait_until(T, |st| st.unique_impressions >= n).await {
        Ok(st) => st,
        Err(st) => panic!("acknowledged impressions not delivered ({n} acked): {st:?}"),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.stats().unique_impressions, n, "{st:?}");
    let keys: Vec<String> = rx
        .impressions()
        .into_iter()
        .map(|i| i.impression.key)
        .collect();
    assert_eq!(keys, acked);
    assert_eq!(s.stored(ENV).await, n);
}
