//! One appender per environment: appends are routed to the environment's rendezvous owner
//! among the live nodes, so that only one node writes to an environment's stream.
//!
//! Every node may append to every environment's stream: messages are chained
//! (`Nats-Expected-Last-Sequence` / `Nats-Expected-Last-Msg-Id`, see `writer.rs`), so the
//! offsets stay exact whoever writes. But two nodes appending to one environment at once
//! keep losing the race on the tail to each other, and each lost race costs a tail read
//! plus rounds of one message. So, once [`super::JetStreamLog::route_appends`] gave the log
//! this node's name and the membership view, an append goes to the environment's
//! **appender** — [`rendezvous`] over the view with key `env:{id}` — over core NATS
//! request/reply on the appender's subject ([`names::append_subject`]); the appender runs
//! it through its own group-commit writer (never forwarding it again) and replies with the
//! receipt or a typed error.
//!
//! Correctness never depends on the routing: the appender appends with the same chaining
//! as any node, so two nodes that disagree about the appender for a moment (a view
//! changing) both append correctly, they only contend again until they agree.
//!
//! # When an append is not forwarded, or falls back
//!
//! It is appended locally, as without routing, when there is no route or no view (starting,
//! cut off), when this node is the appender, or when the entry does not fit one NATS
//! message with room for headers (the local writer splits big entries into parts). A
//! forward that is **certainly not stored** falls back to appending locally: no responders
//! (the appender is gone: killed, closed, or not routing), a request the client refused to
//! send (too large, bad subject), or a request the appender could not decode.
//!
//! A forward whose outcome is **unknown** — no reply within `write_timeout` plus a margin,
//! or the connection failed after the request may have left — answers
//! [`StoreError::Unavailable`] (ingest: 503 + Retry-After; the SDK retries). It is *not*
//! retried locally: the appender may have stored it after all, and a local retry could
//! not be deduplicated — the writer packs several entries into one message under a fresh
//! `Nats-Msg-Id` per message, so an entry has no id of its own for JetStream's duplicate
//! window to recognise. A 503 for something that was stored is what the writer already
//! answers when an acknowledgement is lost (the SDK's retry may then store it twice:
//! at-least-once); a local retry would turn the same case into a 200 *and* a duplicate
//! with no signal. And no answer ever acknowledges what the appender did not acknowledge
//! as stored.

use super::super::names;
use super::Inner;
use crate::error::{StoreError, Transient};
use crate::log::{AppendEntry, AppendReceipt, validate_env_id};
use crate::members::{Members, rendezvous};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tracing::debug;

/// This node's name and the membership view appenders are chosen from.
pub(super) struct Route {
    pub node: String,
    pub view: watch::Receiver<Members>,
}

const H_ENV: &str = "Sluice-Env";
const H_COUNT: &str = "Sluice-Count";
const H_MIN_TIME: &str = "Sluice-Min-Time";
const H_MAX_TIME: &str = "Sluice-Max-Time";

/// How much longer than `write_timeout` a forwarder waits for the appender's answer: the
/// appender's writer answers within `write_timeout` of queueing the entry (plus the round
/// under way), so its own answer — a receipt or `Unavailable` — normally arrives first.
const REPLY_MARGIN: Duration = Duration::from_secs(1);

/// The rendezvous key of `env`'s appender (distinct from integration ids).
pub fn appender_key(env: &str) -> String {
    format!("env:{env}")
}

/// The node `env`'s appends go to, if not this one.
fn appender_elsewhere(inner: &Inner, env: &str, entry: &AppendEntry) -> Option<String> {
    let route = inner.route.get()?;
    // Too large for one request with its headers: the local writer splits it.
    if entry.payload.len() > inner.max_body {
        return None;
    }
    let view = route.view.borrow();
    let owner = rendezvous(&view, &appender_key(env))?;
    (owner != route.node).then(|| owner.to_owned())
}

