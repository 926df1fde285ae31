//! Split/Harness SDK bulk bodies (`POST /api/testImpressions/bulk`): decode, then the
//! shared validation every ingest format applies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_core::{native_wire, split_wire};

fuzz_target!(|data: &[u8]| {
    if let Ok(imps) = split_wire::decode_bulk(data) {
        for imp in &imps {
            let _ = native_wire::validate(imp);
        }
    }
});
