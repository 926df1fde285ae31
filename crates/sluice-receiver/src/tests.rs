//! Receiver tests: real HTTP on 127.0.0.1 against an in-process receiver.

use std::io::Write as _;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use sluice_core::outgoing::OwnedImpression;

use super::decode::{Parsed, gunzip, parse};
use super::*;

fn imp(i: usize, env: &str, split: &str) -> OwnedImpression {
    OwnedImpression {
        key: format!("user-{i}"),
        split: split.to_owned(),
        environment_id: format!("env-{env}"),
        environment_name: env.to_owned(),
        treatment: if i.is_multiple_of(2) { "on" } else { "off" }.to_owned(),
        time: 1_700_000_000_000 + i as i64,
        bucketing_key: None,
        label: Some("default rule".to_owned()),
        machine_name: None,
        machine_ip: Some("10.0.0.1".to_owned()),
        split_version_number: 7,
        sdk: "python".to_owned(),
        sdk_version: "10.7.0".to_owned(),
        properties: i.is_multiple_of(3).then(|| r#"{"plan":"pro"}"#.to_owned()),
    }
}

fn batch(n: usize, env: &str, split: &str) -> Vec<OwnedImpression> {
    (0..n).map(|i| imp(i, env, split)).collect()
}

fn json(imps: &[OwnedImpression]) -> Vec<u8> {
    serde_json::to_vec(imps).unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Reads a JSON response body (reqwest's `json` feature is not enabled).
trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> Result<T, String>;
}

impl JsonBody for reqwest::Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

fn client() -> reqwest::Client {
    sluice_client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What sluice would send: headers and an optionally gzipped, optionally signed body.
struct Delivery<'a> {
    id: &'a str,
    body: Vec<u8>,
    gzip: bool,
    secret: Option<&'a str>,
}

impl<'a> Delivery<'a> {
    fn new(id: &'a str, body: Vec<u8>) -> Self {
        Delivery {
            id,
            body,
            gzip: false,
            secret: None,
        }
    }
    fn gzip(mut self) -> Self {
        self.gzip = true;
        self
    }
    fn signed(mut self, secret: &'a str) -> Self {
        self.secret = Some(secret);
        self
    }
    fn request(&self, c: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let ts = 1_700_000_000i64;
        let mut r = c
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "sluice/test")
            .header("webhook-id", self.id)
            .header("webhook-timestamp", ts.to_string())
            .header("x-custom", "hello");
        if let Some(secret) = self.secret {
            let sig = sluice_core::signature::sign(secret, self.id, ts, &self.body);
            r = r.header("webhook-signature", sig);
        }
        if self.gzip {
            r.header("content-encoding", "gzip").body(gz(&self.body))
        } else {
            r.body(self.body.clone())
        }
    }
    async fn send(&self, c: &reqwest::Client, url: &str) -> reqwest::Response {
        self.request(c, url).send().await.unwrap()
    }
}

async fn rx_with(cfg: ReceiverConfig) -> ReceiverHandle {
    start(ReceiverConfig { quiet: true, ..cfg }).await.unwrap()
}

async fn rx() -> ReceiverHandle {
    rx_with(ReceiverConfig::default()).await
}

#[tokio::test]
async fn gzip_and_plain_batches_are_counted_and_kept() {
    let rx = rx_with(ReceiverConfig {
        keep_impressions: true,
        ..Default::default()
    })
    .await;
    let c = client();
    let a = batch(3, "prod", "checkout");
    let b = batch(2, "staging", "search");
    let r = Delivery::new("b1", json(&a))
        .gzip()
        .send(&c, &rx.url("/hook"))
        .await;
    assert_eq!(r.status(), 200);
    let r = Delivery::new("b2", json(&b))
        .send(&c, &rx.url("hook"))
        .await;
    assert_eq!(r.status(), 200);

    let s = rx.stats();
    assert_eq!(s.requests, 2);
    assert_eq!(s.delivered_batches, 2);
    assert_eq!(s.unique_batches, 2);
    assert_eq!(s.unique_impressions, 5);
    assert_eq!((s.gzip_requests, s.plain_requests), (1, 1));
    assert_eq!(s.per_environment["prod"], 3);
    assert_eq!(s.per_environment["staging"], 2);
    assert_eq!(s.per_split["checkout"], 3);
    let kept: Vec<OwnedImpression> = rx.impressions().into_iter().map(|i| i.impression).collect();
    assert_eq!(kept, [a, b].concat());
    assert_eq!(rx.impressions()[0].webhook_id, "b1");

    let log = rx.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].webhook_id.as_deref(), Some("b1"));
    assert_eq!(log[0].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(log[0].user_agent.as_deref(), Some("sluice/test"));
    assert_eq!(log[0].impressions, Some(3));
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[0].outcome, Outcome::Delivered);
    assert!(log[0].decoded_bytes.unwrap() > log[0].body_bytes);
    assert_eq!(log[0].signature_ok, None);
    assert!(
        log[0]
            .other_headers
            .contains(&("x-custom".to_owned(), "hello".to_owned()))
    );
    assert_eq!(log[1].path, "/hook");
    rx.shutdown().await;
}

