//! Split/Harness SDK count bodies (`POST /api/testImpressions/count`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_core::split_wire::decode_counts(data);
});
