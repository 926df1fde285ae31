//! Admin API (SPEC §4), configuration-time SSRF protection (SPEC §6) and the operational
//! routes, against a real sluice on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_receiver::FaultMode;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const TOKEN: &str = "test-admin-token";

/// Every admin route, with an id that exists after [`seed`].
fn admin_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let env = json!({ "name": "X", "sdkKeys": ["sdk-key-auth-0001"] });
    let integ = json!({ "name": "X", "url": "http://127.0.0.1:9/", "environments": ["prod"] });
    vec![
        (Method::GET, "/v1/projects", None),
        (
            Method::POST,
            "/v1/projects",
            Some(json!({ "id": "p-auth", "name": "P" })),
        ),
        (Method::GET, "/v1/projects/default", None),
        (
            Method::PUT,
            "/v1/projects/default",
            Some(json!({ "name": "Renamed" })),
        ),
        (Method::DELETE, "/v1/projects/default", None),
        (Method::GET, "/v1/environments", None),
        (Method::POST, "/v1/environments", Some(env.clone())),
        (Method::GET, "/v1/environments/prod", None),
        (Method::PUT, "/v1/environments/prod", Some(env)),
        (Method::DELETE, "/v1/environments/prod", None),
        (Method::GET, "/v1/integrations", None),
        (Method::POST, "/v1/integrations", Some(integ.clone())),
        (Method::GET, "/v1/integrations/int", None),
        (Method::PUT, "/v1/integrations/int", Some(integ)),
        (Method::DELETE, "/v1/integrations/int", None),
        (Method::GET, "/v1/integrations/int/status", None),
        (Method::GET, "/v1/integrations/int/attempts", None),
        (Method::POST, "/v1/integrations/int/pause", None),
        (Method::POST, "/v1/integrations/int/resume", None),
        (Method::GET, "/v1/integrations/int/gaps", None),
        (Method::POST, "/v1/integrations/int/test", None),
    ]
}

async fn seed(s: &Sluice, url: &str) {
    s.environment("prod", "Production", SDK_KEY).await;
    s.integration("int", url, &["prod"], json!({})).await;
}

