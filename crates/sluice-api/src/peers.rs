//! The other nodes of a cluster, as the aggregated admin routes need them (SPEC §7: every
//! admin route works the same on every node). An integration's live state (paused,
//! probing, failing, its failure rate and last error) is known only to the node that
//! delivers it, so `GET /v1/integrations/status` asks each owner for its integrations'
//! statuses, one request per owner node per chunk. The transport (HTTP to a node's
//! advertised URL) lives with the cluster wiring in the `sluice` binary; a node alone
//! has no [`PeerStatus`] and answers everything itself.

use axum::http::HeaderValue;
use futures_util::future::BoxFuture;
use serde_json::Value;

/// Header of a request one node sends another on a caller's behalf; such a request is
/// answered by the node it reaches, never passed on again.
pub const FORWARDED: &str = "sluice-forwarded-by";

/// Why another node's answer could not be had (the caller then answers locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerError(pub String);

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Integrations' statuses from the nodes that deliver them.
pub trait PeerStatus: Send + Sync {
    /// The node that delivers integration `id` when that is another node with an address
    /// (`None`: this node answers for it).
    fn remote_owner(&self, id: &str) -> Option<String>;

    /// The statuses of `ids` (at most [`crate::admin::fleet::MAX_LIMIT`]), each as
    /// `GET /v1/integrations/status` lists it, from node `owner`, asked with the caller's
    /// `Authorization`. An integration the owner does not know is left out of its answer.
    fn statuses<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        authorization: Option<&'a HeaderValue>,
    ) -> BoxFuture<'a, Result<Vec<Value>, PeerError>>;
}
