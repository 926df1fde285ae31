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

mod record;
mod send;
pub mod store;
#[cfg(test)]
mod tests;

use crate::context::DeliveryCtx;
use crate::supervise::{Backoff, supervise};
use record::{Alert, DisabledWatch, alert_for};
use serde::Serialize;
use sluice_core::alert::{AlertDestination, AlertEvent};
use sluice_core::limits::{MAX_ALERT_DESTINATIONS, MAX_ALERT_OUTBOX_EVENTS};
use sluice_store::{Catalog, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use store::OutboxEntry;
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

/// How an alert destination is doing (`GET /v1/alert-destinations/{id}/status`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `active`, `paused` or `probing`, as for an integration.
    pub state: String,
    /// Events waiting in its outbox.
    pub pending_events: u64,
    pub delivered_events: u64,
    pub failed_attempts: u64,
    /// Events dropped, oldest first, because the outbox was full.
    pub dropped_events: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Ms since the epoch when the next probe is due, while paused.
    pub paused_until: Option<i64>,
}

/// One destination as its sender and the recorder share it.
pub(crate) struct DestState {
    dest: Mutex<Arc<AlertDestination>>,
    wake: Notify,
    next_seq: AtomicU64,
    status: Mutex<AlertStatus>,
}

impl DestState {
    fn dest(&self) -> Arc<AlertDestination> {
        self.dest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn with_status<T>(&self, f: impl FnOnce(&mut AlertStatus) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Slot {
    state: Arc<DestState>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

pub struct AlertService {
    ctx: Arc<DeliveryCtx>,
    /// Held while an alert is fanned out and while a destination is replaced or deleted,
    /// so no event is written to the outbox of a destination being deleted.
    dests: tokio::sync::Mutex<HashMap<String, Slot>>,
    loaded: OnceCell<()>,
    stop: watch::Sender<bool>,
    backoff: Backoff,
}

impl AlertService {
    pub fn new(ctx: Arc<DeliveryCtx>) -> Arc<AlertService> {
        Arc::new(AlertService {
            ctx,
            dests: tokio::sync::Mutex::new(HashMap::new()),
            loaded: OnceCell::new(),
            stop: watch::Sender::new(false),
            backoff: Backoff::default(),
        })
    }

    /// Subscribes to the engine's state changes (at once, so none published from now on is
    /// missed), loads the destinations, and records alerts until [`AlertService::shutdown`].
    pub fn start(self: &Arc<Self>, catalog: Arc<Catalog>) -> JoinHandle<()> {
        let events = self.ctx.events.subscribe();
        // Also now: a switch-off made before the task first runs is a change, not the start.
        let changes = catalog.subscribe();
        let disabled = DisabledWatch::new(catalog.snapshot().integrations.values());
        let me = self.clone();
        tokio::spawn(async move { me.run(events, catalog, changes, disabled).await })
    }

    async fn run(
        &self,
        mut events: broadcast::Receiver<crate::events::DeliveryEvent>,
        catalog: Arc<Catalog>,
        mut changes: watch::Receiver<u64>,
        mut disabled: DisabledWatch,
    ) {
        let mut stop = self.stop.subscribe();
        while let Err(e) = self.ensure_loaded().await {
            tracing::error!(error = %e, "cannot load alert destinations; retrying in 1 s");
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = crate::supervise::until_stopped(&mut stop) => return,
            }
        }
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) => self.record(alert_for(&e)).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "alert recorder fell behind; {n} state changes raised no alert");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                r = changes.changed() => {
                    if r.is_err() { return }
                    for a in disabled.changed(catalog.snapshot().integrations.values()) {
                        self.record(a).await;
                    }
                }
                _ = crate::supervise::until_stopped(&mut stop) => return,
            }
        }
    }

    /// Stops the recorder and every sender (undelivered events stay in the outbox).
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let mut dests = self.dests.lock().await;
        for (_, slot) in dests.drain() {
            slot.stop.send_replace(true);
            let _ = slot.join.await;
        }
    }

    async fn ensure_loaded(&self) -> Result<(), StoreError> {
        self.loaded
            .get_or_try_init(|| async {
                let meta = self.ctx.meta.as_ref();
                let all = store::load_destinations(meta).await?;
                let ids: Vec<String> = all.iter().map(|d| d.id.clone()).collect();
                store::purge_orphans(meta, &ids).await?;
                let mut dests = self.dests.lock().await;
                for d in all {
                    let pending = store::pending(meta, &d.id).await?;
                    let next = pending.last().map_or(0, |e| e.seq + 1);
                    let id = d.id.clone();
                    let slot = self.spawn(Arc::new(DestState {
                        dest: Mutex::new(Arc::new(d)),
                        wake: Notify::new(),
                        next_seq: AtomicU64::new(next),
                        status: Mutex::new(AlertStatus {
                            state: "active".into(),
                            pending_events: pending.len() as u64,
                            ..AlertStatus::default()
                        }),
                    }));
                    dests.insert(id, slot);
                }
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }

    fn spawn(&self, state: Arc<DestState>) -> Slot {
        let (stop, stop_rx) = watch::channel(false);
        let (ctx, st, rx) = (self.ctx.clone(), state.clone(), stop_rx.clone());
        let what = format!("alert destination {}", state.dest().id);
        let join = tokio::spawn(supervise(what, stop_rx, self.backoff, move || {
            send::Sender::new(ctx.clone(), st.clone(), rx.clone()).run()
        }));
        Slot { state, stop, join }
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
        for slot in dests.values() {
            let st = &slot.state;
            let d = st.dest();
            if !d.wants(alert.kind, &alert.project) {
                continue;
            }
            let entry = OutboxEntry {
                id: id.clone(),
                seq: st.next_seq.fetch_add(1, Ordering::Relaxed),
                body: body.clone(),
            };
            if let Err(e) = self.enqueue(&d.id, st, &entry).await {
                tracing::error!(destination = %d.id, event = %entry.id, error = %e, "cannot store an alert; it is lost");
            }
        }
    }

    async fn enqueue(&self, dest: &str, st: &DestState, e: &OutboxEntry) -> Result<(), StoreError> {
        let meta = self.ctx.meta.as_ref();
        store::push(meta, dest, e).await?;
        let pending = st.with_status(|s| {
            s.pending_events += 1;
            s.pending_events
        });
        if pending as usize > MAX_ALERT_OUTBOX_EVENTS {
            let all = store::pending(meta, dest).await?;
            let over = all.len().saturating_sub(MAX_ALERT_OUTBOX_EVENTS);
            for old in &all[..over] {
                store::remove(meta, dest, old).await?;
                tracing::warn!(destination = dest, event = %old.id, "alert outbox full: oldest alert dropped");
            }
            st.with_status(|s| {
                s.dropped_events += over as u64;
                s.pending_events = (all.len() - over) as u64;
            });
        }
        st.wake.notify_one();
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<AlertDestination>, AlertError> {
        self.ensure_loaded().await?;
        let dests = self.dests.lock().await;
        let mut out: Vec<AlertDestination> =
            dests.values().map(|s| (*s.state.dest()).clone()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<AlertDestination, AlertError> {
        self.ensure_loaded().await?;
        let dests = self.dests.lock().await;
        dests
            .get(id)
            .map(|s| (*s.state.dest()).clone())
            .ok_or_else(|| AlertError::NotFound(id.to_owned()))
    }

    /// How a destination is doing; `pendingEvents` counted in its outbox now.
    pub async fn status(&self, id: &str) -> Result<AlertStatus, AlertError> {
        self.ensure_loaded().await?;
        let state = {
            let dests = self.dests.lock().await;
            dests
                .get(id)
                .map(|s| s.state.clone())
                .ok_or_else(|| AlertError::NotFound(id.to_owned()))?
        };
        let pending = store::pending(self.ctx.meta.as_ref(), id).await?.len();
        let mut status = state.with_status(|st| st.clone());
        status.pending_events = pending as u64;
        Ok(status)
    }

    /// Creates a destination (validated by the caller); its sender starts at once.
    pub async fn create(&self, d: AlertDestination) -> Result<AlertDestination, AlertError> {
        self.ensure_loaded().await?;
        let mut dests = self.dests.lock().await;
        if dests.contains_key(&d.id) {
            return Err(AlertError::Conflict(d.id));
        }
        if dests.len() >= MAX_ALERT_DESTINATIONS {
            return Err(AlertError::TooMany);
        }
        let meta = self.ctx.meta.as_ref();
        // A destination of a deleted one's id starts clean.
        store::purge(meta, &d.id).await?;
        store::save_destination(meta, &d).await?;
        let slot = self.spawn(Arc::new(DestState {
            dest: Mutex::new(Arc::new(d.clone())),
            wake: Notify::new(),
            next_seq: AtomicU64::new(0),
            status: Mutex::new(AlertStatus {
                state: "active".into(),
                ..AlertStatus::default()
            }),
        }));
        dests.insert(d.id.clone(), slot);
        Ok(d)
    }

    /// Replaces a destination; its undelivered events stay and go to the new address.
    pub async fn replace(&self, d: AlertDestination) -> Result<AlertDestination, AlertError> {
        self.ensure_loaded().await?;
        let mut dests = self.dests.lock().await;
        let Some(old) = dests.remove(&d.id) else {
            return Err(AlertError::NotFound(d.id));
        };
        old.stop.send_replace(true);
        let _ = old.join.await;
        let saved = store::save_destination(self.ctx.meta.as_ref(), &d).await;
        if saved.is_ok() {
            *old.state
                .dest
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(d.clone());
        }
        // Whether or not the write succeeded, the destination keeps its sender.
        let slot = self.spawn(old.state);
        dests.insert(d.id.clone(), slot);
        saved?;
        Ok(d)
    }

    /// Deletes a destination and its undelivered events.
    pub async fn delete(&self, id: &str) -> Result<(), AlertError> {
        self.ensure_loaded().await?;
        let mut dests = self.dests.lock().await;
        let Some(slot) = dests.remove(id) else {
            return Err(AlertError::NotFound(id.to_owned()));
        };
        slot.stop.send_replace(true);
        let _ = slot.join.await;
        let meta = self.ctx.meta.as_ref();
        if let Err(e) = store::delete_destination(meta, id).await {
            // Still there: it keeps delivering.
            let slot = self.spawn(slot.state);
            dests.insert(id.to_owned(), slot);
            return Err(e.into());
        }
        // Left-overs of a failed purge are removed at the next start.
        store::purge(meta, id).await?;
        Ok(())
    }
}
