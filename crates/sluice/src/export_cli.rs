//! `sluice export`: streams `GET /v1/environments/{id}/impressions` (SPEC §4) into a file or
//! stdout, in constant memory, with a progress line on a terminal.
//!
//! The transfer is gzip-compressed (unless `--no-compression`) and decoded here as it
//! arrives. A file is written as `<file>.part` and renamed only once the whole export has
//! arrived, so an interrupted export never leaves a file that looks complete.

use crate::admin_cli::ApiArgs;
use anyhow::Context as _;
use flate2::write::GzDecoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt as _, BufWriter};

/// Export formats (the server's `format=`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// One JSON array.
    Json,
    /// CSV with a header row (RFC 4180).
    Csv,
}

impl ExportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
        }
    }
}

/// Arguments of `sluice export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Environment id whose impressions to export.
    #[arg(long = "env", value_name = "ID")]
    pub env: String,
    /// Start of the window, inclusive: milliseconds since the epoch or RFC 3339
    /// (`2024-05-01T00:00:00Z`, `2024-05-01`). Default: the beginning.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<i64>,
    /// End of the window, exclusive (same forms as --from). Default: no end.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    /// Only impressions of this flag.
    #[arg(long, value_name = "FLAG")]
    pub split: Option<String>,
    /// Only impressions of this matching key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
    pub format: ExportFormat,
    /// Write to this file instead of stdout (`-` is stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Ask for an uncompressed transfer (by default it is gzip, decoded here).
    #[arg(long)]
    pub no_compression: bool,
    /// No progress bar and no summary line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// What an export transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Impressions (rows) received.
    pub impressions: u64,
    /// Bytes written (uncompressed).
    pub bytes: u64,
    /// Bytes received on the wire.
    pub wire_bytes: u64,
}

/// Runs `sluice export`.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let started = Instant::now();
    let to_stdout = args.output.as_deref().is_none_or(|p| p == Path::new("-"));
    let progress = (!args.quiet && std::io::stderr().is_terminal()).then(progress_bar);
    let summary = if to_stdout {
        let mut out = BufWriter::with_capacity(256 << 10, tokio::io::stdout());
        match export_to(&args, &mut out, progress.as_ref()).await {
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            other => other?,
        }
    } else {
        let path = args.output.clone().unwrap_or_default();
        export_to_file(&args, &path, progress.as_ref()).await?
    };
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let dest = match &args.output {
            Some(p) if !to_stdout => format!(" to {}", p.display()),
            _ => String::new(),
        };
        eprintln!(
            "exported {} impressions ({}) in {secs:.1} s: {} impressions/s{dest}",
            group(summary.impressions),
            human_bytes(summary.bytes),
            group((summary.impressions as f64 / secs) as u64),
        );
    }
    Ok(())
}

/// Exports into `path` via `<path>.part`, renamed on success and removed on failure.
async fn export_to_file(
    args: &ExportArgs,
    path: &Path,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<ExportSummary> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("creating {}", part.display()))?;
    let mut out = BufWriter::with_capacity(256 << 10, file);
    let result = async {
        let summary = export_to(args, &mut out, progress).await?;
        out.get_mut()
            .sync_all()
            .await
            .with_context(|| format!("syncing {}", part.display()))?;
        tokio::fs::rename(&part, path)
            .await
            .with_context(|| format!("renaming {} to {}", part.display(), path.display()))?;
        Ok(summary)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result
}

