//! One environment's group-commit writer (one task per environment and process).
//!
//! A round takes every queued append (up to `max_round_bytes`), packs them into as few
//! messages as `max_payload` allows (an entry too large for one message becomes parts),
//! and publishes them **pipelined**, each chained on the one before it:
//! `Nats-Expected-Last-Sequence` (the sequence the previous message got or will get) and,
//! from the second message on, `Nats-Expected-Last-Msg-Id` (the previous message's id).
//! So a message is stored only directly after its predecessor: offsets in headers stay
//! exact whatever other nodes append to the same environment concurrently, and when a
//! message is refused every later one of the round is refused too.
//!
//! When a round does not fully succeed (another node appended first, an ack timed out,
//! the leader changed), the rest is sent again **one message at a time** from the stream's
//! re-read tail, each with its **same `Nats-Msg-Id`**: JetStream's duplicate window
//! answers "duplicate" for a message that was stored after all, so nothing is stored
//! twice. A part whose predecessor is no longer the last message restarts its entry under
//! new ids (the parts already stored are a torn run that readers skip). Waiters get their
//! receipts only for stored messages; after `write_timeout` without success the rest get
//! `Unavailable` and the next round starts from a re-read tail.

use super::super::frame::{self, MsgMeta};
use super::super::names;
use super::Inner;
use super::read::{self, Tail, now_ms};
use crate::error::{StoreError, Transient};
use crate::log::{AppendEntry, AppendReceipt};
use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tracing::debug;

/// One append waiting for its round.
pub struct Pending {
    entry: AppendEntry,
    reply: oneshot::Sender<Result<AppendReceipt, StoreError>>,
    queued: Instant,
}

impl Pending {
    pub fn new(
        entry: AppendEntry,
        reply: oneshot::Sender<Result<AppendReceipt, StoreError>>,
    ) -> Pending {
        Pending {
            entry,
            reply,
            queued: Instant::now(),
        }
    }
}

/// What one message carries.
enum Body {
    /// Whole entries (their waiters, in order).
    Packed(Vec<Pending>),
    /// Part `i` of `n` of one entry; the waiter rides on the last part.
    Part {
        i: u32,
        n: u32,
        /// The entry's whole packed body (shared), to split again after a torn run.
        whole: Bytes,
        /// The id of part `i - 1`.
        prev_id: Option<String>,
        waiter: Option<Pending>,
    },
}

struct Msg {
    body: Body,
    bytes: Bytes,
    count: u32,
    min_time: i64,
    max_time: i64,
    id: String,
    /// Set once stored: its headers as stored.
    stored: Option<(u64, MsgMeta)>,
}

impl Msg {
    /// Its headers when published at `offset` at `ingest_ms`.
    fn meta(&self, offset: u64, ingest_ms: i64) -> MsgMeta {
        MsgMeta {
            offset,
            count: self.count,
            ingest_ms,
            min_time: self.min_time,
            max_time: self.max_time,
            part: self.part(),
        }
    }

    fn part(&self) -> Option<(u32, u32)> {
        match self.body {
            Body::Part { i, n, .. } => Some((i, n)),
            Body::Packed(_) => None,
        }
    }
}

pub async fn run(inner: Arc<Inner>, env: String, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut tail: Option<Tail> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].entry.payload.len();
        while bytes < inner.cfg.max_round_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.entry.payload.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        inner.counters.rounds.fetch_add(1, Ordering::Relaxed);
        let deadline = batch[0].queued + inner.cfg.write_timeout;
        let msgs = plan(&inner, batch);
        tail = commit(&inner, &env, tail, msgs, deadline).await;
    }
}

