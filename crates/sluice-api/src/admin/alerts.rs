//! `/v1/alert-destinations` (SPEC §4, operator alerts): where sluice POSTs signed events
//! when an integration is paused, resumes, records a gap, is disabled, or a replay
//! finishes. Delivery is `sluice_delivery::alerts`.
//!
//! Tenants: a project token sees, changes and creates only destinations of its own project
//! (others answer 404 as missing ones do); a destination without a project receives every
//! project's events, so only the admin token can see or make one.

use crate::admin::integrations::check_destination;
use crate::admin::{keep_redacted_secret, merged, new_id, patch_body, same_id};
use crate::body::{json, read_body, strict};
use crate::error::ApiError;
use crate::scope::Scope;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::Value;
use sluice_core::alert::AlertDestination;
use sluice_core::model::REDACTED;
use sluice_delivery::alerts::{AlertError, AlertStatus};

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> ApiError {
        match e {
            AlertError::NotFound(_) => ApiError::not_found(e.to_string()),
            AlertError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            AlertError::TooMany => ApiError::bad_request(e.to_string()),
            AlertError::Store(e) => e.into(),
        }
    }
}

fn visible(scope: &Scope, d: &AlertDestination) -> bool {
    match (scope, &d.project) {
        (Scope::Admin, _) => true,
        (Scope::Project(own), Some(p)) => own == p,
        (Scope::Project(_), None) => false,
    }
}

/// The destination, if this scope may see it (else 404, as a missing one).
async fn find(s: &AppState, scope: &Scope, id: &str) -> Result<AlertDestination, ApiError> {
    match s.engine.alerts().get(id).await {
        Ok(d) if visible(scope, &d) => Ok(d),
        Ok(_) | Err(AlertError::NotFound(_)) => Err(ApiError::not_found(format!(
            "alert destination {id} not found"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Checks a destination before it is stored: shape, scope, project, address.
async fn check(s: &AppState, scope: &Scope, d: &AlertDestination) -> Result<(), ApiError> {
    if d.secret == REDACTED {
        return Err(ApiError::invalid_field("secret", "choose a real secret"));
    }
    d.validate()?;
    match &d.project {
        Some(p) => {
            scope.may_write(p)?;
            if !s.catalog.snapshot().projects.contains_key(p) {
                return Err(ApiError::invalid_field(
                    "project",
                    format!("project {p} does not exist"),
                ));
            }
        }
        None => scope.require_admin(
            "an alert destination without a project (it receives every project's events)",
        )?,
    }
    check_destination(s.engine.policy(), &d.url).await
}

/// The body as an object with `id` set (from the path, the body, or a new one), `project`
/// defaulting to a project token's own, and — for a replacement — the stored secret kept
/// when the body omits it or sends the redacted placeholder.
fn body_object(
    headers: &HeaderMap,
    bytes: &[u8],
    id: Option<&str>,
    scope: &Scope,
    keep_secret: Option<&str>,
) -> Result<Value, ApiError> {
    let mut v: Value = json(headers, bytes)?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("body must be a JSON object"))?;
    match id {
        Some(path) => {
            same_id(path, obj.get("id").and_then(Value::as_str))?;
            obj.insert("id".into(), Value::String(path.to_owned()));
        }
        None => {
            obj.entry("id")
                .or_insert_with(|| Value::String(new_id("alt")));
        }
    }
    if let Some(p) = scope.default_project() {
        obj.entry("project")
            .or_insert_with(|| Value::String(p.to_owned()));
    }
    if let Some(secret) = keep_secret {
        let placeholder = obj.get("secret").is_none_or(|s| s == REDACTED);
        if placeholder {
            obj.insert("secret".into(), Value::String(secret.to_owned()));
        }
    }
    Ok(v)
}

pub async fn list(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Vec<AlertDestination>>, ApiError> {
    let all = s.engine.alerts().list().await?;
    Ok(Json(
        all.iter()
            .filter(|d| visible(&scope, d))
            .map(AlertDestination::redacted)
            .collect(),
    ))
}

pub async fn get(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<AlertDestination>, ApiError> {
    Ok(Json(find(&s, &scope, &id).await?.redacted()))
}

pub async fn status(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<AlertStatus>, ApiError> {
    find(&s, &scope, &id).await?;
    Ok(Json(s.engine.alerts().status(&id).await?))
}

pub async fn create(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AlertDestination>), ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let d: AlertDestination = strict(body_object(&headers, &bytes, None, &scope, None)?)?;
    check(&s, &scope, &d).await?;
    let created = s.engine.alerts().create(d).await?;
    Ok((StatusCode::CREATED, Json(created.redacted())))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AlertDestination>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let existing = find(&s, &scope, &id).await?;
    let v = body_object(&headers, &bytes, Some(&id), &scope, Some(&existing.secret))?;
    let d: AlertDestination = strict(v)?;
    check(&s, &scope, &d).await?;
    Ok(Json(s.engine.alerts().replace(d).await?.redacted()))
}

/// A JSON merge patch over the stored destination (the redacted secret keeps the secret).
pub async fn patch(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AlertDestination>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let mut patch = patch_body(&headers, &bytes)?;
    let existing = find(&s, &scope, &id).await?;
    keep_redacted_secret(&mut patch);
    let d: AlertDestination = strict(merged(&existing, &id, &patch)?)?;
    check(&s, &scope, &d).await?;
    Ok(Json(s.engine.alerts().replace(d).await?.redacted()))
}

/// Deletes the destination and every event still waiting for it.
pub async fn delete(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    find(&s, &scope, &id).await?;
    s.engine.alerts().delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
