//! In-memory view of configuration (in progress).
