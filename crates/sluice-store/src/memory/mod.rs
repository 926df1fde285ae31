//! In-memory implementations of [`ImpressionLog`](crate::ImpressionLog) and
//! [`MetaStore`](crate::MetaStore) for tests of the crates above this one (delivery
//! lanes on `tokio::time::pause()`, catalog logic, API error mapping).
//!
//! They follow the traits' contracts exactly (the conformance suite runs against them):
//! offsets, bounds, the watch of the committed end, read and time-scan budgets,
//! ingest-time lookup, compare-and-swap revisions. On top of the traits they offer what a
//! test needs to control:
//!
//! - **time**: ingest times come from a [`Clock`]; the default [`TokioClock`] follows
//!   `tokio::time` (so paused time drives `ingest_ms`), [`ManualClock`] is set by hand, and
//!   [`MemoryLog::append_at`] takes the ingest time explicitly;
//! - **retention**: [`MemoryLog::remove_before`] and [`MemoryLog::remove_ingested_before`]
//!   drop the oldest entries, as retention would;
//! - **faults**: [`Faults`] makes the next calls of chosen operations fail with a transient
//!   error (before or after applying them), or keeps them failing until healed.
//!
//! Nothing here touches the disk. Not meant for production use: everything is lost on drop.

mod clock;
mod faults;
mod log;
mod meta;

pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use faults::{Fault, Faults, Op};
pub use log::MemoryLog;
pub use meta::MemoryMeta;

#[cfg(test)]
mod conformance_tests;