/// Packs a round's entries into messages under the body limit.
fn plan(inner: &Inner, batch: Vec<Pending>) -> VecDeque<Msg> {
    let max = inner.max_body;
    let mut out = VecDeque::new();
    let mut cur: Vec<Pending> = Vec::new();
    let mut cur_len = 1;
    let flush = |cur: &mut Vec<Pending>, out: &mut VecDeque<Msg>| {
        if cur.is_empty() {
            return;
        }
        let entries = std::mem::take(cur);
        let len: usize = entries.iter().map(|p| frame::packed_len(&p.entry)).sum();
        let mut body = frame::new_body(len);
        for p in &entries {
            frame::push_entry(&mut body, &p.entry);
        }
        out.push_back(Msg {
            count: entries.iter().map(|p| p.entry.count).sum(),
            min_time: entries.iter().map(|p| p.entry.min_time).min().unwrap_or(0),
            max_time: entries.iter().map(|p| p.entry.max_time).max().unwrap_or(0),
            bytes: body.freeze(),
            body: Body::Packed(entries),
            id: inner.msg_id(),
            stored: None,
        });
    };
    for p in batch {
        let len = frame::packed_len(&p.entry);
        if 1 + len > max {
            flush(&mut cur, &mut out);
            cur_len = 1;
            out.extend(split(inner, p));
            continue;
        }
        if cur_len + len > max {
            flush(&mut cur, &mut out);
            cur_len = 1;
        }
        cur_len += len;
        cur.push(p);
    }
    flush(&mut cur, &mut out);
    out
}

/// An entry's parts (fresh ids), the waiter on the last.
fn split(inner: &Inner, p: Pending) -> Vec<Msg> {
    let mut body = frame::new_body(frame::packed_len(&p.entry));
    frame::push_entry(&mut body, &p.entry);
    let (count, min_time, max_time) = (p.entry.count, p.entry.min_time, p.entry.max_time);
    split_body(inner, body.freeze(), count, min_time, max_time, p)
}

fn split_body(
    inner: &Inner,
    whole: Bytes,
    count: u32,
    min_time: i64,
    max_time: i64,
    waiter: Pending,
) -> Vec<Msg> {
    let chunks: Vec<Bytes> = whole
        .chunks(inner.max_body)
        .map(|c| whole.slice_ref(c))
        .collect();
    let n = chunks.len() as u32;
    let mut waiter = Some(waiter);
    let mut prev_id = None;
    chunks
        .into_iter()
        .enumerate()
        .map(|(k, bytes)| {
            let i = k as u32 + 1;
            let id = inner.msg_id();
            Msg {
                body: Body::Part {
                    i,
                    n,
                    whole: whole.clone(),
                    prev_id: prev_id.replace(id.clone()),
                    waiter: if i == n { waiter.take() } else { None },
                },
                bytes,
                count,
                min_time,
                max_time,
                id,
                stored: None,
            }
        })
        .collect()
}

fn publish(
    msg: &Msg,
    offset: u64,
    ingest_ms: i64,
    expect_seq: u64,
    expect_id: Option<&str>,
) -> PublishMessage {
    let mut headers = HeaderMap::new();
    msg.meta(offset, ingest_ms).to_headers(&mut headers);
    let mut p = PublishMessage::build()
        .headers(headers)
        .payload(msg.bytes.clone())
        .message_id(&msg.id)
        .expected_last_sequence(expect_seq);
    if let Some(id) = expect_id {
        p = p.expected_last_message_id(id);
    }
    p
}

/// The offset a message starts at when appended after `tail` (a part continues its run).
fn next_offset(tail: &Tail) -> u64 {
    tail.end
}

/// Completes the waiters of a stored message.
fn complete(msg: Msg) {
    let Some((_, meta)) = msg.stored else { return };
    match msg.body {
        Body::Packed(entries) => {
            let mut base = meta.offset;
            for p in entries {
                let next = base + u64::from(p.entry.count);
                let _ = p.reply.send(Ok(AppendReceipt {
                    base_offset: base,
                    next_offset: next,
                }));
                base = next;
            }
        }
        Body::Part { waiter, .. } => {
            if let Some(p) = waiter {
                let _ = p.reply.send(Ok(AppendReceipt {
                    base_offset: meta.offset,
                    next_offset: meta.offset + u64::from(p.entry.count),
                }));
            }
        }
    }
}

fn fail(msg: Msg, what: &str, cause: &Transient) {
    let again = || StoreError::unavailable(what, cause.clone());
    match msg.body {
        Body::Packed(entries) => {
            for p in entries {
                let _ = p.reply.send(Err(again()));
            }
        }
        Body::Part { waiter, .. } => {
            if let Some(p) = waiter {
                let _ = p.reply.send(Err(again()));
            }
        }
    }
}

/// The tail after storing `meta` at `seq` under `id`.
fn tail_after(seq: u64, meta: MsgMeta, id: &str) -> Tail {
    Tail {
        seq,
        end: meta.end_after(),
        ingest_ms: meta.ingest_ms,
        msg_id: Some(id.to_owned()),
        meta: Some(meta),
    }
}

