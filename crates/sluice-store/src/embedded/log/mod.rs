//! Segment log (in progress).
