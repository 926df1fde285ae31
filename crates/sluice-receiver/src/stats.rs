//! Counters, deduplication by `webhook-id`, the bounded request log and kept impressions.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::decode::Parsed;
use super::record::{Outcome, ReceivedAlert, ReceivedImpression, RequestRecord};

/// Alerts kept at most (the oldest dropped beyond).
const MAX_KEPT_ALERTS: usize = 10_000;

/// Distinct environments / splits counted by name; further ones are counted under
/// [`OTHER_KEY`], so a sender inventing names cannot grow the maps without bound.
pub(crate) const MAX_DISTINCT_KEYS: usize = 10_000;
/// The key that counts names beyond [`MAX_DISTINCT_KEYS`].
pub(crate) const OTHER_KEY: &str = "(other)";

/// A snapshot of what a receiver has seen. Served as JSON by `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Webhook deliveries received (control endpoints are not counted).
    pub requests: u64,
    /// Deliveries answered 200, duplicates included.
    pub delivered_batches: u64,
    /// Deliveries answered 200 whose `webhook-id` had not been answered 200 before.
    pub unique_batches: u64,
    /// Deliveries answered 200 whose `webhook-id` had already been answered 200.
    pub duplicate_batches: u64,
    /// Impressions in first-time-delivered batches.
    pub unique_impressions: u64,
    /// Impressions in duplicate batches.
    pub duplicate_impressions: u64,
    /// First-time-delivered Slack messages (also counted in `unique_batches`).
    pub slack_messages: u64,
    /// First-time-delivered sluice operator alerts (also counted in `unique_batches`).
    pub alert_events: u64,
    /// Deliveries refused 401: missing or wrong signature (with a secret configured).
    pub bad_signatures: u64,
    /// Deliveries refused 400/415: not valid gzip, JSON or outgoing form; wrong content type
    /// or encoding.
    pub bad_bodies: u64,
    /// Deliveries refused 400: missing or malformed `webhook-id` / `webhook-timestamp`
    /// (without a secret; with one they count as bad signatures).
    pub bad_headers: u64,
    /// Deliveries refused 413.
    pub too_large: u64,
    /// Deliveries whose body could not be read (client went away mid-body).
    pub read_errors: u64,
    /// Deliveries with `Content-Encoding: gzip`.
    pub gzip_requests: u64,
    /// Deliveries without a content encoding (or `identity`).
    pub plain_requests: u64,
    /// Non-200 answers given by the fault mode (status, flaky, retry).
    pub failed_answers: u64,
    /// Deliveries held without an answer by the hang mode, in total.
    pub hung_requests: u64,
    /// Deliveries being held right now.
    pub hanging_now: u64,
    /// Body bytes received as sent (compressed when gzip).
    pub bytes_received: u64,
    /// Body bytes after decompression, of the bodies that were decoded.
    pub bytes_decoded: u64,
    /// Kept impressions dropped (oldest first) to stay within the cap.
    pub kept_impressions_dropped: u64,
    /// Unique impressions per `environmentName` (at most 10,000 names, then `"(other)"`).
    pub per_environment: BTreeMap<String, u64>,
    /// Unique impressions per `split` (at most 10,000 names, then `"(other)"`).
    pub per_split: BTreeMap<String, u64>,
}

/// Caps for [`Board`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub request_log: usize,
    pub dedupe: usize,
    pub kept: usize,
}

/// Everything a receiver has recorded, behind one lock.
#[derive(Debug)]
pub(crate) struct Board {
    caps: Caps,
    stats: Stats,
    seen: HashSet<Arc<str>>,
    seen_order: VecDeque<Arc<str>>,
    requests: VecDeque<RequestRecord>,
    kept: VecDeque<ReceivedImpression>,
    alerts: VecDeque<ReceivedAlert>,
}

fn add_counts(map: &mut BTreeMap<String, u64>, counts: &[(String, u64)]) {
    for (k, n) in counts {
        if let Some(c) = map.get_mut(k.as_str()) {
            *c += n;
        } else if map.len() < MAX_DISTINCT_KEYS {
            map.insert(k.clone(), *n);
        } else {
            *map.entry(OTHER_KEY.to_owned()).or_default() += n;
        }
    }
}

