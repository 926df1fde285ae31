//! One alert destination's sender: its outbox in order, one event per request, under the
//! event's own `webhook-id`, signed with the destination's secret. Protected exactly as an
//! integration is ([`crate::health::Health`] with the default
//! [`sluice_core::model::Protection`]): a failed attempt is retried once after 300 ms (or
//! the destination's `Retry-After`); sustained failure pauses the destination, a probe
//! after the cooldown resumes it or doubles the cooldown. An event that cannot be
//! delivered stays first in line (logged at INFO: "alert undeliverable").

use super::DestState;
use super::store::{self, OutboxEntry};
use crate::context::DeliveryCtx;
use crate::encode::EncodedBody;
use crate::endpoint::Endpoint;
use crate::health::{Health, Phase};
use crate::http::Outcome;
use crate::request::build_request;
use crate::supervise::until_stopped;
use bytes::Bytes;
use sluice_core::alert::AlertDestination;
use sluice_core::model::{
    DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_BACKLOG_AGE_MS, DEFAULT_MAX_BATCH_IMPRESSIONS, Format,
    Integration, Protection,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// An alert destination as the delivery pieces see a destination: its URL and secret, JSON
/// without gzip, the default protection (timeouts, cooldowns).
pub(crate) fn as_integration(d: &AlertDestination) -> Integration {
    Integration {
        id: d.id.clone(),
        name: d.id.clone(),
        project: d.project.clone().unwrap_or_default(),
        url: d.url.clone(),
        environments: Vec::new(),
        format: Some(Format::Json),
        gzip: Some(false),
        secret: Some(d.secret.clone()),
        headers: BTreeMap::new(),
        flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
        max_batch_impressions: DEFAULT_MAX_BATCH_IMPRESSIONS,
        max_backlog_age_ms: DEFAULT_MAX_BACKLOG_AGE_MS,
        enabled: true,
        max_in_flight: 1,
        max_requests_per_second: None,
        protection: Protection::default(),
    }
}

fn jitter() -> f64 {
    rand::random::<f64>() * 2.0 - 1.0
}

pub(crate) struct Sender {
    ctx: Arc<DeliveryCtx>,
    state: Arc<DestState>,
    stop: watch::Receiver<bool>,
}

/// Whether to go on after a wait.
enum Go {
    On,
    Stop,
}

impl Sender {
    pub(crate) fn new(
        ctx: Arc<DeliveryCtx>,
        state: Arc<DestState>,
        stop: watch::Receiver<bool>,
    ) -> Sender {
        Sender { ctx, state, stop }
    }

    async fn wait(&mut self, until: Instant) -> Go {
        tokio::select! {
            _ = sleep_until(until) => Go::On,
            _ = until_stopped(&mut self.stop) => Go::Stop,
        }
    }

    pub(crate) async fn run(mut self) {
        let dest = self.state.dest();
        let integ = as_integration(&dest);
        let endpoint = match self.ctx.connector.connect(&integ) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(destination = %dest.id, error = %e, "cannot build the alert destination's HTTP client");
                return;
            }
        };
        let mut health = Health::new(integ.protection.clone());
        let meta = self.ctx.meta.clone();
        loop {
            if *self.stop.borrow() {
                return;
            }
            let outbox = match store::pending(meta.as_ref(), &dest.id).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(destination = %dest.id, error = %e, "cannot read the alert outbox; retrying in 1 s");
                    match self.wait(Instant::now() + Duration::from_secs(1)).await {
                        Go::On => continue,
                        Go::Stop => return,
                    }
                }
            };
            if outbox.is_empty() {
                tokio::select! {
                    _ = self.state.wake.notified() => continue,
                    _ = until_stopped(&mut self.stop) => return,
                }
            }
            for entry in outbox {
                match self
                    .deliver(&integ, endpoint.as_ref(), &mut health, &entry)
                    .await
                {
                    Some(true) => {
                        if let Err(e) = store::remove(meta.as_ref(), &entry).await {
                            tracing::warn!(destination = %dest.id, error = %e, "cannot remove a delivered alert; it may be sent again");
                        }
                        self.state.with_status(|s| s.delivered_events += 1);
                    }
                    // Not delivered: it stays first in line; read the outbox again.
                    Some(false) => break,
                    None => return,
                }
            }
        }
    }

    /// Sends one event under protection: `Some(true)` delivered, `Some(false)` not (kept),
    /// `None` stopped.
    async fn deliver(
        &mut self,
        integ: &Integration,
        endpoint: &dyn Endpoint,
        health: &mut Health,
        entry: &OutboxEntry,
    ) -> Option<bool> {
        let probing = match health.tick(Instant::now()) {
            Phase::Paused { until } => {
                self.set_phase("paused", Some(until));
                return match self.wait(until).await {
                    Go::On => Some(false),
                    Go::Stop => None,
                };
            }
            Phase::Probing => {
                self.set_phase("probing", None);
                true
            }
            Phase::Active => false,
        };
        let first = self.attempt(integ, endpoint, entry).await?;
        let ok = first.is_delivered();
        let now_ms = self.ctx.now_ms();
        if probing {
            health.record_probe(ok, Instant::now(), now_ms, jitter());
            if ok {
                tracing::info!(event = "alert_destination_resumed", destination = %integ.id, "alert destination resumed: probe delivered");
                self.set_phase("active", None);
            } else {
                self.undeliverable(integ, entry, &first, health);
            }
            return Some(ok);
        }
        let paused = health.record(observed(ok, &first), now_ms, jitter());
        if ok {
            return Some(true);
        }
        if paused {
            self.undeliverable(integ, entry, &first, health);
            return Some(false);
        }
        let delay = retry_after(&first, integ).unwrap_or(self.ctx.opts.retry_delay);
        if let Go::Stop = self.wait(Instant::now() + delay).await {
            return None;
        }
        let second = self.attempt(integ, endpoint, entry).await?;
        let ok = second.is_delivered();
        health.record(observed(ok, &second), self.ctx.now_ms(), jitter());
        if !ok {
            self.undeliverable(integ, entry, &second, health);
        }
        Some(ok)
    }

    /// One attempt (abandoned when stopped).
    async fn attempt(
        &mut self,
        integ: &Integration,
        endpoint: &dyn Endpoint,
        entry: &OutboxEntry,
    ) -> Option<Outcome> {
        let raw = Bytes::from(entry.body.clone());
        let body = EncodedBody {
            raw: raw.clone(),
            wire: raw,
            gzip: false,
            count: 0,
        };
        let req = build_request(integ, &entry.id, &body, self.ctx.now_ms() / 1000);
        let outcome = tokio::select! {
            o = endpoint.send(&req) => o,
            _ = until_stopped(&mut self.stop) => return None,
        };
        if !outcome.is_delivered() {
            let now = self.ctx.now_ms();
            self.state.with_status(|s| {
                s.failed_attempts += 1;
                s.last_error = Some(describe(&outcome));
                s.last_error_at = Some(now);
            });
        }
        Some(outcome)
    }

    fn set_phase(&self, state: &str, until: Option<Instant>) {
        let paused_until = until.map(|u| {
            let left = u.saturating_duration_since(Instant::now());
            self.ctx.now_ms() + left.as_millis() as i64
        });
        self.state.with_status(|s| {
            s.state = state.to_owned();
            s.paused_until = paused_until;
        });
    }

    /// Logs an event that could not be delivered (it is kept and tried again).
    fn undeliverable(
        &self,
        integ: &Integration,
        entry: &OutboxEntry,
        outcome: &Outcome,
        health: &Health,
    ) {
        let paused_for_ms = match health.phase() {
            Phase::Paused { until } => {
                self.set_phase("paused", Some(until));
                Some(until.saturating_duration_since(Instant::now()).as_millis() as u64)
            }
            _ => None,
        };
        tracing::info!(
            event = "alert_undeliverable",
            destination = %integ.id,
            alert = %entry.id,
            error = %describe(outcome),
            paused_for_ms,
            "alert undeliverable: {}; kept and tried again",
            describe(outcome)
        );
    }
}

/// What went wrong, for the status and the log (never the URL).
fn describe(o: &Outcome) -> String {
    o.error.clone().unwrap_or_else(|| match o.status {
        Some(s) => format!("HTTP {s}"),
        None => "failed".into(),
    })
}

fn retry_after(o: &Outcome, integ: &Integration) -> Option<Duration> {
    match o.status {
        Some(429) | Some(503) => o
            .retry_after
            .map(|d| d.min(Duration::from_millis(integ.protection.max_cooldown_ms))),
        _ => None,
    }
}

/// An attempt as health sees it: it started its duration ago and ends now.
fn observed(ok: bool, outcome: &Outcome) -> crate::health::Attempt {
    let ended = Instant::now();
    crate::health::Attempt {
        ok,
        started: ended.checked_sub(outcome.duration).unwrap_or(ended),
        ended,
    }
}
