//! Operator alerts (SPEC §4) end to end: a real sluice, real receivers on 127.0.0.1.
//! Paused, resumed, gap, replay-finished and disabled events arrive signed; undelivered
//! events survive `kill -9`; an alert destination that is down or hanging delays no
//! impression; project tokens see only their project's alert destinations.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;
#[allow(unused_imports)] // the shared module re-exports helpers this test does not use
#[path = "common/process.rs"]
mod process;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::{FaultMode, ReceivedAlert, ReceiverHandle};
use std::time::Duration;

const ALERT_SECRET: &str = "alert-signing-secret";
const ALL: [&str; 5] = [
    "integration.paused",
    "integration.resumed",
    "integration.gap",
    "integration.disabled",
    "replay.finished",
];

fn of_type(r: &ReceiverHandle, t: &str, integ: &str) -> Vec<ReceivedAlert> {
    r.alerts()
        .into_iter()
        .filter(|a| a.event.kind.as_str() == t && a.event.data["integrationId"] == integ)
        .collect()
}

async fn wait_alert(r: &ReceiverHandle, t: &str, integ: &str) -> ReceivedAlert {
    assert!(
        eventually(Duration::from_secs(30), || !of_type(r, t, integ).is_empty()).await,
        "no {t} alert for {integ}; got {:?}",
        r.alerts()
    );
    of_type(r, t, integ).remove(0)
}

