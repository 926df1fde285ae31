//! A small in-memory history for the dashboard's charts: one sample of every integration's
//! lag and delivered count every [`INTERVAL`], the last hour of them ([`SAMPLES`]), for at
//! most [`MAX_TRACKED`] integrations (the first by id), so memory stays bounded
//! (≈ 2,000 × 360 × 32 bytes ≈ 23 MB at most) whatever the fleet. Lost on restart: charts
//! are for watching, `/metrics` is for keeping.
//!
//! The sampler also keeps the fleet summary of its last round (integrations per state,
//! total lag) for fleets too large to count on every dashboard refresh.

use crate::state::{AppState, Inner};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, Weak};
use std::time::Duration;

pub const INTERVAL: Duration = Duration::from_secs(10);
pub const SAMPLES: usize = 360;
pub const MAX_TRACKED: usize = 2000;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// ms since the epoch.
    pub t: i64,
    pub lag_impressions: u64,
    pub lag_seconds: f64,
    pub delivered_impressions: u64,
}

/// Integrations per state and the total lag, as of `at` (ms since the epoch).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    pub at: i64,
    pub integrations: usize,
    pub states: BTreeMap<&'static str, usize>,
    pub lag_impressions: u64,
    pub max_lag_seconds: f64,
}

impl FleetSummary {
    pub fn new(at: i64) -> FleetSummary {
        FleetSummary {
            at,
            states: crate::admin::fleet::STATES
                .iter()
                .map(|s| (*s, 0))
                .collect(),
            ..FleetSummary::default()
        }
    }

    pub fn add(&mut self, state: &str, lag: u64, lag_seconds: f64) {
        self.integrations += 1;
        if let Some(n) = crate::admin::fleet::STATES
            .iter()
            .find(|s| **s == state)
            .and_then(|s| self.states.get_mut(s))
        {
            *n += 1;
        }
        self.lag_impressions += lag;
        self.max_lag_seconds = self.max_lag_seconds.max(lag_seconds);
    }
}

#[derive(Debug, Default)]
struct Rings {
    series: HashMap<String, VecDeque<Sample>>,
    summary: Option<FleetSummary>,
}

#[derive(Debug, Default)]
pub struct History {
    rings: Mutex<Rings>,
}

impl History {
    fn with<R>(&self, f: impl FnOnce(&mut Rings) -> R) -> R {
        match self.rings.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Adds one round: `samples` for the tracked integrations (others' rings are dropped).
    pub fn record(&self, samples: Vec<(String, Sample)>, summary: FleetSummary) {
        self.with(|r| {
            let mut kept: HashMap<String, VecDeque<Sample>> = HashMap::new();
            for (id, sample) in samples.into_iter().take(MAX_TRACKED) {
                let mut ring = r.series.remove(&id).unwrap_or_default();
                if ring.len() == SAMPLES {
                    ring.pop_front();
                }
                ring.push_back(sample);
                kept.insert(id, ring);
            }
            r.series = kept;
            r.summary = Some(summary);
        })
    }

    /// The integration's samples, oldest first; `None` when it is not tracked.
    pub fn samples(&self, id: &str) -> Option<Vec<Sample>> {
        self.with(|r| r.series.get(id).map(|s| s.iter().copied().collect()))
    }

    pub fn summary(&self) -> Option<FleetSummary> {
        self.with(|r| r.summary.clone())
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One round over every integration of the projects `sees` accepts (in id order): their
/// statuses, the summary, and samples for the first [`MAX_TRACKED`].
pub async fn sample_round(
    s: &AppState,
    sees: impl Fn(&str) -> bool,
) -> (Vec<(String, Sample)>, FleetSummary) {
    let snapshot = s.catalog.snapshot();
    let t = now_ms();
    let mut summary = FleetSummary::new(t);
    let mut samples = Vec::new();
    for integ in snapshot.integrations.values() {
        if !sees(&integ.project) {
            continue;
        }
        // An integration deleted meanwhile (or a store error) is left out of this round.
        let Ok(st) = s.engine.status(integ).await else {
            continue;
        };
        // The state's name as the API writes it (`active`, `paused`, …).
        let state = serde_json::to_value(st.state).unwrap_or_default();
        summary.add(
            state.as_str().unwrap_or_default(),
            st.lag_impressions,
            st.lag_seconds,
        );
        if samples.len() < MAX_TRACKED {
            samples.push((
                integ.id.clone(),
                Sample {
                    t,
                    lag_impressions: st.lag_impressions,
                    lag_seconds: st.lag_seconds,
                    delivered_impressions: st.delivered_impressions,
                },
            ));
        }
    }
    (samples, summary)
}

/// Samples every [`INTERVAL`] until the API state is dropped.
pub fn spawn_sampler(state: Weak<Inner>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(s) = state.upgrade() else { return };
            let (samples, summary) = sample_round(&s, |_| true).await;
            s.history.record(samples, summary);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: i64) -> Sample {
        Sample {
            t,
            lag_impressions: t as u64,
            lag_seconds: 0.0,
            delivered_impressions: 0,
        }
    }

    #[test]
    fn rings_keep_the_last_hour_and_forget_deleted_integrations() {
        let h = History::default();
        for t in 0..(SAMPLES as i64 + 5) {
            h.record(
                vec![("a".into(), sample(t)), ("b".into(), sample(t))],
                FleetSummary::new(t),
            );
        }
        let a = h.samples("a").unwrap();
        assert_eq!(a.len(), SAMPLES);
        assert_eq!(a.first().unwrap().t, 5);
        assert_eq!(a.last().unwrap().t, SAMPLES as i64 + 4);
        h.record(vec![("a".into(), sample(1000))], FleetSummary::new(1000));
        assert!(h.samples("b").is_none());
        assert_eq!(h.samples("a").unwrap().len(), SAMPLES);
        assert_eq!(h.summary().unwrap().at, 1000);
    }

    #[test]
    fn at_most_max_tracked_integrations() {
        let h = History::default();
        let many = (0..MAX_TRACKED + 10)
            .map(|i| (format!("i{i:05}"), sample(1)))
            .collect();
        h.record(many, FleetSummary::new(1));
        assert!(h.samples("i00000").is_some());
        assert!(h.samples(&format!("i{:05}", MAX_TRACKED + 5)).is_none());
    }

    #[test]
    fn summary_counts_states() {
        let mut s = FleetSummary::new(0);
        s.add("active", 5, 1.0);
        s.add("paused", 7, 9.5);
        s.add("paused", 0, 0.0);
        assert_eq!(s.integrations, 3);
        assert_eq!(s.states["paused"], 2);
        assert_eq!(s.states["probing"], 0);
        assert_eq!(s.lag_impressions, 12);
        assert_eq!(s.max_lag_seconds, 9.5);
    }
}
