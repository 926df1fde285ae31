//! Cluster membership over core NATS (SPEC §7): every node publishes a heartbeat on
//! [`SUBJECT`] every `interval` and listens to everyone's, its own included. Core NATS
//! keeps flowing while JetStream elects leaders (KV writes stall 7–8 s then), so a
//! node's liveness does not depend on JetStream.
//!
//! The view handed to ownership ([`Members`]) changes only once the set of nodes heard
//! within `lease` has stayed the same for `settle` (so that a node restarting or a burst
//! of joins moves integrations once). Giving up is immediate: a node that does not hear
//! its own heartbeat (cut off from NATS) or whose heartbeat loop woke up late (the
//! process was stopped or starved, during which others may have taken over) publishes an
//! empty view — it owns nothing — and settles again from scratch. A node shutting down
//! says so, and the others drop it at once.
//!
//! [`Membership::live`] is the same set before settling — every node heard within `lease`,
//! or empty while this node does not hear itself or after a stall — for choices that are
//! cheap to change and do not need agreement for correctness (which node appends an
//! environment's log: [`crate::nats::JetStreamLog::route_appends`]).

use crate::members::{Members, NodeInfo};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The subject every heartbeat is published on.
pub const SUBJECT: &str = "sluice.nodes.heartbeat";

/// Timing of the membership protocol.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This node's name (unique in the cluster).
    pub node: String,
    /// What this node tells others about itself.
    pub info: NodeInfo,
    /// Between two heartbeats (default 500 ms).
    pub interval: Duration,
    /// A node not heard from for this long is dead (default 3 s).
    pub lease: Duration,
    /// The live set must stay unchanged this long before the view changes (default 1.5 s).
    pub settle: Duration,
}

impl MembershipConfig {
    pub fn new(node: String, info: NodeInfo) -> MembershipConfig {
        MembershipConfig {
            node,
            info,
            interval: Duration::from_millis(500),
            lease: Duration::from_secs(3),
            settle: Duration::from_millis(1500),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Heartbeat {
    node: String,
    #[serde(flatten)]
    info: NodeInfo,
    /// The node is shutting down.
    #[serde(default)]
    leaving: bool,
}

/// The running protocol; dropped or [`Membership::leave`] → announces its departure.
pub struct Membership {
    view: watch::Receiver<Members>,
    live: watch::Receiver<Members>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Membership {
    /// Subscribes and starts heartbeating. The first non-empty view comes after `settle`.
    pub async fn start(
        client: async_nats::Client,
        cfg: MembershipConfig,
    ) -> Result<Membership, crate::StoreError> {
        let sub = client
            .subscribe(SUBJECT)
            .await
            .map_err(|e| super::error::unavailable("subscribing to node heartbeats", e))?;
        let (view_tx, view) = watch::channel(Members::default());
        let (live_tx, live) = watch::channel(Members::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(client, cfg, sub, [view_tx, live_tx], stop_rx));
        Ok(Membership {
            view,
            live,
            stop,
            task: Some(task),
        })
    }

    /// The settled view, updated as it changes.
    pub fn view(&self) -> watch::Receiver<Members> {
        self.view.clone()
    }

    /// The nodes heard within the lease now, without waiting for the set to settle (empty
    /// while this node does not hear itself, and after a stall): see the module
    /// documentation.
    pub fn live(&self) -> watch::Receiver<Members> {
        self.live.clone()
    }

    /// Stops heartbeating and tells the others this node is leaving.
    pub async fn leave(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The raw state: who was heard from, when.
struct Heard {
    seen: HashMap<String, (NodeInfo, Instant)>,
}

impl Heard {
    fn live(&self, now: Instant, lease: Duration) -> BTreeMap<String, NodeInfo> {
        self.seen
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) < lease)
            .map(|(n, (info, _))| (n.clone(), info.clone()))
            .collect()
    }
}

async fn run(
    client: async_nats::Client,
    cfg: MembershipConfig,
    mut sub: async_nats::Subscriber,
    [view, live_view]: [watch::Sender<Members>; 2],
    mut stop: watch::Receiver<bool>,
) {
    let beat = |leaving: bool| {
        serde_json::to_vec(&Heartbeat {
            node: cfg.node.clone(),
            info: cfg.info.clone(),
            leaving,
        })
        .unwrap_or_default()
    };
    let mut heard = Heard {
        seen: HashMap::new(),
    };
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    let mut candidate: BTreeMap<String, NodeInfo> = BTreeMap::new();
    let mut changed_at = Instant::now();
    // A tick this late means the process did not run for a while (stopped, starved):
    // others may have declared it dead and taken its integrations.
    let stall = (cfg.lease / 2).max(cfg.interval * 2);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now.saturating_duration_since(last_tick) > stall {
                    tracing::warn!(node = %cfg.node, late_ms = now.saturating_duration_since(last_tick).as_millis() as u64,
                        "membership: this node did not run for a while; giving up every integration until the cluster view settles again");
                    heard.seen.clear();
                    candidate.clear();
                    changed_at = now;
                    for v in [&view, &live_view] {
                        v.send_if_modified(|v| {
                            let was = !v.nodes.is_empty();
                            *v = Members::default();
                            was
                        });
                    }
                }
                last_tick = now;
                if let Err(e) = client.publish(SUBJECT, beat(false).into()).await {
                    tracing::warn!(error = %e, "membership: cannot publish heartbeat");
                }
                let live = heard.live(now, cfg.lease);
                if live != candidate {
                    candidate = live;
                    changed_at = now;
                }
                let heard_now = if candidate.contains_key(&cfg.node) {
                    candidate.clone()
                } else {
                    BTreeMap::new()
                };
                live_view.send_if_modified(|v| {
                    if *v.nodes == heard_now {
                        return false;
                    }
                    v.nodes = Arc::new(heard_now);
                    true
                });
                let settled = now.saturating_duration_since(changed_at) >= cfg.settle;
                let next = if !candidate.contains_key(&cfg.node) {
                    // Not hearing itself: cut off. Own nothing, at once.
                    Some(BTreeMap::new())
                } else if settled {
                    Some(candidate.clone())
                } else {
                    None
                };
                if let Some(next) = next {
                    view.send_if_modified(|v| {
                        if *v.nodes == next {
                            return false;
                        }
                        tracing::info!(node = %cfg.node, members = ?next.keys().collect::<Vec<_>>(), "membership: cluster view changed");
                        v.nodes = Arc::new(next);
                        true
                    });
                }
            }
            msg = sub.next() => {
                let Some(msg) = msg else {
                    tracing::warn!("membership: heartbeat subscription ended");
                    tokio::time::sleep(cfg.interval).await;
                    continue;
                };
                let Ok(hb) = serde_json::from_slice::<Heartbeat>(&msg.payload) else {
                    continue;
                };
                if hb.leaving {
                    heard.seen.remove(&hb.node);
                } else {
                    heard.seen.insert(hb.node, (hb.info, Instant::now()));
                }
            }
            _ = stop.changed() => {
                let _ = client.publish(SUBJECT, beat(true).into()).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
                return;
            }
        }
    }
}
