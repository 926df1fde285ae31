//! A scripted endpoint for tests: answers each request with the next scripted [`Reply`]
//! (200 once the script is used up) and reports every request it receives, with the
//! `tokio::time` instant it arrived at, on a channel.

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
    /// Never answers.
    Hang,
    /// Answers 200 after this long (a send still in flight while something else happens).
    Delay(Duration),
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

pub struct ScriptedEndpoint {
    script: Mutex<VecDeque<Reply>>,
    received: mpsc::UnboundedSender<Received>,
}

impl ScriptedEndpoint {
    /// An endpoint answering `script` in order, then 200; and the receiving end of its
    /// request reports.
    pub fn new(
        script: impl IntoIterator<Item = Reply>,
    ) -> (Arc<ScriptedEndpoint>, mpsc::UnboundedReceiver<Received>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let e = ScriptedEndpoint {
            script: Mutex::new(script.into_iter().collect()),
            received: tx,
        };
        (Arc::new(e), rx)
    }

    /// Appends replies to the script.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(replies);
    }

    fn next_reply(&self) -> Reply {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or(Reply::Status(200))
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
            Reply::Status(200) => outcome(OutcomeKind::Delivered, Some(200), None),
            Reply::Status(s) => outcome(OutcomeKind::HttpStatus, Some(s), None),
            Reply::RetryAfter(s, d) => outcome(OutcomeKind::HttpStatus, Some(s), Some(d)),
            Reply::ConnectError => outcome(OutcomeKind::Connect, None, None),
            Reply::Hang => std::future::pending().await,
            Reply::Delay(d) => {
                tokio::time::sleep(d).await;
                outcome(OutcomeKind::Delivered, Some(200), None)
            }
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