#[tokio::test]
async fn admin_routes_require_the_admin_token() {
    let s = Sluice::start().await;
    let rx = receiver(FaultMode::Ok).await;
    seed(&s, &rx.url("/hook")).await;
    for (method, path, body) in admin_routes() {
        for token in [None, Some("wrong-token"), Some(SDK_KEY), Some("")] {
            let a = s.admin_as(method.clone(), path, token, body.clone()).await;
            a.assert_error(401, &format!("{method} {path} with token {token:?}"));
        }
        // A token in another scheme, or the right token with a suffix, is no token.
        let a = answer(
            s.client
                .request(method.clone(), s.url(path))
                .header("Authorization", format!("Basic {TOKEN}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        a.assert_error(401, &format!("{method} {path} with Basic auth"));
        let a = s
            .admin_as(
                method.clone(),
                path,
                Some(&format!("{TOKEN}x")),
                body.clone(),
            )
            .await;
        a.assert_error(401, &format!("{method} {path} with a longer token"));
    }
    // Nothing changed by the refused requests.
    assert_eq!(
        s.admin(Method::GET, "/v1/projects/p-auth", None).await.0,
        404
    );
    assert_eq!(s.get_admin("/v1/projects/default").await["name"], "Default");
    assert_eq!(
        s.get_admin("/v1/environments/prod").await["name"],
        "Production"
    );
    assert_eq!(
        s.get_admin("/v1/integrations/int").await["url"],
        rx.url("/hook").as_str()
    );
    assert_eq!(
        s.status("int").await["state"],
        "active",
        "the unauthenticated pause did nothing"
    );
    assert_eq!(
        rx.stats().requests,
        0,
        "the unauthenticated test send did nothing"
    );
    // The right token works.
    for path in [
        "/v1/projects",
        "/v1/environments",
        "/v1/integrations",
        "/v1/integrations/int/status",
    ] {
        let a = s.admin_as(Method::GET, path, Some(TOKEN), None).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    // The admin token is not an SDK key.
    let bulk = bulk("flag", "k", 1);
    for path in [
        "/api/testImpressions/bulk",
        "/v1/impressions",
        "/api/testImpressions/count",
        "/api/events/bulk",
    ] {
        let a = s.post_json(path, TOKEN, &bulk).await;
        a.assert_error(401, &format!("{path} with the admin token"));
    }
    assert_eq!(s.stored("prod").await, 0);
}

#[tokio::test]
async fn projects_crud_and_errors() {
    let s = Sluice::start().await;
    let (code, v) = s
        .admin(
            Method::POST,
            "/v1/projects",
            Some(json!({ "id": "acme", "name": "Acme" })),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v, json!({ "id": "acme", "name": "Acme" }));
    assert_eq!(
        s.get_admin("/v1/projects/acme").await,
        json!({ "id": "acme", "name": "Acme" })
    );
    let list = s.get_admin("/v1/projects").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"acme") && ids.contains(&"default"), "{list}");
    // Generated id.
    let v = s
        .post_admin("/v1/projects", json!({ "name": "No id" }))
        .await;
    let gen_id = v["id"].as_str().expect("generated id").to_owned();
    assert!(!gen_id.is_empty());
    assert_eq!(
        s.get_admin(&format!("/v1/projects/{gen_id}")).await["name"],
        "No id"
    );

    let (code, v) = s
        .admin(
            Method::PUT,
            "/v1/projects/acme",
            Some(json!({ "name": "Acme Inc" })),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(s.get_admin("/v1/projects/acme").await["name"], "Acme Inc");

    // Errors.
    let err = |m: Method, p: &'static str, b: Option<Value>| {
        let s = &s;
        async move { s.admin_as(m, p, Some(TOKEN), b).await }
    };
    err(
        Method::POST,
        "/v1/projects",
        Some(json!({ "id": "acme", "name": "Again" })),
    )
    .await
    .assert_error(409, "duplicate project");
    let a = err(
        Method::POST,
        "/v1/projects",
        Some(json!({ "id": "bad id!", "name": "X" })),
    )
    .await;
    a.assert_error(400, "invalid project id");
    assert!(a.detail().contains("id"), "{}", a.body);
    let a = err(
        Method::POST,
        "/v1/projects",
        Some(json!({ "id": "p2", "name": "" })),
    )
    .await;
    a.assert_error(400, "empty name");
    assert!(a.detail().contains("name"), "{}", a.body);
    let a = err(Method::POST, "/v1/projects", Some(json!({ "id": "p2" }))).await;
    a.assert_error(400, "missing name");
    assert!(a.detail().contains("name"), "{}", a.body);
    let a = err(
        Method::POST,
        "/v1/projects",
        Some(json!({ "id": "p2", "name": 5 })),
    )
    .await;
    a.assert_error(400, "name of the wrong type");
    let a = s
        .post_raw(
            "/v1/projects",
            Some(TOKEN),
            &[("Content-Type", "application/json")],
            b"{not json".to_vec(),
        )
        .await;
    a.assert_error(400, "malformed JSON");
    err(Method::GET, "/v1/projects/nope", None)
        .await
        .assert_error(404, "GET missing project");
    err(
        Method::PUT,
        "/v1/projects/nope",
        Some(json!({ "name": "X" })),
    )
    .await
    .assert_error(404, "PUT missing project");
    err(Method::DELETE, "/v1/projects/nope", None)
        .await
        .assert_error(404, "DELETE missing project");
    err(
        Method::PUT,
        "/v1/projects/acme",
        Some(json!({ "id": "other", "name": "X" })),
    )
    .await
    .assert_error(400, "id mismatch");

    // A project with environments cannot be deleted.
    s.post_admin("/v1/environments", json!({ "id": "acme-prod", "name": "Acme prod", "project": "acme", "sdkKeys": ["acme-key-0001"] })).await;
    let a = err(Method::DELETE, "/v1/projects/acme", None).await;
    a.assert_error(409, "deleting a project with environments");
    assert_eq!(s.get_admin("/v1/projects/acme").await["name"], "Acme Inc");
    assert_eq!(
        s.admin(Method::DELETE, "/v1/environments/acme-prod", None)
            .await
            .0,
        204
    );
    let (code, v) = s.admin(Method::DELETE, "/v1/projects/acme", None).await;
    assert_eq!(code, 204, "{v}");
    err(Method::GET, "/v1/projects/acme", None)
        .await
        .assert_error(404, "deleted project");
}

#[tokio::test]
async fn environments_crud_and_errors() {
    let s = Sluice::start().await;
    let (code, v) = s
        .admin(
            Method::POST,
            "/v1/environments",
            Some(json!({ "id": "prod", "name": "Production", "sdkKeys": [SDK_KEY] })),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v,
        json!({ "id": "prod", "name": "Production", "project": "default", "sdkKeys": [SDK_KEY] })
    );
    assert_eq!(s.get_admin("/v1/environments/prod").await, v);
    assert!(
        s.get_admin("/v1/environments")
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "prod")
    );

    let e = |m: Method, p: &'static str, b: Option<Value>| {
        let s = &s;
        async move { s.admin_as(m, p, Some(TOKEN), b).await }
    };
    e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "prod", "name": "Again", "sdkKeys": ["another-key-01"] })),
    )
    .await
    .assert_error(409, "duplicate environment id");
    let a = e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "stg", "name": "Staging", "sdkKeys": [SDK_KEY] })),
    )
    .await;
    a.assert_error(409, "SDK key used by another environment");
    assert_eq!(
        s.admin(Method::GET, "/v1/environments/stg", None).await.0,
        404,
        "nothing created by the refused request"
    );
    let a = e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "stg", "name": "Staging", "project": "nope" })),
    )
    .await;
    a.assert_error(400, "unknown project");
    assert!(a.detail().contains("project"), "{}", a.body);
    let a = e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "stg", "name": "Staging", "sdkKeys": ["short"] })),
    )
    .await;
    a.assert_error(400, "short SDK key");
    assert!(a.detail().contains("sdkKeys"), "{}", a.body);
    let a = e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "stg/x", "name": "Staging" })),
    )
    .await;
    a.assert_error(400, "invalid environment id");
    assert!(a.detail().contains("id"), "{}", a.body);
    let a = e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "stg", "name": "   " })),
    )
    .await;
    a.assert_error(400, "blank name");
    assert!(a.detail().contains("name"), "{}", a.body);
    let a = e(
        Method::POST,
        "/v1/environments",
        Some(json!({ "id": "stg", "name": "S", "bogus": 1 })),
    )
    .await;
    a.assert_error(400, "unknown field");
    e(Method::GET, "/v1/environments/nope", None)
        .await
        .assert_error(404, "GET missing environment");
    e(
        Method::PUT,
        "/v1/environments/nope",
        Some(json!({ "name": "X" })),
    )
    .await
    .assert_error(404, "PUT missing environment");
    e(Method::DELETE, "/v1/environments/nope", None)
        .await
        .assert_error(404, "DELETE missing environment");
    // Updating another environment to take an existing key is refused too.
    s.post_admin(
        "/v1/environments",
        json!({ "id": "stg", "name": "Staging", "sdkKeys": ["sdk-key-staging-01"] }),
    )
    .await;
    e(
        Method::PUT,
        "/v1/environments/stg",
        Some(json!({ "name": "Staging", "sdkKeys": [SDK_KEY] })),
    )
    .await
    .assert_error(409, "PUT taking another environment's key");

    // Without sdkKeys a key is generated, and it works for ingest.
    let v = s
        .post_admin(
            "/v1/environments",
            json!({ "id": "gen", "name": "Generated" }),
        )
        .await;
    let keys = v["sdkKeys"].as_array().expect("sdkKeys");
    assert_eq!(keys.len(), 1, "{v}");
    let key = keys[0].as_str().unwrap().to_owned();
    assert!(
        key.len() >= 16,
        "generated key {key:?} is too short to be a secret"
    );
    assert_eq!(s.send_bulk(&key, &bulk("flag", "g", 3)).await, 200);
    assert_eq!(s.stored("gen").await, 3);

    // Key rotation: the new key works at once, the old one no longer does.
    let (code, v) = s
        .admin(
            Method::PUT,
            "/v1/environments/gen",
            Some(json!({ "name": "Generated", "sdkKeys": ["sdk-key-rotated-01"] })),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        s.send_bulk("sdk-key-rotated-01", &bulk("flag", "r", 1))
            .await,
        200
    );
    assert_eq!(
        s.send_bulk(&key, &bulk("flag", "g", 1)).await,
        401,
        "the rotated-out key still works"
    );
    assert_eq!(s.stored("gen").await, 4);

    // Update: rename keeps the keys.
    let (code, v) = s
        .admin(
            Method::PUT,
            "/v1/environments/prod",
            Some(json!({ "name": "Prod (EU)" })),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let got = s.get_admin("/v1/environments/prod").await;
    assert_eq!(got["name"], "Prod (EU)");
    assert_eq!(got["sdkKeys"], json!([SDK_KEY]));

    // An environment used by an integration cannot be deleted.
    let rx = receiver(FaultMode::Ok).await;
    s.integration("int", &rx.url("/hook"), &["prod"], json!({}))
        .await;
    // ...nor moved to another project.
    s.post_admin("/v1/projects", json!({ "id": "other", "name": "Other" }))
        .await;
    e(
        Method::PUT,
        "/v1/environments/prod",
        Some(json!({ "name": "Prod (EU)", "project": "other" })),
    )
    .await
    .assert_error(
        409,
        "moving an environment used by an integration to another project",
    );
    assert_eq!(
        s.get_admin("/v1/environments/prod").await["project"],
        "default"
    );
    e(Method::DELETE, "/v1/environments/prod", None)
        .await
        .assert_error(409, "deleting an environment in use");
    assert_eq!(
        s.send_bulk(SDK_KEY, &bulk("flag", "k", 1)).await,
        200,
        "still there"
    );
    assert_eq!(
        s.admin(Method::DELETE, "/v1/integrations/int", None)
            .await
            .0,
        204
    );
    assert_eq!(
        s.admin(Method::DELETE, "/v1/environments/prod", None)
            .await
            .0,
        204
    );
    e(Method::GET, "/v1/environments/prod", None)
        .await
        .assert_error(404, "deleted environment");
    assert_eq!(
        s.send_bulk(SDK_KEY, &bulk("flag", "k", 1)).await,
        401,
        "a deleted environment's key no longer works"
    );
}

