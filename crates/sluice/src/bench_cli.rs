//! `sluice bench …`: runs the `sluice-bench` binary (crate `sluice-bench`, not part of the
//! product) found beside this executable, with the same arguments, and tells it which `sluice`
//! to start (`SLUICE_BIN`).

use anyhow::Context as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where `sluice-bench` is expected: beside `sluice` (both land in `target/<profile>/`).
pub fn bench_exe(sluice: &Path) -> PathBuf {
    sluice.with_file_name("sluice-bench")
}

/// Runs `sluice-bench ARGS` and waits for it; its exit status becomes an error if not 0.
pub fn run(args: &[OsString]) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating this executable")?;
    let bench = bench_exe(&me);
    anyhow::ensure!(
        bench.is_file(),
        "sluice bench needs the sluice-bench binary at {}: build it with \
         `cargo build --release --workspace` (or `cargo build --release -p sluice-bench`)",
        bench.display()
    );
    let status = std::process::Command::new(&bench)
        .args(args)
        .env("SLUICE_BIN", &me)
        .status()
        .with_context(|| format!("running {}", bench.display()))?;
    anyhow::ensure!(status.success(), "sluice-bench: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_binary_is_beside_sluice() {
        assert_eq!(
            bench_exe(Path::new("/x/target/release/sluice")),
            Path::new("/x/target/release/sluice-bench")
        );
    }
}
