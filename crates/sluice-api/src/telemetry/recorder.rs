//! The process-wide Prometheus recorder: installed once (a process has one global
//! recorder, shared by every server it runs), with the HELP text of every series recorded
//! through it and the buckets of its latency histograms.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Buckets of every `*_seconds` histogram: from 0.5 ms (an fsync on a fast disk) to 30 s
/// (beyond the default 15 s delivery request timeout).
pub const SECONDS_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedKind {
    Counter,
    Histogram,
}

/// Every series recorded through the recorder (by `sluice-api`, `sluice-delivery` and
/// `sluice-store`): name, kind, labels, HELP text.
pub const RECORDED: &[(&str, RecordedKind, &[&str], &str)] = {
    use RecordedKind::{Counter, Histogram};
    &[
        (
            "sluice_ingest_requests_total",
            Counter,
            &["route", "status"],
            "Ingest requests answered, by route and HTTP status.",
        ),
        (
            "sluice_ingest_request_duration_seconds",
            Histogram,
            &["route"],
            "Time to answer an ingest request (including the fsync of its impressions), by route.",
        ),
        (
            "sluice_ingested_impressions_total",
            Counter,
            &[],
            "Impressions stored by ingest (acknowledged to the SDK).",
        ),
        (
            "sluice_impression_counts_total",
            Counter,
            &[],
            "Impression counts received on /api/testImpressions/count (not delivered).",
        ),
        (
            "sluice_sdk_other_requests_total",
            Counter,
            &[],
            "SDK requests accepted and dropped (events, keys, telemetry).",
        ),
        (
            "sluice_delivery_attempts_total",
            Counter,
            &["kind", "result"],
            "Delivery attempts over all integrations, by kind (live, retry, probe, replay) and result (ok, error).",
        ),
        (
            "sluice_delivery_attempt_duration_seconds",
            Histogram,
            &["result"],
            "Time of one delivery attempt until the answer was read or it failed, by result.",
        ),
        (
            "sluice_delivery_failed_attempts_total",
            Counter,
            &["reason"],
            "Failed delivery attempts over all integrations, by reason (status_2xx/3xx/4xx/5xx/other, timeout, connect, refused, other).",
        ),
        (
            "sluice_delivered_impressions_total",
            Counter,
            &[],
            "Impressions delivered live (answered 200) over all integrations; replays not included.",
        ),
        (
            "sluice_delivery_pauses_total",
            Counter,
            &["cause"],
            "Integrations paused, by cause (protection, manual).",
        ),
        (
            "sluice_gaps_total",
            Counter,
            &[],
            "Gaps recorded: backlog skipped (older than maxBacklogAgeMs or removed by retention).",
        ),
        (
            "sluice_gap_impressions_total",
            Counter,
            &[],
            "Impressions skipped into gaps (replayable while retained).",
        ),
        (
            "sluice_delivery_restarts_total",
            Counter,
            &[],
            "Delivery tasks (an integration's task or lane) that ended and were started again.",
        ),
        ("sluice_exports_total", Counter, &[], "Exports started."),
        (
            "sluice_exported_impressions_total",
            Counter,
            &[],
            "Impressions streamed by exports.",
        ),
        (
            "sluice_log_fsync_duration_seconds",
            Histogram,
            &[],
            "Time of one fdatasync of a log segment (one per group-commit round and file).",
        ),
        (
            "sluice_log_retention_deleted_segments_total",
            Counter,
            &[],
            "Log segments deleted by retention.",
        ),
        (
            "sluice_log_retention_deleted_bytes_total",
            Counter,
            &[],
            "Log bytes deleted by retention.",
        ),
    ]
};

/// Installs the global recorder on first call and returns its handle (`None` when another
/// recorder was installed first, e.g. by an embedding program).
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// Gives every recorded series its HELP text, and starts the counters without labels at 0
/// (so a scrape shows them, and alerts on their increase work, before their first event).
fn describe() {
    for (name, kind, labels, help) in RECORDED {
        match kind {
            RecordedKind::Counter => {
                metrics::describe_counter!(*name, *help);
                if labels.is_empty() {
                    metrics::counter!(*name).increment(0);
                }
            }
            RecordedKind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}
