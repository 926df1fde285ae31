//! Admin API (SPEC §4): projects, environments, integrations, and integration operations.
//! Every route here sits behind [`crate::auth::require_admin`].
//!
//! Bodies are decoded strictly ([`crate::body::json`]): an unknown field is a 400 naming
//! it. `PUT` replaces an object; `PATCH` applies a JSON merge patch (RFC 7396) to the
//! stored object and then validates the result exactly as `PUT` would.

pub mod alerts;
pub mod bulk;
pub mod dashboard;
pub mod environments;
pub mod fleet;
pub mod integrations;
pub mod projects;
pub mod tokens;

use crate::body::require_json;
use crate::error::ApiError;
use axum::http::HeaderMap;
use serde_json::Value;

/// A fresh identifier: `prefix` + 12 random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Refuses a body whose `id` differs from the path's.
pub fn same_id(path_id: &str, body_id: Option<&str>) -> Result<(), ApiError> {
    match body_id {
        Some(b) if b != path_id => Err(ApiError::invalid_field(
            "id",
            "differs from the id in the path (ids cannot change)",
        )),
        _ => Ok(()),
    }
}

/// Reads a merge-patch body (`application/merge-patch+json` or `application/json`): a JSON
/// object.
pub fn patch_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    require_json(headers)?;
    let patch: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    Ok(patch)
}

/// Drops `"secret": "<redacted placeholder>"` from a merge patch: a client that sends back what
/// a GET showed keeps the stored secret (integrations and alert destinations alike).
pub fn keep_redacted_secret(patch: &mut Value) {
    if patch.get("secret").and_then(Value::as_str) == Some(sluice_core::model::REDACTED)
        && let Some(obj) = patch.as_object_mut()
    {
        obj.remove("secret");
    }
}

/// `current` with `patch` merged in (RFC 7396: `null` removes a member, objects merge,
/// anything else replaces). The patch may repeat the id but not change it.
/// (`current` is an object, so indexing the result by `"id"` cannot panic.)
pub fn merged<T: serde::Serialize>(
    current: &T,
    id: &str,
    patch: &Value,
) -> Result<Value, ApiError> {
    same_id(id, patch.get("id").and_then(Value::as_str))?;
    if patch.get("id").is_some_and(|v| !v.is_string()) {
        return Err(ApiError::invalid_field("id", "must be a string"));
    }
    let mut doc = serde_json::to_value(current)
        .map_err(|e| ApiError::bad_request(format!("cannot patch this object: {e}")))?;
    json_patch::merge(&mut doc, patch);
    doc["id"] = Value::String(id.to_owned());
    Ok(doc)
}
