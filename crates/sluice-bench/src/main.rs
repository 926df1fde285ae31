//! The `sluice-bench` binary (also run as `sluice bench`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use clap::Parser;
use sluice_bench::BenchArgs;

#[derive(Parser, Debug)]
#[command(
    name = "sluice bench",
    bin_name = "sluice bench",
    version,
    about = "Benchmarks (ingest, delivery, export, isolation) of a real sluice started as a child process"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(sluice_bench::run(cli.args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