/// Publishes `msgs` in order; returns the tail to start the next round from (`None`: re-read
/// it first).
async fn commit(
    inner: &Inner,
    env: &str,
    tail: Option<Tail>,
    mut msgs: VecDeque<Msg>,
    deadline: Instant,
) -> Option<Tail> {
    let mut tail = tail;
    // Fast path: one pipelined pass from a known tail.
    if let Some(t) = tail.take() {
        tail = pipelined(inner, env, t, &mut msgs).await;
        announce(inner, env, tail.as_ref()).await;
    }
    // Slow path: one message at a time from a re-read tail.
    let mut backoff = Duration::from_millis(50);
    while !msgs.is_empty() {
        if Instant::now() >= deadline {
            let what = format!("appending to {env} on JetStream");
            let cause = Transient::Timeout(inner.cfg.write_timeout);
            for m in msgs.drain(..) {
                fail(m, &what, &cause);
            }
            return None;
        }
        let t = match tail.take() {
            Some(t) => t,
            None => match read::tail(inner, env).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(env, error = %e, "re-reading the log tail failed; retrying");
                    tokio::time::sleep(
                        backoff.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
            },
        };
        inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        let mut raced = false;
        tail = one(inner, env, t, &mut msgs, &mut raced).await;
        // Losing the race to another node's append is progress, not trouble: re-read and
        // try again at once. Backing off there (it did, up to 500 ms) let the other node's
        // pipelined rounds win every time: under full load from two nodes, appends of the
        // losing one ran into the write timeout (503) while JetStream was healthy.
        if tail.is_none() && !raced {
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        } else {
            backoff = Duration::from_millis(50);
        }
        announce(inner, env, tail.as_ref()).await;
    }
    tail
}

async fn announce(inner: &Inner, env: &str, tail: Option<&Tail>) {
    if let Some(t) = tail.filter(|t| t.seq > 0) {
        inner.announce_end(env, t.end).await;
    }
}

/// Publishes every message pipelined, chained from `tail`. Stored messages are completed
/// and removed from `msgs`; returns the new tail, or `None` if some were not stored.
async fn pipelined(inner: &Inner, env: &str, tail: Tail, msgs: &mut VecDeque<Msg>) -> Option<Tail> {
    let subject = names::log_subject(env);
    let ingest_ms = now_ms().max(tail.ingest_ms);
    let mut offset = next_offset(&tail);
    let mut futures: Vec<Option<PublishAckFuture>> = Vec::with_capacity(msgs.len());
    let mut metas = Vec::with_capacity(msgs.len());
    let mut prev_id = match msgs.front().and_then(Msg::part) {
        // Continuing a run is never pipelined from an unknown predecessor.
        Some((i, _)) if i > 1 => return Some(tail),
        _ => None::<String>,
    };
    for (k, m) in msgs.iter().enumerate() {
        let expect_seq = tail.seq + k as u64;
        let p = publish(m, offset, ingest_ms, expect_seq, prev_id.as_deref());
        let meta = m.meta(offset, ingest_ms);
        offset = meta.end_after();
        metas.push(meta);
        prev_id = Some(m.id.clone());
        match inner.conn.js.send_publish(subject.clone(), p).await {
            Ok(f) => futures.push(Some(f)),
            Err(e) => {
                debug!(env, error = %e, "publish not sent");
                futures.push(None);
                break;
            }
        }
    }
    let mut outcomes = Vec::with_capacity(futures.len());
    for f in futures {
        outcomes.push(match f {
            Some(f) => f.await.map_err(|e| e.kind()),
            None => Err(PublishErrorKind::Other),
        });
    }
    // The last acknowledged message proves every earlier one stored (the chain).
    let last_ok = outcomes.iter().rposition(|o| o.is_ok());
    let mut new_tail = None;
    if let Some(l) = last_ok {
        for (k, meta) in metas.into_iter().enumerate().take(l + 1) {
            // Chained: message k is at the sequence after its predecessor's.
            let seq = match &outcomes[k] {
                Ok(ack) => ack.sequence,
                Err(_) => tail.seq + 1 + k as u64,
            };
            let mut m = msgs.pop_front()?;
            m.stored = Some((seq, meta));
            inner.counters.messages.fetch_add(1, Ordering::Relaxed);
            if meta.part.is_none_or(|(i, n)| i == n) {
                let head = seq - u64::from(meta.part.map_or(0, |(i, _)| i - 1));
                inner.remember_start(env, meta.offset, head);
            }
            new_tail = Some(tail_after(seq, meta, &m.id));
            complete(m);
        }
    }
    if msgs.is_empty() {
        return new_tail.or(Some(tail));
    }
    if outcomes.get(last_ok.map_or(0, |l| l + 1)).is_some_and(|o| {
        matches!(
            o,
            Err(PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId)
        )
    }) {
        debug!(env, "another writer appended first; re-reading the tail");
    }
    None
}

