//! Authentication: the admin bearer token, and SDK keys → environment.
//! Secrets are compared in constant time (admin token) or looked up by digest (SDK
//! keys), and never logged.

use crate::admin::tokens;
use crate::error::ApiError;
use crate::scope::{self, Scope};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use sluice_core::model::Environment;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Middleware for admin routes: the admin token, or a project token (which also puts its
/// [`Scope`] in the request's extensions and passes [`scope::guard`]).
pub async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // The client's address, when the server was started with connect info (sluice serve
    // always is); without it there is nothing to count failures against.
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(ip) = client
        && let Err(wait) = state.auth_failures.check(ip, now)
    {
        return Err(ApiError::too_many_auth_failures(wait));
    }
    let Some(token) = bearer(req.headers()) else {
        return Err(ApiError::unauthorized(
            "admin routes need Authorization: Bearer <admin token or project token>",
        ));
    };
    let digest = token_digest(token);
    let is_admin: bool = digest.ct_eq(&state.config.admin_token_digest).into();
    let scope = if is_admin {
        Scope::Admin
    } else {
        match tokens::lookup(state.catalog.meta().as_ref(), &digest).await? {
            Some(t) => Scope::Project(t.project),
            None => {
                // A wrong token is a guess; a missing one is not, and is not counted.
                if let Some(ip) = client {
                    state.auth_failures.failed(ip, now);
                }
                return Err(ApiError::unauthorized(
                    "neither the admin token nor a live project token",
                ));
            }
        }
    };
    scope::guard(
        &scope,
        req.method(),
        req.uri().path(),
        &state.catalog.snapshot(),
    )?;
    let mut req = req;
    req.extensions_mut().insert(scope);
    Ok(next.run(req).await)
}

/// The environment of the request's SDK key.
pub fn sdk_environment(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Arc<Environment>, ApiError> {
    let Some(key) = bearer(headers) else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <sdk key>",
        ));
    };
    state
        .catalog
        .snapshot()
        .environment_for_key(key)
        .cloned()
        .ok_or_else(|| ApiError::unauthorized("unknown SDK key"))
}
