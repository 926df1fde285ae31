//! The demo's simulated SDK traffic: ten Split bulk requests a second, alternating
//! environments, each timed. [`IngestStats`] keeps what the view and the summary show:
//! impressions acknowledged per environment, the last second's rate and latency, errors.

use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environments and their SDK keys.
pub const ENVIRONMENTS: [(&str, &str, &str); 2] = [
    ("web", "Web", "demo-sdk-key-web"),
    ("mobile", "Mobile", "demo-sdk-key-mobile"),
];

#[derive(Debug, Default)]
pub struct IngestStats {
    /// Impressions acknowledged (200) per environment.
    pub acknowledged: BTreeMap<&'static str, u64>,
    /// Requests answered other than 200, or not answered.
    pub errors: u64,
    /// (when, impressions, latency) of the requests of the last few seconds.
    recent: VecDeque<(Instant, u64, Duration)>,
    /// Every request's latency, for the summary's percentiles.
    all: Vec<Duration>,
}

/// The view's ingest row.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestNow {
    pub per_second: u64,
    pub p50: Duration,
    pub p99: Duration,
}

impl IngestStats {
    fn record(&mut self, env: &'static str, impressions: u64, latency: Duration, ok: bool) {
        let now = Instant::now();
        if ok {
            *self.acknowledged.entry(env).or_default() += impressions;
            self.recent.push_back((now, impressions, latency));
        } else {
            self.errors += 1;
        }
        self.all.push(latency);
        while self
            .recent
            .front()
            .is_some_and(|(t, ..)| now.duration_since(*t) > Duration::from_secs(3))
        {
            self.recent.pop_front();
        }
    }

    /// Rate and latency over the last second.
    pub fn now(&self) -> IngestNow {
        let now = Instant::now();
        let last: Vec<&(Instant, u64, Duration)> = self
            .recent
            .iter()
            .filter(|(t, ..)| now.duration_since(*t) <= Duration::from_secs(1))
            .collect();
        let mut latencies: Vec<Duration> = last.iter().map(|(_, _, l)| *l).collect();
        latencies.sort();
        IngestNow {
            per_second: last.iter().map(|(_, n, _)| n).sum(),
            p50: percentile(&latencies, 50),
            p99: percentile(&latencies, 99),
        }
    }

    /// Every request's p50 and p99 since the start.
    pub fn overall(&self) -> (Duration, Duration) {
        let mut all = self.all.clone();
        all.sort();
        (percentile(&all, 50), percentile(&all, 99))
    }
}

/// The `p`th percentile of sorted `v` (zero when empty).
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

pub type Shared = Arc<Mutex<IngestStats>>;

pub fn with<R>(stats: &Shared, f: impl FnOnce(&mut IngestStats) -> R) -> R {
    match stats.lock() {
        Ok(mut g) => f(&mut g),
        Err(p) => f(&mut p.into_inner()),
    }
}

/// Sends `rate` impressions a second until aborted.
pub fn spawn(
    client: reqwest::Client,
    base: String,
    rate: u64,
    stats: Shared,
) -> tokio::task::JoinHandle<()> {
    let per_request = (rate / 10).max(4);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let flags = ["new_checkout", "dark_mode", "search_v2", "onboarding"];
        let mut seq: u64 = 0;
        loop {
            tick.tick().await;
            seq += 1;
            let (env, _, key) = ENVIRONMENTS[(seq % 2) as usize];
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let groups: Vec<Value> = flags
                .iter()
                .map(|f| {
                    let items: Vec<Value> = (0..per_request / 4)
                        .map(|i| json!({"k": format!("user-{}", (seq * 31 + i) % 5000), "t": if i % 3 == 0 { "on" } else { "off" }, "m": now, "c": 1700000000000i64, "r": "default rule"}))
                        .collect();
                    json!({"f": f, "i": items})
                })
                .collect();
            let impressions = (per_request / 4) * 4;
            let began = Instant::now();
            let answer = client
                .post(format!("{base}/api/testImpressions/bulk"))
                .bearer_auth(key)
                .header("SplitSDKVersion", "python-10.7.0")
                .header("SplitSDKMachineName", "demo-host")
                .json(&groups)
                .send()
                .await;
            let ok = match answer {
                Ok(r) => r.status() == reqwest::StatusCode::OK && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let latency = began.elapsed();
            with(&stats, |s| s.record(env, impressions, latency, ok));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_latencies() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99), Duration::ZERO);
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 99),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn acknowledged_impressions_are_counted_per_environment() {
        let mut s = IngestStats::default();
        s.record("web", 100, Duration::from_millis(2), true);
        s.record("mobile", 50, Duration::from_millis(3), true);
        s.record("web", 100, Duration::from_millis(9), false);
        assert_eq!(s.acknowledged["web"], 100);
        assert_eq!(s.acknowledged["mobile"], 50);
        assert_eq!(s.errors, 1);
        assert_eq!(s.now().per_second, 150);
    }
}
