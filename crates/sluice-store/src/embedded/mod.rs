pub mod disk;
pub mod log;
pub mod meta;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod power_cut_tests;
