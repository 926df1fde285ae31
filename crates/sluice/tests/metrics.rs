//! `GET /metrics` scraped from a live server (SPEC §4): every family has HELP and TYPE,
//! the series an operator alerts on are present and move (ingest, delivery, failures by
//! reason, pauses, storage), per-integration series can be switched off, and the example
//! alert rules and Grafana dashboard in docs/ops/ name only metrics a live scrape has
//! (and the rules pass `promtool`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use serde_json::json;
use sluice_receiver::FaultMode;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One sample line of the text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: family name → TYPE, families with HELP, and every sample.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: Vec<Sample>,
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').to_owned();
        let after = &rest[eq + 2..];
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &after[end..];
    }
    out
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                rest.len() > name.len() + 1,
                "HELP of {name} has no text: {line}"
            );
            s.helps.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap().to_owned();
            assert!(
                s.types.insert(name.clone(), kind).is_none(),
                "family {name} has two TYPE lines"
            );
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            s.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("value of {line}")),
            });
        }
    }
    s
}

impl Scrape {
    /// The family a sample belongs to (`x_bucket` of histogram `x` is `x`).
    fn family_of(&self, sample: &str) -> Option<&str> {
        if self.types.contains_key(sample) {
            return self.types.get_key_value(sample).map(|(k, _)| k.as_str());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.strip_suffix(suffix)?;
            match self.types.get_key_value(base) {
                Some((k, t)) if t == "histogram" || t == "summary" => Some(k.as_str()),
                _ => None,
            }
        })
    }

    /// The sum of the samples of `name` whose labels include `labels` (None: no sample).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let hits: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!hits.is_empty()).then(|| hits.iter().sum())
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in the scrape"))
    }

    /// Every sample's family has exactly one TYPE and a HELP with text.
    fn assert_described(&self) {
        for s in &self.samples {
            let family = self
                .family_of(&s.name)
                .unwrap_or_else(|| panic!("sample {} has no TYPE line", s.name));
            assert!(self.helps.contains(family), "family {family} has no HELP");
        }
        for name in self.types.keys() {
            assert!(self.helps.contains(name), "family {name} has no HELP");
            assert!(name.starts_with("sluice_"), "{name} is not sluice_…");
        }
    }
}

async fn scrape(s: &Sluice) -> Scrape {
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let scrape = parse(&resp.text().await.unwrap());
    scrape.assert_described();
    scrape
}

