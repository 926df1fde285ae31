//! `sluice demo` (in progress).

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub async fn run(_a: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("sluice demo is not built yet")
}
