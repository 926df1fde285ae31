//! `GET /v1/integrations/status` (SPEC §4): every integration's status in one answer, so a
//! dashboard or script watching 10,000 integrations makes one request, not 10,000.
//!
//! Paged in id order with `limit` (1..=1000, default 100) and an opaque `cursor` (the
//! `nextCursor` of the previous page); filterable by `state`, `project` and `q` (text in
//! the id or name, any case). A page holds
//! integrations whose id is after the cursor's, so integrations created or deleted between
//! pages never make another one appear twice or go missing.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use sluice_core::model::Integration;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
pub const STATES: [&str; 5] = ["active", "failing", "paused", "probing", "disabled"];
/// Statuses computed at once (each reads the cursor record and the log's bounds).
const CONCURRENCY: usize = 16;
const CURSOR_PREFIX: &str = "after:";

/// The query of `GET /v1/integrations/status`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    pub limit: usize,
    /// Only integrations whose id sorts after this one.
    pub after: Option<String>,
    pub state: Option<&'static str>,
    pub project: Option<String>,
    /// Lowercase text the id or the name must contain.
    pub text: Option<String>,
}

impl StatusQuery {
    /// Parses the raw query parameters; anything unknown or out of bounds is a 400 naming
    /// the parameter.
    pub fn parse(params: &HashMap<String, String>) -> Result<StatusQuery, ApiError> {
        let mut q = StatusQuery {
            limit: DEFAULT_LIMIT,
            after: None,
            state: None,
            project: None,
            text: None,
        };
        for (k, v) in params {
            match k.as_str() {
                "limit" => {
                    q.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid_field(
                                "limit",
                                format!("must be an integer from 1 to {MAX_LIMIT}"),
                            )
                        })?
                }
                "cursor" => q.after = Some(decode_cursor(v)?),
                "state" => {
                    q.state = Some(STATES.into_iter().find(|s| s == v).ok_or_else(|| {
                        ApiError::invalid_field("state", format!("must be one of {STATES:?}"))
                    })?)
                }
                "project" => q.project = Some(v.clone()),
                "q" => q.text = Some(v.to_lowercase()).filter(|t| !t.is_empty()),
                other => {
                    return Err(ApiError::invalid_field(
                        other,
                        "unknown query parameter (limit, cursor, state, project, q)",
                    ));
                }
            }
        }
        Ok(q)
    }
}

/// The opaque token for "after this id".
pub fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last_id}"))
}

pub fn decode_cursor(token: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid_field("cursor", "not a cursor this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(CURSOR_PREFIX)
        .map(str::to_owned)
        .ok_or_else(bad)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusPage {
    /// Each integration's status (as `GET /v1/integrations/{id}/status`) with its `name`,
    /// `project`, `url` and `environments`.
    pub integrations: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One integration's status with the configuration a list shows beside it.
pub async fn status_with_config(s: &AppState, integ: &Integration) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(s.engine.status(integ).await?).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("name".into(), Value::from(integ.name.clone()));
        obj.insert("project".into(), Value::from(integ.project.clone()));
        obj.insert("url".into(), Value::from(integ.url.clone()));
        obj.insert(
            "environments".into(),
            Value::from(integ.environments.clone()),
        );
    }
    Ok(v)
}

/// Computes one page: candidates in id order after the cursor (and in the project), their
/// statuses a chunk at a time, kept when the state matches, until the page is full.
pub async fn page(s: &AppState, q: &StatusQuery) -> Result<StatusPage, ApiError> {
    let snapshot = s.catalog.snapshot();
    let lower = match &q.after {
        Some(a) => Bound::Excluded(a.clone()),
        None => Bound::Unbounded,
    };
    let candidates: Vec<Arc<Integration>> = snapshot
        .integrations
        .range::<String, _>((lower, Bound::Unbounded))
        .map(|(_, i)| i)
        .filter(|i| q.project.as_ref().is_none_or(|p| &i.project == p))
        .filter(|i| {
            q.text.as_ref().is_none_or(|t| {
                i.id.to_lowercase().contains(t) || i.name.to_lowercase().contains(t)
            })
        })
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut last_scanned = 0usize;
    'chunks: for chunk in candidates.chunks(q.limit) {
        // Owned futures (an Arc each): a stream of borrowing ones is not `Send` for axum.
        let statuses: Vec<Value> = futures_util::stream::iter(chunk.to_vec())
            .map(|i| {
                let s = s.clone();
                async move { status_with_config(&s, &i).await }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        for v in statuses {
            last_scanned += 1;
            if q.state.is_none_or(|st| v["state"] == st) {
                out.push(v);
                if out.len() == q.limit {
                    break 'chunks;
                }
            }
        }
    }
    let more = last_scanned < candidates.len();
    let next_cursor = match out.last() {
        Some(last) if more => last["id"].as_str().map(encode_cursor),
        _ => None,
    };
    Ok(StatusPage {
        integrations: out,
        next_cursor,
    })
}

pub async fn statuses(
    State(s): State<AppState>,
    axum::Extension(scope): axum::Extension<crate::scope::Scope>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StatusPage>, ApiError> {
    let mut q = StatusQuery::parse(&params)?;
    // A project token sees its own project's integrations only.
    if let Some(own) = scope.default_project() {
        match &q.project {
            Some(p) if p != own => {
                return Ok(Json(StatusPage {
                    integrations: Vec::new(),
                    next_cursor: None,
                }));
            }
            _ => q.project = Some(own.to_owned()),
        }
    }
    Ok(Json(page(&s, &q).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_bounds() {
        let q = StatusQuery::parse(&params(&[])).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(q.after, None);
        assert_eq!(
            StatusQuery::parse(&params(&[("limit", "1000")]))
                .unwrap()
                .limit,
            1000
        );
        for bad in ["0", "1001", "-1", "ten", ""] {
            let e = StatusQuery::parse(&params(&[("limit", bad)])).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("limit"), "{bad}");
        }
    }

    #[test]
    fn state_project_and_unknown_parameters() {
        let q = StatusQuery::parse(&params(&[("state", "paused"), ("project", "p1")])).unwrap();
        assert_eq!(q.state, Some("paused"));
        assert_eq!(q.project.as_deref(), Some("p1"));
        let q = StatusQuery::parse(&params(&[("q", "CRM")])).unwrap();
        assert_eq!(q.text.as_deref(), Some("crm"));
        let e = StatusQuery::parse(&params(&[("state", "sleeping")])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("state"));
        let e = StatusQuery::parse(&params(&[("limt", "5")])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limt"));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for id in ["int_1", "a/b c", "é"] {
            assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        }
        for bad in ["", "!!!", "aW50XzE", "____"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