#[tokio::test]
async fn integrations_crud_and_errors() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    s.post_admin("/v1/projects", json!({ "id": "other", "name": "Other" }))
        .await;
    s.post_admin("/v1/environments", json!({ "id": "other-env", "name": "Other env", "project": "other", "sdkKeys": ["sdk-key-other-01"] }))
        .await;
    let rx = receiver(FaultMode::Ok).await;
    let url = rx.url("/hook");

    let (code, v) = s
        .admin(
            Method::POST,
            "/v1/integrations",
            Some(json!({ "id": "int", "name": "Warehouse", "url": url, "environments": ["prod"], "headers": { "X-Key": "v" } })),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["id"], "int");
    assert_eq!(v["project"], "default");
    assert_eq!(v["url"], url.as_str());
    assert_eq!(v["flushIntervalMs"], 10000, "SPEC default");
    assert_eq!(v["maxBatchImpressions"], 5000, "SPEC default");
    assert_eq!(v["maxBacklogAgeMs"], 86_400_000, "SPEC default");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["headers"], json!({ "X-Key": "v" }));
    assert_eq!(s.get_admin("/v1/integrations/int").await, v);
    // Without id: generated.
    let v2 = s
        .post_admin(
            "/v1/integrations",
            json!({ "name": "Gen", "url": url, "environments": ["prod"] }),
        )
        .await;
    let gen_id = v2["id"].as_str().unwrap().to_owned();
    assert!(!gen_id.is_empty());
    let list = s.get_admin("/v1/integrations").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"int") && ids.contains(&gen_id.as_str()),
        "{list}"
    );

    let base =
        || json!({ "id": "bad", "name": "Bad", "url": rx.url("/hook"), "environments": ["prod"] });
    let with = |k: &str, val: Value| {
        let mut b = base();
        b[k] = val;
        b
    };
    let post = |b: Value| {
        let s = &s;
        async move {
            s.admin_as(Method::POST, "/v1/integrations", Some(TOKEN), Some(b))
                .await
        }
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with("id", json!("int")), 409, "already exists"),
        (
            with("environments", json!(["other-env"])),
            400,
            "environments",
        ),
        (
            with("environments", json!(["prod", "other-env"])),
            400,
            "environments",
        ),
        (
            with("environments", json!(["missing"])),
            400,
            "environments",
        ),
        (with("environments", json!([])), 400, "environments"),
        (with("flushIntervalMs", json!(5)), 400, "flushIntervalMs"),
        (
            with("maxBatchImpressions", json!(0)),
            400,
            "maxBatchImpressions",
        ),
        (with("url", json!("ftp://127.0.0.1/x")), 400, "url"),
        (with("url", json!("not a url")), 400, "url"),
        (
            with("headers", json!({ "Content-Type": "text/plain" })),
            400,
            "headers",
        ),
        (
            with("headers", json!({ "bad header": "x" })),
            400,
            "headers",
        ),
        // A serde type error: the detail names the bad value and the allowed ones.
        (with("format", json!("xml")), 400, "xml"),
        (with("project", json!("missing")), 400, "project"),
        (with("name", json!("")), 400, "name"),
        (with("secret", json!("")), 400, "secret"),
    ];
    for (body, status, field) in cases {
        let a = post(body.clone()).await;
        a.assert_error(status, &format!("{body}"));
        assert!(
            a.detail().contains(field),
            "detail should name {field}: {} for {body}",
            a.body
        );
    }
    // An integration of the other project may list the other project's environment only.
    let mut ok = base();
    ok["project"] = json!("other");
    ok["environments"] = json!(["other-env"]);
    let a = post(ok).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let mut bad = base();
    bad["id"] = json!("bad2");
    bad["project"] = json!("other");
    let a = post(bad).await;
    a.assert_error(400, "other project's integration listing prod");
    assert!(a.detail().contains("environments"), "{}", a.body);
    assert_eq!(
        s.admin(Method::GET, "/v1/integrations/bad2", None).await.0,
        404
    );

    // PUT: update and validation.
    let mut cfg = s.get_admin("/v1/integrations/int").await;
    cfg["flushIntervalMs"] = json!(500);
    cfg["name"] = json!("Warehouse 2");
    let (code, v) = s
        .admin(Method::PUT, "/v1/integrations/int", Some(cfg.clone()))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        s.get_admin("/v1/integrations/int").await["flushIntervalMs"],
        500
    );
    cfg["environments"] = json!(["other-env"]);
    let a = s
        .admin_as(
            Method::PUT,
            "/v1/integrations/int",
            Some(TOKEN),
            Some(cfg.clone()),
        )
        .await;
    a.assert_error(400, "PUT with another project's environment");
    assert!(a.detail().contains("environments"), "{}", a.body);
    assert_eq!(
        s.get_admin("/v1/integrations/int").await["environments"],
        json!(["prod"])
    );

    // 404s on every per-integration route.
    for (m, p) in [
        (Method::GET, "/v1/integrations/nope"),
        (Method::PUT, "/v1/integrations/nope"),
        (Method::DELETE, "/v1/integrations/nope"),
        (Method::GET, "/v1/integrations/nope/status"),
        (Method::GET, "/v1/integrations/nope/attempts"),
        (Method::GET, "/v1/integrations/nope/gaps"),
        (Method::POST, "/v1/integrations/nope/pause"),
        (Method::POST, "/v1/integrations/nope/resume"),
        (Method::POST, "/v1/integrations/nope/test"),
    ] {
        let body = (m == Method::PUT)
            .then(|| json!({ "name": "X", "url": rx.url("/hook"), "environments": ["prod"] }));
        s.admin_as(m.clone(), p, Some(TOKEN), body)
            .await
            .assert_error(404, &format!("{m} {p}"));
    }

    // Delete.
    assert_eq!(
        s.admin(Method::DELETE, "/v1/integrations/int", None)
            .await
            .0,
        204
    );
    s.admin_as(Method::GET, "/v1/integrations/int", Some(TOKEN), None)
        .await
        .assert_error(404, "deleted integration");
    // The deleted integration receives nothing more.
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 3)).await, 200);
    if let Err(st) = rx.wait_until(T, |st| st.unique_impressions >= 3).await {
        panic!("the generated-id integration should still deliver: {st:?}");
    }
    assert!(rx.requests().iter().all(|r| r.path == "/hook"));
}

