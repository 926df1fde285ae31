//! A scripted endpoint for tests: answers each request with the next scripted [`Reply`]
//! (then with its fallback: 200 unless told otherwise, e.g. a seeded random mix) and
//! reports every request it receives, with the `tokio::time` instant it arrived at, on a
//! channel. [`RoutedConnector`] gives integrations endpoints of their own.

use super::{Connector, Endpoint};
use crate::http::{HttpError, Outcome, OutcomeKind, PreparedRequest};
use sluice_core::model::Integration;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How the endpoint answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This HTTP status (200 is delivered).
    Status(u16),
    /// This status with a `Retry-After`.
    RetryAfter(u16, Duration),
    /// The connection failed.
    ConnectError,
    /// Never answers (the lane's request timeout ends the attempt).
    Hang,
    /// Answers this status after this long (paused time; e.g. a send still in flight while
    /// something else happens, or an answer slower than the timeout).
    Delayed(Duration, u16),
    /// The sending task panics (a bug in the sending path).
    Panic,
}

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub webhook_id: String,
    /// Impressions in the body (JSON array; bodies must not be gzipped).
    pub impressions: usize,
    /// The `key` of each impression, in order.
    pub keys: Vec<String>,
}

/// What answers once the script is used up.
pub type Fallback = Box<dyn FnMut() -> Reply + Send>;

pub struct ScriptedEndpoint {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Fallback>,
    received: mpsc::UnboundedSender<Received>,
}

impl ScriptedEndpoint {
    /// An endpoint answering `script` in order, then 200; and the receiving end of its
    /// request reports.
    pub fn new(
        script: impl IntoIterator<Item = Reply>,
    ) -> (Arc<ScriptedEndpoint>, mpsc::UnboundedReceiver<Received>) {
        ScriptedEndpoint::with_fallback(script, Box::new(|| Reply::Status(200)))
    }

    /// An endpoint answering `script` in order, then whatever `fallback` says.
    pub fn with_fallback(
        script: impl IntoIterator<Item = Reply>,
        fallback: Fallback,
    ) -> (Arc<ScriptedEndpoint>, mpsc::UnboundedReceiver<Received>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let e = ScriptedEndpoint {
            script: Mutex::new(script.into_iter().collect()),
            fallback: Mutex::new(fallback),
            received: tx,
        };
        (Arc::new(e), rx)
    }

    /// Answers with `fallback` from now on once the script is used up.
    pub fn set_fallback(&self, fallback: Fallback) {
        *self.fallback.lock().unwrap_or_else(PoisonError::into_inner) = fallback;
    }

    /// Appends replies to the script.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(replies);
    }

    fn next_reply(&self) -> Reply {
        let next = self
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        next.unwrap_or_else(|| (self.fallback.lock().unwrap_or_else(PoisonError::into_inner))())
    }
}

fn outcome(kind: OutcomeKind, status: Option<u16>, retry_after: Option<Duration>) -> Outcome {
    Outcome {
        kind,
        status,
        retry_after,
        duration: Duration::ZERO,
        error: (kind != OutcomeKind::Delivered).then(|| format!("scripted {kind:?}")),
        response_snippet: String::new(),
    }
}

fn status_outcome(status: u16) -> Outcome {
    if status == 200 {
        outcome(OutcomeKind::Delivered, Some(200), None)
    } else {
        outcome(OutcomeKind::HttpStatus, Some(status), None)
    }
}

#[async_trait::async_trait]
impl Endpoint for ScriptedEndpoint {
    async fn send(&self, req: &PreparedRequest) -> Outcome {
        let keys: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&req.body)
            .unwrap_or_default()
            .iter()
            .map(|v| v["key"].as_str().unwrap_or_default().to_owned())
            .collect();
        let webhook_id = req
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let _ = self.received.send(Received {
            at: Instant::now(),
            webhook_id,
            impressions: keys.len(),
            keys,
        });
        match self.next_reply() {
            Reply::Status(s) => status_outcome(s),
            Reply::Delayed(d, s) => {
                tokio::time::sleep(d).await;
                status_outcome(s)
            }
            Reply::RetryAfter(s, d) => outcome(OutcomeKind::HttpStatus, Some(s), Some(d)),
            Reply::ConnectError => outcome(OutcomeKind::Connect, None, None),
            Reply::Hang => std::future::pending().await,
            Reply::Panic => panic!("scripted endpoint: panic while sending"),
        }
    }
}

/// Connects every integration to the same scripted endpoint.
pub struct ScriptedConnector(pub Arc<ScriptedEndpoint>);

impl Connector for ScriptedConnector {
    fn connect(&self, _integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError> {
        Ok(self.0.clone())
    }
}

/// Connects each listed integration to its own endpoint, any other to `default`.
pub struct RoutedConnector {
    pub routes: std::collections::HashMap<String, Arc<ScriptedEndpoint>>,
    pub default: Arc<ScriptedEndpoint>,
}

impl Connector for RoutedConnector {
    fn connect(&self, integ: &Integration) -> Result<Arc<dyn Endpoint>, HttpError> {
        Ok(self.routes.get(&integ.id).unwrap_or(&self.default).clone())
    }
}
