//! A bounded log of recent delivery attempts per integration
//! (`GET /v1/integrations/{id}/attempts`).

use serde::Serialize;
use std::collections::VecDeque;

/// How many attempts each integration keeps.
pub const ATTEMPTS_KEPT: usize = 100;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// When the attempt started (ms since epoch).
    pub time: i64,
    pub batch_id: String,
    pub environment_id: String,
    pub impressions: u32,
    pub bytes: usize,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub kind: AttemptKind,
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptKind {
    /// A batch's first attempt.
    Live,
    /// The single retry of a failed live attempt.
    Retry,
    /// The one batch sent while paused, to see whether the destination is back.
    Probe,
    /// A replay's attempt (never counted as live delivery).
    Replay,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Live => "live",
            AttemptKind::Retry => "retry",
            AttemptKind::Probe => "probe",
            AttemptKind::Replay => "replay",
        }
    }
}

#[derive(Debug, Default)]
pub struct AttemptLog {
    items: VecDeque<AttemptRecord>,
}

impl AttemptLog {
    pub fn push(&mut self, a: AttemptRecord) {
        if self.items.len() == ATTEMPTS_KEPT {
            self.items.pop_front();
        }
        self.items.push_back(a);
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<AttemptRecord> {
        self.items.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_newest_first() {
        let mut log = AttemptLog::default();
        for i in 0..(ATTEMPTS_KEPT + 10) {
            log.push(AttemptRecord {
                time: i as i64,
                batch_id: String::new(),
                environment_id: String::new(),
                impressions: 0,
                bytes: 0,
                status: Some(200),
                error: None,
                duration_ms: 0,
                kind: AttemptKind::Live,
            });
        }
        let r = log.recent();
        assert_eq!(r.len(), ATTEMPTS_KEPT);
        assert_eq!(r[0].time, (ATTEMPTS_KEPT + 9) as i64);
    }
}