/// Appends `entry`, through `env`'s appender when that is another node (see the module
/// documentation).
pub(super) async fn append(
    inner: &Arc<Inner>,
    env: &str,
    entry: AppendEntry,
) -> Result<AppendReceipt, StoreError> {
    let Some(node) = appender_elsewhere(inner, env, &entry) else {
        return super::append_local(inner, env, entry).await;
    };
    match forward(inner, &node, env, entry).await {
        Forwarded::Answered(r) => {
            inner.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            r
        }
        Forwarded::NotStored(entry, why) => {
            debug!(env, appender = %node, why, "append not forwarded; appending locally");
            inner.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
            super::append_local(inner, env, entry).await
        }
    }
}

enum Forwarded {
    /// The appender's answer, or an unknown outcome (`Unavailable`).
    Answered(Result<AppendReceipt, StoreError>),
    /// Certainly not stored by the appender: append it here.
    NotStored(AppendEntry, &'static str),
}

async fn forward(inner: &Inner, node: &str, env: &str, entry: AppendEntry) -> Forwarded {
    let AppendEntry {
        payload,
        count,
        min_time,
        max_time,
    } = entry;
    let payload = Bytes::from(payload);
    let mut headers = HeaderMap::new();
    headers.insert(H_ENV, env);
    headers.insert(H_COUNT, count.to_string().as_str());
    headers.insert(H_MIN_TIME, min_time.to_string().as_str());
    headers.insert(H_MAX_TIME, max_time.to_string().as_str());
    let wait = inner.cfg.write_timeout + REPLY_MARGIN;
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(payload.clone())
        .timeout(Some(wait));
    let back = |payload: Bytes| AppendEntry {
        payload: Vec::from(payload),
        count,
        min_time,
        max_time,
    };
    let what = || format!("appending to {env} through its appender {node}");
    match inner
        .conn
        .client
        .send_request(names::append_subject(node), request)
        .await
    {
        Ok(msg) => match decode_reply(&msg.payload) {
            Reply::Answer(r) => Forwarded::Answered(r.map_err(|e| match e {
                RemoteError::Unavailable(m) => {
                    StoreError::unavailable(what(), Transient::jetstream(m))
                }
                RemoteError::TooLarge { size, limit } => StoreError::EntryTooLarge { size, limit },
                RemoteError::InvalidEnv(env) => StoreError::InvalidEnvId(env),
            })),
            Reply::Refused => Forwarded::NotStored(back(payload), "the appender refused it"),
        },
        Err(e) => match e.kind() {
            RequestErrorKind::NoResponders => Forwarded::NotStored(back(payload), "no responders"),
            RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                Forwarded::NotStored(back(payload), "the request could not be sent")
            }
            // It may be stored (see the module documentation): a transient error.
            RequestErrorKind::TimedOut => Forwarded::Answered(Err(StoreError::unavailable(
                format!("{} (outcome unknown)", what()),
                Transient::Timeout(wait),
            ))),
            RequestErrorKind::Other => Forwarded::Answered(Err(StoreError::unavailable(
                format!("{} (outcome unknown)", what()),
                Transient::jetstream(e),
            ))),
        },
    }
}

/// Serves this node's append subject: every request is appended here (never forwarded
/// again) and answered with its receipt or error.
pub(super) async fn serve(inner: Weak<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(inner) = inner.upgrade() else { return };
        tokio::spawn(async move {
            let Some(reply) = msg.reply.clone() else {
                return;
            };
            let body = match decode_request(&msg) {
                Some((env, entry)) => {
                    let r = match validate_env_id(&env) {
                        Ok(()) => super::append_local(&inner, &env, entry).await,
                        Err(e) => Err(e),
                    };
                    if r.is_ok() {
                        inner.counters.served.fetch_add(1, Ordering::Relaxed);
                    }
                    encode_reply(&r)
                }
                None => REFUSED.to_owned(),
            };
            if let Err(e) = inner.conn.client.publish(reply, body.into()).await {
                debug!(error = %e, "answering a forwarded append failed");
            }
        });
    }
}