#[tokio::test]
async fn secret_is_redacted_and_kept_by_a_put_with_the_redacted_value() {
    const SECRET: &str = "a-very-secret-value";
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let rx = receiver_with_secret(SECRET).await;
    let created = s
        .integration(
            "int",
            &rx.url("/hook"),
            &["prod"],
            json!({ "secret": SECRET }),
        )
        .await;
    assert_eq!(
        created["secret"], "********",
        "POST answer must not echo the secret: {created}"
    );
    let got = s.get_admin("/v1/integrations/int").await;
    assert_eq!(got["secret"], "********");
    let list = s.get_admin("/v1/integrations").await;
    assert!(
        !list.to_string().contains(SECRET),
        "secret leaked by the list: {list}"
    );
    assert!(!got.to_string().contains(SECRET));

    // Sending the redacted placeholder back (as a client that GETs, edits, PUTs would) keeps it.
    let mut cfg = got.clone();
    cfg["name"] = json!("Renamed");
    let (code, v) = s
        .admin(Method::PUT, "/v1/integrations/int", Some(cfg))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["secret"], "********");
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 4)).await, 200);
    let st = match rx.wait_until(T, |st| st.unique_impressions >= 4).await {
        Ok(st) => st,
        Err(st) => panic!("not delivered with the kept secret: {st:?}"),
    };
    assert_eq!(st.bad_signatures, 0, "{st:?}");
    assert!(rx.requests().iter().all(|r| r.signature_ok == Some(true)));

    // Omitting the secret also keeps it.
    let mut cfg = s.get_admin("/v1/integrations/int").await;
    cfg.as_object_mut().unwrap().remove("secret");
    cfg["name"] = json!("Renamed again");
    assert_eq!(
        s.admin(Method::PUT, "/v1/integrations/int", Some(cfg))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get_admin("/v1/integrations/int").await["secret"],
        "********"
    );

    // The placeholder is not a valid new secret.
    let a = s
        .admin_as(
            Method::POST,
            "/v1/integrations",
            Some(TOKEN),
            Some(json!({ "id": "int2", "name": "N", "url": rx.url("/hook"), "environments": ["prod"], "secret": "********" })),
        )
        .await;
    a.assert_error(400, "creating with the redacted placeholder as secret");
}

