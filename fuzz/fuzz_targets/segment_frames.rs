//! The embedded log's frame decoder: a segment file of arbitrary bytes scanned as start-up
//! recovery scans it, and the accepted frames read back with checksums verified.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, good_len)) = sluice_store::embedded::log::scan_segment_bytes(data) {
        assert!(good_len <= data.len() as u64);
    }
});
