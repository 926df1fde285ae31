//! The load generator: pre-generated Split SDK bulk bodies, and concurrent clients posting
//! them to `/api/testImpressions/bulk` with the headers a Python SDK sends.

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// SplitMix64: fast, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A flag as an SDK evaluates it: name, change number, treatments and rule labels.
struct Flag {
    name: &'static str,
    change_number: i64,
    treatments: &'static [&'static str],
    labels: &'static [&'static str],
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "new_checkout_flow",
        change_number: 1_731_402_118_220,
        treatments: &["on", "off"],
        labels: &["default rule", "in segment beta_testers", "whitelisted"],
    },
    Flag {
        name: "pricing_page_v2",
        change_number: 1_733_917_240_501,
        treatments: &["control_v1", "variant_a", "variant_b"],
        labels: &["default rule", "in segment enterprise_accounts"],
    },
    Flag {
        name: "search_ranking_model",
        change_number: 1_734_005_377_018,
        treatments: &["bm25", "ltr_v3", "ltr_v4"],
        labels: &[
            "default rule",
            "targeting rule 2",
            "in segment internal_staff",
        ],
    },
    Flag {
        name: "dark_mode",
        change_number: 1_729_880_002_447,
        treatments: &["on", "off"],
        labels: &["default rule"],
    },
    Flag {
        name: "onboarding_tour_2025",
        change_number: 1_735_140_993_610,
        treatments: &["on", "off", "control"],
        labels: &["default rule", "killed", "not in split"],
    },
];

/// A matching key: mostly UUIDs (what most apps use), some account-style ids.
fn user_key(rng: &mut Rng) -> String {
    if rng.below(10) < 7 {
        let a = rng.next();
        let b = rng.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    } else {
        format!("user-{}", 100_000 + rng.below(9_900_000))
    }
}

/// Pre-generated request bodies.
pub struct Bodies {
    pub bodies: Vec<Bytes>,
    pub per_body: usize,
    pub gzip: bool,
    /// Average uncompressed and on-the-wire body sizes.
    pub raw_bytes: usize,
    pub wire_bytes: usize,
}

impl Bodies {
    /// `count` distinct bodies of `per_body` impressions each, spread over the flags the way an
    /// SDK groups them (one entry per flag, impressions of many keys).
    pub fn generate(count: usize, per_body: usize, gzip: bool) -> Bodies {
        let mut rng = Rng(0x5eed_0000_0000_0001);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut bodies = Vec::with_capacity(count);
        let (mut raw_total, mut wire_total) = (0usize, 0usize);
        for b in 0..count {
            // Keys of this SDK instance's recent traffic; each evaluates several flags.
            let keys: Vec<String> = (0..per_body.div_ceil(3).max(1))
                .map(|_| user_key(&mut rng))
                .collect();
            let mut per_flag: Vec<Vec<usize>> = vec![Vec::new(); FLAGS.len()];
            for i in 0..per_body {
                per_flag[(i + b) % FLAGS.len()].push(i);
            }
            let mut s = String::with_capacity(per_body * 170 + 64);
            s.push('[');
            let mut first_flag = true;
            for (fi, items) in per_flag.iter().enumerate() {
                if items.is_empty() {
                    continue;
                }
                let flag = &FLAGS[fi];
                if !first_flag {
                    s.push(',');
                }
                first_flag = false;
                let _ = write!(s, "{{\"f\":\"{}\",\"i\":[", flag.name);
                for (n, &i) in items.iter().enumerate() {
                    if n > 0 {
                        s.push(',');
                    }
                    let key = &keys[rng.below(keys.len() as u64) as usize];
                    let t = flag.treatments[rng.below(flag.treatments.len() as u64) as usize];
                    let r = flag.labels[rng.below(flag.labels.len() as u64) as usize];
                    let m = now - 60_000 + (i as i64 * 60_000 / per_body.max(1) as i64);
                    // Python SDKs send unset b and pt as null; a few apps set a bucketing key.
                    let bk = if rng.below(20) == 0 {
                        format!("\"acct-{}\"", rng.below(50_000))
                    } else {
                        "null".to_owned()
                    };
                    let _ = write!(
                        s,
                        "{{\"k\":\"{key}\",\"t\":\"{t}\",\"m\":{m},\"c\":{},\"r\":\"{r}\",\"b\":{bk},\"pt\":null}}",
                        flag.change_number
                    );
                }
                s.push_str("]}");
            }
            s.push(']');
            raw_total += s.len();
            let wire: Bytes = if gzip {
                let mut enc =
                    GzEncoder::new(Vec::with_capacity(s.len() / 4), Compression::default());
                let _ = enc.write_all(s.as_bytes());
                enc.finish().unwrap_or_default().into()
            } else {
                s.into_bytes().into()
            };
            wire_total += wire.len();
            bodies.push(wire);
        }
        Bodies {
            per_body,
            gzip,
            raw_bytes: raw_total / count.max(1),
            wire_bytes: wire_total / count.max(1),
            bodies,
        }
    }
}

