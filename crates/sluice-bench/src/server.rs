//! The server under test: `sluice serve` as a child process (the test kit's launcher) on
//! 127.0.0.1, with a fresh data directory under the bench's `--data-dir`, driven over the admin
//! API.

use std::path::Path;
use std::time::Duration;

use sluice_testkit::{LaunchOptions, SluiceProcess};

/// Starts `<exe> serve` with a new data directory `<prefix>-…` under `parent` (removed at
/// the end unless `keep_data`) and waits until it is ready. Its log goes to this process's
/// stderr at `warn` unless `SLUICE_LOG` says otherwise.
pub async fn start(
    exe: &Path,
    parent: &Path,
    prefix: &str,
    keep_data: bool,
) -> anyhow::Result<SluiceProcess> {
    let mut o = LaunchOptions::new(exe);
    o.parent = Some(parent.to_path_buf());
    o.prefix = prefix.to_owned();
    o.keep_data = keep_data;
    o.stop_timeout = Duration::from_secs(15);
    o.http = Some(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
    );
    Ok(SluiceProcess::start(o).await?)
}
