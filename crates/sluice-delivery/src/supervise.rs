//! Supervision: a delivery task (an integration's task, a lane) that ends while it should
//! be running — it returned, or it panicked — is restarted after a backoff, and said so in
//! the log and the `sluice_delivery_restarts_total` metric. Nothing is lost silently.
//!
//! A restart is a WARN line with the reason (the task returned, or its panic message);
//! only a task that keeps failing — [`KEEPS_FAILING`] restarts in a row, each ending before
//! it ran `reset_after` — is logged at ERROR.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

/// Backoff between restarts of one supervised task.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// A task that ran this long before ending starts again from `initial`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Restarts in a row (each run shorter than `reset_after`) from which a task is said to
/// keep failing and its restarts are logged at ERROR instead of WARN.
pub const KEEPS_FAILING: u32 = 3;

/// Whether the `restarts_in_a_row`-th consecutive restart is logged at ERROR (else WARN).
pub fn keeps_failing(restarts_in_a_row: u32) -> bool {
    restarts_in_a_row >= KEEPS_FAILING
}

/// Returns once `stop` is true (or its sender is gone). Holds no borrow of the value.
pub async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Runs `start()` on its own task until `stop` turns true, starting it again (after the
/// backoff) whenever it ends. The task is expected to watch `stop` itself and return
/// when it turns true; the supervisor then waits for it and returns.
pub async fn supervise<F, Fut>(
    what: String,
    mut stop: watch::Receiver<bool>,
    backoff: Backoff,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut wait = backoff.initial;
    let mut in_a_row = 0u32;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let started = Instant::now();
        let mut task = tokio::spawn(start());
        let ended = tokio::select! {
            r = &mut task => r,
            _ = until_stopped(&mut stop) => {
                let _ = task.await;
                return;
            }
        };
        if *stop.borrow() {
            return;
        }
        if started.elapsed() >= backoff.reset_after {
            wait = backoff.initial;
            in_a_row = 0;
        }
        in_a_row += 1;
        let reason = match ended {
            Ok(()) => "the task returned".to_owned(),
            Err(e) => e.to_string(),
        };
        let restart_in_ms = wait.as_millis() as u64;
        if keeps_failing(in_a_row) {
            tracing::error!(event = "task_restart", task = %what, reason = %reason, restarts_in_a_row = in_a_row, restart_in_ms, "delivery task keeps failing ({in_a_row} restarts in a row): {reason}; restarting in {restart_in_ms} ms");
        } else {
            tracing::warn!(event = "task_restart", task = %what, reason = %reason, restarts_in_a_row = in_a_row, restart_in_ms, "delivery task ended ({reason}); restarting in {restart_in_ms} ms");
        }
        metrics::counter!("sluice_delivery_restarts_total").increment(1);
        tokio::select! {
            _ = sleep(wait) => {}
            _ = until_stopped(&mut stop) => return,
        }
        wait = (wait * 2).min(backoff.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_restart_is_a_warning_until_the_task_keeps_failing() {
        assert!(!keeps_failing(1));
        assert!(!keeps_failing(KEEPS_FAILING - 1));
        assert!(keeps_failing(KEEPS_FAILING));
        assert!(keeps_failing(KEEPS_FAILING + 10));
    }

    /// Defect 1: a task that ends (panics or returns) is started again, with a doubling
    /// backoff, until stopped.
    #[tokio::test(start_paused = true)]
    async fn an_ended_task_is_restarted_with_backoff_until_stopped() {
        let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (stop_tx, stop) = watch::channel(false);
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            reset_after: Duration::from_secs(3600),
        };
        let s = starts.clone();
        let sup = tokio::spawn(supervise("t".into(), stop.clone(), backoff, move || {
            let (s, mut stop) = (s.clone(), stop.clone());
            async move {
                let n = {
                    let mut v = s.lock().unwrap();
                    v.push(Instant::now());
                    v.len()
                };
                match n {
                    1 => panic!("first run dies"),
                    2 | 3 => {}
                    _ => {
                        until_stopped(&mut stop).await;
                    }
                }
            }
        }));
        while starts.lock().unwrap().len() < 4 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = starts.lock().unwrap().clone();
        let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // Runs 1–3 end: restarts after 100, 200, 300 (capped) ms; run 4 stays up.
        assert_eq!(gaps, [100, 200, 300]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            starts.lock().unwrap().len(),
            4,
            "a running task is left alone"
        );
        stop_tx.send_replace(true);
        sup.await.unwrap();
    }
}
