//! `Retry-After` as endpoints send it (delta-seconds or an HTTP-date): never more than the
//! documented cap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_delivery::http::parse_retry_after;
use sluice_delivery::http::send::MAX_RETRY_AFTER;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    if let Some(wait) = parse_retry_after(value, now) {
        assert!(wait <= MAX_RETRY_AFTER);
    }
});
