//! Steady ingest: one bulk request every `per_request / rate` seconds, each under its own
//! flag name `soak-<seq>`, to whatever address the server has now (it moves on restart).
//! A request counts as acknowledged only if answered 200; nothing is retried.

use std::sync::Arc;
use std::time::Duration;

use super::{Run, SDK_KEY, SoakArgs};

pub(crate) fn flag(seq: u64) -> String {
    format!("soak-{seq}")
}

/// What the ingest client saw.
pub(crate) struct Ingested {
    /// Answered 200, by sequence number.
    pub(crate) acked: Vec<bool>,
    /// Statuses other than 200, and transport errors (the server was down).
    pub(crate) refused: u64,
    pub(crate) transport_errors: u64,
}

impl Ingested {
    pub(crate) fn acked_requests(&self) -> u64 {
        self.acked.iter().filter(|a| **a).count() as u64
    }
}

fn body(seq: u64, per_request: u32) -> String {
    let sent = super::check::now_ms();
    let f = flag(seq);
    let mut s = String::with_capacity(32 + per_request as usize * 70);
    s.push_str(&format!(r#"[{{"f":"{f}","i":["#));
    for i in 0..per_request {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"k":"{seq}-{i}","t":"on","m":{sent},"c":1,"r":"rule"}}"#
        ));
    }
    s.push_str("]}]");
    s
}

pub(crate) async fn ingest(run: &Arc<Run>, args: &SoakArgs) -> Ingested {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let period = Duration::from_secs_f64(f64::from(args.per_request) / f64::from(args.rate));
    let requests = (args.duration.as_secs_f64() / period.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..requests {
        tokio::time::sleep_until(start + period.mul_f64(seq as f64)).await;
        let url = format!("{}/api/testImpressions/bulk", run.base_url.read().await);
        let req = client
            .post(url)
            .bearer_auth(SDK_KEY)
            .header("content-type", "application/json")
            .header("SplitSDKVersion", "python-10.7.0")
            .header("SplitSDKMachineName", "soak-host")
            .body(body(seq, args.per_request));
        tasks.spawn(async move {
            match req.send().await {
                Ok(r) => (seq, Some(r.status().as_u16())),
                Err(_) => (seq, None),
            }
        });
    }
    let mut out = Ingested {
        acked: vec![false; requests as usize],
        refused: 0,
        transport_errors: 0,
    };
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((seq, Some(200))) => out.acked[seq as usize] = true,
            Ok((_, Some(_))) => out.refused += 1,
            Ok((_, None)) | Err(_) => out.transport_errors += 1,
        }
    }
    out
}
