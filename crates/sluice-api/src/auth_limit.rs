//! Failed admin authentications, limited per client address: after `per_minute` failures
//! an address is answered 429 (with `Retry-After`) on admin routes until its allowance
//! refills, whatever token it sends, so a token cannot be guessed at network speed.
//!
//! A token bucket per address (capacity `per_minute`, refilled at `per_minute` per
//! minute); only failures take from it. The table is bounded: when it is full, buckets
//! that have refilled completely (they carry no information) are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses tracked at most (a few hundred kilobytes).
const MAX_ADDRESSES: usize = 10_000;

pub struct AuthFailureLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AuthFailureLimiter {
    /// `per_minute` 0 turns the limit off.
    pub fn new(per_minute: u32) -> AuthFailureLimiter {
        AuthFailureLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let per_sec = self.capacity() / 60.0;
        (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec)
            .min(self.capacity())
    }

    /// `Err(seconds)` when `addr` has used up its failures: refuse the request.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let map = self.lock();
        match map.get(&addr) {
            Some(b) => {
                let tokens = self.refilled(*b, now);
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    let per_sec = self.capacity() / 60.0;
                    Err(((1.0 - tokens) / per_sec).ceil().clamp(1.0, 60.0) as u64)
                }
            }
            None => Ok(()),
        }
    }

    /// Counts one failed authentication from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&addr) {
            let cap = self.capacity();
            map.retain(|_, b| self.refilled(*b, now) < cap);
            if map.len() >= MAX_ADDRESSES {
                // Every tracked address is mid-attack: forget the one that failed longest ago.
                if let Some(oldest) = map.iter().min_by_key(|(_, b)| b.at).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let cap = self.capacity();
        let b = map.entry(addr).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let tokens = self.refilled(*b, now);
        *b = Bucket {
            tokens: (tokens - 1.0).max(0.0),
            at: now,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn refuses_after_the_allowance_and_only_that_address() {
        let l = AuthFailureLimiter::new(3);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip(1), t).is_ok());
            l.failed(ip(1), t);
        }
        let wait = l.check(ip(1), t).expect_err("fourth attempt refused");
        assert_eq!(wait, 20, "one failure refills every 60/3 s");
        assert!(l.check(ip(2), t).is_ok(), "another address is not affected");
        assert!(l.check(ip(1), t + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn zero_turns_it_off() {
        let l = AuthFailureLimiter::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            l.failed(ip(1), t);
        }
        assert!(l.check(ip(1), t).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = AuthFailureLimiter::new(1);
        let t = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            l.failed(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.lock().len() <= MAX_ADDRESSES);
        // The newest address is still limited.
        let last = IpAddr::from((MAX_ADDRESSES as u32 + 49).to_be_bytes());
        assert!(l.check(last, t).is_err());
    }
}
