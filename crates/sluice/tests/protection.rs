//! Delivery protection over real HTTP (SPEC §3): a real sluice on 127.0.0.1 and a real
//! receiver that hangs. The status of a destination whose attempts all fail says `failing`
//! (in its own status and in the fleet's, filterable), never `active`, until it is
//! `paused`. Asserts states and their order; every wait is bounded and generous.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use serde_json::{Value, json};
use sluice_receiver::FaultMode;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const ENV: &str = "prod";

fn ids(fleet: &Value) -> Vec<String> {
    fleet["integrations"]
        .as_array()
        .expect("integrations")
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls the status of `id`, recording each state it shows, until `until` is shown.
async fn states_until(s: &Sluice, id: &str, until: &str, seen: &mut Vec<String>) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let st = s.status(id).await;
        let state = st["state"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == until {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never {until}: {seen:?} {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_hanging_destination_is_failing_and_then_paused_never_active_in_between() {
    let s = Sluice::start().await;
    s.environment(ENV, "Production", SDK_KEY).await;
    let hanging = receiver(FaultMode::Hang).await;
    let healthy = receiver(FaultMode::Ok).await;
    // Short timeouts so that the test is quick; first without a time verdict (and the
    // failure-rate rule out of reach), so that it stays failing.
    let mut protection = json!({
        "connectTimeoutMs": 300, "requestTimeoutMs": 300,
        "window": 1000, "minAttempts": 1000,
        "failingForMs": 3_600_000, "minFailedAttempts": 3,
    });
    let dead = s
        .integration(
            "dead",
            &hanging.url("/hook"),
            &[ENV],
            json!({"flushIntervalMs": 100, "protection": protection}),
        )
        .await;
    s.integration("fine", &healthy.url("/hook"), &[ENV], json!({}))
        .await;
    assert_eq!(s.status("dead").await["state"], "active");
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 3)).await, 200);

    let mut seen = vec!["active".to_owned()];
    let st = states_until(&s, "dead", "failing", &mut seen).await;
    assert!(st["failedAttempts"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["pausedUntil"].is_null(), "{st}");
    // The fleet's status agrees, and `failing` is a filter of its own.
    let failing = s.get_admin("/v1/integrations/status?state=failing").await;
    assert_eq!(ids(&failing), ["dead"], "{failing}");
    let active = s.get_admin("/v1/integrations/status?state=active").await;
    assert_eq!(ids(&active), ["fine"], "{active}");
    let attempts = s.get_admin("/v1/integrations/dead/attempts").await;
    let first = &attempts["attempts"].as_array().unwrap().last().unwrap();
    assert!(
        first["status"].is_null() && first["error"].is_string(),
        "the attempt got no answer: {attempts}"
    );

    // Now with a time verdict: a second of nothing but failures pauses it.
    protection["failingForMs"] = json!(1000);
    let mut body = dead.clone();
    body["protection"] = protection;
    let (code, v) = s
        .admin(reqwest::Method::PUT, "/v1/integrations/dead", Some(body))
        .await;
    assert_eq!(code, 200, "{v}");
    let st = states_until(&s, "dead", "paused", &mut seen).await;
    assert_eq!(seen, ["active", "failing", "paused"], "{st}");
    let reason = st["pauseHistory"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("every attempt failed for"), "{st}");
    assert!(st["pausedUntil"].is_i64(), "{st}");
    // The healthy one delivered all along.
    assert_eq!(s.status("fine").await["state"], "active");
    healthy
        .wait_until(T, |st| st.unique_impressions >= 3)
        .await
        .expect("the healthy destination got its impressions");
}
