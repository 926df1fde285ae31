//! `sluice bench` (the `sluice-bench` binary): throughput benchmarks that start a real sluice and
//! measure it from outside. `sluice bench ARGS` runs `sluice-bench ARGS` found beside the
//! `sluice` binary; the product crate does not compile any of this.
//!
//! - `sluice bench ingest` — N concurrent Split SDK clients post bulk bodies to
//!   `/api/testImpressions/bulk`; counts impressions acknowledged 200 (each 200 means fsynced).
//! - `sluice bench delivery` — ingests a backlog while one integration is paused, resumes it and
//!   times how fast the backlog drains to an in-process receiver (gzip, full batches).
//! - `sluice bench all` — both, one after the other.
//! - `sluice bench cluster` — scale-out: a local 3-node NATS JetStream cluster and several
//!   `sluice serve --store nats://…` nodes: ingest at R3, drain, takeover time over many
//!   kills ([`cluster`]).
//! - `sluice bench postmortem` — isolation with many integrations, some failing
//!   ([`postmortem`]).
//! - `sluice bench soak` — a long run under kill -9, flipping destinations, exports and
//!   replays: RSS/fds flat, nothing acknowledged lost ([`soak`]).
//!
//! The server runs as a child process (`<sluice> serve`, see [`sluice_exe`]) on 127.0.0.1
//! with its data
//! directory under `--data-dir` (default: the system temporary directory), so that its CPU time
//! and memory can be read from `/proc/<pid>` separately from the load generator's. Every
//! scenario prints the machine, the commit and the build profile with its figures; see
//! `docs/BENCHMARKS.md` for recorded results.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

pub mod cluster;
mod delivery;
pub mod export;
mod ingest;
mod load;
mod machine;
pub mod postmortem;
mod proc;
mod report;
mod server;
pub mod soak;

use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;

/// The `sluice` binary the benchmarks start: `$SLUICE_BIN` (set by `sluice bench`), else
/// `sluice` beside this executable (both are built into the same `target/<profile>/`).
pub fn sluice_exe() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("locating this executable")?;
    let exe = me.with_file_name("sluice");
    anyhow::ensure!(
        exe.is_file(),
        "no sluice binary at {} (build it: cargo build --release -p sluice -p sluice-bench; or set SLUICE_BIN)",
        exe.display()
    );
    Ok(exe)
}

/// Arguments of `sluice bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Which benchmark to run.
#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Durable ingest throughput: concurrent SDK clients posting bulk impressions.
    Ingest(IngestArgs),
    /// Delivery throughput: drain a backlog to one integration (gzip, full batches).
    Delivery(DeliveryArgs),
    /// Both scenarios, one after the other, each on a fresh server.
    All(AllArgs),
    /// Export throughput: a narrow (1%) and a wide window, every format and gzip.
    Export(export::ExportBenchArgs),
    /// Isolation at scale: many integrations, some failing, and the delivery lag of the
    /// healthy ones (see docs/BENCHMARKS.md).
    Postmortem(postmortem::PostmortemArgs),
    /// Scale-out on a local 3-node NATS JetStream cluster: ingest at R3 through every
    /// node, drain, and takeover time after kill -9 (needs nats-server 2.10+).
    Cluster(cluster::ClusterArgs),
    /// Long run (default 30 min): steady ingest, destinations flipping through every
    /// failure mode, kill -9 restarts, exports and replays; RSS/fds sampled, losses counted.
    Soak(soak::SoakArgs),
}

/// Options every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Directory under which the server's data directory is created (it should be on the disk
    /// you want to measure: fsync on tmpfs costs nothing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the server's data directory afterwards (it is deleted by default).
    #[arg(long)]
    pub keep_data: bool,
    /// Skip the fsync latency probe of the data directory's disk.
    #[arg(long)]
    pub no_fsync_probe: bool,
}

/// `sluice bench ingest`
#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up seconds before measuring (connections, first segment, caches).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Concurrent SDK clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Impressions per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Send the bodies gzip-compressed (`Content-Encoding: gzip`).
    #[arg(long)]
    pub gzip: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `sluice bench delivery`
#[derive(clap::Args, Debug, Clone)]
pub struct DeliveryArgs {
    /// Impressions in the backlog to drain.
    #[arg(long, default_value_t = 2_000_000)]
    pub impressions: u64,
    /// The integration's `maxBatchImpressions`.
    #[arg(long, default_value_t = 5000)]
    pub batch: u32,
    /// Deliver without gzip (the default, like production, is gzip on).
    #[arg(long)]
    pub no_gzip: bool,
    /// Impressions per ingest request while building the backlog.
    #[arg(long, default_value_t = 1000)]
    pub ingest_batch: usize,
    /// Concurrent ingest clients while building the backlog.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Give up on the drain after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `sluice bench all`
#[derive(clap::Args, Debug, Clone)]
pub struct AllArgs {
    /// Ingest: measured seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Ingest: concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Ingest: impressions per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Delivery: backlog size.
    #[arg(long, default_value_t = 2_000_000)]
    pub impressions: u64,
    /// Delivery: the integration's `maxBatchImpressions`.
    #[arg(long, default_value_t = 5000)]
    pub delivery_batch: u32,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    sluice_client::install_crypto_provider();
    // On Ctrl-C the scenario is dropped, which kills the child server and deletes its data
    // directory.
    tokio::select! {
        r = run_scenario(args.scenario) => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

async fn run_scenario(scenario: Scenario) -> anyhow::Result<()> {
    match scenario {
        Scenario::Postmortem(a) => postmortem::run_postmortem(a).await?,
        Scenario::Cluster(a) => {
            machine::Machine::detect(&CommonArgs {
                data_dir: None,
                keep_data: false,
                no_fsync_probe: true,
            })
            .await
            .print();
            cluster::run(&a).await?
        }
        Scenario::Soak(a) => soak::run_soak(a).await?,
        Scenario::Export(a) => export::run_export_bench(&sluice_exe()?, &a).await?.print(),
        Scenario::Ingest(a) => {
            let m = machine::Machine::detect(&a.common).await;
            m.print();
            ingest::run(&a).await?.print();
        }
        Scenario::Delivery(a) => {
            let m = machine::Machine::detect(&a.common).await;
            m.print();
            delivery::run(&a).await?.print();
        }
        Scenario::All(a) => {
            let m = machine::Machine::detect(&a.common).await;
            m.print();
            let ia = IngestArgs {
                seconds: a.seconds,
                warmup: 2,
                clients: a.clients,
                batch: a.batch,
                gzip: false,
                common: a.common.clone(),
            };
            let ingest = ingest::run(&ia).await?;
            ingest.print();
            let da = DeliveryArgs {
                impressions: a.impressions,
                batch: a.delivery_batch,
                no_gzip: false,
                ingest_batch: a.batch,
                clients: a.clients,
                timeout: 300,
                common: a.common.clone(),
            };
            let delivery = delivery::run(&da).await?;
            delivery.print();
            println!();
            println!("Summary");
            report::Table::new()
                .row(
                    "ingest (durable, 200 = fsynced)",
                    format!(
                        "{} impressions/s",
                        report::int(ingest.impressions_per_sec())
                    ),
                )
                .row(
                    "delivery (drain, gzip)",
                    format!("{} impressions/s", report::int(delivery.drain_per_sec())),
                )
                .print();
        }
    }
    Ok(())
}