/// Where and as whom the clients send.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub sdk_key: String,
}

/// When clients stop and which completions count.
#[derive(Clone)]
pub struct Plan {
    /// Completions before this instant are warm-up and not counted.
    pub count_from: Instant,
    /// No request is started after this instant; completions after it are not counted.
    pub until: Instant,
    /// When set, clients stop once this many requests have been started in total.
    pub max_requests: Option<u64>,
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered 200 within the counted window, and their impressions.
    pub ok_requests: u64,
    pub ok_impressions: u64,
    /// Everything else, by status code or error.
    pub failures: BTreeMap<String, u64>,
    /// Latency of every counted request (200 or not), in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// When the last client finished.
    pub finished: Option<Instant>,
}

/// Runs `clients` concurrent clients (each with its own connection) until the plan says
/// stop. `acked` counts acknowledged impressions live (warm-up included), for progress.
pub async fn run_clients(
    clients: usize,
    bodies: Arc<Bodies>,
    target: Target,
    plan: Plan,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let started = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()?;
        let (bodies, target, plan, acked, started) = (
            bodies.clone(),
            target.clone(),
            plan.clone(),
            acked.clone(),
            started.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let mut i = c * 7;
            loop {
                if Instant::now() >= plan.until {
                    break;
                }
                if let Some(max) = plan.max_requests
                    && started.fetch_add(1, Ordering::Relaxed) >= max
                {
                    break;
                }
                let body = bodies.bodies[i % bodies.bodies.len()].clone();
                i += 1;
                let mut req = client
                    .post(&target.url)
                    .bearer_auth(&target.sdk_key)
                    .header("content-type", "application/json")
                    .header("SplitSDKVersion", "python-10.7.0")
                    .header("SplitSDKMachineIP", "10.0.3.17")
                    .header("SplitSDKMachineName", "ip-10-0-3-17")
                    .header("SplitSDKImpressionsMode", "DEBUG");
                if bodies.gzip {
                    req = req.header("content-encoding", "gzip");
                }
                let t0 = Instant::now();
                let result = req.body(body).send().await;
                let status = match result {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // Read the (small) answer so the connection is reused.
                        let _ = resp.bytes().await;
                        Ok(status)
                    }
                    Err(e) => Err(if e.is_timeout() {
                        "timeout".to_owned()
                    } else {
                        format!("error: {e}")
                    }),
                };
                let done = Instant::now();
                if status == Ok(200) {
                    acked.fetch_add(bodies.per_body as u64, Ordering::Relaxed);
                }
                if done < plan.count_from || done > plan.until {
                    continue;
                }
                out.latencies_us.push(
                    done.duration_since(t0)
                        .as_micros()
                        .min(u128::from(u32::MAX)) as u32,
                );
                match status {
                    Ok(200) => {
                        out.ok_requests += 1;
                        out.ok_impressions += bodies.per_body as u64;
                    }
                    Ok(s) => *out.failures.entry(format!("HTTP {s}")).or_default() += 1,
                    Err(e) => *out.failures.entry(e).or_default() += 1,
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for t in tasks {
        let o = t.await?;
        total.ok_requests += o.ok_requests;
        total.ok_impressions += o.ok_impressions;
        for (k, v) in o.failures {
            *total.failures.entry(k).or_default() += v;
        }
        total.latencies_us.extend(o.latencies_us);
    }
    total.latencies_us.sort_unstable();
    total.finished = Some(Instant::now());
    Ok(total)
}

/// Prints the acknowledged rate to stderr every second until `stop` is dropped or fires.
pub fn progress(label: &'static str, acked: Arc<AtomicU64>) -> tokio::sync::oneshot::Sender<()> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = 0u64;
        let mut tick =
            tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut rx => break,
                _ = tick.tick() => {
                    let now = acked.load(Ordering::Relaxed);
                    eprintln!("  [{label}] {:>4}s  {:>12} impressions/s  ({} total)",
                        start.elapsed().as_secs(), super::report::int((now - last) as f64), super::report::int(now as f64));
                    last = now;
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_split_bulk_json() {
        let b = Bodies::generate(3, 1000, false);
        for body in &b.bodies {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            let arr = v.as_array().unwrap();
            assert_eq!(arr.len(), 5);
            let n: usize = arr.iter().map(|f| f["i"].as_array().unwrap().len()).sum();
            assert_eq!(n, 1000);
            let imp = &arr[0]["i"][0];
            for k in ["k", "t", "m", "c", "r", "b", "pt"] {
                assert!(imp.get(k).is_some(), "{k}");
            }
        }
        let g = Bodies::generate(1, 100, true);
        assert!(g.wire_bytes < g.raw_bytes);
    }
}
