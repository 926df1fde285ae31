//! Project tokens (SPEC §4, tenants sealed): minted by the admin token, shown once, a
//! project token sees and changes only its own project; others' objects answer 404 as if
//! they did not exist; revocation takes effect on the next request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn setup(s: &Sluice) -> (String, String) {
    for p in ["acme", "globex"] {
        s.post_admin("/v1/projects", json!({"id": p, "name": p}))
            .await;
    }
    s.post_admin(
        "/v1/environments",
        json!({"id": "env-a", "name": "A", "project": "acme", "sdkKeys": ["sdk-acme-key"]}),
    )
    .await;
    s.post_admin(
        "/v1/environments",
        json!({"id": "env-g", "name": "G", "project": "globex", "sdkKeys": ["sdk-globex-key"]}),
    )
    .await;
    for (id, p, e) in [("int-a", "acme", "env-a"), ("int-g", "globex", "env-g")] {
        s.post_admin(
            "/v1/integrations",
            json!({"id": id, "name": id, "project": p, "url": "http://127.0.0.1:9/hook",
                   "environments": [e], "enabled": false}),
        )
        .await;
    }
    let t = s
        .post_admin("/v1/projects/acme/tokens", json!({"name": "ci"}))
        .await;
    let secret = t["secret"].as_str().expect("the token is shown").to_owned();
    assert!(secret.starts_with("prj_"), "{t}");
    assert_eq!(t["project"], "acme");
    assert_eq!(t["name"], "ci");
    let id = t["id"].as_str().expect("token id").to_owned();
    (secret, id)
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_project_token_sees_and_changes_only_its_project() {
    let s = Sluice::start().await;
    let (tok, _) = setup(&s).await;
    let t = Some(tok.as_str());
    let get = |path: &'static str| s.admin_as(Method::GET, path, t, None);

    // Lists hold only the own project's objects.
    assert_eq!(ids(&get("/v1/projects").await.body), ["acme"]);
    assert_eq!(ids(&get("/v1/environments").await.body), ["env-a"]);
    assert_eq!(ids(&get("/v1/integrations").await.body), ["int-a"]);
    let fleet = get("/v1/integrations/status").await;
    assert_eq!(fleet.status, 200, "{}", fleet.body);
    assert_eq!(ids(&fleet.body["integrations"]), ["int-a"]);
    let other = get("/v1/integrations/status?project=globex").await;
    assert_eq!(ids(&other.body["integrations"]), Vec::<String>::new());

    // Another project's objects answer exactly as missing ones do.
    for (theirs, missing) in [
        ("/v1/projects/globex", "/v1/projects/nope"),
        ("/v1/environments/env-g", "/v1/environments/nope"),
        (
            "/v1/environments/env-g/impressions",
            "/v1/environments/nope/impressions",
        ),
        ("/v1/integrations/int-g", "/v1/integrations/nope"),
        (
            "/v1/integrations/int-g/status",
            "/v1/integrations/nope/status",
        ),
        (
            "/v1/integrations/int-g/attempts",
            "/v1/integrations/nope/attempts",
        ),
        ("/v1/integrations/int-g/gaps", "/v1/integrations/nope/gaps"),
        (
            "/v1/integrations/int-g/replays",
            "/v1/integrations/nope/replays",
        ),
    ] {
        let a = s.admin_as(Method::GET, theirs, t, None).await;
        let b = s.admin_as(Method::GET, missing, t, None).await;
        a.assert_error(404, theirs);
        assert_eq!(a.status, b.status, "{theirs} vs {missing}");
        assert_eq!(
            a.body["detail"].as_str().map(|d| d
                .replace("int-g", "nope")
                .replace("env-g", "nope")
                .replace("globex", "nope")),
            b.body["detail"].as_str().map(str::to_owned),
            "{theirs}: the answer must not tell another project's object from a missing one"
        );
    }
    for (method, path) in [
        (Method::POST, "/v1/integrations/int-g/pause"),
        (Method::POST, "/v1/integrations/int-g/resume"),
        (Method::POST, "/v1/integrations/int-g/test"),
        (Method::POST, "/v1/integrations/int-g/replay"),
        (Method::DELETE, "/v1/integrations/int-g"),
        (Method::DELETE, "/v1/environments/env-g"),
        (Method::PATCH, "/v1/integrations/int-g"),
    ] {
        let a = s.admin_as(method.clone(), path, t, Some(json!({}))).await;
        a.assert_error(404, path);
    }
    // ... and they are untouched.
    assert_eq!(s.get_admin("/v1/integrations/int-g").await["id"], "int-g");
    assert_eq!(s.get_admin("/v1/environments/env-g").await["id"], "env-g");

    // Creating or moving anything into another project is refused (403); another
    // project's environment, referenced from an own integration, does not exist (400).
    let refused = [
        (
            Method::POST,
            "/v1/environments",
            json!({"name": "X", "project": "globex"}),
            403,
        ),
        (
            Method::POST,
            "/v1/integrations",
            json!({"name": "X", "project": "globex", "url": "http://127.0.0.1:9/",
                   "environments": ["env-g"]}),
            403,
        ),
        (
            Method::PATCH,
            "/v1/environments/env-a",
            json!({"project": "globex"}),
            403,
        ),
        (
            Method::POST,
            "/v1/integrations",
            json!({"name": "X", "url": "http://127.0.0.1:9/", "environments": ["env-g"]}),
            400,
        ),
    ];
    let mut a = None;
    for (method, path, body, status) in refused {
        let answer = s.admin_as(method, path, t, Some(body.clone())).await;
        answer.assert_error(status, &format!("{path} {body}"));
        a = Some(answer);
    }
    let a = a.expect("the last case");
    assert!(a.detail().contains("does not exist"), "{}", a.detail());

    // Objects created without a project land in the token's project.
    let a = s
        .admin_as(
            Method::POST,
            "/v1/environments",
            t,
            Some(json!({"id": "env-a2", "name": "A2"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["project"], "acme");
    let a = s
        .admin_as(
            Method::POST,
            "/v1/integrations",
            t,
            Some(
                json!({"id": "int-a2", "name": "A2", "url": "http://127.0.0.1:9/",
                        "environments": ["env-a2"], "enabled": false}),
            ),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["project"], "acme");

    // Its own objects work as with the admin token.
    let a = s
        .admin_as(Method::POST, "/v1/integrations/int-a/pause", t, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = s
        .admin_as(Method::GET, "/v1/integrations/int-a/status", t, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = s
        .admin_as(
            Method::PATCH,
            "/v1/projects/acme",
            t,
            Some(json!({"name": "Acme Inc"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // What only the admin may do.
    for (method, path, body) in [
        (Method::POST, "/v1/projects", Some(json!({"name": "mine"}))),
        (Method::DELETE, "/v1/projects/acme", None),
        (Method::POST, "/v1/projects/acme/tokens", Some(json!({}))),
        (Method::GET, "/v1/projects/acme/tokens", None),
    ] {
        let a = s.admin_as(method, path, t, body).await;
        a.assert_error(403, path);
    }
}

#[tokio::test]
async fn tokens_are_shown_once_listed_without_secret_and_revoked_at_once() {
    let s = Sluice::start().await;
    let (tok, tok_id) = setup(&s).await;
    let t = Some(tok.as_str());

    let list = s.get_admin("/v1/projects/acme/tokens").await;
    assert_eq!(ids(&list), vec![tok_id.as_str()]);
    assert!(
        !list.to_string().contains(&tok),
        "a list never shows the secret"
    );
    assert!(list[0].get("secret").is_none(), "{list}");
    assert_eq!(
        ids(&s.get_admin("/v1/projects/globex/tokens").await),
        Vec::<String>::new()
    );

    assert_eq!(
        s.admin_as(Method::GET, "/v1/environments", t, None)
            .await
            .status,
        200
    );
    let (status, _) = s
        .admin(
            Method::DELETE,
            &format!("/v1/projects/acme/tokens/{tok_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    s.admin_as(Method::GET, "/v1/environments", t, None)
        .await
        .assert_error(401, "a revoked token");
    let (status, _) = s
        .admin(
            Method::DELETE,
            &format!("/v1/projects/acme/tokens/{tok_id}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "revoking twice");

    // Deleting a project revokes its tokens: a new project of the same id starts clean.
    s.post_admin("/v1/projects", json!({"id": "tmp", "name": "tmp"}))
        .await;
    let t2 = s.post_admin("/v1/projects/tmp/tokens", json!({})).await;
    let t2 = t2["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        s.admin_as(Method::GET, "/v1/projects", Some(&t2), None)
            .await
            .status,
        200
    );
    let (status, _) = s.admin(Method::DELETE, "/v1/projects/tmp", None).await;
    assert_eq!(status, 204);
    s.post_admin("/v1/projects", json!({"id": "tmp", "name": "tmp again"}))
        .await;
    s.admin_as(Method::GET, "/v1/projects", Some(&t2), None)
        .await
        .assert_error(401, "a deleted project's token");
    // Tokens of a project that does not exist.
    let (status, _) = s
        .admin(Method::POST, "/v1/projects/nope/tokens", Some(json!({})))
        .await;
    assert_eq!(status, 404);
}