fn decode_request(msg: &async_nats::Message) -> Option<(String, AppendEntry)> {
    let h = msg.headers.as_ref()?;
    let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
    Some((
        get(H_ENV)?,
        AppendEntry {
            payload: msg.payload.to_vec(),
            count: get(H_COUNT)?.parse().ok()?,
            min_time: get(H_MIN_TIME)?.parse().ok()?,
            max_time: get(H_MAX_TIME)?.parse().ok()?,
        },
    ))
}

/// The answer to a request the appender could not decode (nothing was appended).
const REFUSED: &str = "refused";

/// An error as the appender reports it.
#[derive(Debug, PartialEq)]
enum RemoteError {
    Unavailable(String),
    TooLarge { size: usize, limit: usize },
    InvalidEnv(String),
}

#[derive(Debug, PartialEq)]
enum Reply {
    Answer(Result<AppendReceipt, RemoteError>),
    Refused,
}

/// `ok BASE NEXT`, `too-large SIZE LIMIT`, `invalid-env ENV` or `unavailable MESSAGE`.
fn encode_reply(r: &Result<AppendReceipt, StoreError>) -> String {
    match r {
        Ok(r) => format!("ok {} {}", r.base_offset, r.next_offset),
        Err(StoreError::EntryTooLarge { size, limit }) => format!("too-large {size} {limit}"),
        Err(StoreError::InvalidEnvId(env)) => format!("invalid-env {env}"),
        // Anything else the writer answers is transient (or a bug better retried).
        Err(e) => format!("unavailable {e}"),
    }
}

fn decode_reply(body: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(body);
    let (kind, rest) = text.split_once(' ').unwrap_or((&text, ""));
    let two = |rest: &str| -> Option<(u64, u64)> {
        let (a, b) = rest.split_once(' ')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match kind {
        "ok" => match two(rest) {
            Some((base_offset, next_offset)) => Reply::Answer(Ok(AppendReceipt {
                base_offset,
                next_offset,
            })),
            // An answer we cannot read may be a stored append: not a fallback.
            None => Reply::Answer(Err(RemoteError::Unavailable(format!(
                "unreadable answer {text:?}"
            )))),
        },
        "too-large" => match two(rest) {
            Some((size, limit)) => Reply::Answer(Err(RemoteError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            })),
            None => Reply::Answer(Err(RemoteError::Unavailable(text.into_owned()))),
        },
        "invalid-env" => Reply::Answer(Err(RemoteError::InvalidEnv(rest.to_owned()))),
        REFUSED => Reply::Refused,
        _ => Reply::Answer(Err(RemoteError::Unavailable(rest.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        let ok = Ok(AppendReceipt {
            base_offset: 7,
            next_offset: 12,
        });
        assert_eq!(
            decode_reply(encode_reply(&ok).as_bytes()),
            Reply::Answer(Ok(AppendReceipt {
                base_offset: 7,
                next_offset: 12
            }))
        );
        let big = Err(StoreError::EntryTooLarge { size: 9, limit: 3 });
        assert_eq!(
            decode_reply(encode_reply(&big).as_bytes()),
            Reply::Answer(Err(RemoteError::TooLarge { size: 9, limit: 3 }))
        );
        let bad = Err(StoreError::InvalidEnvId("a/b".into()));
        assert_eq!(
            decode_reply(encode_reply(&bad).as_bytes()),
            Reply::Answer(Err(RemoteError::InvalidEnv("a/b".into())))
        );
        let down = Err(StoreError::unavailable("x", Transient::Closed));
        assert!(matches!(
            decode_reply(encode_reply(&down).as_bytes()),
            Reply::Answer(Err(RemoteError::Unavailable(_)))
        ));
        assert_eq!(decode_reply(REFUSED.as_bytes()), Reply::Refused);
        // Garbage is never a receipt, and never a fallback (it might have been stored).
        assert!(matches!(
            decode_reply(b"ok 1"),
            Reply::Answer(Err(RemoteError::Unavailable(_)))
        ));
    }

    #[test]
    fn appender_keys_differ_from_integration_ids() {
        assert_eq!(appender_key("prod"), "env:prod");
    }
}
