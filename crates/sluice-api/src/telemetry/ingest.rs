//! Ingest requests counted by route and status and timed by route: a layer on the ingest
//! routes, so every answer is counted — stored, refused (401, 413, 429) or failed (503).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let began = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("sluice_ingest_request_duration_seconds", "route" => route.clone())
        .record(began.elapsed().as_secs_f64());
    metrics::counter!("sluice_ingest_requests_total", "route" => route, "status" => status)
        .increment(1);
    response
}