#[tokio::test]
async fn private_destinations_are_refused_at_configuration_time() {
    let s = Sluice::start_with(|o| o.allow_private_destinations = false).await;
    s.environment("prod", "Production", SDK_KEY).await;
    let rx = receiver(FaultMode::Ok).await;
    let port = rx.addr().port();
    let urls = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://2130706433/".to_owned(),
        "http://0x7f.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ];
    for (i, url) in urls.iter().enumerate() {
        let body = json!({ "id": format!("ssrf-{i}"), "name": "x", "url": url, "environments": ["prod"], "flushIntervalMs": 200 });
        let a = s
            .admin_as(Method::POST, "/v1/integrations", Some(TOKEN), Some(body))
            .await;
        a.assert_error(400, url);
        let d = a.detail().to_lowercase();
        assert!(
            d.contains("url")
                && (d.contains("public") || d.contains("private") || d.contains("loopback")),
            "{url}: unclear message {}",
            a.body
        );
        // Disabled does not make it acceptable either.
        let body = json!({ "id": format!("ssrf-d{i}"), "name": "x", "url": url, "environments": ["prod"], "enabled": false });
        s.admin_as(Method::POST, "/v1/integrations", Some(TOKEN), Some(body))
            .await
            .assert_error(400, url);
    }
    // A public-looking URL is fine at configuration time (disabled: nothing ever connects).
    let v = s
        .integration(
            "public",
            "https://example.com/hook",
            &["prod"],
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(v["enabled"], false);
    // ...but cannot be switched to a private address by PUT.
    let mut cfg = s.get_admin("/v1/integrations/public").await;
    cfg["url"] = json!(rx.url("/hook"));
    let a = s
        .admin_as(
            Method::PUT,
            "/v1/integrations/public",
            Some(TOKEN),
            Some(cfg),
        )
        .await;
    a.assert_error(400, "PUT to a loopback url");
    assert_eq!(
        s.get_admin("/v1/integrations/public").await["url"],
        "https://example.com/hook"
    );
    let list = s.get_admin("/v1/integrations").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only the public integration exists: {list}"
    );

    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 10)).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.stats().requests, 0, "the loopback receiver was reached");
}