#[tokio::test]
async fn duplicates_are_recognised_by_webhook_id() {
    let rx = rx().await;
    let c = client();
    let url = rx.url("/");
    for id in ["x", "x", "y", "x"] {
        let r = Delivery::new(id, json(&batch(4, "prod", "f")))
            .gzip()
            .send(&c, &url)
            .await;
        assert_eq!(r.status(), 200);
    }
    let s = rx.stats();
    assert_eq!(s.delivered_batches, 4);
    assert_eq!(s.unique_batches, 2);
    assert_eq!(s.duplicate_batches, 2);
    assert_eq!(s.unique_impressions, 8);
    assert_eq!(s.duplicate_impressions, 8);
    assert_eq!(s.per_environment["prod"], 8);
    assert_eq!(rx.requests()[1].outcome, Outcome::Duplicate);

    // A batch refused before is not a duplicate when it finally succeeds.
    rx.set_mode(FaultMode::Status(500));
    let d = Delivery::new("z", json(&batch(1, "prod", "f")));
    assert_eq!(d.send(&c, &url).await.status(), 500);
    rx.set_mode(FaultMode::Ok);
    assert_eq!(d.send(&c, &url).await.status(), 200);
    let s = rx.stats();
    assert_eq!((s.unique_batches, s.duplicate_batches), (3, 2));

    rx.reset();
    assert_eq!(rx.stats(), Stats::default());
    assert_eq!(d.send(&c, &url).await.status(), 200);
    assert_eq!(rx.stats().unique_batches, 1);
    rx.shutdown().await;
}

#[tokio::test]
async fn signatures_are_verified_over_the_uncompressed_body() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rx = rx_with(ReceiverConfig {
        secret: Some(secret.into()),
        ..Default::default()
    })
    .await;
    let c = client();
    let url = rx.url("/hook");
    let body = json(&batch(2, "prod", "f"));

    let ok = Delivery::new("s1", body.clone()).gzip().signed(secret);
    assert_eq!(ok.send(&c, &url).await.status(), 200);
    let plain = Delivery::new("s2", body.clone()).signed(secret);
    assert_eq!(plain.send(&c, &url).await.status(), 200);

    let wrong = Delivery::new("s3", body.clone()).gzip().signed("other");
    assert_eq!(wrong.send(&c, &url).await.status(), 401);
    let unsigned = Delivery::new("s4", body.clone()).gzip();
    assert_eq!(unsigned.send(&c, &url).await.status(), 401);
    // Signed for a different id: the signature covers the id.
    let sig = sluice_core::signature::sign(secret, "other-id", 1_700_000_000, &body);
    let r = Delivery::new("s5", body.clone())
        .request(&c, &url)
        .header("webhook-signature", sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Without a webhook-id nothing can be verified.
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let s = rx.stats();
    assert_eq!(s.unique_batches, 2);
    assert_eq!(s.unique_impressions, 4);
    assert_eq!(s.bad_signatures, 4);
    let log = rx.requests();
    assert_eq!(log[0].signature_ok, Some(true));
    assert_eq!(log[2].signature_ok, Some(false));
    assert_eq!(log[2].outcome, Outcome::BadSignature);
    assert_eq!(log[3].signature_ok, None);
    assert!(!log[3].signature_present);
    rx.shutdown().await;
}

