//! One frame of the demo's live view: the ingest row (rate and latency, which stay flat
//! while destinations fail), then one row per destination — its environments, state, lag,
//! delivered, failures, the countdown to a paused integration's next probe — and under a
//! failing one its last error in full, wrapped.

use super::style::{Style, wrap};
use super::traffic::{ENVIRONMENTS, IngestNow};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Width the view wraps error text to.
pub const WIDTH: usize = 110;

/// One destination as a frame shows it.
pub struct Row<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub environments: &'a [&'a str],
    /// `GET /v1/integrations/{id}/status` (`Null` if it could not be read).
    pub status: &'a Value,
}

pub struct Frame<'a> {
    pub t: u64,
    pub dashboard: &'a str,
    pub token: &'a str,
    pub healed_at: Option<u64>,
    pub heal_after: u64,
    pub ingest: IngestNow,
    pub ingest_errors: u64,
    pub stored: &'a BTreeMap<&'static str, u64>,
    pub rows: Vec<Row<'a>>,
    /// ms since the epoch, for the probe countdowns.
    pub now_ms: i64,
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// What the "next probe" column says for a status.
pub fn next_probe(status: &Value, now_ms: i64) -> String {
    match status["state"].as_str() {
        Some("paused") if status["manuallyPaused"] == true => "paused by operator".into(),
        Some("paused") => match status["pausedUntil"].as_i64() {
            Some(until) => format!("probe in {:.1} s", (until - now_ms).max(0) as f64 / 1000.0),
            None => "paused".into(),
        },
        Some("probing") => "probing now".into(),
        _ => String::new(),
    }
}

pub fn render(style: &Style, f: &Frame<'_>) -> String {
    let mut out = String::new();
    if style.redraw {
        out.push_str("\x1b[2J\x1b[H");
    } else {
        out.push('\n');
    }
    out.push_str(&format!(
        " {}  t={:>3}s   dashboard {} (sign in with the admin token {})   Ctrl-C to stop\n",
        style.bold("sluice demo"),
        f.t,
        style.cyan(f.dashboard),
        style.bold(f.token),
    ));
    let headline = match f.healed_at {
        Some(at) => style.green(&format!(
            " the failing destinations HEALED at t={at}s: watch their backlog drain (1,000 impressions a request, 8 requests a second at most)"
        )),
        None => style.yellow(&format!(
            " 2 of 6 destinations fail until t={}s: they pause and probe; the others stay on time and ingest stays flat",
            f.heal_after
        )),
    };
    out.push_str(&headline);
    out.push_str("\n\n");
    let stored: Vec<String> = ENVIRONMENTS
        .iter()
        .map(|(id, ..)| format!("{id} {}", thousands(f.stored.get(id).copied().unwrap_or(0))))
        .collect();
    let errors = if f.ingest_errors == 0 {
        style.green("0")
    } else {
        style.red(&f.ingest_errors.to_string())
    };
    out.push_str(&format!(
        " {}  {:>7} impressions/s   latency p50 {}  p99 {}   errors {}   stored: {}\n\n",
        style.bold("ingest"),
        thousands(f.ingest.per_second),
        style.bold(&millis(f.ingest.p50)),
        style.bold(&millis(f.ingest.p99)),
        errors,
        stored.join(" · "),
    ));
    out.push_str(&style.dim(&format!(
        " {:<14} {:<12} {:<12} {:<9} {:>10} {:>8} {:>11} {:>7}  {}",
        "integration",
        "destination",
        "environments",
        "state",
        "lag (imp)",
        "lag (s)",
        "delivered",
        "failed",
        "next probe"
    )));
    out.push('\n');
    for r in &f.rows {
        let st = r.status;
        let state = st["state"].as_str().unwrap_or("?");
        let lag = st["lagImpressions"].as_u64().unwrap_or(0);
        let lag_text = format!("{:>10}", thousands(lag));
        out.push_str(&format!(
            " {:<14} {:<12} {:<12} {} {} {:>8.1} {:>11} {:>7}  {}\n",
            r.id,
            r.role,
            r.environments.join(","),
            style.state(state, 9),
            if lag > 0 {
                style.yellow(&lag_text)
            } else {
                lag_text
            },
            st["lagSeconds"].as_f64().unwrap_or(0.0),
            thousands(st["deliveredImpressions"].as_u64().unwrap_or(0)),
            thousands(st["failedAttempts"].as_u64().unwrap_or(0)),
            style.yellow(&next_probe(st, f.now_ms)),
        ));
        if state != "active"
            && let Some(err) = st["lastError"].as_str()
        {
            for (i, line) in wrap(err, WIDTH - 20).iter().enumerate() {
                let lead = if i == 0 {
                    "last error: "
                } else {
                    "            "
                };
                out.push_str(&format!("     {}{}\n", style.dim(lead), style.red(line)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_countdowns() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        let paused = json!({"state": "paused", "pausedUntil": 10_500, "manuallyPaused": false});
        assert_eq!(next_probe(&paused, 8_000), "probe in 2.5 s");
        assert_eq!(next_probe(&paused, 20_000), "probe in 0.0 s");
        assert_eq!(
            next_probe(&json!({"state": "paused", "manuallyPaused": true}), 0),
            "paused by operator"
        );
        assert_eq!(next_probe(&json!({"state": "active"}), 0), "");
    }

    #[test]
    fn a_failing_row_shows_its_whole_error() {
        let error = "connect error: ".to_owned() + &"very long cause ".repeat(20) + "END";
        let status = json!({"state": "paused", "pausedUntil": 5000, "lastError": error, "lagImpressions": 1200});
        let stored = BTreeMap::new();
        let frame = Frame {
            t: 3,
            dashboard: "http://127.0.0.1:1/",
            token: "tok",
            healed_at: None,
            heal_after: 40,
            ingest: IngestNow::default(),
            ingest_errors: 0,
            stored: &stored,
            rows: vec![Row {
                id: "broken",
                role: "answers 500",
                environments: &["web", "mobile"],
                status: &status,
            }],
            now_ms: 2000,
        };
        let plain = Style {
            colour: false,
            redraw: false,
        };
        let text = render(&plain, &frame);
        assert!(text.contains("web,mobile"), "{text}");
        assert!(text.contains("probe in 3.0 s"), "{text}");
        assert!(text.contains("1,200"), "{text}");
        assert!(text.contains("END"), "the error is cut: {text}");
        assert!(!text.contains('\x1b'), "plain text has no escapes: {text}");
        assert!(text.lines().all(|l| l.chars().count() <= 140), "{text}");
    }
}
