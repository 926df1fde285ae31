//! `POST /v1/integrations/bulk`: up to [`MAX_BULK_INTEGRATIONS`] integrations in one request,
//! with one result per item (in request order). Each item is checked exactly as
//! `POST /v1/integrations` checks one (strict body, project scope, validation, destination
//! addresses, free id — also among the earlier items of the same request); the accepted ones
//! get their delivery position and are stored together (group-committed) and published to
//! the delivery engine in one catalog change. An item's refusal never affects another item:
//! the answer is `200` with `created`, `failed` and `results`, where each result carries the
//! `status` the single create would have answered (`201` with the `integration`, or the
//! error's status with `error` and `detail`). Only a body that is not a JSON object with an
//! `integrations` list of 1 to 1000 items is refused as a whole (400 / 413 / 415).

use crate::admin::integrations::{admit, parse_value};
use crate::body::{json, read_body};
use crate::error::ApiError;
use crate::scope::Scope;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::limits::MAX_BULK_INTEGRATIONS;
use sluice_core::model::Integration;
use std::collections::HashSet;

/// Items checked at once (a check may resolve the destination's host name).
const CHECK_CONCURRENCY: usize = 16;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkRequest {
    integrations: Vec<Value>,
}

/// The answer: how many were created and failed, and every item's result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkAnswer {
    pub created: usize,
    pub failed: usize,
    pub results: Vec<ItemResult>,
}

/// One item's result: `201` and the created integration (secret redacted), or the error
/// the single create would have answered.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ItemResult {
    fn created(index: usize, i: Integration) -> ItemResult {
        ItemResult {
            index,
            id: Some(i.id.clone()),
            status: 201,
            integration: Some(i.redacted()),
            error: None,
            detail: None,
            field: None,
        }
    }

    fn failed(index: usize, id: Option<String>, e: ApiError) -> ItemResult {
        ItemResult {
            index,
            id,
            status: e.status.as_u16(),
            integration: None,
            error: Some(e.error),
            detail: Some(e.detail),
            field: e.field,
        }
    }
}

/// The item's `id` as given, for the result of an item that could not be decoded.
fn given_id(v: &Value) -> Option<String> {
    v.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// One item checked as the single create checks it.
async fn check_item(
    s: AppState,
    scope: Scope,
    index: usize,
    v: Value,
) -> (usize, Result<Integration, Box<ItemResult>>) {
    let id = given_id(&v);
    let r = match parse_value(v, None, &scope) {
        Ok(i) => admit(&s, &scope, i).await,
        Err(e) => Err(e),
    };
    (
        index,
        r.map_err(|e| Box::new(ItemResult::failed(index, id, e))),
    )
}

/// Writes the delivery position of a new integration.
async fn position(s: AppState, index: usize, i: Integration) -> (usize, Result<(), ApiError>) {
    (
        index,
        s.engine.prepare_cursor(&i).await.map_err(ApiError::from),
    )
}

pub async fn create_integrations(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BulkAnswer>, ApiError> {
    let bytes = read_body(&headers, body, s.config.limits).await?;
    let req: BulkRequest = json(&headers, &bytes)?;
    let n = req.integrations.len();
    if !(1..=MAX_BULK_INTEGRATIONS).contains(&n) {
        return Err(ApiError::invalid_field(
            "integrations",
            format!("must list 1 to {MAX_BULK_INTEGRATIONS} items (got {n})"),
        ));
    }
    // Each item as the single create checks it, in order.
    let checked: Vec<(usize, Result<Integration, Box<ItemResult>>)> =
        futures_util::stream::iter(req.integrations.into_iter().enumerate())
            .map(|(index, v)| check_item(s.clone(), scope.clone(), index, v))
            .buffered(CHECK_CONCURRENCY)
            .collect()
            .await;
    // Against the catalog (free id, project, environments) before positions are written.
    let mut items: Vec<Result<Integration, Box<ItemResult>>> = checked
        .into_iter()
        .map(|(index, r)| {
            r.and_then(|i| match s.catalog.check_new_integration(&i) {
                Ok(()) => Ok(i),
                Err(e) => Err(Box::new(ItemResult::failed(
                    index,
                    Some(i.id.clone()),
                    e.into(),
                ))),
            })
        })
        .collect();
    // Position first, so each receives every impression from the moment it exists (as the
    // single create does). An id repeated in the request is positioned once; the catalog
    // creates it once and refuses the repeat.
    let mut seen = HashSet::new();
    let to_position: Vec<(usize, Integration)> = items
        .iter()
        .enumerate()
        .filter_map(|(index, r)| r.as_ref().ok().map(|i| (index, i)))
        .filter(|(_, i)| seen.insert(i.id.as_str()))
        .map(|(index, i)| (index, i.clone()))
        .collect();
    let positioned: Vec<(usize, Result<(), ApiError>)> = futures_util::stream::iter(
        to_position
            .into_iter()
            .map(|(index, i)| position(s.clone(), index, i)),
    )
    .buffer_unordered(CHECK_CONCURRENCY * 4)
    .collect()
    .await;
    let unpositioned = positioned
        .into_iter()
        .filter_map(|(index, r)| r.err().map(|e| (index, e)));
    for (index, e) in unpositioned {
        let id = items[index].as_ref().ok().map(|i| i.id.clone());
        items[index] = Err(Box::new(ItemResult::failed(index, id, e)));
    }
    // Store the rest together; one result per item, in order.
    let mut results: Vec<Option<ItemResult>> = Vec::with_capacity(n);
    let (mut indices, mut to_store) = (Vec::new(), Vec::new());
    for (index, r) in items.into_iter().enumerate() {
        match r {
            Ok(i) => {
                indices.push((index, i.id.clone()));
                to_store.push(i);
                results.push(None);
            }
            Err(e) => results.push(Some(*e)),
        }
    }
    let stored = s.catalog.create_integrations(to_store).await;
    for ((index, id), r) in indices.into_iter().zip(stored) {
        results[index] = Some(match r {
            Ok(i) => ItemResult::created(index, i),
            Err(e) => ItemResult::failed(index, Some(id), e.into()),
        });
    }
    let results: Vec<ItemResult> = results.into_iter().flatten().collect();
    let created = results.iter().filter(|r| r.status == 201).count();
    Ok(Json(BulkAnswer {
        created,
        failed: n - created,
        results,
    }))
}
