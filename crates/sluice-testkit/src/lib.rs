//! Test support shared by sluice's crates (never a dependency of the product itself).
//!
//! - [`nats`]: real `nats-server` processes — a single JetStream node or a 3-node
//!   JetStream cluster — on free loopback ports with temporary storage, with kill -9,
//!   SIGSTOP/SIGCONT and restart of a node, removed on drop.
//! - [`process`]: a real `sluice serve` child process on a free loopback port with its own
//!   data directory: ready-waiting, kill -9, restart on the same data directory, stop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

pub mod nats;
pub mod process;

pub use process::{ChildLog, LaunchError, LaunchOptions, SluiceProcess};
