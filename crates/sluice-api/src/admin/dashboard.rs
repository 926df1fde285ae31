//! The dashboard's own admin routes (everything else it shows comes from the public admin
//! API): `GET /v1/dashboard/overview` (integrations per state, total lag, environments
//! with masked SDK keys and their stored impressions) and
//! `GET /v1/integrations/{id}/history` (the last hour of lag and delivered samples).

use crate::admin::fleet;
use crate::error::ApiError;
use crate::history::{self, FleetSummary, INTERVAL, Sample};
use crate::scope::Scope;
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use sluice_core::model::Integration;
use std::sync::Arc;

/// Fleets up to this size are counted on every overview request; larger ones show the
/// sampler's last round (at most [`INTERVAL`] old).
pub const LIVE_SUMMARY_LIMIT: usize = 1000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSummary {
    pub id: String,
    pub name: String,
    pub project: String,
    /// Each key with all but its first and last few characters hidden.
    pub sdk_keys: Vec<String>,
    /// Impressions stored since the environment was created (its log's end offset); the
    /// dashboard turns two of these into an ingest rate.
    pub impressions: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// ms since the epoch.
    pub now: i64,
    pub summary: FleetSummary,
    /// True when `summary` was counted for this answer (else it is the sampler's).
    pub live: bool,
    pub environments: Vec<EnvironmentSummary>,
}

/// `sdk-1234567890abcd` → `sdk-…abcd`: the first and last four characters of a key of 16
/// or more, the last four of one of 8 or more, the last two of a shorter one.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let tail = |n: usize| -> String { chars[chars.len().saturating_sub(n)..].iter().collect() };
    match chars.len() {
        16.. => format!("{}…{}", chars[..4].iter().collect::<String>(), tail(4)),
        8.. => format!("…{}", tail(4)),
        _ => format!("…{}", tail(2)),
    }
}

/// The summary counted now with each integration's state as its owner reports it (in a
/// cluster; see [`fleet::merge_chunk`]). An integration whose status cannot be had is left
/// out, as in the sampler's rounds.
async fn owners_summary(
    s: &AppState,
    scope: &Scope,
    owners: fleet::Owners<'_>,
) -> Result<FleetSummary, ApiError> {
    let visible: Vec<Arc<Integration>> = s
        .catalog
        .snapshot()
        .integrations
        .values()
        .filter(|i| scope.sees(&i.project))
        .cloned()
        .collect();
    let mut summary = FleetSummary::new(history::now_ms());
    for chunk in visible.chunks(fleet::MAX_LIMIT) {
        let statuses = fleet::merge_chunk(chunk, Some(owners), |i| {
            let s = s.clone();
            async move { Ok(fleet::status_with_config(&s, &i).await.unwrap_or_default()) }
        })
        .await?;
        for v in statuses.iter().filter(|v| !v.is_null()) {
            summary.add(
                v["state"].as_str().unwrap_or_default(),
                v["lagImpressions"].as_u64().unwrap_or(0),
                v["lagSeconds"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(summary)
}

/// A project token sees its own project's integrations and environments only (counted
/// live, never from the fleet-wide sample). Counted live, a cluster's states are their
/// owners'; the sampler's (larger fleets) are this node's view: the owners' for the
/// integrations it delivers, the store's for the others.
pub async fn overview(
    State(s): State<AppState>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
) -> Result<Json<Overview>, ApiError> {
    let snapshot = s.catalog.snapshot();
    let cached = match scope {
        Scope::Admin if snapshot.integrations.len() > LIVE_SUMMARY_LIMIT => s.history.summary(),
        _ => None,
    };
    let (summary, live) = match (cached, fleet::owners(&s, &headers)) {
        (Some(c), _) => (c, false),
        (None, Some(o)) => (owners_summary(&s, &scope, o).await?, true),
        (None, None) => (history::sample_round(&s, |p| scope.sees(p)).await.1, true),
    };
    let mut environments = Vec::with_capacity(snapshot.environments.len());
    for env in snapshot.environments.values() {
        if !scope.sees(&env.project) {
            continue;
        }
        environments.push(EnvironmentSummary {
            id: env.id.clone(),
            name: env.name.clone(),
            project: env.project.clone(),
            sdk_keys: env.sdk_keys.iter().map(|k| mask_key(k)).collect(),
            impressions: s.log.bounds(&env.id).await?.next,
        });
    }
    Ok(Json(Overview {
        now: history::now_ms(),
        summary,
        live,
        environments,
    }))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryAnswer {
    pub interval_ms: u64,
    /// False when the integration is beyond the sampler's bound (or newer than its last
    /// round): the dashboard then charts from when the page opened.
    pub tracked: bool,
    pub samples: Vec<Sample>,
}

pub async fn integration_history(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    if !s.catalog.snapshot().integrations.contains_key(&id) {
        return Err(ApiError::not_found(format!("integration {id} not found")));
    }
    let samples = s.history.samples(&id);
    Ok(Json(HistoryAnswer {
        interval_ms: INTERVAL.as_millis() as u64,
        tracked: samples.is_some(),
        samples: samples.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::mask_key;

    #[test]
    fn keys_are_masked() {
        assert_eq!(mask_key("sdk-key-test-0001"), "sdk-…0001");
        assert_eq!(mask_key("abc"), "…bc");
        assert_eq!(mask_key("abcdefghij"), "…ghij");
        assert_eq!(mask_key("x"), "…x");
        assert_eq!(mask_key(""), "…");
        assert!(!mask_key("0123456789abcdef").contains("456789ab"));
    }
}
