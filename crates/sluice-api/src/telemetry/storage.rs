//! Storage series computed at scrape time: each environment's log size and segment count
//! on this machine's disk (from memory; stores that keep nothing locally report none).

use super::text::{Family, Kind};
use crate::state::AppState;

pub fn write(s: &AppState, out: &mut String) {
    let usage = s.log.usage();
    let mut bytes = Family::new(
        "sluice_log_bytes",
        Kind::Gauge,
        "Bytes of the environment's impression log on disk (committed segments).",
    );
    let mut segments = Family::new(
        "sluice_log_segments",
        Kind::Gauge,
        "Segment files of the environment's impression log.",
    );
    for u in &usage {
        bytes.sample(&[("environment", &u.env)], u.bytes as f64);
        segments.sample(&[("environment", &u.env)], u.segments as f64);
    }
    bytes.write(out);
    segments.write(out);
}
