//! `/v1/integrations` and the per-integration operations (status, attempts, pause,
//! resume, gaps, test).

use crate::admin::{keep_redacted_secret, merged, new_id, patch_body, same_id};
use crate::body::{json, read_body, strict};
use crate::error::ApiError;
use crate::scope::Scope;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::{Value, json as j};
use sluice_core::address::AddressPolicy;
use sluice_core::model::{Integration, REDACTED};
use std::sync::Arc;
use std::time::Duration;

fn find(s: &AppState, id: &str) -> Result<Arc<Integration>, ApiError> {
    s.catalog
        .snapshot()
        .integrations
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("integration {id} not found")))
}

/// Configuration-time destination check (SPEC §6): scheme, IP literals, and every
/// address the host resolves to now. (Connect time checks again, after DNS.)
pub(crate) async fn check_destination(policy: &AddressPolicy, url: &str) -> Result<(), ApiError> {
    let invalid =
        |d: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid", format!("url: {d}"));
    let host = policy.check_url(url).map_err(|e| invalid(e.to_string()))?;
    if let Some(host) = host
        && !policy.allow_private
    {
        let port = url::Url::parse(url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(443);
        // A name that does not resolve now is accepted (it may later); connect time still
        // refuses any non-public address it resolves to.
        if let Ok(Ok(addrs)) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        {
            for a in addrs {
                policy
                    .check(a.ip())
                    .map_err(|e| invalid(format!("{host} resolves to {}: {e}", a.ip())))?;
            }
        }
    }
    Ok(())
}

/// Refuses an integration outside the request's project, or one naming another project's
/// environment — which a project token is told does not exist, as if it did not.
fn in_scope(s: &AppState, scope: &Scope, integ: &Integration) -> Result<(), ApiError> {
    scope.may_write(&integ.project)?;
    let snap = s.catalog.snapshot();
    for e in &integ.environments {
        if let Some(env) = snap.environments.get(e)
            && !scope.sees(&env.project)
        {
            return Err(ApiError::invalid_field(
                "environments",
                format!("environment {e} does not exist"),
            ));
        }
    }
    Ok(())
}

/// An integration from a POST or PUT body; `id` comes from the path (PUT), the body, or
/// is generated (POST).
fn parse(
    headers: &HeaderMap,
    bytes: &[u8],
    id: Option<String>,
    scope: &Scope,
) -> Result<Integration, ApiError> {
    parse_value(json(headers, bytes)?, id, scope)
}

/// An integration from a decoded JSON body (see [`parse`]).
pub(crate) fn parse_value(
    mut v: Value,
    id: Option<String>,
    scope: &Scope,
) -> Result<Integration, ApiError> {
    let obj = v
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("body must be a JSON object"))?;
    match id {
        Some(path) => {
            same_id(&path, obj.get("id").and_then(Value::as_str))?;
            obj.insert("id".into(), Value::String(path));
        }
        None => {
            obj.entry("id")
                .or_insert_with(|| Value::String(new_id("int")));
        }
    }
    if let Some(p) = scope.default_project()
        && let Some(obj) = v.as_object_mut()
    {
        obj.entry("project")
            .or_insert_with(|| Value::String(p.to_owned()));
    }
    strict(v)
}

pub async fn list(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
) -> Json<Vec<Integration>> {
    Json(
        s.catalog
            .snapshot()
            .integrations
            .values()
            .filter(|i| scope.sees(&i.project))
            .map(|i| i.redacted())
            .collect(),
    )
}

pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Integration>, ApiError> {
    Ok(Json(find(&s, &id)?.redacted()))
}

/// The checks of a new integration before it is stored: a real secret (not the redacted
/// placeholder), the request's project scope, its own rules, and its destination.
pub(crate) async fn admit(
    s: &AppState,
    scope: &Scope,
    integ: Integration,
) -> Result<Integration, ApiError> {
    if integ.secret.as_deref() == Some(REDACTED) {
        return Err(ApiError::invalid_field("secret", "choose a real secret"));
    }
    in_scope(s, scope, &integ)?;
    integ.validate()?;
    check_destination(s.engine.policy(), &integ.url).await?;
    Ok(integ)
}

