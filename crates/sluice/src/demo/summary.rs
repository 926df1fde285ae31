//! The demo's closing summary: what was ingested (and how fast ingest answered), what each
//! destination received, what is still queued, what was lost — impressions acknowledged
//! to the SDK that neither reached their destination nor wait for it — and the pauses.

use super::style::Style;
use super::view::{millis, thousands};
use std::collections::BTreeMap;
use std::time::Duration;

/// One destination at the end.
pub struct Outcome<'a> {
    pub id: &'a str,
    pub environments: &'a [&'a str],
    /// Impressions its receiver got (deduplicated by `webhook-id`).
    pub received: u64,
    /// Impressions sluice still holds for it (`lagImpressions`).
    pub queued: u64,
    /// Impressions skipped into gaps (replayable while retained).
    pub gapped: u64,
    pub pauses: u64,
}

pub struct Summary<'a> {
    pub seconds: u64,
    pub acknowledged: &'a BTreeMap<&'static str, u64>,
    pub ingest_p50: Duration,
    pub ingest_p99: Duration,
    pub ingest_errors: u64,
    pub destinations: Vec<Outcome<'a>>,
}

impl Outcome<'_> {
    /// Acknowledged for its environments, minus what arrived, waits, or was skipped into a
    /// gap. A batch that arrived while its 200 is being committed counts twice (received
    /// and queued), so the difference is floored at 0.
    pub fn lost(&self, acknowledged: &BTreeMap<&'static str, u64>) -> u64 {
        let expected: u64 = self
            .environments
            .iter()
            .map(|e| acknowledged.get(e).copied().unwrap_or(0))
            .sum();
        expected.saturating_sub(self.received + self.queued + self.gapped)
    }
}

pub fn render(style: &Style, s: &Summary<'_>) -> String {
    let ingested: u64 = s.acknowledged.values().sum();
    let delivered: u64 = s.destinations.iter().map(|d| d.received).sum();
    let queued: u64 = s.destinations.iter().map(|d| d.queued).sum();
    let gapped: u64 = s.destinations.iter().map(|d| d.gapped).sum();
    let lost: u64 = s.destinations.iter().map(|d| d.lost(s.acknowledged)).sum();
    let pauses: u64 = s.destinations.iter().map(|d| d.pauses).sum();
    let per_env: Vec<String> = s
        .acknowledged
        .iter()
        .map(|(e, n)| format!("{e} {}", thousands(*n)))
        .collect();
    let paused_ones: Vec<String> = s
        .destinations
        .iter()
        .filter(|d| d.pauses > 0)
        .map(|d| format!("{} {}", d.id, d.pauses))
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "\n {} (ran {} s)\n",
        style.bold("summary"),
        s.seconds
    ));
    out.push_str(&format!(
        "   ingested   {} impressions ({}), ingest latency p50 {} p99 {}, {} errors\n",
        thousands(ingested),
        per_env.join(" · "),
        millis(s.ingest_p50),
        millis(s.ingest_p99),
        s.ingest_errors
    ));
    out.push_str(&format!(
        "   delivered  {} impressions to {} destinations\n",
        thousands(delivered),
        s.destinations.len()
    ));
    out.push_str(&format!(
        "   queued     {} (kept in the log, delivered when their destinations are back){}\n",
        thousands(queued),
        if gapped > 0 {
            format!("; {} in replayable gaps", thousands(gapped))
        } else {
            String::new()
        }
    ));
    let lost_text = format!("lost       {}", thousands(lost));
    out.push_str(&format!(
        "   {}\n",
        if lost == 0 {
            style.green(&lost_text)
        } else {
            style.red(&lost_text)
        }
    ));
    out.push_str(&format!(
        "   pauses     {}{}\n",
        pauses,
        if paused_ones.is_empty() {
            String::new()
        } else {
            format!(" ({})", paused_ones.join(", "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_is_what_neither_arrived_nor_waits() {
        let acked = BTreeMap::from([("web", 1000), ("mobile", 500)]);
        let both = ["web", "mobile"];
        let d = |received, queued| Outcome {
            id: "d",
            environments: &both,
            received,
            queued,
            gapped: 0,
            pauses: 2,
        };
        assert_eq!(d(1500, 0).lost(&acked), 0);
        assert_eq!(d(1000, 500).lost(&acked), 0);
        assert_eq!(d(1100, 500).lost(&acked), 0, "in flight counts twice");
        assert_eq!(d(1000, 400).lost(&acked), 100);
        let s = Summary {
            seconds: 10,
            acknowledged: &acked,
            ingest_p50: Duration::from_millis(1),
            ingest_p99: Duration::from_millis(3),
            ingest_errors: 0,
            destinations: vec![d(1000, 500)],
        };
        let text = render(
            &Style {
                colour: false,
                redraw: false,
            },
            &s,
        );
        assert!(text.contains("lost       0"), "{text}");
        assert!(text.contains("pauses     2 (d 2)"), "{text}");
        assert!(text.contains("delivered  1,000 impressions"), "{text}");
    }
}
