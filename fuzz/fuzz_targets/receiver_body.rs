//! The receiver's delivery-body decoder (`sluice receiver`): first byte = flags (bit 0
//! gzip, bit 1 keep impressions), the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let _ = sluice_receiver::check_body(body, flags & 1 == 1, 1 << 20, flags & 2 == 2);
});
