//! redb metadata (in progress).
