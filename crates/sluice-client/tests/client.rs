//! The admin client against a small fake server on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sluice_client::{AdminClient, ClientError};

async fn fake_server() -> String {
    let app = Router::new()
        .route(
            "/v1/environments",
            get(|h: HeaderMap| async move {
                let auth = h
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                axum::Json(json!({ "authorization": auth }))
            })
            .post(|body: axum::Json<Value>| async move { (StatusCode::CREATED, body) }),
        )
        .route(
            "/v1/integrations/{id}/status",
            get(|Path(id): Path<String>| async move {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(
                        json!({ "error": "not_found", "detail": format!("no integration {id}") }),
                    ),
                )
            }),
        )
        .route(
            "/v1/integrations/{id}/pause",
            post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // No scheme: what a user types after `--server`.
    format!("localhost:{}", addr.port())
}

#[tokio::test]
async fn a_server_without_a_scheme_is_reached_over_http_with_the_token() {
    let server = fake_server().await;
    let admin = AdminClient::new(&server, "tok").unwrap();
    assert_eq!(admin.base().scheme(), "http");
    let v = admin.environments().await.unwrap();
    assert_eq!(v["authorization"], "Bearer tok");
    let created = admin
        .create_environment(&json!({ "id": "prod" }))
        .await
        .unwrap();
    assert_eq!(created, json!({ "id": "prod" }));
}

#[tokio::test]
async fn an_error_answer_names_the_call_the_status_and_the_detail() {
    let admin = AdminClient::new(&fake_server().await, "tok").unwrap();
    let e = admin.integration_status("a b").await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::NOT_FOUND));
    let text = e.to_string();
    assert!(text.contains("/v1/integrations/a%20b/status"), "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("no integration a b"), "{text}");
    // A body that is not JSON is the detail as it is.
    let e = admin.pause("x").await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Status { detail, .. } if detail == "busy"),
        "{e}"
    );
    // `send` answers any status.
    let a = admin
        .send(reqwest::Method::GET, "/v1/integrations/x/status", None)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_answer_is_unreachable_and_no_token_is_refused_before_sending() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let admin = AdminClient::new(&format!("127.0.0.1:{port}"), "tok").unwrap();
    let e = admin.integrations().await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
    let e = AdminClient::from_args("127.0.0.1:1", None).unwrap_err();
    assert!(matches!(e, ClientError::MissingToken), "{e}");
}
