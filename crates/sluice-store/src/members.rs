//! The live sluice nodes as one node sees them (SPEC §7): what ownership of integrations is
//! computed from. Produced by [`crate::nats::membership`] in a cluster; a single node is
//! its own only member.

use std::collections::BTreeMap;
use std::sync::Arc;

/// What a node says about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// The node's admin API (`http://HOST:PORT`), for forwarding requests to it.
    pub url: String,
}

/// A settled view of the live nodes. Empty means "this node may own nothing now" (it is
/// starting, cut off from the cluster, or just woke up from a stall).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub nodes: Arc<BTreeMap<String, NodeInfo>>,
}

impl Members {
    /// A view of exactly one node.
    pub fn sole(node: &str, url: &str) -> Members {
        let mut m = BTreeMap::new();
        m.insert(
            node.to_owned(),
            NodeInfo {
                url: url.to_owned(),
            },
        );
        Members { nodes: Arc::new(m) }
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }
}
