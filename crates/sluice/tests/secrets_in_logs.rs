//! Secrets never reach logs or error messages (SPEC §6): `sluice serve` runs at debug log
//! level through a scenario that handles every kind of secret — admin token, wrong admin
//! tokens, SDK keys (right and wrong), webhook secrets, credentials and tokens inside
//! webhook URLs — with deliveries that succeed, fail with 500 and are refused; then neither
//! its output nor any error answer contains one of them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN: &str = "adm-secret-Zq81xTTa";
const WRONG_ADMIN: &str = "wrong-admin-Ww12pQ";
const SDK_KEY: &str = "sdk-secret-Hq2mVb7";
const WRONG_SDK_KEY: &str = "sdk-wrong-Yy55rNe";
const WEBHOOK_SECRET: &str = "whook-secret-Pp93Lk";
const URL_PASSWORD: &str = "urlpass-Kx71Gd";
const URL_QUERY_TOKEN: &str = "qs-secret-Mm44Ja";
const HEADER_TOKEN: &str = "hdr-secret-Tt62Wc";

const SECRETS: [&str; 8] = [
    ADMIN,
    WRONG_ADMIN,
    SDK_KEY,
    WRONG_SDK_KEY,
    WEBHOOK_SECRET,
    URL_PASSWORD,
    URL_QUERY_TOKEN,
    HEADER_TOKEN,
];

/// A destination answering `status` to every request.
async fn destination(status: u16) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move || async move {
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind destination");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

#[tokio::test]
async fn no_secret_in_debug_logs_or_error_answers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-private-destinations",
        ])
        .arg("--data-dir")
        .arg(tmp.path())
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .env("SLUICE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice serve");

    // stdout: find the address, keep everything.
    let output = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("stdout");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let out = output.clone();
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = addr_tx.send(rest.trim().to_owned());
            }
            if let Ok(mut o) = out.lock() {
                o.push_str(&line);
                o.push('\n');
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("sluice prints its address");
    let base = format!("http://{addr}");
    sluice::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut answers = String::new();

    let ok = destination(200).await;
    let failing = destination(500).await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }; // closed again: connections are refused

    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
    };
    let r = admin(reqwest::Method::POST, "/v1/environments")
        .json(&serde_json::json!({"id": "prod", "name": "Prod", "sdkKeys": [SDK_KEY]}))
        .send()
        .await
        .expect("create environment");
    assert_eq!(r.status(), 201);
    // Credentials inside a URL are refused, without repeating them.
    let r = admin(reqwest::Method::POST, "/v1/integrations")
        .json(&serde_json::json!({
            "id": "creds", "name": "creds",
            "url": format!("http://hookuser:{URL_PASSWORD}@{ok}/hook"),
            "environments": ["prod"]
        }))
        .send()
        .await
        .expect("create integration");
    assert_eq!(r.status(), 400);
    answers.push_str(&r.text().await.unwrap_or_default());
    for (id, dest) in [("ok", ok), ("failing", failing), ("refused", refused)] {
        let url = format!("http://{dest}/hook/{id}?token={URL_QUERY_TOKEN}");
        let r = admin(reqwest::Method::POST, "/v1/integrations")
            .json(&serde_json::json!({
                "id": id, "name": id, "url": url, "secret": WEBHOOK_SECRET,
                "headers": {"Authorization": format!("Bearer {HEADER_TOKEN}")},
                "environments": ["prod"], "flushIntervalMs": 100
            }))
            .send()
            .await
            .expect("create integration");
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }

    // Wrong credentials of every kind, and the error answers they get.
    for (path, token) in [
        ("/v1/integrations", WRONG_ADMIN),
        ("/api/testImpressions/bulk", WRONG_SDK_KEY),
        ("/v1/impressions", WRONG_SDK_KEY),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&serde_json::json!([]))
            .send()
            .await
            .expect("request");
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
        answers.push_str(&r.text().await.unwrap_or_default());
    }

    // Impressions for every integration; a test delivery each.
    let bulk = serde_json::json!([{"f": "flag", "i": [
        {"k": "user-1", "t": "on", "m": 1_700_000_000_000i64, "c": 1, "r": "default rule"}
    ]}]);
    for _ in 0..3 {
        let r = http
            .post(format!("{base}/api/testImpressions/bulk"))
            .bearer_auth(SDK_KEY)
            .json(&bulk)
            .send()
            .await
            .expect("ingest");
        assert_eq!(r.status(), 200);
    }
    for id in ["ok", "failing", "refused"] {
        let r = admin(
            reqwest::Method::POST,
            &format!("/v1/integrations/{id}/test"),
        )
        .send()
        .await
        .expect("test delivery");
        answers.push_str(&r.text().await.unwrap_or_default());
    }
    // Wait until the failing ones have failed and the healthy one has delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = true;
        for id in ["failing", "refused"] {
            let s: serde_json::Value = admin(
                reqwest::Method::GET,
                &format!("/v1/integrations/{id}/status"),
            )
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json");
            done &= s["failedAttempts"].as_u64().unwrap_or(0) >= 2;
        }
        let s: serde_json::Value = admin(reqwest::Method::GET, "/v1/integrations/ok/status")
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json");
        done &= s["deliveredImpressions"].as_u64().unwrap_or(0) >= 3;
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What an operator reads about failures: status, attempts.
    for id in ["ok", "failing", "refused"] {
        for what in ["status", "attempts"] {
            let r = admin(
                reqwest::Method::GET,
                &format!("/v1/integrations/{id}/{what}"),
            )
            .send()
            .await
            .expect("read");
            let text = r.text().await.unwrap_or_default();
            // Attempt errors name what went wrong ...
            if id == "failing" && what == "attempts" {
                assert!(text.contains("500"), "{text}");
            }
            answers.push_str(&text);
        }
    }

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let waited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join");
    let _ = waited;
    let stderr = stderr_reader.join().expect("stderr reader");
    let _ = stdout_reader.join();
    let stdout = output.lock().map(|o| o.clone()).unwrap_or_default();

    // The test bites only if debug logging really ran and saw the failures.
    assert!(stderr.contains("DEBUG"), "no debug output:\n{stderr}");
    assert!(
        stderr.contains("delivery attempt failed"),
        "the failing deliveries were not logged:\n{stderr}"
    );
    assert_clean("stderr", &stderr);
    assert_clean("stdout", &stdout);
    assert_clean("error answers", &answers);
}