impl Board {
    pub(crate) fn new(caps: Caps) -> Self {
        Board {
            caps,
            stats: Stats::default(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            requests: VecDeque::new(),
            kept: VecDeque::new(),
            alerts: VecDeque::new(),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Counts an incoming delivery.
    pub(crate) fn arrived(&mut self, gzip: Option<bool>) {
        self.stats.requests += 1;
        match gzip {
            Some(true) => self.stats.gzip_requests += 1,
            Some(false) => self.stats.plain_requests += 1,
            None => {}
        }
    }

    /// Records a valid body answered 200: deduplicates by `webhook_id`, counts, keeps
    /// impressions. Returns [`Outcome::Delivered`], [`Outcome::Slack`] or
    /// [`Outcome::Duplicate`].
    pub(crate) fn deliver(
        &mut self,
        webhook_id: &str,
        parsed: Parsed,
        received_at: Instant,
        received_unix_ms: i64,
        signature_ok: Option<bool>,
    ) -> Outcome {
        let count = match &parsed {
            Parsed::Impressions(b) => b.count,
            Parsed::Slack | Parsed::Alert(_) => 0,
        };
        self.stats.delivered_batches += 1;
        if self.seen.contains(webhook_id) {
            self.stats.duplicate_batches += 1;
            self.stats.duplicate_impressions += count;
            return Outcome::Duplicate;
        }
        if self.caps.dedupe > 0 {
            let id: Arc<str> = Arc::from(webhook_id);
            self.seen.insert(id.clone());
            self.seen_order.push_back(id);
            while self.seen_order.len() > self.caps.dedupe {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
        self.stats.unique_batches += 1;
        match parsed {
            Parsed::Slack => {
                self.stats.slack_messages += 1;
                Outcome::Slack
            }
            Parsed::Alert(event) => {
                self.stats.alert_events += 1;
                if self.alerts.len() >= MAX_KEPT_ALERTS {
                    self.alerts.pop_front();
                }
                self.alerts.push_back(ReceivedAlert {
                    webhook_id: webhook_id.to_owned(),
                    received_unix_ms,
                    signature_ok,
                    event,
                });
                Outcome::Alert
            }
            Parsed::Impressions(batch) => {
                self.stats.unique_impressions += batch.count;
                add_counts(&mut self.stats.per_environment, &batch.per_environment);
                add_counts(&mut self.stats.per_split, &batch.per_split);
                if self.caps.kept > 0 {
                    for impression in batch.kept {
                        if self.kept.len() >= self.caps.kept {
                            self.kept.pop_front();
                            self.stats.kept_impressions_dropped += 1;
                        }
                        self.kept.push_back(ReceivedImpression {
                            webhook_id: webhook_id.to_owned(),
                            received_unix_ms,
                            received_at,
                            impression,
                        });
                    }
                }
                Outcome::Delivered
            }
        }
    }

    /// Counts a finished (or hung) request by its outcome and appends it to the log.
    pub(crate) fn finish(&mut self, rec: RequestRecord) {
        let s = &mut self.stats;
        match rec.outcome {
            Outcome::Delivered | Outcome::Slack | Outcome::Alert | Outcome::Duplicate => {}
            Outcome::BadSignature => s.bad_signatures += 1,
            Outcome::BadBody | Outcome::UnsupportedMedia => s.bad_bodies += 1,
            Outcome::BadHeaders => s.bad_headers += 1,
            Outcome::TooLarge => s.too_large += 1,
            Outcome::ReadError => s.read_errors += 1,
            Outcome::Fault => s.failed_answers += 1,
            Outcome::Hung => s.hung_requests += 1,
        }
        s.bytes_received += rec.body_bytes;
        s.bytes_decoded += rec.decoded_bytes.unwrap_or(0);
        if self.caps.request_log == 0 {
            return;
        }
        while self.requests.len() >= self.caps.request_log {
            self.requests.pop_front();
        }
        self.requests.push_back(rec);
    }

    /// A request started or stopped being held by the hang mode.
    pub(crate) fn hanging(&mut self, start: bool) {
        if start {
            self.stats.hanging_now += 1;
        } else {
            self.stats.hanging_now = self.stats.hanging_now.saturating_sub(1);
        }
    }

    /// The last `limit` log entries, oldest first.
    pub(crate) fn requests(&self, limit: usize) -> Vec<RequestRecord> {
        let skip = self.requests.len().saturating_sub(limit);
        self.requests.iter().skip(skip).cloned().collect()
    }

    /// The last `limit` kept impressions, oldest first.
    pub(crate) fn impressions(&self, limit: usize) -> Vec<ReceivedImpression> {
        let skip = self.kept.len().saturating_sub(limit);
        self.kept.iter().skip(skip).cloned().collect()
    }

    /// The alerts received, oldest first.
    pub(crate) fn alerts(&self) -> Vec<ReceivedAlert> {
        self.alerts.iter().cloned().collect()
    }

    /// Forgets everything except requests being held right now.
    pub(crate) fn reset(&mut self) {
        let hanging_now = self.stats.hanging_now;
        *self = Board::new(self.caps);
        self.stats.hanging_now = hanging_now;
    }
}
