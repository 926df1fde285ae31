//! Outbound HTTP (in progress).
