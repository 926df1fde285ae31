//! Delivery: one independent task per integration.

pub mod http;