/// Requests the export and streams it, decoded, into `out` (flushed at the end).
pub async fn export_to<W: AsyncWrite + Unpin>(
    args: &ExportArgs,
    out: &mut W,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<ExportSummary> {
    let admin = crate::admin_cli::client(&args.api)?;
    let url = export_url(args)?;
    let mut headers = reqwest::header::HeaderMap::new();
    if !args.no_compression {
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            reqwest::header::HeaderValue::from_static("gzip"),
        );
    }
    let mut resp = admin
        .get_streamed(url, headers)
        .await
        .context("export failed")?;
    let gzip = resp
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let mut decoder = gzip.then(|| GzDecoder::new(Vec::with_capacity(512 << 10)));
    let mut rows = RowCounter::new(args.format);
    let mut summary = ExportSummary {
        impressions: 0,
        bytes: 0,
        wire_bytes: 0,
    };
    let mut last_draw = Instant::now();
    while let Some(chunk) = resp.chunk().await.context("the export was interrupted")? {
        summary.wire_bytes += chunk.len() as u64;
        let plain: Vec<u8> = match decoder.as_mut() {
            Some(d) => {
                d.write_all(&chunk)
                    .context("the export's gzip stream is corrupt")?;
                std::mem::take(d.get_mut())
            }
            None => chunk.to_vec(),
        };
        write_plain(out, &plain, &mut rows, &mut summary).await?;
        if let Some(pb) = progress
            && last_draw.elapsed() >= Duration::from_millis(100)
        {
            last_draw = Instant::now();
            pb.set_position(summary.bytes);
            pb.set_message(format!("{} impressions", group(rows.rows())));
        }
    }
    if let Some(d) = decoder {
        let rest = d
            .finish()
            .context("the export's gzip stream is truncated")?;
        write_plain(out, &rest, &mut rows, &mut summary).await?;
    }
    out.flush().await.context("writing the export")?;
    summary.impressions = rows.rows();
    Ok(summary)
}

async fn write_plain<W: AsyncWrite + Unpin>(
    out: &mut W,
    plain: &[u8],
    rows: &mut RowCounter,
    summary: &mut ExportSummary,
) -> anyhow::Result<()> {
    rows.feed(plain);
    summary.bytes += plain.len() as u64;
    out.write_all(plain).await.context("writing the export")
}

/// `<server>/v1/environments/<env>/impressions?…`
pub fn export_url(args: &ExportArgs) -> anyhow::Result<url::Url> {
    let mut url = sluice_client::server_url(&args.api.server)?;
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("--server {} cannot be a base URL", args.api.server))?
        .pop_if_empty()
        .extend(["v1", "environments", &args.env, "impressions"]);
    {
        let mut q = url.query_pairs_mut();
        if let Some(v) = args.from {
            q.append_pair("from", &v.to_string());
        }
        if let Some(v) = args.to {
            q.append_pair("to", &v.to_string());
        }
        if let Some(v) = &args.split {
            q.append_pair("split", v);
        }
        if let Some(v) = &args.key {
            q.append_pair("key", v);
        }
        q.append_pair("format", args.format.as_str());
    }
    Ok(url)
}

/// The progress line: the total is unknown, so a spinner with counts and rates.
const PROGRESS_TEMPLATE: &str =
    "{spinner} exporting: {msg}, {binary_bytes} ({binary_bytes_per_sec}) [{elapsed_precise}]";

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(PROGRESS_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Counts the rows of an export body as it streams by, across chunk boundaries.
///
/// - NDJSON: one row per line (JSON strings never hold a raw newline).
/// - JSON: sluice writes each object on a line of its own, so rows are the lines that
///   start with `{`.
/// - CSV: record ends outside quotes, less the header.
#[derive(Debug, Clone)]
pub struct RowCounter {
    format: ExportFormat,
    prev: u8,
    in_quotes: bool,
    count: u64,
}

impl RowCounter {
    pub fn new(format: ExportFormat) -> RowCounter {
        RowCounter {
            format,
            prev: b'\n',
            in_quotes: false,
            count: 0,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        match self.format {
            ExportFormat::Ndjson => {
                self.count += data.iter().filter(|b| **b == b'\n').count() as u64;
            }
            ExportFormat::Json => {
                let mut prev = self.prev;
                for &b in data {
                    if b == b'{' && prev == b'\n' {
                        self.count += 1;
                    }
                    prev = b;
                }
            }
            ExportFormat::Csv => {
                for &b in data {
                    match b {
                        b'"' => self.in_quotes = !self.in_quotes,
                        b'\n' if !self.in_quotes => self.count += 1,
                        _ => {}
                    }
                }
            }
        }
        if let Some(&last) = data.last() {
            self.prev = last;
        }
    }

    /// Rows seen so far.
    pub fn rows(&self) -> u64 {
        match self.format {
            ExportFormat::Csv => self.count.saturating_sub(1),
            _ => self.count,
        }
    }
}

/// Parses `--from` / `--to`: milliseconds since the epoch, or an RFC 3339 date-time
/// (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.250+02:00`, `2024-05-01 12:00:00Z`) or
/// a date (`2024-05-01`, midnight UTC).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|_| format!("{s}: too large for milliseconds since the epoch"));
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!("{s:?}: expected milliseconds since the epoch or an RFC 3339 time such as 2024-05-01T00:00:00Z")
    })
}