#[tokio::test]
async fn host_names_resolving_to_private_addresses_are_refused_at_configuration_time() {
    let s = Sluice::start_with(|o| o.allow_private_destinations = false).await;
    s.environment("prod", "Production", SDK_KEY).await;
    let rx = receiver(FaultMode::Ok).await;
    let port = rx.addr().port();
    let mut checked = 0;
    // Names this machine resolves (from /etc/hosts) to loopback: only checkable where they do.
    for name in ["vm", "runsc", "localhost.", "LOCALHOST", "api.localhost"] {
        let resolved: Vec<std::net::IpAddr> = match tokio::net::lookup_host((name, port)).await {
            Ok(a) => a.map(|a| a.ip()).collect(),
            Err(_) => continue,
        };
        if resolved.is_empty() || !resolved.iter().all(|ip| ip.is_loopback()) {
            continue;
        }
        checked += 1;
        let url = format!("http://{name}:{port}/hook");
        let body = json!({ "id": format!("n{checked}"), "name": "x", "url": url, "environments": ["prod"] });
        s.admin_as(Method::POST, "/v1/integrations", Some(TOKEN), Some(body))
            .await
            .assert_error(400, &url);
    }
    assert!(
        checked > 0,
        "no loopback host name to check on this machine"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.stats().requests, 0);
}

