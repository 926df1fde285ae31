//! `GET /v1/integrations/status` (SPEC §4): every integration's status in one answer, so a
//! dashboard or script watching 10,000 integrations makes one request, not 10,000.
//!
//! Paged in id order with `limit` (1..=1000, default 100) and an opaque `cursor` (the
//! `nextCursor` of the previous page); filterable by `state`, `project` and `q` (text in
//! the id or name, any case). A page holds
//! integrations whose id is after the cursor's, so integrations created or deleted between
//! pages never make another one appear twice or go missing.
//!
//! In a cluster (SPEC §7) each integration's status is the one its owner reports: a chunk's
//! integrations delivered here are computed here, the others are asked of their owners —
//! one request per owner node per chunk, `ids=` listing them, with [`FORWARDED`] and the
//! caller's `Authorization` — and `state` filters those answers. An owner that cannot be
//! reached (it just died; its successor has not settled) is answered for from the store
//! (see [`sluice_delivery::DeliveryEngine::status`]).

use crate::error::ApiError;
use crate::peers::{FORWARDED, PeerStatus};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use sluice_core::model::Integration;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
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
    /// Only these integrations (`ids=a,b,c`, at most [`MAX_LIMIT`]): what a node asks an
    /// integration's owner for.
    pub ids: Option<BTreeSet<String>>,
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
            ids: None,
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
                "ids" => {
                    let ids: BTreeSet<String> = v
                        .split(',')
                        .filter(|id| !id.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if ids.is_empty() || ids.len() > MAX_LIMIT {
                        return Err(ApiError::invalid_field(
                            "ids",
                            format!("must list 1 to {MAX_LIMIT} integration ids, comma-separated"),
                        ));
                    }
                    q.ids = Some(ids);
                }
                other => {
                    return Err(ApiError::invalid_field(
                        other,
                        "unknown query parameter (limit, cursor, state, project, q, ids)",
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

/// Who answers for the integrations another node delivers.
#[derive(Clone, Copy)]
pub struct Owners<'a> {
    pub peers: &'a dyn PeerStatus,
    /// The caller's, sent along (the owner checks it as any caller's).
    pub authorization: Option<&'a HeaderValue>,
}

/// Whom to ask for a request with these headers: the cluster's owners, unless this node
/// is alone or was itself asked by another (then it answers from here, never asks on).
pub fn owners<'a>(s: &'a AppState, headers: &'a HeaderMap) -> Option<Owners<'a>> {
    match s.peers.get() {
        Some(p) if !headers.contains_key(FORWARDED) => Some(Owners {
            peers: p.as_ref(),
            authorization: headers.get(header::AUTHORIZATION),
        }),
        _ => None,
    }
}

/// The statuses of `chunk`, in its order: those whose owner is another node asked of it,
/// all of one owner's in one request (owners asked at once); the others — and any an owner
/// could not be asked for or left out — from `local`.
pub async fn merge_chunk<L, F>(
    chunk: &[Arc<Integration>],
    owners: Option<Owners<'_>>,
    local: L,
) -> Result<Vec<Value>, ApiError>
where
    L: Fn(Arc<Integration>) -> F,
    F: Future<Output = Result<Value, ApiError>>,
{
    let mut answers: Vec<Option<Value>> = vec![None; chunk.len()];
    if let Some(o) = owners {
        let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for integ in chunk {
            if let Some(owner) = o.peers.remote_owner(&integ.id) {
                by_owner.entry(owner).or_default().push(integ.id.clone());
            }
        }
        let position: HashMap<&str, usize> = chunk
            .iter()
            .enumerate()
            .map(|(n, i)| (i.id.as_str(), n))
            .collect();
        let asked =
            futures_util::future::join_all(by_owner.iter().map(|(owner, ids)| async move {
                (
                    owner,
                    ids,
                    o.peers.statuses(owner, ids, o.authorization).await,
                )
            }))
            .await;
        for (owner, ids, answer) in asked {
            match answer {
                Ok(values) => {
                    let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
                    for v in values {
                        // Only what was asked of this owner.
                        let slot = v["id"]
                            .as_str()
                            .filter(|id| asked.contains(id))
                            .and_then(|id| position.get(id).copied());
                        if let Some(n) = slot {
                            answers[n] = Some(v);
                        }
                    }
                }
                Err(e) => tracing::debug!(
                    owner = %owner,
                    error = %e,
                    "cannot ask the owner for statuses; answering from the store"
                ),
            }
        }
    }
    let missing: Vec<usize> = (0..chunk.len()).filter(|n| answers[*n].is_none()).collect();
    let computed: Vec<Value> =
        futures_util::stream::iter(missing.clone().into_iter().map(|n| local(chunk[n].clone())))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
    for (n, v) in missing.into_iter().zip(computed) {
        answers[n] = Some(v);
    }
    Ok(answers.into_iter().flatten().collect())
}

/// Computes one page: candidates in id order after the cursor (and in the project), their
/// statuses a chunk at a time (each from its owner, see [`merge_chunk`]), kept when the
/// state matches, until the page is full.
pub async fn page(
    s: &AppState,
    q: &StatusQuery,
    owners: Option<Owners<'_>>,
) -> Result<StatusPage, ApiError> {
    let snapshot = s.catalog.snapshot();
    let lower = match &q.after {
        Some(a) => Bound::Excluded(a.clone()),
        None => Bound::Unbounded,
    };
    let candidates: Vec<Arc<Integration>> = snapshot
        .integrations
        .range::<String, _>((lower, Bound::Unbounded))
        .map(|(_, i)| i)
        .filter(|i| q.ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
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
        let statuses = merge_chunk(chunk, owners, |i| {
            let s = s.clone();
            async move { status_with_config(&s, &i).await }
        })
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
    headers: HeaderMap,
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
    Ok(Json(page(&s, &q, owners(&s, &headers)).await?))
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
    fn ids_are_a_bounded_list() {
        let q = StatusQuery::parse(&params(&[("ids", "i1,i2,,i1")])).unwrap();
        let ids: Vec<&str> = q.ids.iter().flatten().map(String::as_str).collect();
        assert_eq!(ids, ["i1", "i2"]);
        let many = (0..=MAX_LIMIT).map(|n| format!("i{n}")).collect::<Vec<_>>();
        for bad in ["", ",", many.join(",").as_str()] {
            let e = StatusQuery::parse(&params(&[("ids", bad)])).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("ids"));
        }
    }

    /// Owners as a fake cluster: `i2`, `i4` are node-b's (it reports them paused, and
    /// also an integration it was not asked for), `i5` is node-c's (unreachable).
    /// A request made: owner, ids, `Authorization`.
    type Asked = (String, Vec<String>, Option<String>);

    struct FakePeers {
        asked: std::sync::Mutex<Vec<Asked>>,
    }

    impl PeerStatus for FakePeers {
        fn remote_owner(&self, id: &str) -> Option<String> {
            match id {
                "i2" | "i4" => Some("node-b".into()),
                "i5" => Some("node-c".into()),
                _ => None,
            }
        }

        fn statuses<'a>(
            &'a self,
            owner: &'a str,
            ids: &'a [String],
            authorization: Option<&'a HeaderValue>,
        ) -> futures_util::future::BoxFuture<'a, Result<Vec<Value>, crate::peers::PeerError>>
        {
            self.asked.lock().unwrap().push((
                owner.to_owned(),
                ids.to_vec(),
                authorization.map(|a| a.to_str().unwrap().to_owned()),
            ));
            Box::pin(async move {
                if owner == "node-c" {
                    return Err(crate::peers::PeerError("connection refused".into()));
                }
                let mut out: Vec<Value> = ids
                    .iter()
                    .map(|id| serde_json::json!({"id": id, "state": "paused", "by": owner}))
                    .collect();
                out.push(serde_json::json!({"id": "i1", "state": "paused", "by": owner}));
                Ok(out)
            })
        }
    }

    async fn state_with(ids: &[&str]) -> AppState {
        use sluice_store::memory::{MemoryLog, MemoryMeta};
        let catalog = Arc::new(
            sluice_store::Catalog::load(Arc::new(MemoryMeta::new()))
                .await
                .unwrap(),
        );
        catalog
            .create_environment(
                serde_json::from_value(serde_json::json!({"id": "e1", "name": "e1"})).unwrap(),
            )
            .await
            .unwrap();
        for id in ids {
            let integ = serde_json::from_value(serde_json::json!({
                "id": id, "name": id, "url": "http://127.0.0.1:9/hook",
                "environments": ["e1"], "format": "json", "gzip": false,
            }))
            .unwrap();
            catalog.create_integration(integ).await.unwrap();
        }
        let log: Arc<dyn sluice_store::ImpressionLog> = Arc::new(MemoryLog::new());
        let engine = sluice_delivery::DeliveryEngine::new(
            catalog.clone(),
            log.clone(),
            sluice_delivery::EngineOptions::default(),
        );
        crate::Inner::new(
            catalog,
            log,
            engine,
            crate::ApiConfig {
                admin_token_digest: [0; 32],
                limits: crate::body::BodyLimits::default(),
                ingest_rate_per_env: None,
                auth_failures_per_minute: 0,
                per_integration_metrics: false,
            },
            None,
        )
    }

    fn summary(p: &StatusPage) -> Vec<(String, String, String)> {
        p.integrations
            .iter()
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap_or("here").to_owned();
                (s("id"), s("state"), s("by"))
            })
            .collect()
    }

    /// Each integration's status is its owner's: one request per owner node per chunk, the
    /// caller's `Authorization` along; an unreachable owner's are answered here; an answer
    /// for an integration not asked of that owner is ignored; `state` filters the owners'
    /// answers.
    #[tokio::test]
    async fn statuses_are_their_owners_merged_in_id_order() {
        let s = state_with(&["i1", "i2", "i3", "i4", "i5"]).await;
        let peers = FakePeers {
            asked: std::sync::Mutex::new(Vec::new()),
        };
        let auth = HeaderValue::from_static("Bearer t");
        let owners = Some(Owners {
            peers: &peers,
            authorization: Some(&auth),
        });
        let all = page(&s, &StatusQuery::parse(&params(&[])).unwrap(), owners)
            .await
            .unwrap();
        let row = |id: &str, state: &str, by: &str| (id.into(), state.into(), by.into());
        assert_eq!(
            summary(&all),
            [
                row("i1", "active", "here"),
                row("i2", "paused", "node-b"),
                row("i3", "active", "here"),
                row("i4", "paused", "node-b"),
                row("i5", "active", "here"),
            ]
        );
        assert_eq!(all.next_cursor, None);
        let asked = std::mem::take(&mut *peers.asked.lock().unwrap());
        let t = Some("Bearer t".to_owned());
        assert_eq!(
            asked,
            [
                ("node-b".into(), vec!["i2".into(), "i4".into()], t.clone()),
                ("node-c".into(), vec!["i5".into()], t.clone()),
            ]
        );

        let paused = StatusQuery::parse(&params(&[("state", "paused")])).unwrap();
        let p = page(&s, &paused, owners).await.unwrap();
        assert_eq!(
            summary(&p),
            [row("i2", "paused", "node-b"), row("i4", "paused", "node-b")]
        );

        // Pages of 2: a chunk at a time, each owner asked for that chunk's only.
        peers.asked.lock().unwrap().clear();
        let two = StatusQuery::parse(&params(&[("limit", "2")])).unwrap();
        let p = page(&s, &two, owners).await.unwrap();
        assert_eq!(
            summary(&p),
            [row("i1", "active", "here"), row("i2", "paused", "node-b")]
        );
        assert!(p.next_cursor.is_some());
        assert_eq!(
            *peers.asked.lock().unwrap(),
            [("node-b".into(), vec!["i2".into()], t.clone())]
        );

        // No cluster: every status computed here, nobody asked.
        peers.asked.lock().unwrap().clear();
        let p = page(&s, &paused, None).await.unwrap();
        assert!(p.integrations.is_empty());
        assert!(peers.asked.lock().unwrap().is_empty());
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
