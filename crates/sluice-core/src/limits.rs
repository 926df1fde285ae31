//! Bounds on every input (SPEC §6: "every input is bounded").

/// Longest key, split, treatment, label or bucketing key accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Longest `properties` string accepted, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
/// Longest SDK / machine header value kept, in bytes.
pub const MAX_HEADER_FIELD_BYTES: usize = 256;
/// Most impressions accepted in one ingest request.
pub const MAX_IMPRESSIONS_PER_REQUEST: usize = 100_000;
