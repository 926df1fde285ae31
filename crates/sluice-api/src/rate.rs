//! Per-environment ingest rate limit (token bucket in impressions per second; burst of
//! two seconds' worth). Off unless configured.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_second: Option<u32>,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: Option<u32>) -> RateLimiter {
        RateLimiter {
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens for `env`; `Err(seconds)` says when to retry.
    pub fn take(&self, env: &str, n: usize, now: Instant) -> Result<(), u64> {
        let Some(rate) = self.per_second else {
            return Ok(());
        };
        let rate = f64::from(rate.max(1));
        let burst = rate * 2.0;
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let (tokens, last) = map.entry(env.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        let n = n as f64;
        if n <= *tokens {
            *tokens -= n;
            Ok(())
        } else {
            Err((((n - *tokens) / rate).ceil() as u64).clamp(1, 60))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills() {
        let r = RateLimiter::new(Some(100));
        let t = Instant::now();
        assert!(r.take("e", 200, t).is_ok());
        assert!(r.take("e", 1, t).is_err());
        assert!(r.take("other", 1, t).is_ok());
        assert!(r.take("e", 100, t + Duration::from_secs(1)).is_ok());
        assert!(RateLimiter::new(None).take("e", 1_000_000, t).is_ok());
    }
}
