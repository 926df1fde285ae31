//! The dashboard in a real headless Chromium, driven over WebDriver (chromedriver started
//! here on a free loopback port, a fresh profile, no network but loopback): sign in, see
//! states, pause and resume from the page, replay a gap, and one API call per refresh of
//! the integrations list whatever the number of integrations (requests counted by a
//! proxy in front of sluice).
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `SLUICE_CHROMIUM` /
//! `SLUICE_CHROMEDRIVER`). Without them the test is skipped with a message — except under
//! `CI=true`, where it fails. With `SLUICE_SCREENSHOTS=DIR` it also saves PNG screenshots
//! of the overview, the list and an integration page there (docs/screenshots/).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::FaultMode;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn find_binary(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or None (skip) when not installed and not under CI.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_binary("SLUICE_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find_binary("SLUICE_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true: chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            )
        }
        _ => {
            eprintln!(
                "SKIPPED dashboard browser test: chromium and chromedriver not found \
                 (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(path: &PathBuf) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = http();
    let ready = async {
        loop {
            if let Ok(r) = client.get(format!("{}/status", driver.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("chromedriver answers /status");
    driver
}

async fn open_browser(chromium: &PathBuf, driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,1000", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Requests seen by the counting proxy: (method, path) → count.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<HashMap<(String, String), u64>>>);

impl Counter {
    fn snapshot(&self) -> HashMap<(String, String), u64> {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
    fn get(&self, method: &str, path: &str) -> u64 {
        self.snapshot()
            .get(&(method.to_owned(), path.to_owned()))
            .copied()
            .unwrap_or(0)
    }
    /// Admin API requests (paths under /v1/) in all.
    fn api_total(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, p), _)| p.starts_with("/v1/"))
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    counter: Counter,
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_default();
    if let Ok(mut g) = p.counter.0.lock() {
        *g.entry((method.to_string(), path)).or_default() += 1;
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let mut up = p.client.request(method, format!("{}{pq}", p.upstream));
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            up = up.header(k, v);
        }
    }
    let resp = up.body(body).send().await.expect("upstream answers");
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    out.body(Body::from(bytes)).expect("response")
}

async fn start_proxy(upstream: String) -> (String, Counter) {
    let counter = Counter::default();
    let state = Proxy {
        upstream,
        client: http(),
        counter: counter.clone(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), counter)
}

async fn text_of(c: &Client, css: &str) -> String {
    let el = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    el.text().await.expect("text")
}

/// Waits until the text of the element matching `css` satisfies `ok`.
async fn wait_until(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = match c.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(got.trim()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css}: wanted {what}, page shows {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (Any case: the page capitalizes state names with CSS.)
async fn wait_text(c: &Client, css: &str, want: &str) {
    wait_until(c, css, &format!("{want:?}"), |t| {
        t.eq_ignore_ascii_case(want)
    })
    .await
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn until_api(s: &Sluice, path: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (st, v) = s.admin(Method::GET, path, None).await;
        if st == 200 && f(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never matched: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let Ok(dir) = std::env::var("SLUICE_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.expect("screenshot");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(PathBuf::from(dir).join(name), png).expect("write screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some((chromium, driver_bin)) = browser() else {
        return;
    };
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    s.environment("staging", "Staging", "sdk-key-staging-0002")
        .await;
    let ok = receiver(FaultMode::Ok).await;
    let down = receiver(FaultMode::Status(503)).await;
    // A fleet: the list must stay one request per refresh however many there are.
    for i in 0..40 {
        s.integration(
            &format!("fleet-{i:02}"),
            &ok.url("/hook"),
            &["staging"],
            json!({"name": format!("Fleet endpoint {i:02}")}),
        )
        .await;
    }
    s.integration(
        "analytics",
        &ok.url("/hook"),
        &["prod"],
        json!({"name": "Analytics warehouse", "secret": "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "maxBacklogAgeMs": 1000}),
    )
    .await;
    s.integration(
        "crm",
        &down.url("/hook"),
        &["prod"],
        json!({"name": "CRM sync", "protection": {"window": 4, "minAttempts": 2, "initialCooldownMs": 600000, "maxCooldownMs": 600000}}),
    )
    .await;
    s.integration(
        "archive",
        &ok.url("/hook"),
        &["prod"],
        json!({"name": "Cold archive", "enabled": false}),
    )
    .await;
    // A gap on `analytics`: paused longer than its maxBacklogAgeMs while impressions arrive.
    s.admin(Method::POST, "/v1/integrations/analytics/pause", None)
        .await;
    for n in 0..4 {
        assert_eq!(
            s.send_bulk(SDK_KEY, &bulk("checkout", &format!("old{n}"), 250))
                .await,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.admin(Method::POST, "/v1/integrations/analytics/resume", None)
        .await;
    assert_eq!(
        s.send_bulk(SDK_KEY, &bulk("checkout", "new", 100)).await,
        200
    );
    until_api(&s, "/v1/integrations/analytics/gaps", |v| {
        v["gaps"].as_array().is_some_and(|g| !g.is_empty())
    })
    .await;
    // `crm` fails until protection pauses it.
    until_api(&s, "/v1/integrations/crm/status", |v| {
        v["state"] == "paused"
    })
    .await;
    // One more paused by hand.
    s.admin(Method::POST, "/v1/integrations/fleet-07/pause", None)
        .await;

    let (proxy, counter) = start_proxy(s.url("")).await;
    let proxy = proxy.trim_end_matches('/').to_owned();
    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let c = open_browser(&chromium, &driver, profile.path()).await;

    // Sign in: a wrong token is refused on the page, the right one shows the overview.
    c.goto(&format!("{proxy}/")).await.expect("open dashboard");
    c.find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys("wrong-token")
        .await
        .expect("type");
    click(&c, "#signin-button").await;
    wait_text(
        &c,
        "#signin-error",
        "The token was refused: give the admin token or a project token.",
    )
    .await;
    c.find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys("test-admin-token")
        .await
        .expect("type");
    click(&c, "#signin-button").await;
    wait_text(&c, "[data-stat=integrations] .stat-value", "43").await;
    wait_text(&c, "[data-stat=paused] .stat-value", "2").await;
    wait_text(&c, "[data-stat=disabled] .stat-value", "1").await;
    wait_text(&c, "[data-stat=active] .stat-value", "40").await;
    assert!(
        text_of(&c, "[data-env=staging]")
            .await
            .contains("sdk-…0002")
    );
    assert!(!text_of(&c, "#view").await.contains("sdk-key-staging-0002"));
    if std::env::var("SLUICE_SCREENSHOTS").is_ok() {
        // Some traffic, and a refresh, so the ingest rate column has two answers to compare.
        for n in 0..5 {
            s.send_bulk(
                "sdk-key-staging-0002",
                &bulk("search", &format!("s{n}"), 400),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(5500)).await;
        screenshot(&c, "overview.png").await;
    }

    // The list: states on the page, and one API request per refresh for 43 integrations.
    c.goto(&format!("{proxy}/#/integrations"))
        .await
        .expect("list");
    wait_text(&c, "tr[data-id=crm] [data-state]", "paused").await;
    wait_text(&c, "tr[data-id=archive] [data-state]", "disabled").await;
    wait_text(&c, "tr[data-id=fleet-07] [data-state]", "paused").await;
    wait_text(&c, "tr[data-id=fleet-08] [data-state]", "active").await;
    let status_path = "/v1/integrations/status";
    // (The list view also asks for the projects once, when it opens, for its filter.)
    let api_requests = || counter.api_total() - counter.get("GET", "/v1/projects");
    let (first_total, first_lists) = (api_requests(), counter.get("GET", status_path));
    // Three more refreshes of the list.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while counter.get("GET", status_path) < first_lists + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the list stopped refreshing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lists = counter.get("GET", status_path) - first_lists;
    let total = api_requests() - first_total;
    assert_eq!(
        total,
        lists,
        "every admin API request while the list refreshes is the one status request \
         ({total} requests for {lists} refreshes): {:?}",
        counter.snapshot()
    );
    // Filtered by state, on the server: only the paused ones.
    c.goto(&format!("{proxy}/#/integrations?state=paused"))
        .await
        .expect("filtered list");
    wait_text(&c, "tr[data-id=crm] [data-state]", "paused").await;
    let rows = c
        .find_all(Locator::Css("#integrations-table tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    c.goto(&format!("{proxy}/#/integrations"))
        .await
        .expect("list");
    wait_text(&c, "tr[data-id=crm] [data-state]", "paused").await;
    screenshot(&c, "integrations.png").await;

    // Pause and resume from the integration page.
    c.goto(&format!("{proxy}/#/integrations/fleet-03"))
        .await
        .expect("integration page");
    wait_text(&c, "[data-stat=state] [data-state]", "active").await;
    click(&c, "#pause").await;
    until_api(&s, "/v1/integrations/fleet-03/status", |v| {
        v["state"] == "paused" && v["manuallyPaused"] == true
    })
    .await;
    wait_text(&c, "[data-stat=state] [data-state]", "paused").await;
    click(&c, "#resume").await;
    until_api(&s, "/v1/integrations/fleet-03/status", |v| {
        v["state"] == "active" && v["manuallyPaused"] == false
    })
    .await;
    wait_text(&c, "[data-stat=state] [data-state]", "active").await;
    // The configuration shows the secret redacted.
    c.goto(&format!("{proxy}/#/integrations/analytics"))
        .await
        .expect("integration page");
    let config = text_of(&c, "#config-table").await;
    assert!(config.contains("********"), "{config}");
    assert!(!config.contains("c2VjcmV0"), "{config}");

    // Replay the gap from the page; the job shows up and finishes.
    click(&c, "button.replay-gap").await;
    let jobs = until_api(&s, "/v1/integrations/analytics/replays", |v| {
        v["replays"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["state"] == "done"))
    })
    .await;
    let job = jobs["replays"][0]["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    wait_text(&c, &format!("tr[data-job='{job}'] .pill"), "done").await;
    until_api(&s, "/v1/integrations/analytics/gaps", |v| {
        v["gaps"][0]["closedBy"] == job.as_str()
    })
    .await;
    wait_text(&c, "#gaps-table .pill", "replayed").await;
    assert_eq!(counter.get("POST", "/v1/integrations/analytics/replay"), 1);

    // Send test reports the endpoint's answer. (Taller window: the screenshots show the
    // whole page.)
    c.set_window_size(1440, 1800).await.expect("resize");
    click(&c, "#send-test").await;
    wait_until(&c, "#action-result", "a delivered test batch", |t| {
        t.starts_with("Test batch delivered: HTTP 200")
    })
    .await;
    screenshot(&c, "integration.png").await;
    c.goto(&format!("{proxy}/#/integrations/crm"))
        .await
        .expect("integration page");
    wait_text(&c, "[data-stat=state] [data-state]", "paused").await;
    assert!(
        text_of(&c, "[data-stat=state]")
            .await
            .contains("next probe")
    );
    assert!(text_of(&c, "[data-stat=last-error]").await.contains("503"));
    screenshot(&c, "integration-paused.png").await;
    c.close().await.expect("close the browser");
}
