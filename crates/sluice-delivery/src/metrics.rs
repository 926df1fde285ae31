//! Delivery's series in the process-wide Prometheus recorder: aggregates over every
//! integration, so their number does not grow with the fleet. Per-integration figures are
//! kept in each integration's [`crate::shared::SharedState`] and rendered at scrape time
//! by the API (`sluice-api`'s `telemetry`), where an operator can switch them off.
//!
//! Names follow Prometheus conventions (base units, `_total` on counters); their HELP
//! text is given where the recorder is installed (`sluice_api::telemetry::describe`).

use crate::attempts::AttemptKind;
use crate::http::{Outcome, OutcomeKind};

/// Every value [`failure_reason`] returns, in a stable order.
pub const FAILURE_REASONS: [&str; 9] = [
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "status_other",
    "timeout",
    "connect",
    "refused",
    "other",
];

/// Why an attempt failed, as a label value: the status class of an answer other than 200
/// (redirects are not followed, so 3xx is a failure too), or what stopped the request.
pub fn failure_reason(o: &Outcome) -> &'static str {
    match o.kind {
        OutcomeKind::HttpStatus => match o.status {
            Some(200..=299) => "status_2xx",
            Some(300..=399) => "status_3xx",
            Some(400..=499) => "status_4xx",
            Some(500..=599) => "status_5xx",
            _ => "status_other",
        },
        OutcomeKind::Timeout => "timeout",
        OutcomeKind::Connect => "connect",
        OutcomeKind::Refused => "refused",
        // A delivered outcome is never asked for its reason; "other" keeps this total.
        OutcomeKind::Delivered | OutcomeKind::Other => "other",
    }
}

/// One attempt (live, retry, probe or replay): counted by kind and result, timed, a
/// failure counted by reason, and live deliveries' impressions counted.
pub fn attempt(kind: AttemptKind, outcome: &Outcome, impressions: u32) {
    let ok = outcome.is_delivered();
    let result = if ok { "ok" } else { "error" };
    metrics::counter!("sluice_delivery_attempts_total", "kind" => kind.as_str(), "result" => result)
        .increment(1);
    metrics::histogram!("sluice_delivery_attempt_duration_seconds", "result" => result)
        .record(outcome.duration.as_secs_f64());
    if !ok {
        metrics::counter!("sluice_delivery_failed_attempts_total", "reason" => failure_reason(outcome))
            .increment(1);
    } else if kind != AttemptKind::Replay {
        metrics::counter!("sluice_delivered_impressions_total").increment(u64::from(impressions));
    }
}

/// An integration was paused, by protection (`manual` false) or by an operator.
pub fn paused(manual: bool) {
    let cause = if manual { "manual" } else { "protection" };
    metrics::counter!("sluice_delivery_pauses_total", "cause" => cause).increment(1);
}

/// Backlog was skipped into a gap of `impressions`.
pub fn gap(impressions: u64) {
    metrics::counter!("sluice_gaps_total").increment(1);
    metrics::counter!("sluice_gap_impressions_total").increment(impressions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(kind: OutcomeKind, status: Option<u16>) -> Outcome {
        Outcome {
            kind,
            status,
            retry_after: None,
            duration: Duration::from_millis(5),
            error: None,
            response_snippet: String::new(),
        }
    }

    #[test]
    fn failures_are_classified_by_status_class_or_cause() {
        let cases = [
            (OutcomeKind::HttpStatus, Some(204), "status_2xx"),
            (OutcomeKind::HttpStatus, Some(302), "status_3xx"),
            (OutcomeKind::HttpStatus, Some(429), "status_4xx"),
            (OutcomeKind::HttpStatus, Some(503), "status_5xx"),
            (OutcomeKind::HttpStatus, Some(999), "status_other"),
            (OutcomeKind::Timeout, None, "timeout"),
            (OutcomeKind::Connect, None, "connect"),
            (OutcomeKind::Refused, None, "refused"),
            (OutcomeKind::Other, None, "other"),
        ];
        for (kind, status, want) in cases {
            let got = failure_reason(&outcome(kind, status));
            assert_eq!(got, want, "{kind:?} {status:?}");
            assert!(FAILURE_REASONS.contains(&got));
        }
    }
}
