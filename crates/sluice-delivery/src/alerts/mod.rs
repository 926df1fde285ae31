//! Operator alerts (SPEC §4): state changes of integrations — paused, resumed, gap
//! recorded, disabled, replay finished — POSTed as signed JSON events `{type, timestamp,
//! data}` to the operator's alert destinations.
//!
//! - [`record`]: the engine's state changes ([`crate::events::Events`], a broadcast that
//!   never waits) and the catalog's disabled integrations become alerts;
//! - the service fans each alert out to the destinations that want it (type, project) by
//!   writing it to their outbox in the metadata store ([`store`]) — persisted until
//!   delivered, so a restart loses none, and bounded per destination
//!   ([`MAX_ALERT_OUTBOX_EVENTS`], the oldest dropped and counted);
//! - [`send`]: one task per destination, with its own HTTP client built by the engine's
//!   [`crate::endpoint::Connector`] (the same address rules as integrations, checked at
//!   connect time), sends its outbox in order under each event's own `webhook-id`, with
//!   the same protection as an integration: one retry after 300 ms, the health window,
//!   pause, growing cooldowns, probe.
//!
//! Alerts never share a task, client, permit or lock with impression delivery: a hanging
//! alert destination holds only its own task.
//!
//! In a cluster (SPEC §7) every node follows the destinations through a watch of the
//! store (`alerts/`), so each answers every admin route; each destination's sender runs on
//! one live node only, the rendezvous owner of [`owner_key`] (started and stopped as the
//! membership view changes); a node records the alerts of the integrations it delivers
//! into the shared outboxes under keys unique across nodes ([`store::Stamp`]), and wakes
//! the sender when it runs elsewhere through the same watch. A node alone owns every
//! destination.

mod record;
mod send;
pub mod store;
#[cfg(test)]
mod tests;

