//! Steady ingest at the configured rate: one Split bulk request every `per_request / rate`
//! seconds, keys `{sent_ms}-{seq}-{i}` so that receivers know each impression's send time.

use std::time::{Duration, Instant};

use super::server::Server;
use super::{PostmortemArgs, SDK_KEY, now_ms};

pub(super) struct IngestResult {
    pub(super) requests: u64,
    /// Acknowledged (200) per request sequence number.
    pub(super) acked: Vec<bool>,
    pub(super) failed: u64,
    pub(super) latencies_ms: Vec<u32>,
    /// Requests sent more than 100 ms after their schedule (the generator fell behind).
    pub(super) late: u64,
}

impl IngestResult {
    pub(super) fn acked_impressions(&self, per_request: u64) -> u64 {
        self.acked.iter().filter(|a| **a).count() as u64 * per_request
    }
}

pub(super) fn bulk_body(sent: i64, seq: u64, per_request: u32) -> String {
    let mut s = String::with_capacity(32 + per_request as usize * 80);
    s.push_str(r#"[{"f":"postmortem_flag","i":["#);
    for i in 0..per_request {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"k":"{sent}-{seq}-{i}","t":"on","m":{sent},"c":1,"r":"rule"}}"#
        ));
    }
    s.push_str("]}]");
    s
}

pub(super) async fn ingest(server: &Server, args: &PostmortemArgs, requests: u64) -> IngestResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let url = server.url("/api/testImpressions/bulk");
    let period = Duration::from_secs_f64(f64::from(args.per_request) / f64::from(args.rate));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut late = 0;
    for seq in 0..requests {
        let due = start + period.mul_f64(seq as f64);
        tokio::time::sleep_until(due).await;
        if tokio::time::Instant::now() > due + Duration::from_millis(100) {
            late += 1;
        }
        let sent = now_ms();
        let body = bulk_body(sent, seq, args.per_request);
        let req = client
            .post(&url)
            .bearer_auth(SDK_KEY)
            .header("content-type", "application/json")
            .header("SplitSDKVersion", "python-10.7.0")
            .header("SplitSDKMachineIP", "10.1.2.3")
            .header("SplitSDKMachineName", "bench-host-1")
            .body(body);
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = matches!(req.send().await, Ok(r) if r.status() == 200);
            (
                seq,
                ok,
                t.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            )
        });
    }
    let mut acked = vec![false; requests as usize];
    let mut latencies_ms = Vec::with_capacity(requests as usize);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((seq, ok, ms)) = r {
            acked[seq as usize] = ok;
            failed += u64::from(!ok);
            latencies_ms.push(ms);
        }
    }
    latencies_ms.sort_unstable();
    IngestResult {
        requests,
        acked,
        failed,
        latencies_ms,
        late,
    }
}
