//! Ingest routes (SPEC §2): the Split/Harness SDK wire protocol under `/api` and the
//! native `POST /v1/impressions`. A 200 is answered only after the log says the
//! impressions are durable; a rejected request stores nothing.

use crate::auth::sdk_environment;
use crate::body::{media_type, read_body, require_json};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use sluice_core::impression::{Context, ImpressionIn, machine_header, split_sdk_version};
use sluice_core::limits::MAX_HEADER_FIELD_BYTES;
use sluice_core::model::Environment;
use sluice_core::native_wire::{self, NativeExtras};
use sluice_core::record::encode_entry;
use sluice_core::split_wire;
use std::borrow::Cow;
use std::time::Instant;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| {
        let mut end = v.len().min(MAX_HEADER_FIELD_BYTES);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        &v[..end]
    })
}

/// The request-level context from the SDK headers.
fn context<'a>(env: &'a Environment, headers: &'a HeaderMap) -> Context<'a> {
    let (sdk, version) = split_sdk_version(header(headers, "splitsdkversion").unwrap_or("unknown"));
    Context {
        environment_name: Cow::Borrowed(&env.name),
        sdk: Cow::Borrowed(sdk),
        sdk_version: Cow::Borrowed(version),
        machine_name: machine_header(header(headers, "splitsdkmachinename")).map(Cow::Borrowed),
        machine_ip: machine_header(header(headers, "splitsdkmachineip")).map(Cow::Borrowed),
    }
}

async fn store(
    state: &AppState,
    env: &Environment,
    contexts: &[Context<'_>],
    imps: &[(usize, &ImpressionIn<'_>)],
) -> Result<Json<Value>, ApiError> {
    let n = imps.len();
    if n == 0 {
        return Ok(Json(json!({ "stored": 0 })));
    }
    state
        .rate
        .take(&env.id, n, Instant::now())
        .map_err(|secs| {
            ApiError::rate_limited(
                format!("environment {} is over its ingest rate limit", env.id),
                secs,
            )
        })?;
    let entry = encode_entry(contexts, imps.iter().copied());
    state.log.append(&env.id, entry.into()).await?;
    metrics::counter!("sluice_ingested_impressions_total").increment(n as u64);
    Ok(Json(json!({ "stored": n })))
}

/// `POST /api/testImpressions/bulk`
pub async fn split_bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let env = sdk_environment(&state, &headers)?;
    require_json(&headers)?;
    let bytes = read_body(&headers, body, state.config.limits).await?;
    let imps = split_wire::decode_bulk(&bytes)?;
    let ctx = [context(&env, &headers)];
    let items: Vec<(usize, &ImpressionIn<'_>)> = imps.iter().map(|i| (0, i)).collect();
    store(&state, &env, &ctx, &items).await
}

/// `POST /api/testImpressions/count` — accepted and counted in metrics.
pub async fn split_count(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    sdk_environment(&state, &headers)?;
    let bytes = read_body(&headers, body, state.config.limits).await?;
    let n = split_wire::decode_counts(&bytes)?;
    metrics::counter!("sluice_impression_counts_total").increment(n);
    Ok(Json(json!({ "counted": n })))
}

/// Events, keys and telemetry: accepted (the SDK must work without errors), not stored.
pub async fn split_accept(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    sdk_environment(&state, &headers)?;
    let bytes = read_body(&headers, body, state.config.limits).await?;
    if !bytes.is_empty() {
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    }
    metrics::counter!("sluice_sdk_other_requests_total").increment(1);
    Ok(Json(json!({})))
}

/// `POST /v1/impressions` — a JSON array or NDJSON of impressions in the outgoing form.
pub async fn native(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let env = sdk_environment(&state, &headers)?;
    let ndjson = match media_type(&headers).as_deref() {
        Some("application/x-ndjson") | Some("application/ndjson") | Some("application/jsonl") => {
            true
        }
        None | Some("application/json") => false,
        Some(t) => {
            return Err(ApiError::unsupported_type(format!(
                "Content-Type {t} is not accepted; send application/json or application/x-ndjson"
            )));
        }
    };
    let bytes = read_body(&headers, body, state.config.limits).await?;
    let decoded = if ndjson {
        native_wire::decode_ndjson(&bytes)?
    } else {
        native_wire::decode_array(&bytes)?
    };
    // Contexts: the header defaults, overridden per impression by body fields.
    let base = context(&env, &headers);
    let mut contexts: Vec<Context<'_>> = vec![base.clone()];
    let mut items = Vec::with_capacity(decoded.len());
    for (imp, extras) in &decoded {
        let idx = if extras == &NativeExtras::default() {
            0
        } else {
            let c = Context {
                environment_name: base.environment_name.clone(),
                sdk: extras.sdk.clone().unwrap_or_else(|| base.sdk.clone()),
                sdk_version: extras
                    .sdk_version
                    .clone()
                    .unwrap_or_else(|| base.sdk_version.clone()),
                machine_name: match &extras.machine_name {
                    Some(m) => machine_header(Some(m)).map(|s| Cow::Owned(s.to_owned())),
                    None => base.machine_name.clone(),
                },
                machine_ip: match &extras.machine_ip {
                    Some(m) => machine_header(Some(m)).map(|s| Cow::Owned(s.to_owned())),
                    None => base.machine_ip.clone(),
                },
            };
            if [&c.sdk, &c.sdk_version]
                .iter()
                .any(|s| s.len() > MAX_HEADER_FIELD_BYTES)
            {
                return Err(ApiError::bad_request(
                    "sdk / sdkVersion longer than 256 bytes",
                ));
            }
            match contexts.iter().position(|x| *x == c) {
                Some(i) => i,
                None if contexts.len() < 1024 => {
                    contexts.push(c);
                    contexts.len() - 1
                }
                None => {
                    return Err(ApiError::bad_request(
                        "too many distinct sdk/machine combinations in one request",
                    ));
                }
            }
        };
        items.push((idx, imp));
    }
    store(&state, &env, &contexts, &items).await
}