/// RFC 3339 (`T`, `t` or a space between date and time) or a bare date (midnight UTC), via
/// the `time` crate; fractions beyond milliseconds are cut; before 1970 is refused.
fn parse_rfc3339(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else if matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        s.to_owned()
    } else {
        return None;
    };
    let t = time::OffsetDateTime::parse(&full, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
        .ok()
        .filter(|v| *v >= 0)
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn times_in_millis_or_rfc3339() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-14t22:13:20.1234567z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_time("2023-11-14 22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T17:13:20-05:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_time("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        for bad in [
            "",
            "-5",
            "1.5",
            "abc",
            "2023-02-29",
            "2023-13-01",
            "2023-11-14T25:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20.Z",
            "1969-12-31T23:59:59Z",
            "99999999999999999999",
            "2023-11-14T22:13:20Zjunk",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn row_counting_across_chunk_boundaries() {
        let cases: [(ExportFormat, &[u8], u64); 5] = [
            (ExportFormat::Ndjson, b"{\"a\":1}\n{\"a\":2}\n", 2),
            (ExportFormat::Json, b"[\n{\"a\":\"{\"},\n{\"a\":2}\n]\n", 2),
            (ExportFormat::Json, b"[\n]\n", 0),
            (
                ExportFormat::Csv,
                b"h1,h2\r\n\"a\r\n,\"\"b\",c\r\nd,e\r\n",
                2,
            ),
            (ExportFormat::Csv, b"h1,h2\r\n", 0),
        ];
        for (format, body, n) in cases {
            for split in 0..body.len() {
                let mut c = RowCounter::new(format);
                c.feed(&body[..split]);
                c.feed(&body[split..]);
                assert_eq!(c.rows(), n, "{format:?} split at {split}");
            }
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        export: ExportArgs,
    }

    #[test]
    fn url_carries_the_filters() {
        let cli = Cli::try_parse_from([
            "x",
            "--server",
            "http://127.0.0.1:9/base/",
            "--token",
            "t",
            "--env",
            "prod eu",
            "--from",
            "2023-11-14T22:13:20Z",
            "--to",
            "1700000001000",
            "--split",
            "a&b",
            "--format",
            "csv",
        ])
        .unwrap();
        let url = export_url(&cli.export).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/base/v1/environments/prod%20eu/impressions?from=1700000000000&to=1700000001000&split=a%26b&format=csv"
        );
        assert!(Cli::try_parse_from(["x", "--env", "e", "--from", "yesterday"]).is_err());
        // A server given without a scheme is reached over http.
        let cli = Cli::try_parse_from(["x", "--server", "localhost:8080", "--env", "e"]).unwrap();
        assert_eq!(
            export_url(&cli.export).unwrap().as_str(),
            "http://localhost:8080/v1/environments/e/impressions?format=ndjson"
        );
    }

    #[test]
    fn progress_template_is_valid() {
        assert!(ProgressStyle::with_template(PROGRESS_TEMPLATE).is_ok());
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
