//! The sluice binary's library: subcommands that tests drive in-process.

pub mod receiver;