#[tokio::test]
async fn timestamps_out_of_tolerance_are_refused() {
    let rx = rx_with(ReceiverConfig {
        secret: Some("s".into()),
        max_timestamp_skew: Some(Duration::from_secs(300)),
        ..Default::default()
    })
    .await;
    // The test deliveries carry a 2023 timestamp.
    let d = Delivery::new("old", json(&batch(1, "p", "f"))).signed("s");
    assert_eq!(d.send(&client(), &rx.url("/")).await.status(), 401);
    assert_eq!(rx.stats().bad_signatures, 1);
    rx.shutdown().await;
}

#[tokio::test]
async fn invalid_bodies_are_refused() {
    let rx = rx().await;
    let c = client();
    let url = rx.url("/hook");
    let good = serde_json::to_value(imp(1, "prod", "f")).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = good.clone();
        f(v.as_object_mut().unwrap());
        serde_json::to_vec(&[v]).unwrap()
    };
    let bad_bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "missing nullable",
            with(&|m| drop(m.remove("bucketingKey"))),
        ),
        ("missing required", with(&|m| drop(m.remove("key")))),
        (
            "extra field",
            with(&|m| drop(m.insert("extra".into(), 1.into()))),
        ),
        (
            "time as string",
            with(&|m| drop(m.insert("time".into(), "1".into()))),
        ),
        (
            "time as float",
            with(&|m| drop(m.insert("time".into(), 1.5.into()))),
        ),
        (
            "null key",
            with(&|m| drop(m.insert("key".into(), serde_json::Value::Null))),
        ),
        ("number", b"42".to_vec()),
        ("empty", Vec::new()),
        ("truncated", b"[{\"key\":\"a\"".to_vec()),
        (
            "trailing garbage",
            [json(&batch(1, "p", "f")), b"x".to_vec()].concat(),
        ),
        ("array of numbers", b"[1,2]".to_vec()),
        ("slack with extra", br#"{"text":"hi","blocks":[]}"#.to_vec()),
        ("object without text", br#"{"msg":"hi"}"#.to_vec()),
    ];
    for (i, (what, body)) in bad_bodies.iter().enumerate() {
        let r = Delivery::new(&format!("bad{i}"), body.clone())
            .gzip()
            .send(&c, &url)
            .await;
        assert_eq!(r.status(), 400, "{what}");
        let err: serde_json::Value = r.json_body().await.unwrap();
        assert_eq!(err["error"], "invalid body", "{what}");
    }
    // Claims gzip but is not; wrong content type; wrong encoding.
    for (id, header, value, want) in [
        ("notgz", "content-encoding", "gzip", 400),
        ("ct", "content-type", "text/plain", 415),
        ("br", "content-encoding", "br", 415),
    ] {
        let r = Delivery::new(id, json(&batch(1, "p", "f")))
            .request(&c, &url)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{id}");
    }
    // No webhook headers (no secret configured).
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(json(&batch(1, "p", "f")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let s = rx.stats();
    assert_eq!(s.bad_bodies, bad_bodies.len() as u64 + 3);
    assert_eq!(s.bad_headers, 1);
    assert_eq!(s.delivered_batches, 0);
    assert_eq!(s.unique_impressions, 0);

    // A Slack message is a valid delivery; an empty array too.
    let slack = Delivery::new("slack", br#"{"text":"*3 impressions* (prod)"}"#.to_vec());
    assert_eq!(slack.send(&c, &url).await.status(), 200);
    let empty = Delivery::new("empty", b"[]".to_vec()).gzip();
    assert_eq!(empty.send(&c, &url).await.status(), 200);
    // Escaped strings are fine.
    let mut tricky = imp(0, "pr\"od", "caf\u{e9}");
    tricky.key = "line\nbreak \\ \u{1F600}".into();
    let esc = Delivery::new("esc", json(&[tricky]));
    assert_eq!(esc.send(&c, &url).await.status(), 200);
    let s = rx.stats();
    assert_eq!(
        (s.slack_messages, s.unique_batches, s.unique_impressions),
        (1, 3, 1)
    );
    assert_eq!(s.per_environment["pr\"od"], 1);
    assert_eq!(s.per_split["caf\u{e9}"], 1);
    rx.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let rx = rx_with(ReceiverConfig {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let c = client();
    let url = rx.url("/");
    let big = json(&batch(40, "prod", "f"));
    assert!(big.len() > 4096);
    let r = Delivery::new("plain", big.clone()).send(&c, &url).await;
    assert_eq!(r.status(), 413);
    // Small on the wire, too big decompressed.
    let r = Delivery::new("bomb", big).gzip().send(&c, &url).await;
    assert_eq!(r.status(), 413);
    let ok = Delivery::new("ok", json(&batch(2, "prod", "f"))).gzip();
    assert_eq!(ok.send(&c, &url).await.status(), 200);
    assert_eq!(rx.stats().too_large, 2);
    rx.shutdown().await;
}

#[tokio::test]
async fn status_mode_fails_without_counting_delivery() {
    let rx = rx_with(ReceiverConfig {
        mode: FaultMode::Status(503),
        ..Default::default()
    })
    .await;
    let c = client();
    let d = Delivery::new("a", json(&batch(3, "p", "f"))).gzip();
    let r = d.send(&c, &rx.url("/")).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_none());
    let s = rx.stats();
    assert_eq!(
        (s.requests, s.failed_answers, s.delivered_batches),
        (1, 1, 0)
    );
    assert_eq!(s.gzip_requests, 1);
    assert_eq!(rx.requests()[0].outcome, Outcome::Fault);
    assert_eq!(rx.requests()[0].status, Some(503));
    rx.set_mode(FaultMode::Ok);
    assert_eq!(d.send(&c, &rx.url("/")).await.status(), 200);
    assert_eq!(rx.stats().unique_impressions, 3);
    rx.shutdown().await;
}

#[tokio::test]
async fn retry_mode_sends_retry_after() {
    let rx = rx_with(ReceiverConfig {
        mode: FaultMode::Retry {
            status: 429,
            after_secs: 7,
        },
        ..Default::default()
    })
    .await;
    let r = Delivery::new("a", json(&batch(1, "p", "f")))
        .send(&client(), &rx.url("/"))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(rx.stats().failed_answers, 1);
    rx.shutdown().await;
}

#[tokio::test]
async fn hang_mode_holds_until_the_client_gives_up() {
    let rx = rx_with(ReceiverConfig {
        mode: FaultMode::Hang,
        ..Default::default()
    })
    .await;
    sluice_client::install_crypto_provider();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = Delivery::new("h", json(&batch(50, "p", "f")))
        .gzip()
        .request(&c, &rx.url("/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // The receiver noticed the request and let go of it once the client went away.
    let s = rx
        .wait_until(Duration::from_secs(5), |s| {
            s.hung_requests == 1 && s.hanging_now == 0
        })
        .await
        .expect("hung request released after the client left");
    assert_eq!(s.delivered_batches, 0);
    assert_eq!(rx.requests()[0].outcome, Outcome::Hung);
    assert_eq!(rx.requests()[0].status, None);
    assert!(rx.requests()[0].body_bytes > 0);

    // Shutting down releases requests still held.
    let c2 = client();
    let pending = tokio::spawn({
        let req = Delivery::new("h2", b"[]".to_vec()).request(&c2, &rx.url("/"));
        async move { req.send().await }
    });
    rx.wait_until(Duration::from_secs(5), |s| s.hanging_now == 1)
        .await
        .unwrap();
    let t0 = Instant::now();
    rx.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    let _ = pending.await;
}

#[tokio::test]
async fn slow_mode_answers_late() {
    let rx = rx_with(ReceiverConfig {
        mode: FaultMode::Slow(Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let t0 = Instant::now();
    let r = Delivery::new("s", json(&batch(2, "p", "f")))
        .send(&client(), &rx.url("/"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(rx.stats().unique_impressions, 2);
    assert!(rx.requests()[0].handling_time >= Duration::from_millis(300));
    rx.shutdown().await;
}

#[tokio::test]
async fn flaky_mode_fails_about_the_given_share() {
    let rx = rx_with(ReceiverConfig {
        mode: FaultMode::Flaky {
            fail_percent: 30,
            status: 502,
        },
        ..Default::default()
    })
    .await;
    let c = client();
    let url = rx.url("/");
    let body = json(&batch(1, "p", "f"));
    let n = 600;
    let mut failed = 0;
    for i in 0..n {
        let r = Delivery::new(&i.to_string(), body.clone())
            .send(&c, &url)
            .await;
        match r.status().as_u16() {
            200 => {}
            502 => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // 30% of 600 is 180; the standard deviation is about 11.
    assert!((120..=240).contains(&failed), "{failed} of {n} failed");
    let s = rx.stats();
    assert_eq!(s.failed_answers, failed);
    assert_eq!(s.unique_batches, n - failed);
    rx.shutdown().await;
}

#[tokio::test]
async fn huge_body_mode_streams_the_response() {
    let bytes = 20 << 20;
    let rx = rx_with(ReceiverConfig {
        mode: FaultMode::HugeBody { bytes },
        ..Default::default()
    })
    .await;
    let mut r = Delivery::new("big", json(&batch(2, "p", "f")))
        .gzip()
        .send(&client(), &rx.url("/"))
        .await;
    assert_eq!(r.status(), 200);
    let (mut total, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len();
        chunks += 1;
    }
    assert_eq!(total, bytes);
    assert!(chunks > 1);
    assert_eq!(rx.stats().unique_impressions, 2);

    // A client that reads only the start and leaves does not hold the receiver up.
    let mut r = Delivery::new("big2", b"[]".to_vec())
        .send(&client(), &rx.url("/"))
        .await;
    let _ = r.chunk().await.unwrap();
    drop(r);
    let t0 = Instant::now();
    rx.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn control_endpoints() {
    let rx = rx().await;
    let c = client();
    let d = Delivery::new("a", json(&batch(2, "prod", "f")));
    assert_eq!(d.send(&c, &rx.url("/hook")).await.status(), 200);

    let s: Stats = c
        .get(rx.url("/stats"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await
        .unwrap();
    assert_eq!(s, rx.stats());
    assert_eq!(s.unique_impressions, 2);

    let set = |body: &'static str| {
        c.post(rx.url("/mode"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = set(r#"{"mode":"status","status":500}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rx.mode(), FaultMode::Status(500));
    let d2 = Delivery::new("b", json(&batch(1, "prod", "f")));
    assert_eq!(d2.send(&c, &rx.url("/hook")).await.status(), 500);

    let modes = [
        (r#"{"mode":"ok"}"#, FaultMode::Ok),
        (r#"{"mode":"hang"}"#, FaultMode::Hang),
        (
            r#"{"mode":"slow","ms":2000}"#,
            FaultMode::Slow(Duration::from_secs(2)),
        ),
        (
            r#"{"mode":"flaky","percent":30,"status":503}"#,
            FaultMode::Flaky {
                fail_percent: 30,
                status: 503,
            },
        ),
        (
            r#"{"mode":"flaky","percent":10}"#,
            FaultMode::Flaky {
                fail_percent: 10,
                status: 500,
            },
        ),
        (
            r#"{"mode":"huge","bytes":1000}"#,
            FaultMode::HugeBody { bytes: 1000 },
        ),
        (
            r#"{"mode":"retry","status":429,"after_secs":5}"#,
            FaultMode::Retry {
                status: 429,
                after_secs: 5,
            },
        ),
        (r#"{"mode":"ok"}"#, FaultMode::Ok),
    ];
    for (body, mode) in modes {
        let r = set(body).await.unwrap();
        assert_eq!(r.status(), 200, "{body}");
        assert_eq!(r.json_body::<FaultMode>().await.unwrap(), mode);
        assert_eq!(rx.mode(), mode);
    }
    for bad in [
        r#"{"mode":"explode"}"#,
        r#"{"mode":"status","status":42}"#,
        r#"{"mode":"flaky","percent":101}"#,
        "not json",
    ] {
        let r = set(bad).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(rx.mode(), FaultMode::Ok);
    let m: FaultMode = c
        .get(rx.url("/mode"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await
        .unwrap();
    assert_eq!(m, FaultMode::Ok);

    // POST /stats is a delivery like any other path; GET elsewhere is not.
    let d3 = Delivery::new("c", json(&batch(1, "prod", "f")));
    assert_eq!(d3.send(&c, &rx.url("/stats")).await.status(), 200);
    let r = c.get(rx.url("/hook")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let log: Vec<serde_json::Value> = c
        .get(rx.url("/requests?limit=2"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await
        .unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["webhook_id"], "c");
    assert_eq!(log[1]["outcome"], "delivered");
    let s = rx.stats();
    assert_eq!(
        (s.requests, s.unique_impressions, s.failed_answers),
        (3, 3, 1)
    );
    rx.shutdown().await;
}

#[tokio::test]
async fn impressions_endpoint_lists_kept_impressions() {
    let rx = rx_with(ReceiverConfig {
        keep_impressions: true,
        max_kept_impressions: 3,
        ..Default::default()
    })
    .await;
    let c = client();
    let sent = batch(5, "prod", "f");
    Delivery::new("a", json(&sent)).send(&c, &rx.url("/")).await;
    let got: Vec<serde_json::Value> = c
        .get(rx.url("/impressions?limit=2"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["impression"]["key"], "user-4");
    assert_eq!(got[1]["webhook_id"], "a");
    assert_eq!(rx.impressions().len(), 3);
    assert_eq!(rx.stats().kept_impressions_dropped, 2);
    rx.shutdown().await;
}

#[tokio::test]
async fn wait_until_times_out_with_the_last_stats() {
    let rx = rx().await;
    let r = rx
        .wait_until(Duration::from_millis(50), |s| s.unique_impressions > 0)
        .await;
    assert_eq!(r, Err(Stats::default()));
    rx.shutdown().await;
}

#[tokio::test]
async fn refusing_addr_refuses() {
    let addr = Receiver::refusing_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn invalid_start_mode_is_an_error() {
    let r = start(ReceiverConfig {
        mode: FaultMode::Status(1000),
        ..Default::default()
    })
    .await;
    assert!(r.is_err());
}

#[test]
fn gunzip_accepts_members_and_refuses_garbage() {
    let a = gz(b"[1,");
    let b = gz(b"2]");
    assert_eq!(gunzip(&[a.clone(), b].concat(), 100).unwrap(), b"[1,2]");
    assert!(gunzip(&[a.clone(), b"junk".to_vec()].concat(), 100).is_err());
    assert!(gunzip(&a[..a.len() - 3], 100).is_err());
    assert!(gunzip(&gz(&[b' '; 101]), 100).is_err());
    assert_eq!(gunzip(&gz(&[b' '; 100]), 100).unwrap().len(), 100);
}

#[test]
fn parse_counts_and_keeps() {
    let body = json(&[batch(3, "a", "x"), batch(2, "b", "y")].concat());
    let Ok(Parsed::Impressions(b)) = parse(&body, false) else {
        panic!("not parsed")
    };
    assert_eq!(b.count, 5);
    assert!(b.kept.is_empty());
    let mut envs = b.per_environment.clone();
    envs.sort();
    assert_eq!(envs, [("a".to_owned(), 3), ("b".to_owned(), 2)]);
    let Ok(Parsed::Impressions(b)) = parse(&body, true) else {
        panic!("not parsed")
    };
    assert_eq!(b.kept, [batch(3, "a", "x"), batch(2, "b", "y")].concat());
    assert!(matches!(
        parse(b" {\"text\": \"hi\"} ", false),
        Ok(Parsed::Slack)
    ));
}

/// Decode throughput; run with
/// `cargo test -p sluice --release --lib receiver::tests::decode_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn decode_throughput() {
    let imps: Vec<OwnedImpression> = (0..5000)
        .map(|i| imp(i, ["prod", "staging"][i % 2], &format!("flag-{}", i % 50)))
        .collect();
    let body = gz(&json(&imps));
    let rounds = 200;
    let t0 = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        let plain = gunzip(&body, 64 << 20).unwrap();
        if let Ok(Parsed::Impressions(b)) = parse(&plain, false) {
            n += b.count;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{n} impressions in {secs:.2}s: {:.0}/s ({} bytes gzip per 5000)",
        n as f64 / secs,
        body.len()
    );
    assert_eq!(n, 5000 * rounds);
}

/// End-to-end throughput over HTTP (gzip batches of 5000, 4 concurrent senders); run with
/// `cargo test -p sluice --release --lib receiver::tests::http_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn http_throughput() {
    let rx = rx().await;
    let imps: Vec<OwnedImpression> = (0..5000)
        .map(|i| imp(i, ["prod", "staging"][i % 2], &format!("flag-{}", i % 50)))
        .collect();
    let body = bytes::Bytes::from(gz(&json(&imps)));
    let url = rx.url("/hook");
    let per_sender = 50;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..4 {
        let (c, url, body) = (client(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_sender {
                let id = format!("{s}-{i}");
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .header("webhook-id", id)
                    .header("webhook-timestamp", "1700000000")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let s = rx.stats();
    println!(
        "{} impressions over HTTP in {secs:.2}s: {:.0}/s",
        s.unique_impressions,
        s.unique_impressions as f64 / secs
    );
    assert_eq!(s.unique_impressions, 5000 * 4 * per_sender);
    rx.shutdown().await;
}

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: ReceiverArgs,
}

fn cli(args: &[&str]) -> Result<ReceiverArgs, clap::Error> {
    use clap::Parser as _;
    Cli::try_parse_from([&["receiver"], args].concat()).map(|c| c.args)
}

#[test]
fn cli_arguments_choose_the_mode() {
    use clap::CommandFactory as _;
    Cli::command().debug_assert();
    let a = cli(&[]).unwrap();
    assert_eq!(a.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(a.mode(), FaultMode::Ok);
    assert!(!a.config().keep_impressions);
    let cases: [(&[&str], FaultMode); 8] = [
        (&["--fail-status", "503"], FaultMode::Status(503)),
        (&["--hang"], FaultMode::Hang),
        (
            &["--slow-ms", "250"],
            FaultMode::Slow(Duration::from_millis(250)),
        ),
        (
            &["--flaky-percent", "30"],
            FaultMode::Flaky {
                fail_percent: 30,
                status: 500,
            },
        ),
        (
            &["--flaky-percent", "5", "--fail-status", "502"],
            FaultMode::Flaky {
                fail_percent: 5,
                status: 502,
            },
        ),
        (
            &["--huge-response-bytes", "1000"],
            FaultMode::HugeBody { bytes: 1000 },
        ),
        (
            &["--retry-after", "9"],
            FaultMode::Retry {
                status: 503,
                after_secs: 9,
            },
        ),
        (
            &["--retry-after", "9", "--fail-status", "429"],
            FaultMode::Retry {
                status: 429,
                after_secs: 9,
            },
        ),
    ];
    for (args, mode) in cases {
        assert_eq!(cli(args).unwrap().mode(), mode, "{args:?}");
    }
    let a = cli(&[
        "--listen",
        "0.0.0.0:1234",
        "--secret",
        "s",
        "--keep",
        "--quiet",
    ])
    .unwrap();
    let cfg = a.config();
    assert_eq!(cfg.secret.as_deref(), Some("s"));
    assert!(cfg.keep_impressions && cfg.quiet);
    for bad in [
        &["--hang", "--slow-ms", "5"][..],
        &["--fail-status", "42"],
        &["--flaky-percent", "101"],
        &["--huge-response-bytes", "5", "--fail-status", "500"],
        &["--listen", "nowhere"],
    ] {
        assert!(cli(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn summary_line_mentions_what_matters() {
    let mut s = Stats {
        requests: 10,
        unique_batches: 8,
        duplicate_batches: 1,
        unique_impressions: 4000,
        duplicate_impressions: 500,
        bad_signatures: 1,
        ..Stats::default()
    };
    s.per_environment.insert("prod".into(), 3000);
    s.per_environment.insert("staging".into(), 1000);
    let prev = Stats::default();
    let line = super::cli::summary(&s, Some((&prev, Duration::from_secs(2))));
    assert_eq!(
        line,
        "requests 10  batches 8 (dup 1)  impressions 4000 unique, 500 dup (2000/s)  bad sig 1  envs: prod=3000 staging=1000"
    );
}
