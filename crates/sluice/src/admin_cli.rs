//! Admin commands over the HTTP API (`sluice env …`, `sluice integration …`).

use clap::{Args, Subcommand};
use serde_json::Value;
use sluice_client::{AdminClient, ClientError};

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
    /// Admin token (printed by `sluice serve` at start-up).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum EnvCmd {
    /// List environments.
    List,
    /// Create an environment (an SDK key is generated unless given).
    Create {
        name: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long = "sdk-key")]
        sdk_keys: Vec<String>,
    },
    /// Delete an environment and its stored impressions.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum IntegrationCmd {
    /// List integrations.
    List,
    /// Create an integration delivering the given environments to a URL.
    Create {
        name: String,
        /// The webhook URL impressions are delivered to.
        #[arg(long)]
        url: String,
        #[arg(long = "env", required = true)]
        environments: Vec<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        flush_interval_ms: Option<u64>,
        #[arg(long)]
        max_batch_impressions: Option<u32>,
        #[arg(long)]
        no_gzip: bool,
    },
    /// Delivery status.
    Status {
        id: String,
    },
    /// Recent delivery attempts.
    Attempts {
        id: String,
    },
    /// Skipped backlog windows.
    Gaps {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Send one sample batch and show the endpoint's answer.
    Test {
        id: String,
    },
    Delete {
        id: String,
    },
}

/// The admin client for `--server` / `--token`.
pub fn client(args: &ApiArgs) -> Result<AdminClient, ClientError> {
    AdminClient::from_args(&args.server, args.token.as_deref())
}

fn print(v: &Value) {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}

pub async fn env_cmd(api: &ApiArgs, cmd: EnvCmd) -> anyhow::Result<()> {
    let api = client(api)?;
    let v = match cmd {
        EnvCmd::List => api.environments().await?,
        EnvCmd::Create {
            name,
            id,
            project,
            sdk_keys,
        } => {
            let mut body = serde_json::json!({ "name": name });
            if let Some(id) = id {
                body["id"] = id.into();
            }
            if let Some(p) = project {
                body["project"] = p.into();
            }
            if !sdk_keys.is_empty() {
                body["sdkKeys"] = sdk_keys.into();
            }
            api.create_environment(&body).await?
        }
        EnvCmd::Delete { id } => api.delete_environment(&id).await?,
    };
    print(&v);
    Ok(())
}

pub async fn integration_cmd(api: &ApiArgs, cmd: IntegrationCmd) -> anyhow::Result<()> {
    let api = client(api)?;
    let v = match cmd {
        IntegrationCmd::List => api.integrations().await?,
        IntegrationCmd::Create {
            name,
            url,
            environments,
            id,
            secret,
            flush_interval_ms,
            max_batch_impressions,
            no_gzip,
        } => {
            let mut body =
                serde_json::json!({ "name": name, "url": url, "environments": environments });
            if let Some(id) = id {
                body["id"] = id.into();
            }
            if let Some(s) = secret {
                body["secret"] = s.into();
            }
            if let Some(f) = flush_interval_ms {
                body["flushIntervalMs"] = f.into();
            }
            if let Some(m) = max_batch_impressions {
                body["maxBatchImpressions"] = m.into();
            }
            if no_gzip {
                body["gzip"] = false.into();
            }
            api.create_integration(&body).await?
        }
        IntegrationCmd::Status { id } => api.integration_status(&id).await?,
        IntegrationCmd::Attempts { id } => api.attempts(&id).await?,
        IntegrationCmd::Gaps { id } => api.gaps(&id).await?,
        IntegrationCmd::Pause { id } => api.pause(&id).await?,
        IntegrationCmd::Resume { id } => api.resume(&id).await?,
        IntegrationCmd::Test { id } => api.test_integration(&id).await?,
        IntegrationCmd::Delete { id } => api.delete_integration(&id).await?,
    };
    print(&v);
    Ok(())
}
