//! openapi.json against the real server: every operation is driven, and every answer's
//! status must be documented for its operation and its body must validate against the
//! documented schema for its content type (JSON Schema 2020-12, the `jsonschema` crate).
//! An operation the test never reached fails it, so a new route needs a call here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::FaultMode;
use std::collections::BTreeSet;

const ADMIN: &str = "test-admin-token";

/// What a call sends.
enum Send {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Checked<'a> {
    s: &'a Sluice,
    doc: Value,
    reached: BTreeSet<(String, String)>,
}

impl<'a> Checked<'a> {
    async fn new(s: &'a Sluice) -> Checked<'a> {
        let doc: Value = s
            .client
            .get(s.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Checked {
            s,
            doc,
            reached: BTreeSet::new(),
        }
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for m in item.as_object().unwrap().keys() {
                if m != "parameters" {
                    out.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// Calls `path` (an instance of `template`) with `token` and checks the answer against
    /// the document; returns the status and the body (JSON when it is).
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        send: Send,
    ) -> (u16, Value) {
        let mut req = self.s.client.request(method.clone(), self.s.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match send {
            Send::None => req,
            Send::Json(v) => req.json(&v),
            Send::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_owned()
        });
        let bytes = resp.bytes().await.unwrap();
        let what = format!("{method} {path} → {status}");
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{what}: {method} {template} is not in openapi.json"
        );
        self.reached
            .insert((method.as_str().to_owned(), template.to_owned()));
        let answer = &op["responses"][status.to_string()];
        assert!(
            answer.is_object(),
            "{what}: status {status} is not documented for {method} {template}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == 204 {
            assert!(bytes.is_empty(), "{what}: a 204 has no body");
            return (status, body);
        }
        let ctype = ctype.unwrap_or_else(|| panic!("{what}: no content type"));
        let media = &answer["content"][&ctype];
        assert!(
            media.is_object(),
            "{what}: content type {ctype} is not documented ({})",
            answer["content"]
        );
        if ctype == "application/json" {
            let mut schema = media["schema"].clone();
            schema["components"] = self.doc["components"].clone();
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("{what}: the documented schema does not compile: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{what}: the answer does not match openapi.json:\n{}\n{body:#}",
                errors.join("\n")
            );
        }
        (status, body)
    }

    async fn admin(&mut self, m: Method, template: &str, path: &str, send: Send) -> (u16, Value) {
        self.call(m, template, path, Some(ADMIN), send).await
    }
}

fn bulk(n: usize, t0: i64) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"k": format!("k{i}"), "t": "on", "m": t0 + i as i64, "c": 1, "r": "rule", "b": null, "pt": null}))
        .collect();
    json!([{"f": "flag", "i": items}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_openapi_json_says() {
    use Method as M;
    let s = Sluice::start().await;
    let r = receiver(FaultMode::Ok).await;
    let mut c = Checked::new(&s).await;
    let j = Send::Json;

    // Operational routes.
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/",
        "/dashboard/app.js",
        "/dashboard/app.css",
    ] {
        assert_eq!(c.call(M::GET, p, p, None, Send::None).await.0, 200, "{p}");
    }

    // Projects and tokens.
    let (st, _) = c
        .call(M::GET, "/v1/projects", "/v1/projects", None, Send::None)
        .await;
    assert_eq!(st, 401);
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/projects",
            "/v1/projects",
            j(json!({"id": "p1", "name": "P1"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/projects",
            "/v1/projects",
            j(json!({"id": "p1", "name": "P1"}))
        )
        .await
        .0,
        409
    );
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/projects",
            "/v1/projects",
            j(json!({"name": "P", "nme": 1}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/projects",
            "/v1/projects",
            Send::Raw("application/xml", b"{}".to_vec())
        )
        .await
        .0,
        415
    );
    assert_eq!(
        c.admin(M::GET, "/v1/projects", "/v1/projects", Send::None)
            .await
            .0,
        200
    );
    assert_eq!(
        c.admin(M::GET, "/v1/projects/{id}", "/v1/projects/p1", Send::None)
            .await
            .0,
        200
    );
    assert_eq!(
        c.admin(M::GET, "/v1/projects/{id}", "/v1/projects/nope", Send::None)
            .await
            .0,
        404
    );
    assert_eq!(
        c.admin(
            M::PUT,
            "/v1/projects/{id}",
            "/v1/projects/p1",
            j(json!({"name": "P one"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PATCH,
            "/v1/projects/{id}",
            "/v1/projects/p1",
            j(json!({"name": "P 1"}))
        )
        .await
        .0,
        200
    );
    let (st, tok) = c
        .admin(
            M::POST,
            "/v1/projects/{id}/tokens",
            "/v1/projects/p1/tokens",
            j(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(st, 201);
    let secret = tok["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/projects/{id}/tokens",
            "/v1/projects/p1/tokens",
            Send::None
        )
        .await
        .0,
        200
    );
    let t = Some(secret.as_str());
    assert_eq!(
        c.call(
            M::GET,
            "/v1/projects/{id}/tokens",
            "/v1/projects/p1/tokens",
            t,
            Send::None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        c.call(
            M::POST,
            "/v1/projects",
            "/v1/projects",
            t,
            j(json!({"name": "x"}))
        )
        .await
        .0,
        403
    );

    // Environments.
    let env = json!({"id": "e1", "name": "Prod", "sdkKeys": [SDK_KEY]});
    assert_eq!(
        c.admin(M::POST, "/v1/environments", "/v1/environments", j(env))
            .await
            .0,
        201
    );
    assert_eq!(
        c.call(
            M::POST,
            "/v1/environments",
            "/v1/environments",
            t,
            j(json!({"name": "x", "project": "default"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        c.admin(M::GET, "/v1/environments", "/v1/environments", Send::None)
            .await
            .0,
        200
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/environments/{id}",
            "/v1/environments/e1",
            Send::None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PUT,
            "/v1/environments/{id}",
            "/v1/environments/e1",
            j(json!({"name": "Prod", "sdkKeys": [SDK_KEY]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PATCH,
            "/v1/environments/{id}",
            "/v1/environments/e1",
            j(json!({"name": "Production"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/environments",
            "/v1/environments",
            j(json!({"id": "e2", "name": "Gone"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        c.admin(
            M::DELETE,
            "/v1/environments/{id}",
            "/v1/environments/e2",
            Send::None
        )
        .await
        .0,
        204
    );

    // Ingest.
    let bulk_path = "/api/testImpressions/bulk";
    let (st, _) = c
        .call(
            M::POST,
            bulk_path,
            bulk_path,
            Some(SDK_KEY),
            j(bulk(5, 1_000)),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        c.call(
            M::POST,
            bulk_path,
            bulk_path,
            Some("wrong-sdk-key"),
            j(bulk(1, 1_000))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        c.call(
            M::POST,
            bulk_path,
            bulk_path,
            Some(SDK_KEY),
            Send::Raw("application/json", b"[{".to_vec())
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.call(
            M::POST,
            bulk_path,
            bulk_path,
            Some(SDK_KEY),
            Send::Raw("application/xml", b"[]".to_vec())
        )
        .await
        .0,
        415
    );
    let count = "/api/testImpressions/count";
    assert_eq!(
        c.call(
            M::POST,
            count,
            count,
            Some(SDK_KEY),
            j(json!({"pf": [{"f": "flag", "m": 1, "rc": 3}]}))
        )
        .await
        .0,
        200
    );
    for p in [
        "/api/events/bulk",
        "/api/v1/keys/ss",
        "/api/v1/keys/cs",
        "/api/v1/metrics/config",
        "/api/v1/metrics/usage",
    ] {
        assert_eq!(
            c.call(M::POST, p, p, Some(SDK_KEY), j(json!({}))).await.0,
            200,
            "{p}"
        );
    }
    let native = "/v1/impressions";
    let imp = json!({"key": "n1", "split": "flag", "treatment": "on", "time": 2_000});
    assert_eq!(
        c.call(M::POST, native, native, Some(SDK_KEY), j(json!([imp])))
            .await
            .0,
        200
    );
    let nd = format!("{imp}\n{imp}\n").into_bytes();
    assert_eq!(
        c.call(
            M::POST,
            native,
            native,
            Some(SDK_KEY),
            Send::Raw("application/x-ndjson", nd)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(
            M::POST,
            native,
            native,
            Some(SDK_KEY),
            j(json!([{"key": "n1"}]))
        )
        .await
        .0,
        400
    );
    // More impressions than one request may carry (read in full, then refused).
    let one_imp = r#"{"key":"k","split":"s","treatment":"t","time":1}"#;
    let huge = format!("[{}]", vec![one_imp; 100_001].join(",")).into_bytes();
    assert_eq!(
        c.call(
            M::POST,
            native,
            native,
            Some(SDK_KEY),
            Send::Raw("application/json", huge)
        )
        .await
        .0,
        413
    );

    // Export.
    let export = "/v1/environments/{id}/impressions";
    for f in ["json", "ndjson", "csv"] {
        let (st, _) = c
            .admin(
                M::GET,
                export,
                &format!("/v1/environments/e1/impressions?format={f}"),
                Send::None,
            )
            .await;
        assert_eq!(st, 200, "{f}");
    }
    assert_eq!(
        c.admin(
            M::GET,
            export,
            "/v1/environments/e1/impressions?format=xml",
            Send::None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.admin(
            M::GET,
            export,
            "/v1/environments/nope/impressions",
            Send::None
        )
        .await
        .0,
        404
    );

    // Integrations and their operations.
    let integ = json!({"id": "i1", "name": "I", "url": r.url("/hook"), "environments": ["e1"], "flushIntervalMs": 100, "secret": "s"});
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/integrations",
            "/v1/integrations",
            j(integ.clone())
        )
        .await
        .0,
        201
    );
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/integrations",
            "/v1/integrations",
            j(integ.clone())
        )
        .await
        .0,
        409
    );
    // Bulk create: answered per item (here a taken id, so nothing new is created), and a list
    // outside 1–1000 is refused whole.
    let bulk_answer = c
        .admin(
            M::POST,
            "/v1/integrations/bulk",
            "/v1/integrations/bulk",
            j(json!({"integrations": [integ.clone()]})),
        )
        .await;
    assert_eq!(bulk_answer.0, 200);
    assert_eq!(
        c.admin(
            M::POST,
            "/v1/integrations/bulk",
            "/v1/integrations/bulk",
            j(json!({"integrations": []}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.admin(M::GET, "/v1/integrations", "/v1/integrations", Send::None)
            .await
            .0,
        200
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            Send::None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PUT,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            j(integ.clone())
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PATCH,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            j(json!({"protection": {"window": 10}}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PATCH,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            j(json!({"protection": {"windw": 10}}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.call(
            M::PATCH,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            t,
            j(json!({"name": "x"}))
        )
        .await
        .0,
        404
    );
    for (p, m) in [
        ("status", M::GET),
        ("attempts", M::GET),
        ("gaps", M::GET),
        ("pause", M::POST),
        ("resume", M::POST),
        ("test", M::POST),
        ("replays", M::GET),
        ("history", M::GET),
    ] {
        let template = format!("/v1/integrations/{{id}}/{p}");
        assert_eq!(
            c.admin(
                m.clone(),
                &template,
                &format!("/v1/integrations/i1/{p}"),
                Send::None
            )
            .await
            .0,
            200,
            "{p}"
        );
        assert_eq!(
            c.admin(
                m,
                &template,
                &format!("/v1/integrations/nope/{p}"),
                Send::None
            )
            .await
            .0,
            404,
            "{p}"
        );
    }
    let replay = "/v1/integrations/{id}/replay";
    let (st, job) = c
        .admin(
            M::POST,
            replay,
            "/v1/integrations/i1/replay",
            j(json!({"from": 0, "to": 10_000})),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    // Once it is done, the next requests are judged on their own (not refused as concurrent).
    let one = "/v1/integrations/{id}/replays/{job}";
    let job_path = format!(
        "/v1/integrations/i1/replays/{}",
        job["id"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (st, j) = c.admin(M::GET, one, &job_path, Send::None).await;
        assert_eq!(st, 200);
        if j["state"] == "done" || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.admin(
            M::POST,
            replay,
            "/v1/integrations/i1/replay",
            j(json!({"gapId": "nope"}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        c.admin(
            M::POST,
            replay,
            "/v1/integrations/i1/replay",
            j(json!({"from": 5, "to": 1}))
        )
        .await
        .0,
        400
    );
    assert_eq!(c.admin(M::GET, one, &job_path, Send::None).await.0, 200);
    assert_eq!(
        c.admin(M::GET, one, "/v1/integrations/i1/replays/nope", Send::None)
            .await
            .0,
        404
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/integrations/status",
            "/v1/integrations/status?limit=1",
            Send::None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/integrations/status",
            "/v1/integrations/status?limit=0",
            Send::None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/dashboard/overview",
            "/v1/dashboard/overview",
            Send::None
        )
        .await
        .0,
        200
    );

    // Alert destinations.
    let dest =
        json!({"id": "ops", "url": r.url("/ops"), "secret": "s", "events": ["integration.paused"]});
    let coll = "/v1/alert-destinations";
    let item = "/v1/alert-destinations/{id}";
    assert_eq!(c.admin(M::POST, coll, coll, j(dest.clone())).await.0, 201);
    assert_eq!(c.admin(M::POST, coll, coll, j(dest.clone())).await.0, 409);
    assert_eq!(
        c.admin(M::POST, coll, coll, j(json!({"url": "x"}))).await.0,
        400
    );
    assert_eq!(c.call(M::POST, coll, coll, t, j(json!({"url": r.url("/"), "secret": "s", "events": ["integration.gap"], "project": "default"}))).await.0, 403);
    assert_eq!(c.admin(M::GET, coll, coll, Send::None).await.0, 200);
    assert_eq!(
        c.admin(M::GET, item, "/v1/alert-destinations/ops", Send::None)
            .await
            .0,
        200
    );
    assert_eq!(
        c.admin(M::PUT, item, "/v1/alert-destinations/ops", j(dest.clone()))
            .await
            .0,
        200
    );
    assert_eq!(
        c.admin(
            M::PATCH,
            item,
            "/v1/alert-destinations/ops",
            j(json!({"events": ["integration.gap"]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/alert-destinations/{id}/status",
            "/v1/alert-destinations/ops/status",
            Send::None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(M::GET, item, "/v1/alert-destinations/ops", t, Send::None)
            .await
            .0,
        404
    );
    assert_eq!(
        c.admin(M::DELETE, item, "/v1/alert-destinations/ops", Send::None)
            .await
            .0,
        204
    );
    assert_eq!(
        c.admin(
            M::GET,
            "/v1/alert-destinations/{id}/status",
            "/v1/alert-destinations/ops/status",
            Send::None
        )
        .await
        .0,
        404
    );

    // Deletions, and what is still referenced.
    assert_eq!(
        c.admin(
            M::DELETE,
            "/v1/environments/{id}",
            "/v1/environments/e1",
            Send::None
        )
        .await
        .0,
        409
    );
    assert_eq!(
        c.admin(
            M::DELETE,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            Send::None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.admin(
            M::DELETE,
            "/v1/integrations/{id}",
            "/v1/integrations/i1",
            Send::None
        )
        .await
        .0,
        404
    );
    let tokens = "/v1/projects/{id}/tokens/{tokenId}";
    let tok_path = format!("/v1/projects/p1/tokens/{}", tok["id"].as_str().unwrap());
    assert_eq!(
        c.admin(M::DELETE, tokens, &tok_path, Send::None).await.0,
        204
    );
    assert_eq!(
        c.admin(
            M::DELETE,
            "/v1/projects/{id}",
            "/v1/projects/p1",
            Send::None
        )
        .await
        .0,
        204
    );

    // 429 and 503: a server with an ingest rate limit, and one whose storage is full.
    let operations = c.operations();
    let mut reached = std::mem::take(&mut c.reached);
    drop(c);
    let limited = Sluice::start_with(|o| o.ingest_rate_limit = 10).await;
    limited.environment("e1", "E", SDK_KEY).await;
    let mut c = Checked::new(&limited).await;
    assert_eq!(
        c.call(
            M::POST,
            bulk_path,
            bulk_path,
            Some(SDK_KEY),
            j(bulk(100, 1))
        )
        .await
        .0,
        429
    );
    reached.append(&mut c.reached);
    drop(c);
    let full = Sluice::start_with(|o| o.max_storage_bytes = 1).await;
    full.environment("e1", "E", SDK_KEY).await;
    let mut c = Checked::new(&full).await;
    let mut last = 0;
    for _ in 0..3 {
        last = c
            .call(M::POST, native, native, Some(SDK_KEY), j(json!([imp])))
            .await
            .0;
    }
    assert_eq!(last, 503);

    reached.append(&mut c.reached);

    let missing: Vec<_> = operations.difference(&reached).collect();
    assert!(
        missing.is_empty(),
        "operations this test never reached: {missing:?}"
    );
}
