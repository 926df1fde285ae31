//! The stored record format (`sluice_core::record`): what the log hands back is decoded by
//! delivery, export and replay; a decoded entry's every record resolves its context.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = sluice_core::record::decode_entry(data) {
        for r in &entry.records {
            let ctx = entry.context(r);
            assert!(r.ctx < entry.contexts.len());
            let _ = (ctx.environment_name.len(), r.key.len());
        }
    }
});
