//! Pure domain types and wire formats for sluice. Nothing in this crate does I/O:
//! no files, no sockets, no clocks (callers pass the time in).
//!
//! The data path, as types:
//! SDK request bytes → [`split_wire`] / [`native_wire`] decoders → [`record::EntryBuilder`]
//! (compact binary payload stored in the log) → [`record::decode_entry`] views →
//! [`outgoing`] JSON / Slack batch bodies → [`signature`] headers.

pub mod address;
pub mod alert;
pub mod error;
pub mod impression;
pub mod limits;
pub mod model;
pub mod native_wire;
pub mod outgoing;
pub mod record;
pub mod signature;
pub mod split_wire;
mod wire_str;

pub use error::{DecodeError, ValidationError};
pub use impression::{Context, ImpressionIn};
