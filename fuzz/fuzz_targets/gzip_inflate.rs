//! The bounded gzip inflate of every ingest request (`Content-Encoding: gzip`): never more
//! than the cap comes out, whatever goes in (a bomb is a 413, not an allocation).
#![no_main]
use libfuzzer_sys::fuzz_target;

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = sluice_api::body::inflate_gzip(data, CAP) {
        assert!(out.len() <= CAP);
        let _ = sluice_core::split_wire::decode_bulk(&out);
    }
});
