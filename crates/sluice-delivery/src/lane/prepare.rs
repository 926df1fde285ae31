//! Read and pin: the lane's next batch — its pinned batch if it has one (rebuilt from the
//! log when its body is not cached), else a new one cut from the log and pinned (id and
//! range persisted) before it is returned. Backlog too old to deliver, or removed by
//! retention, is skipped into a recorded gap.

use super::{Lane, LaneError};
use crate::batch::{Batch, PinnedBatch, encode_blocking, read_range, work_permit};
use crate::context::DeliveryCtx;
use crate::encode::{EncodedBody, encode_batch};
use crate::gaps::{Gap, GapReason, record_gap};
use sluice_core::model::Integration;
use sluice_store::{StoreError, StoredEntry};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the lane does next.
pub(crate) enum Next {
    /// Send this (pinned) batch.
    Send(Batch),
    /// Nothing to send before this instant (`None`: before new data arrives).
    WaitUntil(Option<Instant>),
}

/// A batch read from the log and encoded, not yet pinned (the body does not depend on
/// the batch id, which travels in the headers).
struct Unpinned {
    from: u64,
    to: u64,
    body: EncodedBody,
}

/// A full batch read and encoded ahead of time (not yet pinned).
pub(crate) struct Prefetched {
    pub from: u64,
    pub to: u64,
    pub body: EncodedBody,
}

fn encode_job(
    integ: &Integration,
    env: &str,
    entries: Vec<StoredEntry>,
    from: u64,
    to: u64,
) -> impl FnOnce() -> EncodedBody + Send + 'static {
    let env_id = env.to_owned();
    let (format, gzip, signing) = (
        integ.effective_format(),
        integ.effective_gzip(),
        integ.secret.is_some(),
    );
    move || encode_batch(&env_id, &entries, from, to, format, gzip).shed_raw_unless(signing)
}

/// Reads and encodes the full batch starting at `from` of `env`, if a full one is waiting
/// and none of it is older than the backlog age limit (the loop handles those cases).
pub(crate) async fn prefetch_full_batch(
    ctx: Arc<DeliveryCtx>,
    integ: Arc<Integration>,
    env: String,
    from: u64,
) -> Option<Prefetched> {
    let max = u64::from(integ.max_batch_impressions);
    let bounds = ctx.log.bounds(&env).await.ok()?;
    if from < bounds.first || bounds.next.saturating_sub(from) < max {
        return None;
    }
    let to = from + max;
    let _turn = work_permit().await;
    let entries = read_range(ctx.log.as_ref(), &env, from, to).await.ok()?;
    let first = entries.iter().find(|e| e.end_offset() > from)?;
    if first.ingest_ms < ctx.now_ms() - integ.max_backlog_age_ms as i64 {
        return None;
    }
    let body = encode_blocking(encode_job(&integ, &env, entries, from, to))
        .await
        .ok()?;
    Some(Prefetched { from, to, body })
}

impl Lane {
    /// The batch to send now, or when to look again.
    pub(super) async fn next_batch(&mut self) -> Result<Next, LaneError> {
        if let Some(p) = self.pinned.clone() {
            if let Some(b) = self.cached.take()
                && b.pinned == p
            {
                return Ok(Next::Send(b));
            }
            let _turn = work_permit().await;
            let entries = read_range(self.ctx.log.as_ref(), &p.env, p.from, p.to).await?;
            let body = self.encode(entries, p.from, p.to).await?;
            return Ok(Next::Send(Batch { pinned: p, body }));
        }
        match self.read_next().await? {
            Ok(unpinned) => self.pin(unpinned).await.map(Next::Send),
            Err(deadline) => Ok(Next::WaitUntil(deadline)),
        }
    }

    /// Reads the next batch of the environment from its position, or says when one may be
    /// ready. Skips (into a gap) what retention removed and backlog too old to send.
    async fn read_next(&mut self) -> Result<Result<Unpinned, Option<Instant>>, LaneError> {
        let env = self.env.clone();
        let flush = Duration::from_millis(self.integ.flush_interval_ms);
        let max = u64::from(self.integ.max_batch_impressions);
        let bounds = self.ctx.log.bounds(&env).await?;
        let mut from = self.position.unwrap_or(bounds.next);
        if from < bounds.first {
            // Retention removed impressions this integration had not delivered.
            self.skip(from, bounds.first, None, GapReason::Retention)
                .await?;
            from = bounds.first;
        }
        let available = bounds.next.saturating_sub(from);
        if available == 0 {
            return Ok(Err(None));
        }
        let now = Instant::now();
        let due = self.last_send.map_or(now, |t| t + flush);
        if available < max && now < due {
            return Ok(Err(Some(due)));
        }
        let turn = work_permit().await;
        let entries = read_range(
            self.ctx.log.as_ref(),
            &env,
            from,
            (from + max).min(bounds.next),
        )
        .await?;
        let Some(first) = entries.iter().find(|e| e.end_offset() > from) else {
            return Ok(Err(None));
        };
        let cutoff = self.ctx.now_ms() - self.integ.max_backlog_age_ms as i64;
        if first.ingest_ms < cutoff {
            drop(turn);
            let to = self
                .ctx
                .log
                .offset_at_ingest_time(&env, cutoff)
                .await?
                .max(from);
            let first_ms = first.ingest_ms;
            self.skip(from, to, Some((first_ms, cutoff)), GapReason::MaxBacklogAge)
                .await?;
            return Ok(Err(Some(Instant::now())));
        }
        let end = entries
            .last()
            .map_or(from, |e| e.end_offset())
            .min(bounds.next);
        let to = end.min(from + max);
        if to <= from {
            return Ok(Err(None));
        }
        let body = self.encode(entries, from, to).await?;
        drop(turn);
        Ok(Ok(Unpinned { from, to, body }))
    }

    /// Pins a batch: its id and range are persisted before it is sent.
    async fn pin(&mut self, u: Unpinned) -> Result<Batch, LaneError> {
        let pinned = PinnedBatch {
            id: self.next_batch_id().await,
            env: self.env.clone(),
            from: u.from,
            to: u.to,
        };
        self.pinned = Some(pinned.clone());
        self.save().await?;
        Ok(Batch {
            pinned,
            body: u.body,
        })
    }

    async fn encode(
        &self,
        entries: Vec<StoredEntry>,
        from: u64,
        to: u64,
    ) -> Result<EncodedBody, LaneError> {
        let job = encode_job(&self.integ, &self.env, entries, from, to);
        Ok(encode_blocking(job).await?)
    }

    /// Skips `[from, to)` (recording a gap) and moves the position past it.
    async fn skip(
        &mut self,
        from: u64,
        to: u64,
        window: Option<(i64, i64)>,
        reason: GapReason,
    ) -> Result<(), StoreError> {
        if to <= from {
            return Ok(());
        }
        let gap = Gap {
            id: String::new(),
            integration_id: self.integ.id.clone(),
            environment_id: self.env.clone(),
            from_offset: from,
            to_offset: to,
            from: window.map(|w| w.0),
            to: window.map(|w| w.1),
            impressions: to - from,
            reason,
            recorded_at: self.ctx.now_ms(),
            closed_by: None,
            lost_impressions: 0,
        };
        let gap = record_gap(self.ctx.meta.as_ref(), gap).await?;
        self.ctx.events.gap_recorded(&self.integ, &gap);
        self.position = Some(to);
        self.save().await?;
        self.shared.with(|s| {
            s.gaps += 1;
            s.gap_impressions += to - from;
        });
        crate::metrics::gap(to - from);
        Ok(())
    }
}
