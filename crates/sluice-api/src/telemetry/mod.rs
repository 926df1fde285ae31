//! `GET /metrics`: what the recorder holds (counters and histograms recorded where things
//! happen — ingest, delivery attempts, fsyncs, retention) followed by the series computed
//! at scrape time (integrations per state and lag, per-integration series, log size per
//! environment). Every family has `# HELP` and `# TYPE`; names follow Prometheus
//! conventions (base units, `_total` on counters). docs/ops/ holds alert rules and a
//! Grafana dashboard built on these names.

pub mod fleet;
pub mod ingest;
pub mod recorder;
pub mod storage;
pub mod text;

pub use recorder::install;

use crate::state::AppState;

/// The whole scrape.
pub async fn render(s: &AppState) -> String {
    let mut out = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    fleet::write(s, &mut out).await;
    storage::write(s, &mut out);
    out
}
