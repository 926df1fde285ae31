//! Reading an environment's stream: from offsets to sequences and back to entries.
//!
//! Base offsets never decrease along a stream (every append is chained on the one before
//! it), and neither do ingest times (a writer stamps `max(now, previous)`), so both can be
//! binary-searched over sequences. Messages are fetched with direct gets (any replica
//! answers); a miss below the end is asked again of the stream leader, since a follower
//! may lag.

use super::super::error::{is_stream_not_found, unavailable};
use super::super::frame::{self, MsgMeta};
use super::super::names;
use super::Inner;
use crate::error::{Corruption, StoreError};
use crate::log::{LogBounds, StoredEntry};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{
    DirectGetErrorKind, LastRawMessageErrorKind, RawMessageError, State, Stream,
};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;

/// Soft cap on the payload bytes one read returns (at least one entry always is).
const MAX_READ_BYTES: usize = 32 << 20;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The stream's state, or `None` when `env` has no stream.
pub async fn state(inner: &Inner, env: &str) -> Result<Option<State>, StoreError> {
    match inner.conn.js.get_stream(names::log_stream(env)).await {
        Ok(s) => Ok(Some(s.cached_info().state.clone())),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if is_stream_not_found(&j) => Ok(None),
            _ => Err(unavailable(format!("stream info of {env}"), e)),
        },
    }
}

/// The message at `seq`, or `None` when there is none (asking the leader on a miss).
async fn fetch(stream: &Stream<()>, seq: u64) -> Result<Option<StreamMessage>, StoreError> {
    match stream.direct_get(seq).await {
        Ok(m) => return Ok(Some(m)),
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {}
        Err(e) => return Err(unavailable(format!("reading message {seq}"), e)),
    }
    found(stream.get_raw_message(seq).await, seq)
}

/// A leader read's answer: the message, `None` for "no message", or `Unavailable`.
fn found(
    answer: Result<StreamMessage, RawMessageError>,
    seq: u64,
) -> Result<Option<StreamMessage>, StoreError> {
    match answer {
        Ok(m) => Ok(Some(m)),
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok(None),
            LastRawMessageErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::NO_MESSAGE_FOUND =>
            {
                Ok(None)
            }
            _ => Err(unavailable(format!("reading message {seq}"), e)),
        },
    }
}

/// The first message at or after `seq` (skipping purged sequences), or `None`.
async fn fetch_from(
    stream: &Stream<()>,
    subject: &str,
    seq: u64,
) -> Result<Option<StreamMessage>, StoreError> {
    match stream.direct_get_next_for_subject(subject, Some(seq)).await {
        Ok(m) => return Ok(Some(m)),
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {}
        Err(e) => return Err(unavailable(format!("reading from message {seq}"), e)),
    }
    let leader = stream
        .raw_message_builder()
        .next_by_subject(subject)
        .sequence(seq)
        .send();
    found(leader.await, seq)
}

fn meta(m: &StreamMessage) -> Result<MsgMeta, StoreError> {
    MsgMeta::from_headers(&m.headers, m.sequence)
}

/// The last message of the stream as the writer needs it.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Sequence of the last message (0: empty stream).
    pub seq: u64,
    /// Committed end offset after it.
    pub end: u64,
    /// Its ingest time (`i64::MIN` for an empty stream).
    pub ingest_ms: i64,
    /// Its `Nats-Msg-Id`.
    pub msg_id: Option<String>,
    pub meta: Option<MsgMeta>,
}

impl Tail {
    pub const EMPTY: Tail = Tail {
        seq: 0,
        end: 0,
        ingest_ms: i64::MIN,
        msg_id: None,
        meta: None,
    };
}

/// Reads the stream's last message from the leader (creating the stream if missing).
pub async fn tail(inner: &Inner, env: &str) -> Result<Tail, StoreError> {
    let Some(state) = state(inner, env).await? else {
        inner.forget_stream(env);
        inner.ensure_stream(env).await?;
        return Ok(Tail::EMPTY);
    };
    if state.last_sequence == 0 {
        return Ok(Tail::EMPTY);
    }
    let stream = inner.stream(env).await?;
    let seq = state.last_sequence;
    let msg = match stream.get_raw_message(seq).await {
        Ok(m) => m,
        Err(e) => {
            return Err(match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => {
                    StoreError::corrupt(format!("the log of {env}"), Corruption::Missing(seq))
                }
                _ => unavailable(format!("reading the last message of {env}"), e),
            });
        }
    };
    let m = meta(&msg)?;
    Ok(Tail {
        seq,
        end: m.end_after(),
        ingest_ms: m.ingest_ms,
        msg_id: msg
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned()),
        meta: Some(m),
    })
}

/// The first message (by sequence) whose headers satisfy `pred`, a predicate that is
/// false then true along the stream. `None` if no message does.
async fn search(
    inner: &Inner,
    env: &str,
    state: &State,
    pred: impl Fn(&MsgMeta) -> bool,
) -> Result<Option<(u64, MsgMeta)>, StoreError> {
    inner.counters.searches.fetch_add(1, Ordering::Relaxed);
    let stream = inner.stream(env).await?;
    let subject = names::log_subject(env);
    let (mut lo, mut hi) = (state.first_sequence.max(1), state.last_sequence + 1);
    let mut best = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fetch_from(&stream, &subject, mid).await? {
            None => hi = mid,
            Some(msg) => {
                let m = meta(&msg)?;
                if pred(&m) {
                    best = Some((msg.sequence, m));
                    hi = mid;
                } else {
                    lo = msg.sequence + 1;
                }
            }
        }
    }
    Ok(best)
}

