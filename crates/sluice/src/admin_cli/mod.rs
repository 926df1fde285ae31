//! Admin commands over the HTTP API (`sluice env …`, `sluice integration …`, `sluice
//! alerts …`): the command definitions here, their effects in [`env`], [`integration`] and
//! [`alerts`], printing in [`output`].

mod alerts;
mod env;
mod integration;
pub mod output;

use clap::{Args, Subcommand};
use sluice_client::{AdminClient, ClientError};

pub use alerts::alerts_cmd;
pub use env::env_cmd;
pub use integration::integration_cmd;

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// A running sluice: a base URL, or HOST:PORT (then http:// is assumed).
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Admin token (printed by `sluice serve` at start-up) or a project token.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// How `env` and `integration` commands print.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print the server's JSON answer unchanged (for scripts) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum EnvCmd {
    /// List environments.
    List,
    /// Show one environment (its SDK keys in full).
    Show {
        /// The environment's id.
        id: String,
    },
    /// Create an environment (an SDK key is generated unless given). Refused when the
    /// project already has an environment of that name, unless --allow-duplicate-name.
    Create {
        /// Display name, e.g. Production.
        name: String,
        /// The id to give it (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// The project it belongs to (default: `default`, or the token's project).
        #[arg(long)]
        project: Option<String>,
        /// An SDK key that SDKs of this environment send (repeatable; default: one generated).
        #[arg(long = "sdk-key", value_name = "KEY")]
        sdk_keys: Vec<String>,
        /// Create it even if an environment of this name already exists in the project.
        #[arg(long)]
        allow_duplicate_name: bool,
    },
    /// Change an environment: only the options given change (PATCH).
    Update {
        /// The environment's id.
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// Move it to this project.
        #[arg(long)]
        project: Option<String>,
        /// Replace its SDK keys with these (repeatable).
        #[arg(long = "sdk-key", value_name = "KEY")]
        sdk_keys: Vec<String>,
    },
    /// Delete an environment and its stored impressions.
    Delete {
        /// The environment's id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum IntegrationCmd {
    /// List integrations.
    List,
    /// Show one integration's configuration (the secret redacted).
    Show {
        /// The integration's id.
        id: String,
    },
    /// Create an integration delivering the given environments to a URL.
    Create {
        /// Display name.
        name: String,
        /// The webhook URL impressions are delivered to.
        #[arg(long)]
        url: String,
        /// An environment id whose impressions it delivers (repeatable, at least one).
        #[arg(long = "env", value_name = "ENV_ID", required = true)]
        environments: Vec<String>,
        /// The id to give it (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// Shared secret: each request is signed with HMAC-SHA256 of the body.
        #[arg(long)]
        secret: Option<String>,
        /// Send a batch at least this often, in milliseconds (server default 10000).
        #[arg(long, value_name = "MS")]
        flush_interval_ms: Option<u64>,
        /// At most this many impressions per request (server default 5000).
        #[arg(long, value_name = "N")]
        max_batch_impressions: Option<u32>,
        /// Send request bodies uncompressed.
        #[arg(long)]
        no_gzip: bool,
    },
    /// Change an integration: only the options given change (PATCH); delivery restarts
    /// with the new settings and keeps its position.
    Update {
        /// The integration's id.
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New webhook URL.
        #[arg(long)]
        url: Option<String>,
        /// Replace the environments it delivers with these (repeatable).
        #[arg(long = "env", value_name = "ENV_ID")]
        environments: Vec<String>,
        /// New shared secret for signing.
        #[arg(long)]
        secret: Option<String>,
        /// Send a batch at least this often, in milliseconds.
        #[arg(long, value_name = "MS")]
        flush_interval_ms: Option<u64>,
        /// At most this many impressions per request.
        #[arg(long, value_name = "N")]
        max_batch_impressions: Option<u32>,
        /// Compress request bodies (true) or not (false).
        #[arg(long, value_name = "BOOL")]
        gzip: Option<bool>,
    },
    /// Delivery status: state, lag, delivered, last error, pauses.
    Status {
        /// The integration's id.
        id: String,
    },
    /// Recent delivery attempts, newest last.
    Attempts {
        /// The integration's id.
        id: String,
    },
    /// Backlog windows skipped because they grew too old to deliver.
    Gaps {
        /// The integration's id.
        id: String,
    },
    /// Deliver a skipped gap, or a time window, again (starts a replay job).
    Replay {
        /// The integration's id.
        id: String,
        /// The gap to replay (an id from `integration gaps`).
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
        gap: Option<String>,
        /// Window start, milliseconds since the Unix epoch (with --to).
        #[arg(long, value_name = "MS", requires = "to")]
        from: Option<i64>,
        /// Window end (exclusive), milliseconds since the Unix epoch (with --from).
        #[arg(long, value_name = "MS", requires = "from")]
        to: Option<i64>,
    },
    /// Replay jobs and their progress.
    Replays {
        /// The integration's id.
        id: String,
    },
    /// Stop delivering until resumed (impressions keep being stored).
    Pause {
        /// The integration's id.
        id: String,
    },
    /// Resume delivery after a pause (by hand or by the protection).
    Resume {
        /// The integration's id.
        id: String,
    },
    /// Send one sample batch and show the endpoint's answer.
    Test {
        /// The integration's id.
        id: String,
    },
    /// Delete an integration and its delivery state (stored impressions are kept).
    Delete {
        /// The integration's id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertsCmd {
    /// List alert destinations (where operator alerts are POSTed).
    List,
    /// Show one alert destination (the secret redacted) and how its delivery is doing.
    Show {
        /// The alert destination's id.
        id: String,
    },
    /// Create an alert destination: sluice POSTs a signed JSON event to the URL for each
    /// event type given.
    Create {
        /// The URL events are POSTed to.
        #[arg(long)]
        url: String,
        /// Shared secret each event is signed with (Standard Webhooks).
        #[arg(long)]
        secret: String,
        /// An event type to send (repeatable, at least one): integration.paused,
        /// integration.resumed, integration.gap, integration.disabled, replay.finished.
        #[arg(long = "event", value_name = "TYPE", required = true)]
        events: Vec<String>,
        /// Only this project's events (default: a project token's own project; with the
        /// admin token and no --project, every project's).
        #[arg(long)]
        project: Option<String>,
        /// The id to give it (default: generated).
        #[arg(long)]
        id: Option<String>,
    },
    /// Change an alert destination: only the options given change (PATCH).
    Update {
        /// The alert destination's id.
        id: String,
        /// New URL.
        #[arg(long)]
        url: Option<String>,
        /// New signing secret.
        #[arg(long)]
        secret: Option<String>,
        /// Replace the event types with these (repeatable).
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
    },
    /// Delete an alert destination and the events still waiting for it.
    Delete {
        /// The alert destination's id.
        id: String,
    },
}

/// The admin client for `--server` / `--token`.
pub fn client(args: &ApiArgs) -> Result<AdminClient, ClientError> {
    AdminClient::from_args(&args.server, args.token.as_deref())
}
