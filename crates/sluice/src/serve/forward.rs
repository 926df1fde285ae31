//! Every admin route works on every node of a cluster (SPEC §7): the questions only the
//! node delivering an integration can answer — its live state (paused, probing), recent
//! attempts, history samples, replays, which its owner runs, and resume, which also ends
//! an automatic pause held in the owner's memory — and the status of an
//! alert destination (its sender's state lives on the node that sends it) are forwarded
//! to that node over HTTP (its advertised URL comes with its heartbeat), the caller's
//! `Authorization` included. Everything else is answered locally from the shared store:
//! configuration, cursors, gaps, and pause (the owner follows the shared pause state).
//!
//! A forwarded request carries [`FORWARDED`] and is never forwarded again. When the owner
//! cannot be reached (it just died; its successor has not settled yet) the local answer
//! is given: the store's view, without the owner's in-memory state.
//!
//! The aggregated `GET /v1/integrations/status` is not forwarded whole: it asks each owner
//! for its integrations of a chunk (the [`PeerStatus`] of [`Forwarder`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sluice_api::peers::{PeerError, PeerStatus};
use sluice_delivery::Ownership;
use std::time::Duration;

/// Header of a request forwarded by another node.
pub use sluice_api::peers::FORWARDED;

/// Admin bodies forwarded are small (the API's own limit is lower).
const MAX_FORWARDED_BODY: usize = 1 << 20;

/// What a node needs to forward.
#[derive(Clone)]
pub struct Forwarder {
    pub ownership: Ownership,
    pub client: reqwest::Client,
}

impl Forwarder {
    pub fn new(ownership: Ownership) -> Forwarder {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Forwarder { ownership, client }
    }
}

/// An owner asked for statuses answers within this (a stalled node must not hold the
/// aggregated route for the client's whole timeout; the local answer is given instead).
const STATUSES_TIMEOUT: Duration = Duration::from_secs(10);

/// Ids per statuses request at most, in bytes of `ids=` (a request line stays far below
/// any server's bound: 1,000 ids of 64 characters would not).
const MAX_IDS_BYTES: usize = 16 * 1024;

impl Forwarder {
    /// The advertised URL of `node`, when it is a live member with one.
    fn url_of(&self, node: &str) -> Option<String> {
        self.ownership
            .members()
            .nodes
            .get(node)
            .map(|n| n.url.clone())
            .filter(|u| !u.is_empty())
    }

    async fn statuses_once(
        &self,
        base: &str,
        owner: &str,
        ids: &str,
        authorization: Option<&axum::http::HeaderValue>,
    ) -> Result<Vec<Value>, PeerError> {
        let mut req = self
            .client
            // Ids are of A-Z a-z 0-9 _ - . only: nothing to escape.
            .get(format!(
                "{base}/v1/integrations/status?limit={}&ids={ids}",
                sluice_api::admin::fleet::MAX_LIMIT
            ))
            .header(FORWARDED, self.ownership.node())
            .timeout(STATUSES_TIMEOUT);
        if let Some(a) = authorization {
            req = req.header(axum::http::header::AUTHORIZATION, a.clone());
        }
        let fail = |what: String| PeerError(format!("node {owner}: {what}"));
        let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let mut page: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
        match page.get_mut("integrations").map(Value::take) {
            Some(Value::Array(v)) => Ok(v),
            _ => Err(fail("answer without integrations".into())),
        }
    }
}

impl PeerStatus for Forwarder {
    fn remote_owner(&self, id: &str) -> Option<String> {
        self.ownership
            .owner_of(id)
            .filter(|owner| owner != self.ownership.node())
    }

    fn statuses<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        authorization: Option<&'a axum::http::HeaderValue>,
    ) -> BoxFuture<'a, Result<Vec<Value>, PeerError>> {
        Box::pin(async move {
            let base = self
                .url_of(owner)
                .ok_or_else(|| PeerError(format!("node {owner} has no address")))?;
            let mut out = Vec::with_capacity(ids.len());
            for part in id_lists(ids, MAX_IDS_BYTES) {
                out.extend(
                    self.statuses_once(&base, owner, &part, authorization)
                        .await?,
                );
            }
            Ok(out)
        })
    }
}

