//! openapi.json on its own: every operation documents its answers with schemas, every
//! schema compiles as JSON Schema 2020-12 and every `$ref` resolves, and the bounds it
//! states are the ones the server enforces (`sluice_core::limits::settings`).
//! `crates/sluice/tests/openapi.rs` checks the live answers against it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a broken document should panic

use serde_json::Value;
use sluice_core::limits::{Bound, settings};

fn doc() -> Value {
    serde_json::from_str(include_str!("../src/openapi.json")).expect("openapi.json is JSON")
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if m != "parameters" {
                out.push((m.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

#[test]
fn every_operation_documents_its_answers_with_schemas() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.len() > 50, "{} operations", ops.len());
    for (m, p, op) in ops {
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{m} {p}: no responses"));
        assert!(
            responses.keys().any(|c| c.starts_with('2')),
            "{m} {p}: no success answer"
        );
        for (code, r) in responses {
            if code == "204" {
                assert!(
                    r.get("content").is_none(),
                    "{m} {p} {code}: a 204 has no body"
                );
                continue;
            }
            let content = r["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{m} {p} {code}: no content"));
            assert!(!content.is_empty(), "{m} {p} {code}: no content");
            for (ct, media) in content {
                assert!(
                    media["schema"].is_object(),
                    "{m} {p} {code} {ct}: no schema"
                );
            }
            if !code.starts_with('2') {
                assert_eq!(
                    content["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                    "{m} {p} {code}: errors are the Error object"
                );
            }
        }
        let admin = p.starts_with("/v1/");
        if admin {
            for code in ["401", "429"] {
                assert!(
                    responses.contains_key(code),
                    "{m} {p}: {code} not documented"
                );
            }
        }
        if p.contains('{') && admin && !p.ends_with("/tokens") && p != "/v1/integrations/status" {
            assert!(responses.contains_key("404"), "{m} {p}: 404 not documented");
        }
        if op.get("requestBody").is_some() && admin {
            for code in ["400", "413", "415"] {
                assert!(
                    responses.contains_key(code),
                    "{m} {p}: {code} not documented"
                );
            }
        }
    }
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_schema_compiles_and_every_ref_resolves() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let mut s = schema.clone();
        s["components"] = doc["components"].clone();
        jsonschema::validator_for(&s).unwrap_or_else(|e| panic!("schema {name}: {e}"));
    }
}

#[test]
fn stated_bounds_are_the_enforced_ones() {
    let doc = doc();
    let s = &doc["components"]["schemas"];
    let check = |schema: &str, prop: &str, b: Bound| {
        let mut p = &s[schema]["properties"][prop];
        if let Some(r) = p.get("$ref").and_then(Value::as_str) {
            p = doc.pointer(&r[1..]).unwrap();
        }
        let (lo, hi) = match b.measure {
            sluice_core::limits::Measure::Value => ("minimum", "maximum"),
            sluice_core::limits::Measure::Length => ("minLength", "maxLength"),
            sluice_core::limits::Measure::Items => ("minItems", "maxItems"),
            sluice_core::limits::Measure::Entries => ("minProperties", "maxProperties"),
        };
        assert_eq!(p[hi], b.max, "{schema}.{prop} {hi}");
        if b.min > 0 || p.get(lo).is_some() {
            assert_eq!(p[lo], b.min, "{schema}.{prop} {lo}");
        }
    };
    check("Integration", "url", settings::URL);
    check("Integration", "name", settings::NAME);
    check("Integration", "secret", settings::SECRET);
    check("Integration", "environments", settings::ENVIRONMENTS);
    check("Integration", "headers", settings::HEADERS);
    check(
        "Integration",
        "flushIntervalMs",
        settings::FLUSH_INTERVAL_MS,
    );
    check(
        "Integration",
        "maxBatchImpressions",
        settings::MAX_BATCH_IMPRESSIONS,
    );
    check(
        "Integration",
        "maxBacklogAgeMs",
        settings::MAX_BACKLOG_AGE_MS,
    );
    check("Integration", "maxInFlight", settings::MAX_IN_FLIGHT);
    check(
        "Integration",
        "maxRequestsPerSecond",
        settings::MAX_REQUESTS_PER_SECOND,
    );
    check("Environment", "sdkKeys", settings::SDK_KEYS);
    check("Project", "name", settings::NAME);
    check("AlertDestination", "url", settings::URL);
    check("AlertDestination", "secret", settings::SECRET);
    check("AlertDestination", "events", settings::ALERT_EVENTS);
    for (prop, b) in [
        ("window", settings::WINDOW),
        ("minAttempts", settings::MIN_ATTEMPTS),
        ("failureRatePercent", settings::FAILURE_RATE_PERCENT),
        ("initialCooldownMs", settings::INITIAL_COOLDOWN_MS),
        ("maxCooldownMs", settings::MAX_COOLDOWN_MS),
        ("connectTimeoutMs", settings::CONNECT_TIMEOUT_MS),
        ("requestTimeoutMs", settings::REQUEST_TIMEOUT_MS),
    ] {
        check("Protection", prop, b);
    }
}
