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

/// Rendezvous (highest random weight) hashing over a view: the node of `members` with the
/// highest [`rendezvous_weight`] for `key`, ties broken by name; `None` for an empty view.
/// Every node computes the same answer from the same view, and when a node leaves only the
/// keys it held move. Integrations use their id as the key (`sluice-delivery`'s
/// ownership); the JetStream log's appender of an environment uses `env:{id}`.
pub fn rendezvous<'a>(members: &'a Members, key: &str) -> Option<&'a str> {
    members
        .nodes
        .keys()
        .max_by_key(|n| (rendezvous_weight(n, key), n.as_str()))
        .map(String::as_str)
}

/// A stable 64-bit weight of (node, key): FNV-1a over both, then a SplitMix64 finaliser so
/// that similar names spread well. The same on every node and version.
pub fn rendezvous_weight(node: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0xff]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