pub async fn bounds(inner: &Inner, env: &str) -> Result<LogBounds, StoreError> {
    let Some(state) = state(inner, env).await? else {
        return Ok(LogBounds::default());
    };
    if state.last_sequence == 0 {
        return Ok(LogBounds::default());
    }
    let next = tail(inner, env).await?.end;
    let stream = inner.stream(env).await?;
    let first = match fetch_from(&stream, &names::log_subject(env), state.first_sequence).await? {
        // A part whose head was purged: its entry cannot be read; the next one can.
        Some(msg) => {
            let m = meta(&msg)?;
            match m.part {
                Some((i, _)) if i > 1 => m.offset + u64::from(m.count),
                _ => m.offset,
            }
        }
        None => next,
    };
    Ok(LogBounds {
        first: first.min(next),
        next,
    })
}

/// The sequence to start reading offset `from` at.
async fn locate(inner: &Inner, env: &str, from: u64) -> Result<Option<u64>, StoreError> {
    if let Some(seq) = inner.known_start(env, from) {
        return Ok(Some(seq));
    }
    let Some(state) = state(inner, env).await? else {
        return Ok(None);
    };
    if state.messages == 0 {
        return Ok(None);
    }
    // The first message that ends past `from`; a part steps back to its run's head.
    Ok(search(inner, env, &state, |m| m.end_after() > from)
        .await?
        .map(|(seq, m)| match m.part {
            Some((i, _)) => seq
                .saturating_sub(u64::from(i - 1))
                .max(state.first_sequence),
            None => seq,
        }))
}

/// Reads entries holding offsets `>= from` (see [`crate::ImpressionLog::read`]); with a
/// time window, only entries that may hold impressions in `[from_ms, to_ms)` count and
/// are returned.
pub async fn read(
    inner: &Inner,
    env: &str,
    from: u64,
    max_records: usize,
    window: Option<(i64, i64)>,
) -> Result<Vec<StoredEntry>, StoreError> {
    let Some(mut seq) = locate(inner, env, from).await? else {
        return Ok(Vec::new());
    };
    let stream = inner.stream(env).await?;
    let mut out = Vec::new();
    let (mut records, mut bytes) = (0usize, 0usize);
    while records < max_records.max(1) && bytes < MAX_READ_BYTES {
        let Some(msg) = fetch(&stream, seq).await? else {
            break;
        };
        inner.counters.fetched.fetch_add(1, Ordering::Relaxed);
        let m = meta(&msg)?;
        let (body, next_seq) = match m.part {
            None => (msg.payload.clone(), msg.sequence + 1),
            Some((i, n)) => match assemble(inner, &stream, msg, m, i, n).await? {
                Run::Complete(body, next) => (body, next),
                // Torn by a failed writer, or its head purged: skip it.
                Run::Torn(next) => {
                    seq = next;
                    continue;
                }
                // The end of the log is an entry still being written.
                Run::Unfinished => break,
            },
        };
        let mut base = m.offset;
        for e in frame::decode_body(&body)? {
            let entry = StoredEntry {
                base_offset: base,
                count: e.count,
                ingest_ms: m.ingest_ms,
                min_time: e.min_time,
                max_time: e.max_time,
                payload: e.payload,
            };
            base += u64::from(e.count);
            if entry.end_offset() <= from {
                continue;
            }
            if let Some((lo, hi)) = window
                && !(entry.min_time < hi && entry.max_time >= lo)
            {
                continue;
            }
            records += entry.count as usize;
            bytes += entry.payload.len();
            out.push(entry);
        }
        inner.remember_start(env, base, next_seq);
        seq = next_seq;
    }
    Ok(out)
}

enum Run {
    Complete(Bytes, u64),
    Torn(u64),
    Unfinished,
}

/// Gathers the parts of the entry whose part `i` of `n` is `first`.
async fn assemble(
    inner: &Inner,
    stream: &Stream<()>,
    first: StreamMessage,
    m: MsgMeta,
    i: u32,
    n: u32,
) -> Result<Run, StoreError> {
    if i != 1 {
        return Ok(Run::Torn(first.sequence + 1));
    }
    let mut body = BytesMut::from(&first.payload[..]);
    let mut seq = first.sequence;
    for want in 2..=n {
        seq += 1;
        let Some(msg) = fetch(stream, seq).await? else {
            return Ok(Run::Unfinished);
        };
        inner.counters.fetched.fetch_add(1, Ordering::Relaxed);
        let pm = meta(&msg)?;
        if pm.part != Some((want, n)) || pm.offset != m.offset || pm.count != m.count {
            return Ok(Run::Torn(seq));
        }
        body.extend_from_slice(&msg.payload);
    }
    Ok(Run::Complete(body.freeze(), seq + 1))
}

/// The first sequence ingested at or after `ingest_ms`, and the last sequence; `None`
/// when the stream is missing or empty.
pub async fn first_seq_ingested_at(
    inner: &Inner,
    env: &str,
    ingest_ms: i64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(state) = state(inner, env).await? else {
        return Ok(None);
    };
    if state.messages == 0 {
        return Ok(None);
    }
    let first = search(inner, env, &state, |m| m.ingest_ms >= ingest_ms)
        .await?
        .map_or(state.last_sequence + 1, |(seq, _)| seq);
    Ok(Some((first, state.last_sequence)))
}

pub async fn offset_at_ingest_time(
    inner: &Inner,
    env: &str,
    ingest_ms: i64,
) -> Result<u64, StoreError> {
    let Some(state) = state(inner, env).await? else {
        return Ok(0);
    };
    if state.messages == 0 {
        return Ok(0);
    }
    match search(inner, env, &state, |m| m.ingest_ms >= ingest_ms).await? {
        Some((_, m)) => Ok(m.offset),
        None => Ok(tail(inner, env).await?.end),
    }
}
