//! sluice receiver (in progress).
