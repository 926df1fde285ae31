//! Fault modes: how the receiver answers deliveries, their JSON form (`POST /mode`), and the
//! streamed huge response body.

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How the receiver answers webhook deliveries. Its JSON form (for `POST /mode`) is
/// `{"mode": "ok" | "status" | "hang" | "slow" | "flaky" | "huge" | "retry", ...}`.
///
/// Refusing connections is not a mode: use [`super::Receiver::refusing_addr`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "ModeSpec", try_from = "ModeSpec")]
pub enum FaultMode {
    /// Validate, count and answer 200.
    #[default]
    Ok,
    /// Answer this status to every delivery without reading it as delivered.
    Status(u16),
    /// Accept the request (its body is read and discarded) and never answer; the connection is
    /// held until the client goes away or the receiver shuts down.
    Hang,
    /// Validate, wait this long, then count and answer 200.
    Slow(Duration),
    /// Answer `status` to `fail_percent`% of deliveries at random; the others as [`FaultMode::Ok`].
    Flaky { fail_percent: u8, status: u16 },
    /// Validate, count, and answer 200 with a streamed response body of this many bytes.
    HugeBody { bytes: usize },
    /// Answer `status` (meant for 429 or 503) with `Retry-After: after_secs`.
    Retry { status: u16, after_secs: u64 },
}

impl FaultMode {
    /// Checks that statuses are valid HTTP status codes (100–599) and percentages at most 100.
    pub fn validate(&self) -> Result<(), String> {
        let status_ok = |s: u16| {
            if (100..=599).contains(&s) {
                Ok(())
            } else {
                Err(format!("status {s} is not an HTTP status code (100-599)"))
            }
        };
        match *self {
            FaultMode::Ok | FaultMode::Hang | FaultMode::Slow(_) | FaultMode::HugeBody { .. } => {
                Ok(())
            }
            FaultMode::Status(s) | FaultMode::Retry { status: s, .. } => status_ok(s),
            FaultMode::Flaky {
                fail_percent,
                status,
            } => {
                if fail_percent > 100 {
                    return Err(format!("percent {fail_percent} is over 100"));
                }
                status_ok(status)
            }
        }
    }

    /// Decides how to answer one delivery (rolls the dice for [`FaultMode::Flaky`]).
    pub(crate) fn plan(&self) -> Plan {
        match *self {
            FaultMode::Ok => Plan::Accept {
                delay: None,
                huge: None,
            },
            FaultMode::Status(status) => Plan::Fail {
                status,
                retry_after: None,
            },
            FaultMode::Hang => Plan::Hang,
            FaultMode::Slow(d) => Plan::Accept {
                delay: Some(d),
                huge: None,
            },
            FaultMode::Flaky {
                fail_percent,
                status,
            } => {
                if rand::random_range(0..100u8) < fail_percent {
                    Plan::Fail {
                        status,
                        retry_after: None,
                    }
                } else {
                    Plan::Accept {
                        delay: None,
                        huge: None,
                    }
                }
            }
            FaultMode::HugeBody { bytes } => Plan::Accept {
                delay: None,
                huge: Some(bytes),
            },
            FaultMode::Retry { status, after_secs } => Plan::Fail {
                status,
                retry_after: Some(after_secs),
            },
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FaultMode::Ok => write!(f, "ok"),
            FaultMode::Status(s) => write!(f, "answer {s}"),
            FaultMode::Hang => write!(f, "hang"),
            FaultMode::Slow(d) => write!(f, "slow ({} ms)", d.as_millis()),
            FaultMode::Flaky {
                fail_percent,
                status,
            } => write!(f, "flaky ({fail_percent}% answer {status})"),
            FaultMode::HugeBody { bytes } => write!(f, "huge response ({bytes} bytes)"),
            FaultMode::Retry { status, after_secs } => {
                write!(f, "answer {status} with Retry-After: {after_secs}")
            }
        }
    }
}

/// What to do with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Process it; wait `delay` before answering; answer with a `huge` body.
    Accept {
        delay: Option<Duration>,
        huge: Option<usize>,
    },
    /// Answer `status` without processing it.
    Fail {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Never answer.
    Hang,
}

fn default_fail_status() -> u16 {
    500
}

fn default_retry_status() -> u16 {
    503
}

fn default_after_secs() -> u64 {
    1
}

/// The JSON form of [`FaultMode`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum ModeSpec {
    Ok,
    Status {
        status: u16,
    },
    Hang,
    Slow {
        ms: u64,
    },
    Flaky {
        percent: u8,
        #[serde(default = "default_fail_status")]
        status: u16,
    },
    Huge {
        bytes: usize,
    },
    Retry {
        #[serde(default = "default_retry_status")]
        status: u16,
        #[serde(default = "default_after_secs")]
        after_secs: u64,
    },
}

impl From<FaultMode> for ModeSpec {
    fn from(m: FaultMode) -> Self {
        match m {
            FaultMode::Ok => ModeSpec::Ok,
            FaultMode::Status(status) => ModeSpec::Status { status },
            FaultMode::Hang => ModeSpec::Hang,
            FaultMode::Slow(d) => ModeSpec::Slow {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            FaultMode::Flaky {
                fail_percent,
                status,
            } => ModeSpec::Flaky {
                percent: fail_percent,
                status,
            },
            FaultMode::HugeBody { bytes } => ModeSpec::Huge { bytes },
            FaultMode::Retry { status, after_secs } => ModeSpec::Retry { status, after_secs },
        }
    }
}

impl TryFrom<ModeSpec> for FaultMode {
    type Error = String;

    fn try_from(s: ModeSpec) -> Result<Self, String> {
        let m = match s {
            ModeSpec::Ok => FaultMode::Ok,
            ModeSpec::Status { status } => FaultMode::Status(status),
            ModeSpec::Hang => FaultMode::Hang,
            ModeSpec::Slow { ms } => FaultMode::Slow(Duration::from_millis(ms)),
            ModeSpec::Flaky { percent, status } => FaultMode::Flaky {
                fail_percent: percent,
                status,
            },
            ModeSpec::Huge { bytes } => FaultMode::HugeBody { bytes },
            ModeSpec::Retry { status, after_secs } => FaultMode::Retry { status, after_secs },
        };
        m.validate()?;
        Ok(m)
    }
}

/// Filler for huge response bodies: shared, never allocated per response.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A response body of exactly `bytes` filler bytes, produced chunk by chunk as the client
/// reads (back-pressured by the connection; nothing is allocated up front).
pub(crate) fn huge_body(bytes: usize) -> Body {
    let chunks = futures_util::stream::unfold(bytes, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(FILLER.len());
        Some((
            Ok::<_, Infallible>(Bytes::from_static(&FILLER[..n])),
            left - n,
        ))
    });
    Body::from_stream(chunks)
}
