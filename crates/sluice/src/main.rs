//! The `sluice` command line.

use clap::{Parser, Subcommand};
use sluice::admin_cli::{self, AlertsCmd, ApiArgs, EnvCmd, IntegrationCmd, OutputArgs};
use sluice::serve::{self, ServeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Self-hosted impressions webhook service"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server (embedded storage in --data-dir; no other service needed).
    Serve(Box<ServeArgs>),
    /// A webhook receiver for trying sluice out and for tests.
    Receiver(sluice_receiver::ReceiverArgs),
    /// One command that shows sluice working: a server, simulated SDK traffic, receivers
    /// of which some fail, and a live view of delivery and isolation.
    Demo(sluice::demo::DemoArgs),
    /// Benchmarks (ingest, delivery, export, isolation): runs the `sluice-bench` binary
    /// beside this one with the same arguments (`sluice bench --help` lists them).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Export an environment's impressions (a time window, optional filters) to a file.
    Export(sluice::export_cli::ExportArgs),
    /// Manage environments over the admin API.
    #[command(name = "env")]
    Env {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: OutputArgs,
        #[command(subcommand)]
        cmd: EnvCmd,
    },
    /// Manage integrations over the admin API.
    Integration {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: OutputArgs,
        #[command(subcommand)]
        cmd: IntegrationCmd,
    },
    /// Manage operator alert destinations over the admin API.
    Alerts {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: OutputArgs,
        #[command(subcommand)]
        cmd: AlertsCmd,
    },
}

/// How the server's log lines (on stderr) are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (fields `timestamp`, `level`, `fields`, `target`).
    Json,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Log format on stderr: text, or json (one object per line).
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address to listen on [default: 127.0.0.1:8080, or the config file's `listen`].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where the log and metadata live [default: ./sluice-data, or the config file's
    /// `data-dir`].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML file with the same settings (kebab-case keys); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Allow webhooks to private, loopback and other non-public addresses (local use, tests).
    #[arg(long)]
    allow_private_destinations: bool,
    /// Allow one non-public network as a destination (CIDR; repeatable).
    #[arg(long = "allow-destination")]
    allow_destinations: Vec<ipnet::IpNet>,
    /// Storage: the embedded default, or nats://HOST:PORT[,HOST:PORT...] (tls://… for TLS)
    /// to share a NATS JetStream cluster (2.10+, sync_interval: always) with other nodes.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// This node's name in the cluster [default: host name, listen address and port].
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
    /// The URL other nodes reach this node's admin API at, to forward requests about the
    /// integrations it delivers [default: http://LISTEN-ADDRESS].
    #[arg(long, value_name = "URL")]
    advertise_url: Option<String>,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(long, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// NATS token.
    #[arg(long, env = "SLUICE_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// PEM root certificates to trust for TLS to NATS (implies TLS).
    #[arg(long, value_name = "FILE")]
    nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS to NATS; needs --nats-tls-key.
    #[arg(long, value_name = "FILE", requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,
    /// The PEM private key of --nats-tls-cert.
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,
    /// Replicas of every JetStream stream and KV bucket [default: 3].
    #[arg(long)]
    replicas: Option<usize>,
    /// Per environment, drop the oldest impressions once its stream holds this many bytes
    /// (JetStream max_bytes) [default: only the retention age].
    #[arg(long, value_name = "BYTES")]
    nats_max_bytes_per_env: Option<u64>,
    /// Keep impressions this many hours (default 168 = 7 days).
    #[arg(long)]
    retention_hours: Option<u64>,
    /// Refuse ingest with 503 once the log holds this many bytes.
    #[arg(long)]
    max_storage_bytes: Option<u64>,
    /// Impressions per second accepted per environment (429 beyond).
    #[arg(long)]
    ingest_rate_limit: Option<u32>,
    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Wrong admin tokens allowed per client address per minute before 429s (0: no limit;
    /// default 30).
    #[arg(long)]
    auth_failures_per_minute: Option<u32>,
    /// One /metrics series per integration (state, lag, delivered, failures, pauses, gaps)
    /// [default: true]; `--metrics-per-integration=false` for very large fleets keeps only
    /// the aggregates by state.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    metrics_per_integration: Option<bool>,
}

fn serve_options(a: ServeArgs) -> anyhow::Result<ServeOptions> {
    let mut o = match &a.config {
        Some(p) => ServeOptions::from_file(p)?,
        None => ServeOptions::default(),
    };
    if let Some(s) = a.store {
        o.store = Some(s);
    }
    if let Some(v) = a.node_id {
        o.node_id = Some(v);
    }
    if let Some(v) = a.advertise_url {
        o.advertise_url = Some(v);
    }
    if let Some(v) = a.nats_creds {
        o.nats_creds = Some(v);
    }
    if let Some(v) = a.nats_token {
        o.nats_token = Some(v);
    }
    if let Some(v) = a.nats_tls_ca {
        o.nats_tls_ca = Some(v);
    }
    if let Some(v) = a.nats_tls_cert {
        o.nats_tls_cert = Some(v);
    }
    if let Some(v) = a.nats_tls_key {
        o.nats_tls_key = Some(v);
    }
    if let Some(v) = a.replicas {
        o.replicas = v;
    }
    if let Some(v) = a.nats_max_bytes_per_env {
        o.nats_max_bytes_per_env = v;
    }
    if let Some(v) = a.listen {
        o.listen = v;
    }
    if let Some(v) = a.data_dir {
        o.data_dir = v;
    }
    o.allow_private_destinations |= a.allow_private_destinations;
    o.allow_destinations.extend(a.allow_destinations);
    if let Some(v) = a.retention_hours {
        o.retention_hours = v;
    }
    if let Some(v) = a.max_storage_bytes {
        o.max_storage_bytes = v;
    }
    if let Some(v) = a.ingest_rate_limit {
        o.ingest_rate_limit = v;
    }
    if let Some(v) = a.tls_cert {
        o.tls_cert = Some(v);
    }
    if let Some(v) = a.tls_key {
        o.tls_key = Some(v);
    }
    if let Some(v) = a.auth_failures_per_minute {
        o.auth_failures_per_minute = v;
    }
    if let Some(v) = a.metrics_per_integration {
        o.metrics_per_integration = v;
    }
    Ok(o)
}

/// Logs go to stderr, filtered by `SLUICE_LOG` (default `default_filter`).
fn init_logging(format: LogFormat, default_filter: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Serve(a) => init_logging(a.log_format, "info"),
        // The demo's live view owns the terminal: its server's state changes are what it
        // draws, so only warnings go to stderr.
        Cmd::Demo(_) => init_logging(LogFormat::Text, "warn"),
        _ => init_logging(LogFormat::Text, "info"),
    }
    sluice::install_crypto_provider();
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
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(a) => {
                let server = serve::start(serve_options(*a)?).await?;
                server.wait().await;
                Ok(())
            }
            Cmd::Receiver(a) => sluice_receiver::run(a).await,
            Cmd::Demo(a) => sluice::demo::run(a).await,
            Cmd::Bench { args } => sluice::bench_cli::run(&args),
            Cmd::Export(a) => sluice::export_cli::run(a).await,
            Cmd::Env { api, out, cmd } => admin_cli::env_cmd(&api, &out, cmd).await,
            Cmd::Integration { api, out, cmd } => admin_cli::integration_cmd(&api, &out, cmd).await,
            Cmd::Alerts { api, out, cmd } => admin_cli::alerts_cmd(&api, &out, cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