/// `ids` comma-separated, in lists of at most `max_bytes` (one id longer than that is a
/// list alone).
fn id_lists(ids: &[String], max_bytes: usize) -> Vec<String> {
    let mut lists: Vec<String> = Vec::new();
    let mut cur = String::new();
    for id in ids {
        if !cur.is_empty() && cur.len() + 1 + id.len() > max_bytes {
            lists.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(id);
    }
    if !cur.is_empty() {
        lists.push(cur);
    }
    lists
}

/// The ownership key (see [`sluice_delivery::Ownership`]) whose owner alone can answer
/// `method path`: an integration's id, or an alert destination's
/// [`sluice_delivery::alerts::owner_key`] for its status (its sender's state lives on the
/// node that sends it).
fn owner_question(method: &Method, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/v1/alert-destinations/") {
        let (id, what) = rest.split_once('/')?;
        let for_owner = method == Method::GET && what == "status";
        return (for_owner && !id.is_empty()).then(|| sluice_delivery::alerts::owner_key(id));
    }
    let rest = path.strip_prefix("/v1/integrations/")?;
    let (id, what) = rest.split_once('/')?;
    let for_owner = match (method, what) {
        (&Method::GET, "status" | "attempts" | "history" | "replays") => true,
        // Resume also ends an automatic pause, which lives in the owner's memory.
        (&Method::POST, "replay" | "resume") => true,
        (&Method::GET, w) => w.starts_with("replays/"),
        _ => false,
    };
    (for_owner && !id.is_empty()).then(|| id.to_owned())
}

/// The middleware: forward to the owner, or serve here.
pub async fn forward(fwd: Forwarder, req: Request, next: Next) -> Response {
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let Some(id) = owner_question(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(owner) = fwd.ownership.owner_of(&id) else {
        return next.run(req).await;
    };
    if owner == fwd.ownership.node() {
        return next.run(req).await;
    }
    let Some(base) = fwd.url_of(&owner) else {
        return next.run(req).await;
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORWARDED_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({"error": "too_large", "detail": "admin request body too large"})),
            )
                .into_response();
        }
    };
    let mut out = fwd
        .client
        .request(parts.method.clone(), format!("{base}{path_and_query}"))
        .header(FORWARDED, fwd.ownership.node())
        .body(bytes.clone());
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
        axum::http::header::ACCEPT,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v.clone());
        }
    }
    match out.send().await {
        Ok(resp) => {
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .cloned();
            match resp.bytes().await {
                Ok(body) => {
                    let mut r = Response::new(Body::from(body));
                    *r.status_mut() = status;
                    if let Some(ct) = content_type {
                        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct);
                    }
                    if let Ok(v) = HeaderValue::from_str(&owner) {
                        r.headers_mut().insert("sluice-answered-by", v);
                    }
                    r
                }
                Err(e) => local(parts, bytes, next, &owner, &e).await,
            }
        }
        Err(e) => local(parts, bytes, next, &owner, &e).await,
    }
}

async fn local(
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
    next: Next,
    owner: &str,
    e: &reqwest::Error,
) -> Response {
    tracing::debug!(owner, error = %e, "cannot reach the owner; answering from the store");
    if parts.method == Method::POST {
        // A replay runs on the owner only (two runners would both send it).
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": "unavailable",
                "detail": format!("the node delivering this integration ({owner}) cannot be reached; try again in a few seconds"),
            })),
        )
            .into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("2"));
        return r;
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_split_into_bounded_lists() {
        let ids: Vec<String> = ["a", "bb", "ccc", "dddd"].map(String::from).to_vec();
        assert_eq!(id_lists(&ids, 100), ["a,bb,ccc,dddd"]);
        assert_eq!(id_lists(&ids, 6), ["a,bb", "ccc", "dddd"]);
        assert_eq!(id_lists(&ids, 1), ["a", "bb", "ccc", "dddd"]);
        assert!(id_lists(&[], 10).is_empty());
    }

    #[test]
    fn only_questions_for_the_owner_are_forwarded() {
        let q = |m: &Method, p: &str| owner_question(m, p);
        assert_eq!(
            q(&Method::GET, "/v1/integrations/i1/status").as_deref(),
            Some("i1")
        );
        assert_eq!(
            q(&Method::GET, "/v1/integrations/i1/attempts").as_deref(),
            Some("i1")
        );
        assert_eq!(
            q(&Method::POST, "/v1/integrations/i1/replay").as_deref(),
            Some("i1")
        );
        assert_eq!(
            q(&Method::GET, "/v1/integrations/i1/replays/r1").as_deref(),
            Some("i1")
        );
        assert_eq!(q(&Method::GET, "/v1/integrations/status"), None);
        assert_eq!(q(&Method::GET, "/v1/integrations/i1"), None);
        assert_eq!(q(&Method::GET, "/v1/integrations/i1/gaps"), None);
        assert_eq!(q(&Method::POST, "/v1/integrations/i1/pause"), None);
        assert_eq!(
            q(&Method::POST, "/v1/integrations/i1/resume").as_deref(),
            Some("i1")
        );
        assert_eq!(q(&Method::PUT, "/v1/integrations/i1"), None);
        assert_eq!(
            q(&Method::GET, "/v1/alert-destinations/a1/status").as_deref(),
            Some("alert-destination:a1")
        );
        assert_eq!(q(&Method::GET, "/v1/alert-destinations/a1"), None);
        assert_eq!(q(&Method::GET, "/v1/alert-destinations/status"), None);
        assert_eq!(q(&Method::DELETE, "/v1/alert-destinations/a1"), None);
    }
}
