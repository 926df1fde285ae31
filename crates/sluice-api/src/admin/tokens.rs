//! Project tokens (SPEC §4): `POST|GET /v1/projects/{id}/tokens`,
//! `DELETE /v1/projects/{id}/tokens/{tokenId}` — admin token only.
//!
//! A token is shown once, in the answer that creates it. sluice keeps only its SHA-256
//! digest, as the key `project-token/<hex digest>` of the `State` bucket, whose value says
//! which project it opens. Authentication reads that key on every request, so a revoked
//! token stops working on the very next one, on every node.

use crate::admin::new_id;
use crate::auth::token_digest;
use crate::body::{json, read_body};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sluice_store::{Bucket, Expect, MetaStore};
use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &str = "project-token/";

/// What is stored for a token (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectToken {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenIn {
    #[serde(default)]
    name: String,
}

/// The answer to a create: the stored description and, this once, the token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: ProjectToken,
    pub secret: String,
}

/// The key a token is stored under, from the token's digest.
fn key(digest: &[u8; 32]) -> String {
    let mut k = String::with_capacity(PREFIX.len() + 64);
    k.push_str(PREFIX);
    for b in digest {
        k.push_str(&format!("{b:02x}"));
    }
    k
}

/// The project a presented token opens, if it is a live project token (`digest`:
/// [`token_digest`] of the presented token, which authentication computed already).
pub async fn lookup(
    meta: &dyn MetaStore,
    digest: &[u8; 32],
) -> Result<Option<ProjectToken>, ApiError> {
    let Some(v) = meta.get(Bucket::State, &key(digest)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&v.value).ok())
}

async fn all_of(
    meta: &dyn MetaStore,
    project: &str,
) -> Result<Vec<(String, ProjectToken)>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in meta.list(Bucket::State, PREFIX).await? {
        if let Ok(t) = serde_json::from_slice::<ProjectToken>(&v.value)
            && t.project == project
        {
            out.push((k, t));
        }
    }
    out.sort_by(|a, b| (a.1.created_at, &a.1.id).cmp(&(b.1.created_at, &b.1.id)));
    Ok(out)
}

/// Revokes every token of `project` (when the project is deleted).
pub async fn revoke_all(meta: &dyn MetaStore, project: &str) -> Result<(), ApiError> {
    for (k, _) in all_of(meta, project).await? {
        meta.delete(Bucket::State, &k, Expect::Any).await?;
    }
    Ok(())
}

fn project_exists(s: &AppState, id: &str) -> Result<(), ApiError> {
    if s.catalog.snapshot().projects.contains_key(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("project {id} not found")))
    }
}

pub async fn create(
    State(s): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    project_exists(&s, &project)?;
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let input: TokenIn = if bytes.is_empty() {
        TokenIn::default()
    } else {
        json(&headers, &bytes)?
    };
    let secret = format!(
        "prj_{:016x}{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let token = ProjectToken {
        id: new_id("tok"),
        project,
        name: input.name,
        created_at,
    };
    let value = serde_json::to_vec(&token)
        .map_err(|e| ApiError::bad_request(format!("cannot store the token: {e}")))?;
    s.catalog
        .meta()
        .put(
            Bucket::State,
            &key(&token_digest(&secret)),
            value,
            Expect::Absent,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

pub async fn list(
    State(s): State<AppState>,
    Path(project): Path<String>,
) -> Result<Json<Vec<ProjectToken>>, ApiError> {
    project_exists(&s, &project)?;
    let tokens = all_of(s.catalog.meta().as_ref(), &project).await?;
    Ok(Json(tokens.into_iter().map(|(_, t)| t).collect()))
}

pub async fn revoke(
    State(s): State<AppState>,
    Path((project, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    project_exists(&s, &project)?;
    let meta = s.catalog.meta();
    let found = all_of(meta.as_ref(), &project)
        .await?
        .into_iter()
        .find(|(_, t)| t.id == token_id);
    let Some((k, _)) = found else {
        return Err(ApiError::not_found(format!(
            "token {token_id} of project {project} not found"
        )));
    };
    meta.delete(Bucket::State, &k, Expect::Any).await?;
    Ok(StatusCode::NO_CONTENT)
}