pub async fn create(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Integration>), ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let integ = admit(&s, &scope, parse(&headers, &bytes, None, &scope)?).await?;
    if s.catalog.snapshot().integrations.contains_key(&integ.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("integration {} already exists", integ.id),
        ));
    }
    // Position first, so it receives every impression from the moment it exists.
    s.engine.prepare_cursor(&integ).await?;
    let created = s.catalog.create_integration(integ).await?;
    Ok((StatusCode::CREATED, Json(created.redacted())))
}

/// Stores `integ` in place of the existing integration (validated as on create).
async fn replace(
    s: &AppState,
    scope: &Scope,
    integ: Integration,
) -> Result<Json<Integration>, ApiError> {
    in_scope(s, scope, &integ)?;
    integ.validate()?;
    check_destination(s.engine.policy(), &integ.url).await?;
    s.engine.prepare_cursor(&integ).await?;
    Ok(Json(s.catalog.update_integration(integ).await?.redacted()))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Integration>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let existing = find(&s, &id)?;
    let mut integ = parse(&headers, &bytes, Some(id), &scope)?;
    // The redacted placeholder (as GET shows it) keeps the stored secret; so does omitting
    // it. `"secret": null` removes it.
    let raw: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match raw.get("secret") {
        None => integ.secret = existing.secret.clone(),
        Some(Value::String(s)) if s == REDACTED => integ.secret = existing.secret.clone(),
        _ => {}
    }
    replace(&s, &scope, integ).await
}

/// `PATCH /v1/integrations/{id}`: a JSON merge patch over the stored integration
/// (`headers` and `protection` merge member by member; the redacted secret placeholder
/// keeps the secret, `"secret": null` removes it).
pub async fn patch(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Integration>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let mut patch = patch_body(&headers, &bytes)?;
    let existing = find(&s, &id)?;
    keep_redacted_secret(&mut patch);
    let integ: Integration = strict(merged(existing.as_ref(), &id, &patch)?)?;
    replace(&s, &scope, integ).await
}

pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.catalog.delete_integration(&id).await?;
    s.engine.forget(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let integ = find(&s, &id)?;
    Ok(Json(
        serde_json::to_value(s.engine.status(&integ).await?).unwrap_or_default(),
    ))
}

pub async fn attempts(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&s, &id)?;
    Ok(Json(j!({ "attempts": s.engine.attempts(&id) })))
}

pub async fn gaps(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&s, &id)?;
    Ok(Json(j!({ "gaps": s.engine.gaps(&id).await? })))
}

pub async fn pause(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let integ = find(&s, &id)?;
    s.engine.pause(&integ).await?;
    status(State(s), Path(id)).await
}

pub async fn resume(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let integ = find(&s, &id)?;
    s.engine.resume(&integ).await?;
    status(State(s), Path(id)).await
}

pub async fn test(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let integ = find(&s, &id)?;
    Ok(Json(
        serde_json::to_value(s.engine.test_send(&integ).await).unwrap_or_default(),
    ))
}

/// `POST /v1/integrations/{id}/replay` — `{from, to}` (ms, impression time) or `{gapId}`;
/// answers 202 with the job, whose progress `GET …/replays/{job}` shows.
pub async fn replay(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use sluice_delivery::{ReplayError, ReplayRequest};
    let integ = find(&s, &id)?;
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let req: ReplayRequest = json(&headers, &bytes)?;
    let job = s
        .engine
        .start_replay(integ, req)
        .await
        .map_err(|e| match e {
            ReplayError::Invalid(d) => ApiError::bad_request(d),
            ReplayError::NotFound(d) => ApiError::not_found(d),
            ReplayError::Conflict(d) => ApiError::new(StatusCode::CONFLICT, "conflict", d),
            ReplayError::Gone(d) => ApiError::new(StatusCode::GONE, "past retention", d),
            ReplayError::Store(e) => e.into(),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::to_value(job).unwrap_or_default()),
    ))
}

pub async fn replays(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&s, &id)?;
    Ok(Json(j!({ "replays": s.engine.replays(&id).await? })))
}

pub async fn replay_job(
    State(s): State<AppState>,
    Path((id, job)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    find(&s, &id)?;
    let jobs = s.engine.replays(&id).await?;
    let j = jobs
        .into_iter()
        .find(|j| j.id == job)
        .ok_or_else(|| ApiError::not_found(format!("replay {job} not found")))?;
    Ok(Json(serde_json::to_value(j).unwrap_or_default()))
}
