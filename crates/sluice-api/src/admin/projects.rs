//! `/v1/projects`

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
use sluice_core::model::Project;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectIn {
    id: Option<String>,
    name: String,
}

pub async fn list(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
) -> Json<Vec<Project>> {
    Json(
        s.catalog
            .snapshot()
            .projects
            .values()
            .filter(|p| scope.sees(&p.id))
            .map(|p| (**p).clone())
            .collect(),
    )
}

fn find(s: &AppState, id: &str) -> Result<Project, ApiError> {
    s.catalog
        .snapshot()
        .projects
        .get(id)
        .map(|p| (**p).clone())
        .ok_or_else(|| ApiError::not_found(format!("project {id} not found")))
}

pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Project>, ApiError> {
    find(&s, &id).map(Json)
}

pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let p: ProjectIn = json(&headers, &bytes)?;
    let p = Project {
        id: p.id.unwrap_or_else(|| new_id("prj")),
        name: p.name,
    };
    Ok((
        StatusCode::CREATED,
        Json(s.catalog.create_project(p).await?),
    ))
}

async fn replace(s: &AppState, id: String, p: ProjectIn) -> Result<Json<Project>, ApiError> {
    same_id(&id, p.id.as_deref())?;
    Ok(Json(
        s.catalog
            .update_project(Project { id, name: p.name })
            .await?,
    ))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Project>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let p: ProjectIn = json(&headers, &bytes)?;
    replace(&s, id, p).await
}

/// `PATCH /v1/projects/{id}`: a JSON merge patch.
pub async fn patch(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Project>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let patch = patch_body(&headers, &bytes)?;
    let current = find(&s, &id)?;
    let p: ProjectIn = strict(merged(&current, &id, &patch)?)?;
    replace(&s, id, p).await
}

pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.catalog.delete_project(&id).await?;
    // Nothing hangs on a deleted project: its tokens stop working with it.
    crate::admin::tokens::revoke_all(s.catalog.meta().as_ref(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
