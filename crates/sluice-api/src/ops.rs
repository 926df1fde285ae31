//! Operational routes: health, readiness, Prometheus metrics, the OpenAPI document and
//! the dashboard page.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "not ready", "detail": "shutting down" })),
        )
            .into_response()
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let body = crate::telemetry::render(&s).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// The dashboard: plain HTML, CSS and JavaScript compiled into the binary (no external
/// assets; works offline). It signs in with the admin token and calls the admin API.
pub async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard/index.html"))
}

pub async fn dashboard_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard/app.js"),
    )
        .into_response()
}

pub async fn dashboard_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard/app.css"),
    )
        .into_response()
}
