//! Send: one attempt, then (not for probes) one retry after `retry_delay` (300 ms) or the
//! destination's `Retry-After`. Every attempt waits for its turn in the integration's
//! pacing (`maxRequestsPerSecond`, the adaptive catch-up rate) and, while the integration
//! is failing, paused or probing, for the integration's single unhealthy slot (one request
//! at a time, however many lanes); it ends at `requestTimeoutMs` at the latest. Every
//! outcome feeds the health window and the pacing; a probe's outcome resumes or extends
//! the pause.

use super::Lane;
use crate::attempts::AttemptKind;
use crate::batch::Batch;
use crate::health::{Attempt, Phase};
use crate::http::{Outcome, OutcomeKind};
use crate::pace::load_signal;
use crate::request::build_request;
use crate::shared::AttemptInfo;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};

/// A batch the destination answered 200 to: the only thing [`Lane::commit`] accepts.
pub(crate) struct Delivered(Batch);

impl Delivered {
    pub(super) fn into_batch(self) -> Batch {
        self.0
    }
}

fn jitter() -> f64 {
    rand::random::<f64>() * 2.0 - 1.0
}

impl Lane {
    /// One attempt — after its turn in the pacing (and, while unhealthy, the integration's
    /// single slot), bounded by the request timeout — recorded in the attempts log, the
    /// metrics and the pacing. Returns the outcome and when the request started.
    async fn attempt(&self, batch: &Batch, kind: AttemptKind) -> (Outcome, Instant) {
        let unhealthy = kind == AttemptKind::Probe || self.shared.with(|s| s.health.unhealthy());
        let _turn = if unhealthy {
            Some(self.common.unhealthy_turn.lock().await)
        } else {
            None
        };
        let slot = self.shared.with(|s| s.pace.reserve(Instant::now()));
        sleep_until(slot).await;
        let started_ms = self.ctx.now_ms();
        let req = build_request(
            &self.integ,
            &batch.pinned.id,
            &batch.body,
            started_ms / 1000,
        );
        let started = Instant::now();
        let timeout = Duration::from_millis(self.integ.protection.request_timeout_ms);
        let mut outcome = match tokio::time::timeout(timeout, self.endpoint.send(&req)).await {
            Ok(o) => o,
            Err(_) => Outcome {
                kind: OutcomeKind::Timeout,
                status: None,
                retry_after: None,
                duration: timeout,
                error: Some(format!("no answer within {} ms", timeout.as_millis())),
                response_snippet: String::new(),
            },
        };
        outcome.duration = started.elapsed();
        let info = AttemptInfo {
            integration_id: &self.integ.id,
            batch_id: &batch.pinned.id,
            environment_id: &batch.pinned.env,
            impressions: batch.body.count,
            bytes: batch.body.wire.len(),
            started_ms,
            kind,
        };
        self.shared.record_attempt(info, &outcome);
        self.shared
            .with(|s| s.pace.observe(started, load_signal(&outcome)));
        (outcome, started)
    }

    /// Sends a batch: `Ok` once answered 200, else the batch back (kept first in line).
    pub(super) async fn deliver(
        &mut self,
        batch: Batch,
        probing: bool,
    ) -> Result<Delivered, Batch> {
        // At most `maxInFlight` lanes of this integration send at once.
        let common = self.common.clone();
        let Ok(_in_flight) = common.in_flight.acquire().await else {
            return Err(batch);
        };
        // One probe at a time: if another lane's probe settled it meanwhile, this is no
        // longer a probe (resumed) or not to be sent (paused again).
        let _probe = if probing {
            Some(common.probe.lock().await)
        } else {
            None
        };
        let probing = if probing {
            match self.shared.with(|s| s.health.tick(Instant::now())) {
                Phase::Probing => {
                    self.ctx.events.probing(&self.integ, &self.env);
                    true
                }
                Phase::Active => false,
                Phase::Paused { .. } => return Err(batch),
            }
        } else {
            false
        };
        let kind = if probing {
            AttemptKind::Probe
        } else {
            AttemptKind::Live
        };
        let (first, started) = self.attempt(&batch, kind).await;
        let ok = first.is_delivered();
        let now_ms = self.ctx.now_ms();
        if probing {
            let pause = self.shared.with(|s| {
                s.health.record_probe(ok, Instant::now(), now_ms, jitter());
                s.health.last_pause().cloned()
            });
            if ok {
                self.ctx.events.resumed(&self.integ, &self.env);
            } else if let Some(p) = pause {
                self.ctx.events.pause_extended(&self.integ, &self.env, &p);
            }
            self.note_retry_after(&first);
            return if ok { Ok(Delivered(batch)) } else { Err(batch) };
        }
        let paused = self.record(ok, started, now_ms);
        if ok {
            return Ok(Delivered(batch));
        }
        if paused {
            self.note_retry_after(&first);
            return Err(batch);
        }
        let delay = self
            .retry_after_capped(&first)
            .unwrap_or(self.ctx.opts.retry_delay);
        sleep(delay).await;
        let (second, started) = self.attempt(&batch, AttemptKind::Retry).await;
        let ok = second.is_delivered();
        let now_ms = self.ctx.now_ms();
        self.record(ok, started, now_ms);
        if ok {
            Ok(Delivered(batch))
        } else {
            self.note_retry_after(&second);
            Err(batch)
        }
    }

    fn retry_after_capped(&self, o: &Outcome) -> Option<Duration> {
        match o.status {
            Some(429) | Some(503) => o
                .retry_after
                .map(|d| d.min(Duration::from_millis(self.integ.protection.max_cooldown_ms))),
            _ => None,
        }
    }

    /// Records a live attempt's outcome; logs the pause if this attempt caused one.
    fn record(&self, ok: bool, started: Instant, now_ms: i64) -> bool {
        let attempt = Attempt {
            ok,
            started,
            ended: Instant::now(),
        };
        let pause = self.shared.with(|s| {
            if s.health.record(attempt, now_ms, jitter()) {
                s.health.last_pause().cloned()
            } else {
                None
            }
        });
        if let Some(p) = &pause {
            self.ctx.events.paused(&self.integ, &self.env, p);
        }
        pause.is_some()
    }

    fn note_retry_after(&mut self, o: &Outcome) {
        if let Some(d) = self.retry_after_capped(o) {
            let nb = Instant::now() + d;
            self.not_before = Some(self.not_before.map_or(nb, |x| x.max(nb)));
        }
    }
}
