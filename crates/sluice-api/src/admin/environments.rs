//! `/v1/environments`

use crate::admin::new_id;
use crate::body::{json, read_body};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sluice_core::model::{DEFAULT_PROJECT, Environment};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvironmentIn {
    id: Option<String>,
    name: String,
    project: Option<String>,
    sdk_keys: Option<Vec<String>>,
}

pub async fn list(State(s): State<AppState>) -> Json<Vec<Environment>> {
    Json(
        s.catalog
            .snapshot()
            .environments
            .values()
            .map(|e| (**e).clone())
            .collect(),
    )
}

pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Environment>, ApiError> {
    s.catalog
        .snapshot()
        .environments
        .get(&id)
        .map(|e| Json((**e).clone()))
        .ok_or_else(|| ApiError::not_found(format!("environment {id} not found")))
}

/// Creates an environment; without `sdkKeys`, one key is generated.
pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let e: EnvironmentIn = json(&headers, &bytes)?;
    let env = Environment {
        id: e.id.unwrap_or_else(|| new_id("env")),
        name: e.name,
        project: e.project.unwrap_or_else(|| DEFAULT_PROJECT.to_owned()),
        sdk_keys: e.sdk_keys.unwrap_or_else(|| {
            vec![format!(
                "sdk_{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            )]
        }),
    };
    Ok((
        StatusCode::CREATED,
        Json(s.catalog.create_environment(env).await?),
    ))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Environment>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let e: EnvironmentIn = json(&headers, &bytes)?;
    if e.id.as_deref().is_some_and(|b| b != id) {
        return Err(ApiError::bad_request(
            "id in the body differs from the id in the path",
        ));
    }
    let existing = s
        .catalog
        .snapshot()
        .environments
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("environment {id} not found")))?;
    let env = Environment {
        id,
        name: e.name,
        project: e.project.unwrap_or_else(|| existing.project.clone()),
        sdk_keys: e.sdk_keys.unwrap_or_else(|| existing.sdk_keys.clone()),
    };
    Ok(Json(s.catalog.update_environment(env).await?))
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