async fn send_keys(s: &Sluice, prefix: &str, n: usize) {
    let items: Vec<Value> = (0..n)
        .map(
            |i| json!({"k": format!("{prefix}-{i}"), "t": "on", "m": 1_000_000 + i as i64, "c": 1}),
        )
        .collect();
    assert_eq!(
        s.send_bulk(SDK_KEY, &json!([{"f": "flag", "i": items}]))
            .await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_arrive_as_signed_alerts() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let r = receiver(FaultMode::Status(500)).await;
    s.integration(
        "i1",
        &r.url("/hook"),
        &["prod"],
        json!({"maxBacklogAgeMs": 1000, "protection": {"initialCooldownMs": 200}}),
    )
    .await;
    let alerts = receiver_with_secret(ALERT_SECRET).await;
    let d = s
        .post_admin(
            "/v1/alert-destinations",
            json!({"url": alerts.url("/ops"), "secret": ALERT_SECRET, "events": ALL}),
        )
        .await;
    assert_eq!(
        d["secret"], "********",
        "the secret is answered redacted: {d}"
    );

    // A failing endpoint pauses (protection), a healed one resumes after the probe.
    send_keys(&s, "a", 10).await;
    let paused = wait_alert(&alerts, "integration.paused", "i1").await;
    assert_eq!(paused.signature_ok, Some(true));
    assert_eq!(paused.event.data["manual"], false);
    assert_eq!(paused.event.data["project"], "default");
    assert!(
        paused.event.data["reason"]
            .as_str()
            .unwrap()
            .contains("fail")
    );
    assert!(paused.event.data["nextProbeAt"].is_i64());
    assert!(paused.webhook_id.starts_with("evt_"));
    r.set_mode(FaultMode::Ok);
    let resumed = wait_alert(&alerts, "integration.resumed", "i1").await;
    assert_eq!(resumed.event.data["reason"], "probe succeeded");
    assert_eq!(resumed.signature_ok, Some(true));

    // Backlog older than maxBacklogAgeMs while paused by hand becomes a gap.
    s.admin(Method::POST, "/v1/integrations/i1/pause", None)
        .await;
    send_keys(&s, "old", 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.admin(Method::POST, "/v1/integrations/i1/resume", None)
        .await;
    let gap = wait_alert(&alerts, "integration.gap", "i1").await;
    assert_eq!(gap.event.data["gap"]["impressions"], 20);
    assert_eq!(gap.signature_ok, Some(true));
    let manual: Vec<_> = of_type(&alerts, "integration.paused", "i1")
        .into_iter()
        .filter(|a| a.event.data["manual"] == true)
        .collect();
    assert_eq!(manual.len(), 1, "the operator's pause is an alert too");

    // Replaying the gap finishes with replay.finished.
    let (st, job) = s
        .admin(
            Method::POST,
            "/v1/integrations/i1/replay",
            Some(json!({"gapId": gap.event.data["gap"]["id"]})),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let done = wait_alert(&alerts, "replay.finished", "i1").await;
    assert_eq!(done.event.data["replay"]["id"], job["id"]);
    assert_eq!(done.event.data["replay"]["deliveredImpressions"], 20);

    // Switching the integration off is integration.disabled.
    let (st, v) = s
        .admin(
            Method::PATCH,
            "/v1/integrations/i1",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    wait_alert(&alerts, "integration.disabled", "i1").await;

    // Every event has its own id; every one was signed right (the receiver refuses others).
    let all = alerts.alerts();
    let mut ids: Vec<_> = all.iter().map(|a| a.webhook_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
    assert!(all.iter().all(|a| a.signature_ok == Some(true)));
    assert_eq!(alerts.stats().bad_signatures, 0);
    let status_path = format!(
        "/v1/alert-destinations/{}/status",
        d["id"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let st = s.get_admin(&status_path).await;
        if st["pendingEvents"] == 0 || tokio::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["pendingEvents"], 0, "{status}");
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["deliveredEvents"], all.len(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_hanging_alert_destination_delays_no_impression() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let healthy = receiver(FaultMode::Ok).await;
    let other = receiver(FaultMode::Ok).await;
    s.integration("healthy", &healthy.url("/hook"), &["prod"], json!({}))
        .await;
    s.integration("flapping", &other.url("/hook"), &["prod"], json!({}))
        .await;
    let hanging = receiver(FaultMode::Hang).await;
    let refused = sluice_receiver::Receiver::refusing_addr().unwrap();
    for url in [hanging.url("/ops"), format!("http://{refused}/ops")] {
        s.post_admin(
            "/v1/alert-destinations",
            json!({"url": url, "secret": ALERT_SECRET, "events": ALL}),
        )
        .await;
    }
    // Alerts pile up behind destinations that never answer.
    for _ in 0..5 {
        s.admin(Method::POST, "/v1/integrations/flapping/pause", None)
            .await;
        s.admin(Method::POST, "/v1/integrations/flapping/resume", None)
            .await;
    }
    assert!(
        eventually(Duration::from_secs(10), || hanging.stats().hanging_now >= 1).await,
        "the hanging destination holds an alert"
    );
    // Impressions are delivered meanwhile, in full.
    for round in 0..5 {
        send_keys(&s, &format!("k{round}"), 200).await;
    }
    let got = healthy
        .wait_until(Duration::from_secs(30), |st| st.unique_impressions >= 1000)
        .await;
    assert!(
        got.is_ok(),
        "impressions delivered while alerts fail: {got:?}"
    );
    // …while the alerts were (and still are) undelivered.
    let dests = s.get_admin("/v1/alert-destinations").await;
    for d in dests.as_array().unwrap() {
        let st = s
            .get_admin(&format!(
                "/v1/alert-destinations/{}/status",
                d["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(st["deliveredEvents"], 0, "{st}");
        assert_eq!(st["pendingEvents"], 10, "{st}");
    }
    assert_eq!(hanging.stats().alert_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_tokens_see_only_their_projects_alert_destinations() {
    let s = Sluice::start().await;
    for p in ["acme", "globex"] {
        s.post_admin("/v1/projects", json!({"id": p, "name": p}))
            .await;
    }
    let token = |p: &'static str| {
        let s = &s;
        async move {
            let t = s
                .post_admin(&format!("/v1/projects/{p}/tokens"), json!({"name": "ops"}))
                .await;
            t["secret"].as_str().unwrap().to_owned()
        }
    };
    let (acme, globex) = (token("acme").await, token("globex").await);
    let url = "http://127.0.0.1:9/ops";
    let body =
        json!({"id": "acme-ops", "url": url, "secret": "s", "events": ["integration.paused"]});
    let a = s
        .admin_as(
            Method::POST,
            "/v1/alert-destinations",
            Some(&acme),
            Some(body),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(
        a.body["project"], "acme",
        "a project token's destination is its project's"
    );
    s.post_admin(
        "/v1/alert-destinations",
        json!({"id": "global", "url": url, "secret": "s", "events": ["integration.gap"]}),
    )
    .await;

    for path in [
        "/v1/alert-destinations/acme-ops",
        "/v1/alert-destinations/acme-ops/status",
        "/v1/alert-destinations/global",
    ] {
        let g = s.admin_as(Method::GET, path, Some(&globex), None).await;
        assert_eq!(g.status, 404, "{path}: {:?}", g.body);
    }
    for m in [Method::PUT, Method::PATCH] {
        let g = s
            .admin_as(
                m.clone(),
                "/v1/alert-destinations/acme-ops",
                Some(&globex),
                Some(json!({"events": ["integration.gap"]})),
            )
            .await;
        assert_eq!(g.status, 404, "{m}: {:?}", g.body);
    }
    let g = s
        .admin_as(
            Method::DELETE,
            "/v1/alert-destinations/acme-ops",
            Some(&globex),
            None,
        )
        .await;
    assert_eq!(g.status, 404);
    let list = s
        .admin_as(Method::GET, "/v1/alert-destinations", Some(&globex), None)
        .await;
    assert_eq!(list.body, json!([]));
    let list = s
        .admin_as(Method::GET, "/v1/alert-destinations", Some(&acme), None)
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{:?}", list.body);
    let admin_list = s.get_admin("/v1/alert-destinations").await;
    assert_eq!(admin_list.as_array().unwrap().len(), 2);

    // Into another project: 403. The owner changes and deletes its own.
    let other = s
        .admin_as(
            Method::POST,
            "/v1/alert-destinations",
            Some(&acme),
            Some(json!({"url": url, "secret": "s", "project": "globex", "events": ["integration.gap"]})),
        )
        .await;
    assert_eq!(other.status, 403, "{:?}", other.body);
    let p = s
        .admin_as(
            Method::PATCH,
            "/v1/alert-destinations/acme-ops",
            Some(&acme),
            Some(json!({"events": ["integration.gap", "replay.finished"], "secret": "********"})),
        )
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(
        p.body["events"],
        json!(["integration.gap", "replay.finished"])
    );
    let moved = s
        .admin_as(
            Method::PATCH,
            "/v1/alert-destinations/acme-ops",
            Some(&acme),
            Some(json!({"project": null})),
        )
        .await;
    assert_eq!(
        moved.status, 403,
        "only the admin token makes a destination of every project"
    );
    let d = s
        .admin_as(
            Method::DELETE,
            "/v1/alert-destinations/acme-ops",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(d.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_alert_destinations_are_refused_naming_the_field() {
    let s = Sluice::start_with(|o| o.allow_private_destinations = false).await;
    let ok =
        json!({"url": "https://8.8.8.8/hook", "secret": "s", "events": ["integration.paused"]});
    let cases = [
        (json!({"eventz": []}), "eventz"),
        (json!({"events": ["integration.exploded"]}), "events[0]"),
        (json!({"events": []}), "events"),
        (json!({"url": "http://127.0.0.1:8080/x"}), "url"),
        (json!({"url": "ftp://8.8.8.8/"}), "url"),
        (json!({"project": "nope"}), "project"),
        (json!({"secret": "********"}), "secret"),
    ];
    for (change, field) in cases {
        let mut body = ok.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = s
            .admin(Method::POST, "/v1/alert-destinations", Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body}: {v}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with(field) || detail.contains(&format!("{field}:")),
            "{body}: {v}"
        );
    }
    let (st, v) = s
        .admin(Method::GET, "/v1/alert-destinations/nope", None)
        .await;
    assert_eq!(st, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_alerts_survive_kill_9() {
    use common::AdminCalls;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sluice.log");
    let data = dir.path().join("data");
    let p = process::SluiceProcess::spawn(&data, &log).await;
    let alerts = sluice_receiver::start(sluice_receiver::ReceiverConfig {
        secret: Some(ALERT_SECRET.into()),
        mode: FaultMode::Status(503),
        quiet: true,
        ..Default::default()
    })
    .await
    .unwrap();
    p.post_admin(
        "/v1/environments",
        json!({"id": "prod", "name": "P", "sdkKeys": [SDK_KEY]}),
    )
    .await;
    p.post_admin(
        "/v1/integrations",
        json!({"id": "i1", "name": "i1", "url": "http://127.0.0.1:9/hook", "environments": ["prod"]}),
    )
    .await;
    p.post_admin(
        "/v1/alert-destinations",
        json!({"url": alerts.url("/ops"), "secret": ALERT_SECRET, "events": ["integration.paused"]}),
    )
    .await;
    p.post_admin("/v1/integrations/i1/pause", json!({})).await;
    // An attempt was made, so the event is in the outbox.
    assert!(
        eventually(Duration::from_secs(15), || alerts.stats().failed_answers
            >= 1)
        .await,
        "the alert was tried"
    );
    let tried = alerts.requests()[0].webhook_id.clone().unwrap();
    p.kill9().await;

    let p = process::SluiceProcess::spawn(&data, &log).await;
    alerts.set_mode(FaultMode::Ok);
    let got = wait_alert(&alerts, "integration.paused", "i1").await;
    assert_eq!(
        got.webhook_id, tried,
        "the same event, under the same webhook-id"
    );
    assert_eq!(got.signature_ok, Some(true));
    assert_eq!(got.event.data["manual"], true);
    drop(p);
}
