//! Native `POST /v1/impressions` JSON arrays: decode, then validate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_core::native_wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = native_wire::decode_array(data) {
        for (imp, _) in &items {
            let _ = native_wire::validate(imp);
        }
    }
});
