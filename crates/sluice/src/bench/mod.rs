//! `sluice bench` (in progress).

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("sluice bench is not built yet")
}
