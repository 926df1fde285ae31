//! `/v1/environments`

use crate::admin::{merged, new_id, patch_body, same_id};
use crate::body::{json, read_body, strict};
use crate::error::ApiError;
use crate::scope::Scope;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_core::model::{DEFAULT_PROJECT, Environment};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentIn {
    id: Option<String>,
    name: String,
    project: Option<String>,
    sdk_keys: Option<Vec<String>>,
}

pub async fn list(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
) -> Json<Vec<Environment>> {
    Json(
        s.catalog
            .snapshot()
            .environments
            .values()
            .filter(|e| scope.sees(&e.project))
            .map(|e| (**e).clone())
            .collect(),
    )
}

fn find(s: &AppState, id: &str) -> Result<Environment, ApiError> {
    s.catalog
        .snapshot()
        .environments
        .get(id)
        .map(|e| (**e).clone())
        .ok_or_else(|| ApiError::not_found(format!("environment {id} not found")))
}

pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Environment>, ApiError> {
    find(&s, &id).map(Json)
}

/// Creates an environment; without `sdkKeys`, one key is generated.
pub async fn create(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let e: EnvironmentIn = json(&headers, &bytes)?;
    let env = Environment {
        id: e.id.unwrap_or_else(|| new_id("env")),
        name: e.name,
        project: e.project.unwrap_or_else(|| {
            scope
                .default_project()
                .unwrap_or(DEFAULT_PROJECT)
                .to_owned()
        }),
        sdk_keys: e.sdk_keys.unwrap_or_else(|| {
            vec![format!(
                "sdk_{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            )]
        }),
    };
    scope.may_write(&env.project)?;
    let created = s.catalog.create_environment(env).await?;
    // The log's per-environment set-up (a JetStream stream) now rather than in the first
    // ingest request; if it fails, that request creates it.
    if let Err(e) = s.log.prepare(&created.id).await {
        tracing::warn!(environment = %created.id, error = %e, "cannot prepare the environment's log yet; its first append will");
    }
    Ok((StatusCode::CREATED, Json(created)))
}

/// Replaces environment `id` with `e`; `project` and `sdkKeys` left out keep their values.
async fn replace(
    s: &AppState,
    scope: &Scope,
    id: String,
    e: EnvironmentIn,
) -> Result<Json<Environment>, ApiError> {
    same_id(&id, e.id.as_deref())?;
    let existing = find(s, &id)?;
    let env = Environment {
        id,
        name: e.name,
        project: e.project.unwrap_or(existing.project),
        sdk_keys: e.sdk_keys.unwrap_or(existing.sdk_keys),
    };
    scope.may_write(&env.project)?;
    Ok(Json(s.catalog.update_environment(env).await?))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Environment>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let e: EnvironmentIn = json(&headers, &bytes)?;
    replace(&s, &scope, id, e).await
}

/// `PATCH /v1/environments/{id}`: a JSON merge patch (`sdkKeys` is replaced as a whole).
pub async fn patch(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Environment>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let patch = patch_body(&headers, &bytes)?;
    let current = find(&s, &id)?;
    let e: EnvironmentIn = strict(merged(&current, &id, &patch)?)?;
    replace(&s, &scope, id, e).await
}

/// Deletes an environment and its stored impressions.
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.catalog.delete_environment(&id).await?;
    s.log.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