#[tokio::test]
async fn private_destinations_are_refused_at_connect_time_too() {
    // Configured while private destinations were allowed; then sluice restarts without
    // that permission: the stored integration must not reach the loopback receiver.
    let mut s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let rx = receiver(FaultMode::Ok).await;
    s.integration("int", &rx.url("/hook"), &["prod"], json!({}))
        .await;
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "before", 2)).await, 200);
    if let Err(st) = rx.wait_until(T, |st| st.unique_impressions >= 2).await {
        panic!("allowed delivery failed: {st:?}");
    }
    let tmp = s.stop().await;
    let dir = s.dir.clone();
    let s = Sluice::start_in(&dir, |o| o.allow_private_destinations = false).await;
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "after", 3)).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rx.stats().unique_impressions,
        2,
        "delivered to a loopback address without permission"
    );
    let st = s.status("int").await;
    assert_eq!(st["lagImpressions"], 3, "kept, not lost: {st}");
    assert!(st["failedAttempts"].as_u64().unwrap() >= 1, "{st}");
    let err = st["lastError"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        err.contains("public")
            || err.contains("private")
            || err.contains("loopback")
            || err.contains("refused"),
        "{st}"
    );
    // The test endpoint is refused as well.
    let v = s.post_admin("/v1/integrations/int/test", json!({})).await;
    assert_eq!(v["delivered"], false, "{v}");
    assert_eq!(
        rx.stats().requests,
        1,
        "a refused destination was contacted: {:?}",
        rx.requests()
    );
    drop(tmp);
}