/// Scrapes until `f` holds (the gauges are computed at scrape time, the counters when
/// things happen): panics with the last scrape after 30 s.
async fn scrape_until(s: &Sluice, what: &str, f: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sc = scrape(s).await;
        if f(&sc) {
            return sc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen in 30 s; last scrape: {sc:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const BULK: &str = "/api/testImpressions/bulk";

/// A server with a healthy integration (`good`) and one whose destination answers 500
/// (`bad`, paused after two failed attempts), both on environment `web`.
async fn fleet(
    s: &Sluice,
) -> (
    sluice_receiver::ReceiverHandle,
    sluice_receiver::ReceiverHandle,
) {
    s.environment("web", "Web", SDK_KEY).await;
    let ok = receiver(FaultMode::Ok).await;
    let broken = receiver(FaultMode::Status(500)).await;
    s.integration("good", &ok.url("/hook"), &["web"], json!({}))
        .await;
    s.integration(
        "bad",
        &broken.url("/hook"),
        &["web"],
        json!({ "protection": { "window": 2, "minAttempts": 2, "initialCooldownMs": 60000 } }),
    )
    .await;
    (ok, broken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_described_present_and_moving() {
    let s = Sluice::start().await;
    let (_ok, _broken) = fleet(&s).await;
    let before = scrape(&s).await;
    // The integration series exist from the start, at their first values.
    assert_eq!(
        before.get(
            "sluice_integration_state",
            &[("integration", "good"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(
        before.get(
            "sluice_integration_state",
            &[("integration", "good"), ("state", "paused")]
        ),
        0.0
    );
    assert_eq!(
        before.get("sluice_integrations", &[("state", "active")]),
        2.0
    );
    let requests = |sc: &Scrape, status: &str| {
        sc.value(
            "sluice_ingest_requests_total",
            &[("route", BULK), ("status", status)],
        )
        .unwrap_or(0.0)
    };

    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 10)).await, 200);
    assert_eq!(s.send_bulk("no-such-key", &bulk("flag", "k", 1)).await, 401);

    let after = scrape_until(&s, "good delivered, bad paused", |sc| {
        sc.value(
            "sluice_integration_delivered_impressions_total",
            &[("integration", "good")],
        ) == Some(10.0)
            && sc.value("sluice_integration_pauses_total", &[("integration", "bad")]) >= Some(1.0)
    })
    .await;
    // Ingest: counted by route and status, timed.
    assert!(requests(&after, "200") >= requests(&before, "200") + 1.0);
    assert!(requests(&after, "401") >= requests(&before, "401") + 1.0);
    let count =
        |sc: &Scrape, name: &str, labels: &[(&str, &str)]| sc.value(name, labels).unwrap_or(0.0);
    assert!(
        count(
            &after,
            "sluice_ingest_request_duration_seconds_count",
            &[("route", BULK)]
        ) >= count(
            &before,
            "sluice_ingest_request_duration_seconds_count",
            &[("route", BULK)]
        ) + 2.0
    );
    assert!(
        after.get("sluice_ingested_impressions_total", &[])
            >= before.get("sluice_ingested_impressions_total", &[]) + 10.0
    );
    // The histograms have buckets (not summaries) up to +Inf.
    assert_eq!(
        after.types["sluice_ingest_request_duration_seconds"],
        "histogram"
    );
    assert!(
        after
            .value(
                "sluice_log_fsync_duration_seconds_bucket",
                &[("le", "+Inf")]
            )
            .is_some_and(|n| n >= 1.0)
    );
    // Delivery: attempts timed, failures by reason, delivered, pauses.
    assert!(
        after.get(
            "sluice_delivery_attempt_duration_seconds_count",
            &[("result", "ok")]
        ) >= 1.0
    );
    assert!(
        after.get(
            "sluice_integration_failed_attempts_total",
            &[("integration", "bad"), ("reason", "status_5xx")]
        ) >= 2.0
    );
    assert!(
        after.get(
            "sluice_delivery_failed_attempts_total",
            &[("reason", "status_5xx")]
        ) >= 2.0
    );
    assert!(
        after.get("sluice_delivered_impressions_total", &[])
            >= before.get("sluice_delivered_impressions_total", &[]) + 10.0
    );
    assert!(after.get("sluice_delivery_pauses_total", &[("cause", "protection")]) >= 1.0);
    assert_eq!(
        after.get(
            "sluice_integration_state",
            &[("integration", "bad"), ("state", "paused")]
        ),
        1.0
    );
    // `bad` holds the 10 impressions: its lag, in impressions and in seconds.
    assert_eq!(
        after.get(
            "sluice_integration_lag_impressions",
            &[("integration", "bad")]
        ),
        10.0
    );
    assert_eq!(
        after.get(
            "sluice_integration_lag_impressions",
            &[("integration", "good")]
        ),
        0.0
    );
    assert!(after.get("sluice_integration_lag_seconds", &[("integration", "bad")]) >= 0.0);
    assert_eq!(after.get("sluice_lag_impressions", &[]), 10.0);
    // Storage of environment `web`.
    assert!(after.get("sluice_log_bytes", &[("environment", "web")]) > 0.0);
    assert!(after.get("sluice_log_segments", &[("environment", "web")]) >= 1.0);

    // An operator pauses `good`: its state gauge moves from active to paused.
    s.post_admin("/v1/integrations/good/pause", json!({})).await;
    let paused = scrape(&s).await;
    assert_eq!(
        paused.get(
            "sluice_integration_state",
            &[("integration", "good"), ("state", "paused")]
        ),
        1.0
    );
    assert_eq!(
        paused.get(
            "sluice_integration_state",
            &[("integration", "good"), ("state", "active")]
        ),
        0.0
    );
    assert_eq!(
        paused.get("sluice_integrations", &[("state", "paused")]),
        2.0
    );
    assert_eq!(
        paused.get("sluice_integrations", &[("state", "active")]),
        0.0
    );
    assert!(paused.get("sluice_delivery_pauses_total", &[("cause", "manual")]) >= 1.0);

    // Every metric the example alert rules and Grafana dashboard use is in this scrape.
    for file in ["alerts.yml", "alerts.test.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(ops_dir().join(file)).unwrap();
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            assert!(
                paused.family_of(&name).is_some(),
                "{file} uses {name}, which a live scrape does not have"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_integration_series_can_be_switched_off() {
    let s = Sluice::start_with(|o| o.metrics_per_integration = false).await;
    let (_ok, _broken) = fleet(&s).await;
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 3)).await, 200);
    // `bad` paused holding the 3 impressions; `good` delivered them.
    let sc = scrape_until(&s, "bad paused, good delivered", |sc| {
        sc.value("sluice_integrations", &[("state", "paused")]) == Some(1.0)
            && sc.value("sluice_lag_impressions", &[]) == Some(3.0)
    })
    .await;
    assert_eq!(sc.get("sluice_integrations", &[("state", "active")]), 1.0);
    let per_integration: Vec<&str> = sc
        .samples
        .iter()
        .filter(|x| {
            x.name.starts_with("sluice_integration_") || x.labels.contains_key("integration")
        })
        .map(|x| x.name.as_str())
        .collect();
    assert!(
        per_integration.is_empty(),
        "per-integration series present: {per_integration:?}"
    );
}

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ops")
}

/// Every `sluice_…` name in a rules file or dashboard.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sluice_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..at].chars().last();
        // Not the tail of a longer identifier.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// `promtool check rules` and `promtool test rules` (Debian's `prometheus` package; .ci/run
/// installs it). Skipped with a message where promtool is missing, unless `CI` is set.
#[test]
fn the_alert_rules_pass_promtool() {
    let promtool = std::env::var("SLUICE_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let version = std::process::Command::new(&promtool)
        .arg("--version")
        .output();
    if version.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool not found (apt-get install prometheus), and CI is set"
        );
        eprintln!("SKIPPED: promtool not found (apt-get install prometheus)");
        return;
    }
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(ops_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_grafana_dashboard_is_valid_json_with_queries() {
    let text = std::fs::read_to_string(ops_dir().join("grafana-dashboard.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = v["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert!(t["expr"].as_str().unwrap().contains("sluice_"), "{t}");
        }
    }
}
