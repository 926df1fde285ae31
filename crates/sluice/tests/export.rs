//! Export (`GET /v1/environments/{id}/impressions`, SPEC §4) against a real server:
//! exactly the ingested impressions of a window in every format, filters, errors, gzip,
//! windows at segment and retention edges, the time index used for narrow windows, the
//! `sluice export` command, and a huge export streamed in bounded memory by the real
//! binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use serde_json::{Value, json};
use sluice::admin_cli::ApiArgs;
use sluice::export_cli::{self, ExportArgs, ExportFormat};
use sluice_core::outgoing::OwnedImpression;
use std::io::{BufRead as _, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const KEY_PROD: &str = "sdk-key-export-prod";
const KEY_STAGE: &str = "sdk-key-export-stage";
const T0: i64 = 1_700_000_000_000;
use sluice_core::outgoing::FIELDS;

// ---------------------------------------------------------------------------------------
// Data: impressions with known, distinct times, sent as Split SDK bulk requests.

/// One impression as the SDK sends it.
#[derive(Debug, Clone)]
struct Imp {
    flag: String,
    key: String,
    treatment: String,
    time: i64,
    bucketing_key: Option<String>,
    label: Option<String>,
    change_number: i64,
    properties: Option<String>,
}

impl Imp {
    /// The outgoing form sluice must export for it (Python SDK headers of `send_bulk`).
    fn expected(&self, env_id: &str, env_name: &str) -> OwnedImpression {
        OwnedImpression {
            key: self.key.clone(),
            split: self.flag.clone(),
            environment_id: env_id.into(),
            environment_name: env_name.into(),
            treatment: self.treatment.clone(),
            time: self.time,
            bucketing_key: self.bucketing_key.clone(),
            label: self.label.clone(),
            machine_name: Some("sdk-host-1".into()),
            machine_ip: Some("10.1.2.3".into()),
            split_version_number: self.change_number,
            sdk: "python".into(),
            sdk_version: "10.7.0".into(),
            properties: self.properties.clone(),
        }
    }
}

/// A Split bulk body for impressions of possibly several flags; sluice stores them in the
/// body's order (flag groups in order, impressions in order), which `imps` must follow.
fn bulk_body(imps: &[Imp]) -> Value {
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for i in imps {
        let item = json!({
            "k": i.key, "t": i.treatment, "m": i.time, "c": i.change_number,
            "r": i.label, "b": i.bucketing_key, "pt": null, "properties": i.properties,
        });
        match groups.last_mut() {
            Some((f, items)) if *f == i.flag => items.push(item),
            _ => groups.push((i.flag.clone(), vec![item])),
        }
    }
    Value::Array(
        groups
            .into_iter()
            .map(|(f, i)| json!({ "f": f, "i": i }))
            .collect(),
    )
}

/// Sends each request in turn (so that log order is request order) and returns all
/// impressions in log order.
async fn ingest(s: &Sluice, sdk_key: &str, requests: &[Vec<Imp>]) -> Vec<Imp> {
    let mut all = Vec::new();
    for r in requests {
        assert_eq!(s.send_bulk(sdk_key, &bulk_body(r)).await, 200);
        all.extend(r.iter().cloned());
    }
    all
}

/// `n` requests of `per` impressions; flags and keys alternate, times are distinct but
/// not monotonic (neither within a request nor across requests), and some fields need
/// CSV quoting.
fn mixed_requests(n: usize, per: usize) -> Vec<Vec<Imp>> {
    let total = n * per;
    (0..n)
        .map(|r| {
            let mut flag_a: Vec<Imp> = Vec::new();
            let mut flag_b: Vec<Imp> = Vec::new();
            for i in 0..per {
                let g = r * per + i;
                // A permutation of 0..total (37 is coprime with the totals used here).
                let slot = (g * 37) % total;
                let imp = Imp {
                    flag: if g.is_multiple_of(3) {
                        "flag-b"
                    } else {
                        "flag-a"
                    }
                    .into(),
                    key: if g % 11 == 5 {
                        "user,\"quoted\"".into()
                    } else {
                        format!("user-{}", g % 5)
                    },
                    treatment: if g.is_multiple_of(2) { "on" } else { "off" }.into(),
                    time: T0 + slot as i64 * 10,
                    bucketing_key: g.is_multiple_of(4).then(|| format!("bucket-{g}")),
                    label: (!g.is_multiple_of(7)).then(|| "default rule".to_owned()),
                    change_number: 1000 + g as i64,
                    properties: (g % 5 == 1).then(|| {
                        format!("{{\"plan\":\"pro, \\\"gold\\\"\",\"n\":{g},\"line\":\"a\\nb\"}}")
                    }),
                };
                if imp.flag == "flag-a" {
                    flag_a.push(imp)
                } else {
                    flag_b.push(imp)
                }
            }
            flag_a.into_iter().chain(flag_b).collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Export helpers.

async fn get_export(s: &Sluice, env: &str, query: &str, gzip: bool) -> reqwest::Response {
    let mut req = s
        .client
        .get(s.url(&format!("/v1/environments/{env}/impressions?{query}")))
        .bearer_auth("test-admin-token");
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    req.send().await.expect("export request")
}

/// Exports and parses the rows (any format), checking status and content type.
async fn export_rows(s: &Sluice, env: &str, query: &str, format: &str) -> Vec<OwnedImpression> {
    let q = if query.is_empty() {
        format!("format={format}")
    } else {
        format!("{query}&format={format}")
    };
    let resp = get_export(s, env, &q, false).await;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.bytes().await.expect("export body");
    assert_eq!(status, 200, "{q}: {}", String::from_utf8_lossy(&body));
    let want_ct = match format {
        "ndjson" => "application/x-ndjson",
        "json" => "application/json",
        _ => "text/csv",
    };
    assert!(ct.starts_with(want_ct), "{q}: content-type {ct}");
    parse_rows(format, &body)
}

fn parse_rows(format: &str, body: &[u8]) -> Vec<OwnedImpression> {
    match format {
        "ndjson" => body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("NDJSON line is an impression"))
            .collect(),
        "json" => serde_json::from_slice(body).expect("a JSON array of impressions"),
        "csv" => parse_csv(body),
        other => panic!("unknown format {other}"),
    }
}

/// Parses CSV with the csv crate; an empty optional field is null (the data used here
/// never has empty strings in optional fields).
fn parse_csv(body: &[u8]) -> Vec<OwnedImpression> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers: Vec<String> = rdr
        .headers()
        .expect("CSV header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(headers, FIELDS, "CSV header row");
    rdr.records()
        .map(|r| {
            let r = r.expect("CSV record");
            assert_eq!(r.len(), 14, "CSV record with 14 fields: {r:?}");
            let s = |i: usize| r[i].to_owned();
            let o = |i: usize| (!r[i].is_empty()).then(|| r[i].to_owned());
            let n = |i: usize| r[i].parse::<i64>().expect("integer CSV field");
            OwnedImpression {
                key: s(0),
                split: s(1),
                environment_id: s(2),
                environment_name: s(3),
                treatment: s(4),
                time: n(5),
                bucketing_key: o(6),
                label: o(7),
                machine_name: o(8),
                machine_ip: o(9),
                split_version_number: n(10),
                sdk: s(11),
                sdk_version: s(12),
                properties: o(13),
            }
        })
        .collect()
}

/// What an export of `[from, to)` with the filters must return, in log order.
fn expect(
    all: &[Imp],
    env: (&str, &str),
    from: i64,
    to: i64,
    split: Option<&str>,
    key: Option<&str>,
) -> Vec<OwnedImpression> {
    all.iter()
        .filter(|i| i.time >= from && i.time < to)
        .filter(|i| split.is_none_or(|s| s == i.flag))
        .filter(|i| key.is_none_or(|k| k == i.key))
        .map(|i| i.expected(env.0, env.1))
        .collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Exports in all three formats and checks each against the expected rows, in order.
#[track_caller]
fn check(got: &[OwnedImpression], want: &[OwnedImpression], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of rows");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: row {i}");
    }
}

async fn check_all_formats(
    s: &Sluice,
    env: &str,
    query: &str,
    want: &[OwnedImpression],
    what: &str,
) {
    for format in ["ndjson", "json", "csv"] {
        let got = export_rows(s, env, query, format).await;
        check(&got, want, &format!("{what} ({format}, ?{query})"));
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_returns_exactly_the_ingested_window_in_every_format() {
    let s = Sluice::start().await;
    s.environment("prod", "Production \"EU\", main", KEY_PROD)
        .await;
    s.environment("stage", "Staging", KEY_STAGE).await;
    s.environment("empty", "Empty", "sdk-key-export-empty")
        .await;
    let requests = mixed_requests(12, 25);
    let all = ingest(&s, KEY_PROD, &requests).await;
    // Another environment's impressions, in the same window, must never show up.
    ingest(&s, KEY_STAGE, &mixed_requests(3, 25)).await;
    let env = ("prod", "Production \"EU\", main");
    let total = all.len() as i64;
    let end = T0 + total * 10;

    check_all_formats(
        &s,
        "prod",
        "",
        &expect(&all, env, 0, i64::MAX, None, None),
        "everything",
    )
    .await;
    assert_eq!(export_rows(&s, "prod", "", "ndjson").await.len(), 300);

    let (from, to) = (T0 + 700, T0 + 2210);
    check_all_formats(
        &s,
        "prod",
        &format!("from={from}&to={to}"),
        &expect(&all, env, from, to, None, None),
        "a middle window",
    )
    .await;
    // Bounds: `from` inclusive, `to` exclusive; one-millisecond windows.
    for (from, to) in [
        (T0, T0 + 1),
        (T0 + 10, T0 + 20),
        (T0 + 11, T0 + 20),
        (end - 10, end),
        (end, end + 1000),
        (0, T0),
    ] {
        let q = format!("from={from}&to={to}");
        let want = expect(&all, env, from, to, None, None);
        assert!(want.len() <= 1);
        check_all_formats(&s, "prod", &q, &want, "an edge window").await;
    }
    // Only `from`, only `to`.
    check_all_formats(
        &s,
        "prod",
        &format!("from={}", T0 + 1500),
        &expect(&all, env, T0 + 1500, i64::MAX, None, None),
        "from only",
    )
    .await;
    check_all_formats(
        &s,
        "prod",
        &format!("to={}", T0 + 1500),
        &expect(&all, env, 0, T0 + 1500, None, None),
        "to only",
    )
    .await;

    // Filters, alone and together, with a window.
    let want = expect(&all, env, 0, i64::MAX, Some("flag-b"), None);
    assert!(!want.is_empty() && want.len() < all.len());
    check_all_formats(&s, "prod", "split=flag-b", &want, "split filter").await;
    let odd_key = "user,\"quoted\"";
    let want = expect(&all, env, 0, i64::MAX, None, Some(odd_key));
    assert!(!want.is_empty());
    check_all_formats(
        &s,
        "prod",
        &format!("key={}", enc(odd_key)),
        &want,
        "key filter",
    )
    .await;
    let q = format!("from={}&to={}&split=flag-a&key=user-3", T0 + 400, T0 + 2600);
    let want = expect(
        &all,
        env,
        T0 + 400,
        T0 + 2600,
        Some("flag-a"),
        Some("user-3"),
    );
    assert!(!want.is_empty());
    check_all_formats(&s, "prod", &q, &want, "window, split and key").await;
    check_all_formats(
        &s,
        "prod",
        "split=no-such-flag",
        &[],
        "a filter matching nothing",
    )
    .await;
    check_all_formats(&s, "empty", "", &[], "an environment without impressions").await;

    // The other environment exports its own impressions only.
    let stage = export_rows(&s, "stage", "", "json").await;
    assert_eq!(stage.len(), 75);
    assert!(
        stage
            .iter()
            .all(|i| i.environment_id == "stage" && i.environment_name == "Staging")
    );

    // Raw shapes: exactly 14 fields per JSON object; the CSV header; a download name.
    let resp = get_export(&s, "prod", "format=json&to=1700000000100", false).await;
    let cd = resp
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        cd,
        "attachment; filename=\"sluice-prod-0-1700000000100.json\""
    );
    let v: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(!v.is_empty() && v.iter().all(|o| o.len() == 14));
    let resp = get_export(&s, "prod", "format=csv&split=none", false).await;
    assert_eq!(
        resp.text().await.unwrap(),
        format!("{}\r\n", FIELDS.join(","))
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", KEY_PROD).await;
    let get = |path: String, token: Option<&'static str>| {
        let s = &s;
        async move { s.admin_as(reqwest::Method::GET, &path, token, None).await }
    };
    let ok = get(
        "/v1/environments/prod/impressions?from=1&to=2".into(),
        Some("test-admin-token"),
    )
    .await;
    assert_eq!(ok.status, 200);
    for q in [
        "from=5&to=5",
        "from=6&to=5",
        "from=abc",
        "to=12.5",
        "from=-1",
        "to=",
        "from=1e3",
        "from=99999999999999999999",
        "format=xml",
        "format=",
        "split=",
        "from=1&from=2",
        "frm=1",
    ] {
        get(
            format!("/v1/environments/prod/impressions?{q}"),
            Some("test-admin-token"),
        )
        .await
        .assert_error(400, q);
    }
    let a = get(
        "/v1/environments/nope/impressions".into(),
        Some("test-admin-token"),
    )
    .await;
    a.assert_error(404, "unknown environment");
    assert!(a.detail().contains("nope"), "{}", a.detail());
    get("/v1/environments/prod/impressions".into(), None)
        .await
        .assert_error(401, "no admin token");
    get(
        "/v1/environments/prod/impressions".into(),
        Some("wrong-token"),
    )
    .await
    .assert_error(401, "wrong admin token");
    // An SDK key is not an admin token.
    get("/v1/environments/prod/impressions".into(), Some(KEY_PROD))
        .await
        .assert_error(401, "SDK key");
}

#[tokio::test]
async fn gzip_when_the_client_accepts_it() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", KEY_PROD).await;
    // Enough rows for several chunks, so that the gzip stream spans many flushes.
    let requests: Vec<Vec<Imp>> = mixed_requests(20, 200);
    ingest(&s, KEY_PROD, &requests).await;
    for format in ["ndjson", "json", "csv"] {
        let q = format!("format={format}");
        let plain = get_export(&s, "prod", &q, false).await;
        assert!(plain.headers().get("content-encoding").is_none());
        let plain = plain.bytes().await.unwrap().to_vec();
        let zipped = get_export(&s, "prod", &q, true).await;
        assert_eq!(
            zipped
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some("gzip")
        );
        assert!(
            zipped
                .headers()
                .get("vary")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("accept-encoding")),
            "Vary: Accept-Encoding"
        );
        let zipped = zipped.bytes().await.unwrap().to_vec();
        assert!(
            zipped.len() * 3 < plain.len(),
            "{format}: gzip {} vs {} bytes",
            zipped.len(),
            plain.len()
        );
        assert_eq!(
            gunzip(&zipped),
            plain,
            "{format}: gzip body decodes to the same export"
        );
        assert_eq!(parse_rows(format, &plain).len(), 4000);
    }
    // `gzip;q=0` refuses gzip.
    let resp = s
        .client
        .get(s.url("/v1/environments/prod/impressions"))
        .bearer_auth("test-admin-token")
        .header("accept-encoding", "br, gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
}

/// `n` requests of 10 impressions; request r's times are T0 + r*100 + {0, 10, …, 90}, in a
/// shuffled order within the request. Entry r covers exactly [T0 + r*100, T0 + r*100 + 90].
fn ordered_requests(n: usize) -> Vec<Vec<Imp>> {
    (0..n)
        .map(|r| {
            (0..10)
                .map(|i| {
                    let slot = (i * 3) % 10;
                    Imp {
                        flag: "flag-a".into(),
                        key: format!("user-{r}-{i}"),
                        treatment: "on".into(),
                        time: T0 + r as i64 * 100 + slot as i64 * 10,
                        bucketing_key: None,
                        label: Some("default rule".into()),
                        change_number: 7,
                        properties: None,
                    }
                })
                .collect()
        })
        .collect()
}

fn segment_files(s: &Sluice, env: &str) -> usize {
    std::fs::read_dir(s.dir.join("log").join(env))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_at_segment_edges_and_narrow_windows_use_the_time_index() {
    // About two entries per segment: windows constantly start and end at entry and
    // segment boundaries.
    let s = Sluice::start_with(|o| o.segment_bytes = Some(1200)).await;
    s.environment("prod", "Production", KEY_PROD).await;
    let n = 60;
    let all = ingest(&s, KEY_PROD, &ordered_requests(n)).await;
    let segments = segment_files(&s, "prod");
    assert!(segments >= 20, "expected many segments, got {segments}");
    let env = ("prod", "Production");
    let min = |r: usize| T0 + r as i64 * 100;
    let max = |r: usize| T0 + r as i64 * 100 + 90;

    for r in 0..n {
        // Exactly entry r, two ways.
        for (from, to) in [(min(r), max(r) + 1), (min(r), min(r + 1))] {
            let want = expect(&all, env, from, to, None, None);
            assert_eq!(want.len(), 10);
            let got = export_rows(&s, "prod", &format!("from={from}&to={to}"), "ndjson").await;
            check(&got, &want, &format!("entry {r}: [{from}, {to})"));
        }
        // Across the boundary to the next entry (often the next segment): its last and
        // the next one's first impression.
        if r + 1 < n {
            let (from, to) = (max(r), min(r + 1) + 1);
            let got = export_rows(&s, "prod", &format!("from={from}&to={to}"), "ndjson").await;
            check(
                &got,
                &expect(&all, env, from, to, None, None),
                &format!("boundary after entry {r}"),
            );
            assert_eq!(got.len(), 2);
            // Between two entries: nothing.
            let got = export_rows(
                &s,
                "prod",
                &format!("from={}&to={}", max(r) + 1, min(r + 1)),
                "ndjson",
            )
            .await;
            assert!(got.is_empty(), "gap after entry {r}");
        }
    }
    // Inside an entry, excluding its first and last impressions.
    let (from, to) = (min(17) + 1, max(17));
    let got = export_rows(&s, "prod", &format!("from={from}&to={to}"), "csv").await;
    check(
        &got,
        &expect(&all, env, from, to, None, None),
        "inside an entry",
    );
    assert_eq!(got.len(), 8);
    // Across many segments.
    let (from, to) = (min(5) + 50, max(44) - 20);
    check_all_formats(
        &s,
        "prod",
        &format!("from={from}&to={to}"),
        &expect(&all, env, from, to, None, None),
        "many segments",
    )
    .await;

    // A narrow window examines a small part of the index, not the whole log.
    let log = s.server.as_ref().expect("running").segment_log();
    let before = log.stats();
    let got = export_rows(
        &s,
        "prod",
        &format!("from={}&to={}", min(30), max(30) + 1),
        "ndjson",
    )
    .await;
    assert_eq!(got.len(), 10);
    let after = log.stats();
    let examined = after.scan_entries_examined - before.scan_entries_examined;
    let segments_examined = after.scan_segments_examined - before.scan_segments_examined;
    assert!(
        examined <= 6,
        "a one-entry window examined {examined} of {n} index entries"
    );
    assert!(
        segments_examined <= 3,
        "a one-entry window examined {segments_examined} of {segments} segments"
    );
    // A wide window examines them all (the counter does count).
    let before = log.stats();
    assert_eq!(export_rows(&s, "prod", "", "ndjson").await.len(), n * 10);
    let examined = log.stats().scan_entries_examined - before.scan_entries_examined;
    assert!(examined >= n as u64, "wide window examined {examined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_at_the_edge_of_retention() {
    let s = Sluice::start_with(|o| o.segment_bytes = Some(1200)).await;
    s.environment("prod", "Production", KEY_PROD).await;
    let n = 40;
    let all = ingest(&s, KEY_PROD, &ordered_requests(n)).await;
    let env = ("prod", "Production");
    let server = s.server.as_ref().expect("running");
    assert_eq!(server.log.bounds("prod").await.unwrap().first, 0);

    // Far in the future every sealed segment is past retention; the active one stays.
    let log = server.segment_log();
    let report = tokio::task::spawn_blocking(move || log.enforce_retention(4_102_444_800_000))
        .await
        .unwrap();
    let first = server.log.bounds("prod").await.unwrap().first as usize;
    assert!(
        first > 0 && first < all.len(),
        "retention kept offsets {first}.. of {}: {report:?}",
        all.len()
    );
    let retained = &all[first..];
    // Log order is time order here, so the retained impressions are a time suffix too.
    let oldest_kept = retained.iter().map(|i| i.time).min().unwrap();
    let newest_gone = all[..first].iter().map(|i| i.time).max().unwrap();
    assert!(newest_gone < oldest_kept);

    check_all_formats(
        &s,
        "prod",
        "",
        &expect(retained, env, 0, i64::MAX, None, None),
        "all that is retained",
    )
    .await;
    // A window straddling the retention edge returns its retained part only.
    let (from, to) = (newest_gone - 150, oldest_kept + 150);
    let want = expect(retained, env, from, to, None, None);
    assert!(!want.is_empty() && want.len() < expect(&all, env, from, to, None, None).len());
    check_all_formats(
        &s,
        "prod",
        &format!("from={from}&to={to}"),
        &want,
        "window across the retention edge",
    )
    .await;
    // Starting exactly at the oldest retained impression; ending exactly there.
    let want = expect(retained, env, oldest_kept, oldest_kept + 1, None, None);
    assert_eq!(want.len(), 1);
    check_all_formats(
        &s,
        "prod",
        &format!("from={oldest_kept}&to={}", oldest_kept + 1),
        &want,
        "the first retained impression",
    )
    .await;
    // A window entirely in the removed past: empty, not an error.
    check_all_formats(
        &s,
        "prod",
        &format!("from={T0}&to={}", newest_gone + 1),
        &[],
        "removed window",
    )
    .await;
}

/// The export is pulled by the client: while the client does not read, the server stops
/// reading the log (nothing runs ahead into memory), and it carries on when the client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_the_export_back() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", KEY_PROD).await;
    let (requests, per) = (200usize, 1000usize);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, sent, url) = (
            s.client.clone(),
            sent.clone(),
            s.url("/api/testImpressions/bulk"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let r = sent.fetch_add(1, Ordering::Relaxed) as usize;
                if r >= requests {
                    break;
                }
                let items: Vec<Value> = (0..per)
                    .map(|i| json!({ "k": format!("user-{r}-{i}"), "t": "on", "m": T0 + (r * per + i) as i64, "c": 1, "r": "default rule" }))
                    .collect();
                let resp = client
                    .post(&url)
                    .bearer_auth(KEY_PROD)
                    .header("SplitSDKVersion", "python-10.7.0")
                    .json(&json!([{ "f": "flag-a", "i": items }]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (requests * per) as u64;
    let log = s.server.as_ref().expect("running").segment_log();
    let examined = || log.stats().scan_entries_examined;

    let mut resp = get_export(&s, "prod", "format=ndjson", false).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    lines += first.iter().filter(|b| **b == b'\n').count() as u64;
    bytes += first.len() as u64;
    // Not reading: socket buffers fill, then the export must stand still.
    let deadline = Instant::now() + Duration::from_secs(20);
    let paused_at = loop {
        let before = examined();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        if examined() == before {
            break before;
        }
        assert!(
            Instant::now() < deadline,
            "the export never stopped for a client that does not read"
        );
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        examined(),
        paused_at,
        "the server kept reading the log while the client was not reading"
    );
    assert!(
        paused_at < requests as u64 / 2,
        "the server read {paused_at} of {requests} log entries ahead of a client that read {bytes} bytes"
    );
    eprintln!("paused after {paused_at} of {requests} entries examined, {bytes} bytes read");
    // Reading again finishes the export, complete.
    while let Some(chunk) = resp.chunk().await.unwrap() {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
    }
    assert_eq!(
        lines, total,
        "every impression after the pause ({bytes} bytes)"
    );
    assert!(examined() >= requests as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_export_command_writes_the_file() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", KEY_PROD).await;
    let all = ingest(&s, KEY_PROD, &mixed_requests(10, 30)).await;
    let env = ("prod", "Production");
    let dir = tempfile::tempdir().unwrap();
    let args = |format: ExportFormat, output: &str| ExportArgs {
        api: ApiArgs {
            server: s.url(""),
            token: Some("test-admin-token".into()),
        },
        env: "prod".into(),
        from: Some(T0 + 300),
        to: Some(T0 + 2500),
        split: Some("flag-a".into()),
        key: None,
        format,
        output: Some(dir.path().join(output)),
        no_compression: false,
        quiet: true,
    };
    let want = expect(&all, env, T0 + 300, T0 + 2500, Some("flag-a"), None);
    assert!(!want.is_empty());
    for (format, name) in [
        (ExportFormat::Ndjson, "ndjson"),
        (ExportFormat::Json, "json"),
        (ExportFormat::Csv, "csv"),
    ] {
        let file = format!("out.{name}");
        export_cli::run(args(format, &file))
            .await
            .expect("sluice export");
        let body = std::fs::read(dir.path().join(&file)).unwrap();
        check(
            &parse_rows(name, &body),
            &want,
            &format!("sluice export --format {name}"),
        );
        // The in-memory path reports the count it streamed.
        let mut out: Vec<u8> = Vec::new();
        let summary = export_cli::export_to(&args(format, "unused"), &mut out, None)
            .await
            .unwrap();
        assert_eq!(out, body);
        assert_eq!(summary.impressions, want.len() as u64);
        assert!(
            summary.wire_bytes < summary.bytes,
            "the transfer was compressed"
        );
    }
    // A failed export leaves neither the file nor its .part behind.
    let mut bad = args(ExportFormat::Ndjson, "bad.ndjson");
    bad.env = "nope".into();
    let err = export_cli::run(bad).await.unwrap_err();
    assert!(format!("{err:#}").contains("404"), "{err:#}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.csv", "out.json", "out.ndjson"]);
}

// ---------------------------------------------------------------------------------------
// A huge export from the real binary, in bounded memory.

const TOKEN: &str = "export-test-admin-token";

/// `sluice serve` as a child process, killed on drop.
struct ChildSluice {
    child: std::process::Child,
    base: String,
}

impl ChildSluice {
    fn start(dir: &std::path::Path) -> ChildSluice {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--allow-private-destinations",
                "--data-dir",
            ])
            .arg(dir)
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .env("SLUICE_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start sluice serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sluice prints its address");
        ChildSluice { child, base }
    }

    fn rss_bytes(&self) -> u64 {
        ChildRss(self.child.id()).get()
    }
}

impl Drop for ChildSluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_export_streams_in_bounded_memory() {
    const REQUESTS: usize = 650;
    const PER_REQUEST: usize = 1000;
    const MIN_EXPORT_BYTES: u64 = 400 << 20;
    const MAX_RSS_GROWTH: u64 = 100 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let server = ChildSluice::start(tmp.path());
    let client = http();
    // Long environment and machine names: they are stored once per request but repeated
    // in every exported row, so the export is many times the size of what is ingested.
    let env_name = format!("Production {}", "E".repeat(180));
    let machine = format!("host-{}", "m".repeat(195));
    let resp = client
        .post(format!("{}/v1/environments", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "big", "name": env_name, "sdkKeys": [KEY_PROD] }))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().await.unwrap_or_default()
    );

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, next, base, machine) = (
            client.clone(),
            next.clone(),
            server.base.clone(),
            machine.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed) as usize;
                if r >= REQUESTS {
                    break;
                }
                let items: Vec<Value> = (0..PER_REQUEST)
                    .map(|i| {
                        let g = r * PER_REQUEST + i;
                        json!({ "k": format!("user-{g:012}-abcdefghij"), "t": "on", "m": T0 + g as i64, "c": 42, "r": "default rule" })
                    })
                    .collect();
                let body = json!([{ "f": format!("flag-{}", r % 8), "i": items }]);
                let resp = client
                    .post(format!("{base}/api/testImpressions/bulk"))
                    .bearer_auth(KEY_PROD)
                    .header("SplitSDKVersion", "python-10.7.0")
                    .header("SplitSDKMachineName", &machine)
                    .header("SplitSDKMachineIP", "10.1.2.3")
                    .json(&body)
                    .send()
                    .await
                    .expect("ingest");
                assert_eq!(resp.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let total = (REQUESTS * PER_REQUEST) as u64;

    // Sample the server's RSS while the export streams.
    let baseline = server.rss_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = server.child.id();
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            let probe = ChildRss(pid);
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(probe.get(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let mut resp = client
        .get(format!(
            "{}/v1/environments/big/impressions?format=ndjson",
            server.base
        ))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (mut bytes, mut rows, mut first_line) = (0u64, 0u64, Vec::new());
    while let Some(chunk) = resp.chunk().await.expect("export streams to the end") {
        if first_line.is_empty()
            && let Some(end) = chunk.iter().position(|b| *b == b'\n')
        {
            first_line = chunk[..end].to_vec();
        }
        bytes += chunk.len() as u64;
        rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let export_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "ingested {total} impressions in {ingest_secs:.1} s; exported {rows} rows, {} MiB in {export_secs:.1} s \
         ({:.0} rows/s); server RSS {} MiB before, {} MiB peak (+{} MiB)",
        bytes >> 20,
        rows as f64 / export_secs,
        baseline >> 20,
        peak >> 20,
        growth >> 20
    );
    assert_eq!(rows, total, "every impression exported");
    let first: OwnedImpression = serde_json::from_slice(&first_line).unwrap();
    assert_eq!(
        (
            first.environment_name.as_str(),
            first.machine_name.as_deref()
        ),
        (env_name.as_str(), Some(machine.as_str()))
    );
    assert!(
        bytes >= MIN_EXPORT_BYTES,
        "export of {} MiB is too small to prove anything",
        bytes >> 20
    );
    assert!(
        growth < MAX_RSS_GROWTH,
        "server RSS grew by {} MiB while exporting {} MiB",
        growth >> 20,
        bytes >> 20
    );
}

/// RSS of a process by pid (for the sampler thread).
struct ChildRss(u32);

impl ChildRss {
    fn get(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

// ---------------------------------------------------------------------------------------
// The export benchmark (`sluice bench export`), runnable from here as well:
// `cargo test --release -p sluice --test export -- --ignored export_benchmark --nocapture`.

use sluice_bench::export as export_bench;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run it on a release build"]
async fn export_benchmark() {
    let args = export_bench::ExportBenchArgs {
        impressions: std::env::var("SLUICE_BENCH_IMPRESSIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000_000),
        ..Default::default()
    };
    let result =
        export_bench::run_export_bench(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &args)
            .await
            .expect("export benchmark");
    result.print();
}
