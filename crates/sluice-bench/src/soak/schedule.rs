//! The destinations' modes over time: each flipping receiver walks the same cycle of
//! healthy and failing modes, starting at a different point, one step per `--flip-every`.

use std::sync::Arc;
use std::time::Duration;

use sluice_receiver::FaultMode;

use super::{FLIPPING, Run};

/// Healthy between every failure mode the receiver can play.
pub(crate) fn cycle() -> Vec<FaultMode> {
    vec![
        FaultMode::Ok,
        FaultMode::Status(500),
        FaultMode::Ok,
        FaultMode::Hang,
        FaultMode::Ok,
        FaultMode::Slow(Duration::from_millis(1500)),
        FaultMode::Ok,
        FaultMode::Retry {
            status: 429,
            after_secs: 3,
        },
        FaultMode::Ok,
        FaultMode::Flaky {
            fail_percent: 50,
            status: 503,
        },
        FaultMode::Ok,
        FaultMode::HugeBody { bytes: 4 << 20 },
        FaultMode::Ok,
        FaultMode::Status(503),
    ]
}

/// The mode of flipping receiver `i` at step `step`.
pub(crate) fn mode_at(i: usize, step: usize) -> FaultMode {
    let c = cycle();
    c[(step + i * c.len() / FLIPPING) % c.len()].clone()
}

/// Flips the receivers' modes until aborted.
pub(crate) async fn flip(run: Arc<Run>, every: Duration) {
    for step in 0.. {
        for (i, rx) in run.receivers.iter().take(FLIPPING).enumerate() {
            rx.set_mode(mode_at(i, step));
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_meets_every_mode_and_they_are_out_of_phase() {
        let n = cycle().len();
        for i in 0..FLIPPING {
            let seen: Vec<FaultMode> = (0..n).map(|s| mode_at(i, s)).collect();
            for m in cycle() {
                assert!(seen.contains(&m), "{i} never plays {m:?}");
            }
        }
        assert_ne!(mode_at(0, 1), mode_at(1, 1));
    }
}