#[tokio::test]
async fn operational_routes() {
    let s = Sluice::start().await;
    s.environment("prod", "Production", SDK_KEY).await;
    let get = |p: &'static str| {
        let s = &s;
        async move {
            let r = s.client.get(s.url(p)).send().await.unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (status, ct, r.text().await.unwrap())
        }
    };
    let (code, _, body) = get("/healthz").await;
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = get("/readyz").await;
    assert_eq!(code, 200, "{body}");

    let (code, ct, body) = get("/openapi.json").await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = serde_json::from_str(&body).expect("openapi.json is valid JSON");
    assert!(
        doc.get("openapi")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with('3')),
        "not an OpenAPI 3 document"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/testImpressions/bulk",
        "/v1/impressions",
        "/v1/projects",
        "/v1/projects/{id}",
        "/v1/environments",
        "/v1/environments/{id}",
        "/v1/integrations",
        "/v1/integrations/{id}",
        "/v1/integrations/{id}/status",
        "/v1/integrations/{id}/attempts",
        "/v1/integrations/{id}/pause",
        "/v1/integrations/{id}/resume",
        "/v1/integrations/{id}/test",
    ] {
        assert!(
            paths.contains_key(p),
            "openapi.json does not list {p}; it lists {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }

    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 3)).await, 200);
    let (code, ct, body) = get("/metrics").await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(body.contains("sluice_ingested_impressions_total"), "{body}");

    let (code, ct, body) = get("/").await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(
        body.to_lowercase().contains("<html"),
        "dashboard is not HTML"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let s = Sluice::start().await;
    for (m, p) in [
        (Method::GET, "/nope"),
        (Method::POST, "/v1/nothing"),
        (Method::GET, "/v1/projects/default/extra"),
        (Method::GET, "/api/unknown"),
    ] {
        s.admin_as(m.clone(), p, Some(TOKEN), None)
            .await
            .assert_error(404, &format!("{m} {p}"));
        s.admin_as(m.clone(), p, None, None)
            .await
            .assert_error(404, &format!("{m} {p} without token"));
    }
    // A known route with the wrong method: 405, still a JSON error.
    for (m, p) in [
        (Method::PATCH, "/v1/projects"),
        (Method::GET, "/api/testImpressions/bulk"),
        (Method::DELETE, "/v1/impressions"),
    ] {
        let a = s.admin_as(m.clone(), p, Some(TOKEN), None).await;
        a.assert_error(405, &format!("{m} {p}"));
    }
}

#[tokio::test]
async fn export_and_replay_routes_exist_behind_the_admin_token() {
    let s = Sluice::start().await;
    let rx = receiver(FaultMode::Ok).await;
    seed(&s, &rx.url("/hook")).await;
    assert_eq!(s.send_bulk(SDK_KEY, &bulk("flag", "k", 3)).await, 200);
    let routes = [
        (
            Method::GET,
            "/v1/environments/prod/impressions?format=ndjson",
            None,
        ),
        (
            Method::POST,
            "/v1/integrations/int/replay",
            Some(json!({ "from": 0, "to": 4_000_000_000_000i64 })),
        ),
    ];
    for (m, p, body) in routes {
        s.admin_as(m.clone(), p, None, body.clone())
            .await
            .assert_error(401, &format!("{m} {p} without token"));
        let a = s.admin_as(m.clone(), p, Some(TOKEN), body).await;
        assert!(
            a.status == 200 || a.status == 202,
            "{m} {p}: {} {}",
            a.status,
            a.body
        );
    }
}
