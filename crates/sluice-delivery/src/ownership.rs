//! Which node delivers which integration (SPEC §7): rendezvous (highest random weight)
//! hashing of the integration id over the settled view of live nodes
//! ([`sluice_store::members::Members`]). Every node computes the same owner from the same
//! view; when a node joins or leaves, only the integrations it gains or loses move (about
//! 1/M of them). A single node owns everything.
//!
//! Ownership only decides which tasks a node runs. What makes a stale owner harmless is
//! the fencing in the cursor record (see [`crate::cursor`]): every write is a
//! compare-and-swap on the revision this owner last wrote.

use sluice_store::members::Members;
use tokio::sync::watch;

/// This node's name and its view of the cluster.
#[derive(Debug, Clone)]
pub struct Ownership {
    node: String,
    view: watch::Receiver<Members>,
    /// Keeps a sole node's view alive (its receiver then never reports a closed channel).
    _sole: Option<std::sync::Arc<watch::Sender<Members>>>,
}

impl Ownership {
    /// A node alone: it owns every integration.
    pub fn sole(node: &str) -> Ownership {
        let (tx, view) = watch::channel(Members::sole(node, ""));
        Ownership {
            node: node.to_owned(),
            view,
            _sole: Some(std::sync::Arc::new(tx)),
        }
    }

    /// A node of a cluster, following a membership view.
    pub fn following(node: &str, view: watch::Receiver<Members>) -> Ownership {
        Ownership {
            node: node.to_owned(),
            view,
            _sole: None,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The current view.
    pub fn members(&self) -> Members {
        self.view.borrow().clone()
    }

    /// Changes of the view.
    pub fn changes(&self) -> watch::Receiver<Members> {
        self.view.clone()
    }

    /// The node that delivers `integration` in the current view (`None`: no live node).
    pub fn owner_of(&self, integration: &str) -> Option<String> {
        owner(&self.view.borrow(), integration).map(str::to_owned)
    }

    /// Whether this node delivers `integration` now.
    pub fn owns(&self, integration: &str) -> bool {
        owner(&self.view.borrow(), integration) == Some(self.node.as_str())
    }
}

/// The highest-weight node of `members` for `integration` (rendezvous hashing, shared with
/// the JetStream log's choice of an environment's appender: [`sluice_store::members::rendezvous`]).
pub fn owner<'a>(members: &'a Members, integration: &str) -> Option<&'a str> {
    sluice_store::members::rendezvous(members, integration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::members::NodeInfo;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn members(nodes: &[&str]) -> Members {
        let m: BTreeMap<String, NodeInfo> = nodes
            .iter()
            .map(|n| (n.to_string(), NodeInfo { url: String::new() }))
            .collect();
        Members { nodes: Arc::new(m) }
    }

    #[test]
    fn integrations_spread_evenly_and_a_leaving_node_moves_only_its_own() {
        let three = members(&["node-a", "node-b", "node-c"]);
        let two = members(&["node-a", "node-b"]);
        let ids: Vec<String> = (0..3000).map(|i| format!("integration-{i}")).collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &ids {
            *counts.entry(owner(&three, id).unwrap()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        for (node, n) in &counts {
            assert!((800..1200).contains(n), "{node} owns {n} of 3000");
        }
        for id in &ids {
            let before = owner(&three, id).unwrap();
            let after = owner(&two, id).unwrap();
            if before != "node-c" {
                assert_eq!(before, after, "{id} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn no_live_node_owns_nothing_and_a_sole_node_owns_everything() {
        assert_eq!(owner(&Members::default(), "i1"), None);
        let sole = Ownership::sole("me");
        assert!(sole.owns("i1") && sole.owns("anything"));
        let (_tx, rx) = watch::channel(Members::default());
        let cut_off = Ownership::following("me", rx);
        assert!(!cut_off.owns("i1"));
    }
}
