//! Admin API (SPEC §4): projects, environments, integrations, and integration operations.
//! Every route here sits behind [`crate::auth::require_admin`].

pub mod environments;
pub mod integrations;
pub mod projects;

/// A fresh identifier: `prefix` + 12 random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}
