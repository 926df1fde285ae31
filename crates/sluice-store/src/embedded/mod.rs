pub mod log;
pub mod meta;

#[cfg(test)]
mod conformance_tests;
