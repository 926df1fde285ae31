//! sluice's HTTP API: ingest (SDK wire protocol and native), admin, and operational
//! routes. Handlers parse, authenticate and validate, then call the store or the delivery
//! engine; they never deliver anything themselves, and ingest never waits on delivery.

pub mod admin;
pub mod auth;
pub mod auth_limit;
pub mod body;
pub mod error;
pub mod export;
pub mod history;
pub mod ingest;
pub mod ops;
pub mod peers;
pub mod rate;
pub mod scope;
pub mod state;
pub mod telemetry;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
pub use state::{ApiConfig, AppState, Inner};

/// All routes.
pub fn router(state: AppState) -> Router {
    use admin::{environments as env, integrations as int, projects as prj};
    let admin = Router::new()
        .route("/v1/projects", get(prj::list).post(prj::create))
        .route(
            "/v1/projects/{id}",
            get(prj::get)
                .put(prj::update)
                .patch(prj::patch)
                .delete(prj::delete),
        )
        .route(
            "/v1/projects/{id}/tokens",
            get(admin::tokens::list).post(admin::tokens::create),
        )
        .route(
            "/v1/projects/{id}/tokens/{token}",
            axum::routing::delete(admin::tokens::revoke),
        )
        .route("/v1/environments", get(env::list).post(env::create))
        .route(
            "/v1/environments/{id}",
            get(env::get)
                .put(env::update)
                .patch(env::patch)
                .delete(env::delete),
        )
        .route("/v1/environments/{id}/impressions", get(export::export))
        .route("/v1/integrations", get(int::list).post(int::create))
        .route("/v1/integrations/status", get(admin::fleet::statuses))
        .route(
            "/v1/integrations/bulk",
            axum::routing::post(admin::bulk::create_integrations),
        )
        .route("/v1/dashboard/overview", get(admin::dashboard::overview))
        .route(
            "/v1/integrations/{id}/history",
            get(admin::dashboard::integration_history),
        )
        .route(
            "/v1/integrations/{id}",
            get(int::get)
                .put(int::update)
                .patch(int::patch)
                .delete(int::delete),
        )
        .route("/v1/integrations/{id}/status", get(int::status))
        .route("/v1/integrations/{id}/attempts", get(int::attempts))
        .route("/v1/integrations/{id}/gaps", get(int::gaps))
        .route("/v1/integrations/{id}/pause", post(int::pause))
        .route("/v1/integrations/{id}/resume", post(int::resume))
        .route("/v1/integrations/{id}/test", post(int::test))
        .route("/v1/integrations/{id}/replay", post(int::replay))
        .route("/v1/integrations/{id}/replays", get(int::replays))
        .route("/v1/integrations/{id}/replays/{job}", get(int::replay_job))
        .route(
            "/v1/alert-destinations",
            get(admin::alerts::list).post(admin::alerts::create),
        )
        .route(
            "/v1/alert-destinations/{id}",
            get(admin::alerts::get)
                .put(admin::alerts::update)
                .patch(admin::alerts::patch)
                .delete(admin::alerts::delete),
        )
        .route(
            "/v1/alert-destinations/{id}/status",
            get(admin::alerts::status),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let ingest = Router::new()
        .route("/api/testImpressions/bulk", post(ingest::split_bulk))
        .route("/api/testImpressions/count", post(ingest::split_count))
        .route("/api/events/bulk", post(ingest::split_accept))
        .route("/api/v1/keys/ss", post(ingest::split_accept))
        .route("/api/v1/keys/cs", post(ingest::split_accept))
        .route("/api/v1/metrics/config", post(ingest::split_accept))
        .route("/api/v1/metrics/usage", post(ingest::split_accept))
        .route("/v1/impressions", post(ingest::native))
        .route_layer(middleware::from_fn(telemetry::ingest::track));
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(ops::dashboard))
        .route("/dashboard/app.js", get(ops::dashboard_js))
        .route("/dashboard/app.css", get(ops::dashboard_css));
    Router::new()
        .merge(admin)
        .merge(ingest)
        .merge(ops)
        .fallback(|| async { error::ApiError::not_found("no such route") })
        // A known route with the wrong method is a JSON error too, not an empty 405.
        .method_not_allowed_fallback(|| async {
            let status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
            error::ApiError::new(
                status,
                "method not allowed",
                "this route does not accept that method",
            )
        })
        // Bodies are read by `body::read_body` with its own limits and JSON errors.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