use crate::context::DeliveryCtx;
use crate::supervise::{Backoff, supervise};
use futures_util::StreamExt as _;
use record::{Alert, DisabledWatch, alert_for};
use serde::Serialize;
use sluice_core::alert::{AlertDestination, AlertEvent};
use sluice_core::limits::{MAX_ALERT_DESTINATIONS, MAX_ALERT_OUTBOX_EVENTS};
use sluice_store::{Bucket, Catalog, Expect, MetaChange, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use store::{OutboxEntry, Stamp};
use thiserror::Error;
use tokio::sync::{Notify, OnceCell, broadcast, watch};
use tokio::task::JoinHandle;

#[derive(Debug, Error)]
pub enum AlertError {
    #[error("alert destination {0} not found")]
    NotFound(String),
    #[error("alert destination {0} already exists")]
    Conflict(String),
    #[error("at most {MAX_ALERT_DESTINATIONS} alert destinations")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key whose rendezvous owner ([`crate::ownership`]) sends destination `id`'s alerts.
pub fn owner_key(id: &str) -> String {
    format!("alert-destination:{id}")
}

/// Tries of a read-modify-write of a destination that others change at the same time.
const CAS_TRIES: usize = 5;

/// How a destination is doing (`GET /v1/alert-destinations/{id}/status`).
///
/// `pendingEvents` and `droppedEvents` are read from the store; the rest is the state of
/// the sender, which runs on one node (`sentBy`): in a cluster the API forwards the
/// question to that node, and a node that answers itself (the sender's node cannot be
/// reached) gives its own view, where the sender's counters are those it kept while it
/// ran the sender here (zero if it never did).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `active`, `paused` or `probing`, as for an integration.
    pub state: String,
    /// Events waiting in its outbox (read from the store when asked).
    pub pending_events: u64,
    pub delivered_events: u64,
    pub failed_attempts: u64,
    /// Events dropped, oldest first, because the outbox was full (read from the store).
    pub dropped_events: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Ms since the epoch when the next probe is due, while paused.
    pub paused_until: Option<i64>,
    /// The node that sends its alerts now (`null`: no live node).
    pub sent_by: Option<String>,
}

/// One destination as its sender and the recorder share it.
pub(crate) struct DestState {
    dest: Mutex<Arc<AlertDestination>>,
    wake: Notify,
    /// Events in its outbox as this node knows them: counted up by the events recorded
    /// here and, as the watch reports them, by other nodes; down by removals as the watch
    /// reports them; set from the store when the watch starts and when a recorder reads
    /// the outbox. Past [`MAX_ALERT_OUTBOX_EVENTS`] a recorder reads the outbox and drops
    /// the oldest, so the bound holds up to what the watch has not reported yet.
    outbox: AtomicU64,
    status: Mutex<AlertStatus>,
}

impl DestState {
    fn new(d: AlertDestination) -> DestState {
        DestState {
            dest: Mutex::new(Arc::new(d)),
            wake: Notify::new(),
            outbox: AtomicU64::new(0),
            status: Mutex::new(AlertStatus {
                state: "active".into(),
                ..AlertStatus::default()
            }),
        }
    }

    fn dest(&self) -> Arc<AlertDestination> {
        self.dest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_dest(&self, d: AlertDestination) {
        *self.dest.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(d);
    }

    fn with_status<T>(&self, f: impl FnOnce(&mut AlertStatus) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn outbox_less(&self, n: u64) {
        let _ = self
            .outbox
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// A sender running on this node.
struct Running {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.join.await;
    }
}

/// A destination this node knows; its sender runs here only while this node owns it.
struct Slot {
    state: Arc<DestState>,
    sender: Option<Running>,
}

#[derive(Default)]
struct Dests {
    slots: HashMap<String, Slot>,
    /// The last revision of each destination's key applied here (written here or seen in
    /// the watch, deletions included), so the watch never applies an older state over a
    /// newer one written here.
    applied: HashMap<String, u64>,
}

impl Dests {
    fn newer(&self, id: &str, revision: u64) -> bool {
        self.applied.get(id).is_none_or(|r| revision > *r)
    }

    fn mark(&mut self, id: &str, revision: u64) {
        let r = self.applied.entry(id.to_owned()).or_default();
        *r = (*r).max(revision);
    }
}

pub struct AlertService {
    ctx: Arc<DeliveryCtx>,
    /// Held while an alert is fanned out and while a destination is created, replaced,
    /// deleted or moved, so no event is written to the outbox of a destination being
    /// deleted here.
    dests: tokio::sync::Mutex<Dests>,
    loaded: OnceCell<()>,
    stop: watch::Sender<bool>,
    backoff: Backoff,
    /// The last outbox stamp this node used.
    stamp: Mutex<Stamp>,
}

impl AlertService {
    pub fn new(ctx: Arc<DeliveryCtx>) -> Arc<AlertService> {
        Arc::new(AlertService {
            ctx,
            dests: tokio::sync::Mutex::new(Dests::default()),
            loaded: OnceCell::new(),
            stop: watch::Sender::new(false),
            backoff: Backoff::default(),
            stamp: Mutex::new(Stamp { ms: 0, n: 0 }),
        })
    }

    fn node(&self) -> &str {
        self.ctx.opts.ownership.node()
    }

    /// Subscribes to the engine's state changes (at once, so none published from now on is
    /// missed), loads the destinations, records alerts and follows the destinations
    /// (changes through other nodes, ownership) until [`AlertService::shutdown`].
    pub fn start(self: &Arc<Self>, catalog: Arc<Catalog>) -> JoinHandle<()> {
        let events = self.ctx.events.subscribe();
        // Also now: a switch-off made before the task first runs is a change, not the start.
        let changes = catalog.subscribe();
        let disabled = DisabledWatch::new(catalog.snapshot().integrations.values());
        let me = self.clone();
        tokio::spawn(async move {
            tokio::join!(me.run(events, catalog, changes, disabled), me.follow());
        })
    }

    /// Loads the destinations, retrying every second; `false`: stopped first.
    async fn load(&self, stop: &mut watch::Receiver<bool>) -> bool {
        while let Err(e) = self.ensure_loaded().await {
            tracing::error!(error = %e, "cannot load alert destinations; retrying in 1 s");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = crate::supervise::until_stopped(stop) => return false,
            }
        }
        true
    }

    async fn run(
        &self,
        mut events: broadcast::Receiver<crate::events::DeliveryEvent>,
        catalog: Arc<Catalog>,
        mut changes: watch::Receiver<u64>,
        mut disabled: DisabledWatch,
    ) {
        let mut stop = self.stop.subscribe();
        if !self.load(&mut stop).await {
            return;
        }
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    // Engine state changes come from the node delivering the integration
                    // (or the one an operator paused it through): recorded where they occur.
                    Ok(e) => self.record(alert_for(&e)).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "alert recorder fell behind; {n} state changes raised no alert");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                r = changes.changed() => {
                    if r.is_err() { return }
                    for a in disabled.changed(catalog.snapshot().integrations.values()) {
                        // Every node sees the switch-off; the integration's owner records it.
                        if self.ctx.opts.ownership.owns(&a.integration) {
                            self.record(a).await;
                        }
                    }
                }
                _ = crate::supervise::until_stopped(&mut stop) => return,
            }
        }
    }

    /// Follows the destinations and their outboxes through a watch of the store (changes
    /// made through other nodes, events they record) and the membership view (which
    /// senders run here).
    async fn follow(&self) {
        let mut stop = self.stop.subscribe();
        if !self.load(&mut stop).await {
            return;
        }
        let mut members = self.ctx.opts.ownership.changes();
        let mut members_open = true;
        loop {
            let watch = tokio::select! {
                w = self.ctx.meta.watch(Bucket::State, store::ALERTS_PREFIX) => w,
                _ = crate::supervise::until_stopped(&mut stop) => return,
            };
            let mut changes = match watch {
                Ok(w) => {
                    self.resync(w.current).await;
                    w.changes
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch alert destinations; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = crate::supervise::until_stopped(&mut stop) => return,
                    }
                }
            };
            loop {
                tokio::select! {
                    c = changes.next() => match c {
                        Some(Ok(c)) => self.apply(c).await,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "alert destination watch ended; watching again");
                            break;
                        }
                        None => break,
                    },
                    r = members.changed(), if members_open => {
                        match r {
                            Ok(()) => self.rebalance().await,
                            Err(_) => members_open = false,
                        }
                    }
                    _ = crate::supervise::until_stopped(&mut stop) => return,
                }
            }
            // Not in a tight loop when the store keeps ending watches.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = crate::supervise::until_stopped(&mut stop) => return,
            }
        }
    }

    /// Stops the recorder and every sender (undelivered events stay in the outbox).
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let mut dests = self.dests.lock().await;
        for (_, slot) in dests.slots.drain() {
            if let Some(r) = slot.sender {
                r.stop().await;
            }
        }
    }

    async fn ensure_loaded(&self) -> Result<(), StoreError> {
        self.loaded
            .get_or_try_init(|| async {
                let meta = self.ctx.meta.as_ref();
                // Outbox keys first: see `store::leftovers`.
                let leftovers = store::leftovers(meta).await?;
                let all = store::load_destinations(meta).await?;
                let ids: BTreeSet<String> = all.iter().map(|(d, _)| d.id.clone()).collect();
                store::purge_orphans(meta, &leftovers, &ids).await?;
                let mut dests = self.dests.lock().await;
                for (d, revision) in all {
                    let pending = store::pending(meta, &d.id).await?.len() as u64;
                    let id = d.id.clone();
                    if !dests.newer(&id, revision) {
                        continue;
                    }
                    self.upsert(&mut dests, d, revision).await;
                    if let Some(slot) = dests.slots.get(&id) {
                        slot.state.outbox.store(pending, Ordering::Relaxed);
                    }
                }
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }

    fn spawn(&self, state: Arc<DestState>) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let (ctx, st, rx) = (self.ctx.clone(), state.clone(), stop_rx.clone());
        let what = format!("alert destination {}", state.dest().id);
        let join = tokio::spawn(supervise(what, stop_rx, self.backoff, move || {
            send::Sender::new(ctx.clone(), st.clone(), rx.clone()).run()
        }));
        Running { stop, join }
    }

    /// Starts or stops the sender of `id` as this node owns it or not.
    async fn place(&self, id: &str, slot: &mut Slot) {
        // Never started again once the service is shutting down.
        let mine = self.ctx.opts.ownership.owns(&owner_key(id)) && !*self.stop.borrow();
        match (&slot.sender, mine) {
            (None, true) => {
                tracing::debug!(
                    destination = id,
                    node = self.node(),
                    "alert destination sent from here"
                );
                slot.sender = Some(self.spawn(slot.state.clone()));
            }
            (Some(_), false) => {
                tracing::debug!(
                    destination = id,
                    node = self.node(),
                    "alert destination now sent elsewhere"
                );
                if let Some(r) = slot.sender.take() {
                    r.stop().await;
                }
            }
            _ => {}
        }
    }

    /// Moves senders to and from this node after a change of the membership view.
    async fn rebalance(&self) {
        let mut dests = self.dests.lock().await;
        for (id, slot) in dests.slots.iter_mut() {
            self.place(id, slot).await;
        }
    }

    /// Applies a destination at `revision` (created here or elsewhere, or replaced): a
    /// changed destination's sender starts again with it; undelivered events stay.
    async fn upsert(&self, dests: &mut Dests, d: AlertDestination, revision: u64) {
        dests.mark(&d.id, revision);
        let id = d.id.clone();
        match dests.slots.get_mut(&id) {
            Some(slot) => {
                if *slot.state.dest() != d {
                    let running = slot.sender.take();
                    if let Some(r) = running {
                        r.stop().await;
                    }
                    slot.state.set_dest(d);
                }
                self.place(&id, slot).await;
            }
            None => {
                let mut slot = Slot {
                    state: Arc::new(DestState::new(d)),
                    sender: None,
                };
                self.place(&id, &mut slot).await;
                dests.slots.insert(id, slot);
            }
        }
    }

    /// Forgets a deleted destination (its sender stops).
    async fn forget(&self, dests: &mut Dests, id: &str, revision: u64) {
        dests.mark(id, revision);
        if let Some(slot) = dests.slots.remove(id)
            && let Some(r) = slot.sender
        {
            r.stop().await;
        }
    }

    /// Brings the destinations in line with a watch's snapshot of `alerts/`.
    async fn resync(&self, current: Vec<(String, sluice_store::Versioned)>) {
        let mut dests = self.dests.lock().await;
        let mut seen = BTreeSet::new();
        let mut outboxes: HashMap<String, u64> = HashMap::new();
        for (key, v) in current {
            if let Some(id) = key.strip_prefix(store::DEST_PREFIX) {
                seen.insert(id.to_owned());
                if dests.newer(id, v.revision)
                    && let Some(d) = store::decode_destination(&key, &v.value)
                {
                    self.upsert(&mut dests, d, v.revision).await;
                }
            } else if let Some((dest, _)) = store::parse_outbox_key(&key) {
                *outboxes.entry(dest.to_owned()).or_default() += 1;
            }
        }
        let gone: Vec<String> = dests
            .slots
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            // Written here after the snapshot was taken? Then it is still there.
            match store::get_destination(self.ctx.meta.as_ref(), &id).await {
                Ok(None) => self.forget(&mut dests, &id, 0).await,
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(destination = %id, error = %e, "cannot check an alert destination")
                }
            }
        }
        for (id, slot) in &dests.slots {
            let n = outboxes.get(id).copied().unwrap_or(0);
            slot.state.outbox.store(n, Ordering::Relaxed);
            if slot.sender.is_some() {
                slot.state.wake.notify_one();
            }
        }
    }

    /// Applies one change the watch reported.
    async fn apply(&self, c: MetaChange) {
        if let Some(id) = c.key.strip_prefix(store::DEST_PREFIX) {
            let mut dests = self.dests.lock().await;
            if !dests.newer(id, c.revision) {
                return;
            }
            match c.value {
                Some(v) => {
                    if let Some(d) = store::decode_destination(&c.key, &v) {
                        self.upsert(&mut dests, d, c.revision).await;
                    }
                }
                None => self.forget(&mut dests, id, c.revision).await,
            }
        } else if let Some((dest, node)) = store::parse_outbox_key(&c.key) {
            let dests = self.dests.lock().await;
            let Some(slot) = dests.slots.get(dest) else {
                return;
            };
            match c.value {
                Some(_) => {
                    // This node counted its own events when it recorded them.
                    if node != Some(self.node()) {
                        slot.state.outbox.fetch_add(1, Ordering::Relaxed);
                    }
                    if slot.sender.is_some() {
                        slot.state.wake.notify_one();
                    }
                }
                None => slot.state.outbox_less(1),
            }
        }
    }

    fn next_stamp(&self) -> Stamp {
        let mut last = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Stamp::next(*last, self.ctx.now_ms());
        *last
    }

    /// Writes `alert` to the outbox of every destination that wants it.
    async fn record(&self, alert: Alert) {
        let body = AlertEvent {
            kind: alert.kind,
            timestamp: self.ctx.now_ms(),
            data: alert.data,
        };
        let body = match serde_json::to_string(&body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an alert");
                return;
            }
        };
        let id = format!("evt_{:016x}", rand::random::<u64>());
        let dests = self.dests.lock().await;
        for slot in dests.slots.values() {
            let st = &slot.state;
            let d = st.dest();
            if !d.wants(alert.kind, &alert.project) {
                continue;
            }
            let entry = OutboxEntry::new(
                &d.id,
                self.node(),
                self.next_stamp(),
                id.clone(),
                body.clone(),
            );
            if let Err(e) = self.enqueue(&d.id, slot, &entry).await {
                tracing::error!(destination = %d.id, event = %entry.id, error = %e, "cannot store an alert; it is lost");
            }
        }
    }

    async fn enqueue(&self, dest: &str, slot: &Slot, e: &OutboxEntry) -> Result<(), StoreError> {
        let meta = self.ctx.meta.as_ref();
        let st = &slot.state;
        store::push(meta, e).await?;
        let pending = st.outbox.fetch_add(1, Ordering::Relaxed) + 1;
        if pending as usize > MAX_ALERT_OUTBOX_EVENTS {
            let there = store::trim(meta, dest, MAX_ALERT_OUTBOX_EVENTS).await?;
            // The watch reports the drops (and counts them off) later.
            st.outbox.store(there, Ordering::Relaxed);
        }
        if slot.sender.is_some() {
            st.wake.notify_one();
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<AlertDestination>, AlertError> {
        self.ensure_loaded().await?;
        let dests = self.dests.lock().await;
        let mut out: Vec<AlertDestination> = dests
            .slots
            .values()
            .map(|s| (*s.state.dest()).clone())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<AlertDestination, AlertError> {
        self.ensure_loaded().await?;
        let dests = self.dests.lock().await;
        dests
            .slots
            .get(id)
            .map(|s| (*s.state.dest()).clone())
            .ok_or_else(|| AlertError::NotFound(id.to_owned()))
    }

    /// How a destination is doing: `pendingEvents` counted in its outbox now,
    /// `droppedEvents` as stored, the rest as this node knows it (see [`AlertStatus`]).
    pub async fn status(&self, id: &str) -> Result<AlertStatus, AlertError> {
        self.ensure_loaded().await?;
        let state = {
            let dests = self.dests.lock().await;
            dests
                .slots
                .get(id)
                .map(|s| s.state.clone())
                .ok_or_else(|| AlertError::NotFound(id.to_owned()))?
        };
        let meta = self.ctx.meta.as_ref();
        let pending = store::pending(meta, id).await?.len();
        let dropped = store::dropped(meta, id).await?;
        let mut status = state.with_status(|st| st.clone());
        status.pending_events = pending as u64;
        status.dropped_events = dropped;
        status.sent_by = self.ctx.opts.ownership.owner_of(&owner_key(id));
        Ok(status)
    }

    /// Creates a destination (validated by the caller); its sender starts at once on the
    /// node that owns it.
    pub async fn create(&self, d: AlertDestination) -> Result<AlertDestination, AlertError> {
        self.ensure_loaded().await?;
        let mut dests = self.dests.lock().await;
        if dests.slots.contains_key(&d.id) {
            return Err(AlertError::Conflict(d.id));
        }
        if dests.slots.len() >= MAX_ALERT_DESTINATIONS {
            return Err(AlertError::TooMany);
        }
        let meta = self.ctx.meta.as_ref();
        if store::get_destination(meta, &d.id).await?.is_some() {
            // Created through another node a moment ago.
            return Err(AlertError::Conflict(d.id));
        }
        // A destination of a deleted one's id starts clean.
        store::purge(meta, &d.id).await?;
        let revision = match store::save_destination(meta, &d, Expect::Absent).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => return Err(AlertError::Conflict(d.id)),
            Err(e) => return Err(e.into()),
        };
        self.upsert(&mut dests, d.clone(), revision).await;
        Ok(d)
    }

    /// Replaces a destination; its undelivered events stay and go to the new address.
    pub async fn replace(&self, d: AlertDestination) -> Result<AlertDestination, AlertError> {
        self.ensure_loaded().await?;
        let mut dests = self.dests.lock().await;
        let meta = self.ctx.meta.as_ref();
        for _ in 0..CAS_TRIES {
            let Some((_, revision)) = store::get_destination(meta, &d.id).await? else {
                return Err(AlertError::NotFound(d.id));
            };
            match store::save_destination(meta, &d, Expect::Revision(revision)).await {
                Ok(revision) => {
                    self.upsert(&mut dests, d.clone(), revision).await;
                    return Ok(d);
                }
                // Changed through another node meanwhile: last writer wins, as it would
                // had the requests come one after the other.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::conflict(Bucket::State, &d.id).into())
    }

    /// Deletes a destination and its undelivered events.
    pub async fn delete(&self, id: &str) -> Result<(), AlertError> {
        self.ensure_loaded().await?;
        let mut dests = self.dests.lock().await;
        let meta = self.ctx.meta.as_ref();
        for _ in 0..CAS_TRIES {
            let Some((_, revision)) = store::get_destination(meta, id).await? else {
                return Err(AlertError::NotFound(id.to_owned()));
            };
            match store::delete_destination(meta, id, Expect::Revision(revision)).await {
                Ok(()) => {
                    self.forget(&mut dests, id, revision).await;
                    // Left-overs of a failed purge are removed at the next start.
                    store::purge(meta, id).await?;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::conflict(Bucket::State, id).into())
    }
}