/// Sends the first of `msgs` alone, chained from a freshly read `tail`, with its same id.
/// Returns the new tail, or `None` when it must be re-read; `raced` turns true when that is
/// because another writer appended first (or an earlier attempt was stored): not a failure,
/// so the caller re-reads at once instead of backing off.
async fn one(
    inner: &Inner,
    env: &str,
    tail: Tail,
    msgs: &mut VecDeque<Msg>,
    raced: &mut bool,
) -> Option<Tail> {
    let m = msgs.front()?;
    let ingest_ms = now_ms().max(tail.ingest_ms);
    let part = m.part();
    // A part after the first continues only directly after its predecessor.
    let (expect_id, offset) = match &m.body {
        Body::Part { i, prev_id, .. } if *i > 1 => {
            let after_prev = prev_id.is_some() && tail.msg_id == *prev_id;
            match (after_prev, tail.meta) {
                (true, Some(t)) => (prev_id.clone(), t.offset),
                _ => {
                    restart_entry(inner, msgs);
                    return Some(tail);
                }
            }
        }
        _ => (None, next_offset(&tail)),
    };
    let p = publish(m, offset, ingest_ms, tail.seq, expect_id.as_deref());
    let subject = names::log_subject(env);
    let outcome = match inner.conn.js.send_publish(subject, p).await {
        Ok(f) => f.await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(ack) if ack.duplicate => {
            // Stored by an earlier attempt: believe what is stored, then re-read the tail.
            *raced = true;
            let stored = match inner.stream(env).await {
                Ok(s) => s.get_raw_message(ack.sequence).await.ok(),
                Err(_) => None,
            };
            let meta = stored.and_then(|s| MsgMeta::from_headers(&s.headers, ack.sequence).ok())?;
            let mut m = msgs.pop_front()?;
            m.stored = Some((ack.sequence, meta));
            inner.counters.messages.fetch_add(1, Ordering::Relaxed);
            complete(m);
            None
        }
        Ok(ack) => {
            let meta = m.meta(offset, ingest_ms);
            let mut m = msgs.pop_front()?;
            m.stored = Some((ack.sequence, meta));
            inner.counters.messages.fetch_add(1, Ordering::Relaxed);
            let t = tail_after(ack.sequence, meta, &m.id);
            complete(m);
            Some(t)
        }
        Err(e) => {
            let lost_race = matches!(
                e.kind(),
                PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence
            );
            *raced = lost_race;
            if lost_race && part.is_some_and(|(i, _)| i > 1) {
                restart_entry(inner, msgs);
            }
            debug!(env, error = %e, "append not stored yet; retrying");
            None
        }
    }
}

/// The first message is a part whose run was broken: queue its whole entry again under
/// new ids (the parts already stored stay behind as a torn run, which readers skip).
fn restart_entry(inner: &Inner, msgs: &mut VecDeque<Msg>) {
    let Some((i, n)) = msgs.front().and_then(Msg::part) else {
        return;
    };
    let rest: Vec<Msg> = msgs
        .drain(..((n - i + 1) as usize).min(msgs.len()))
        .collect();
    let Some(first) = rest.first() else { return };
    let (count, min_time, max_time) = (first.count, first.min_time, first.max_time);
    let mut whole = None;
    let mut waiter = None;
    for m in rest {
        if let Body::Part {
            whole: w,
            waiter: p,
            ..
        } = m.body
        {
            whole = Some(w);
            waiter = waiter.or(p);
        }
    }
    let (Some(whole), Some(waiter)) = (whole, waiter) else {
        return;
    };
    for m in split_body(inner, whole, count, min_time, max_time, waiter)
        .into_iter()
        .rev()
    {
        msgs.push_front(m);
    }
}
