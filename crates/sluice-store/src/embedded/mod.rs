pub mod log;
pub mod meta;
