//! Admin commands over the HTTP API (`sluice env …`, `sluice integration …`).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Base URL of a running sluice.
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

pub struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Api> {
        let token = args
            .token
            .clone()
            .context("an admin token is needed: --token or SLUICE_ADMIN_TOKEN")?;
        Ok(Api {
            base: args.server.trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::new(),
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            bail!(
                "{status}: {}",
                v.get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or(&v.to_string())
            );
        }
        Ok(v)
    }
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
    use reqwest::Method;
    let api = Api::new(api)?;
    let v = match cmd {
        EnvCmd::List => api.call(Method::GET, "/v1/environments", None).await?,
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
            api.call(Method::POST, "/v1/environments", Some(body))
                .await?
        }
        EnvCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/environments/{id}"), None)
                .await?
        }
    };
    print(&v);
    Ok(())
}

pub async fn integration_cmd(api: &ApiArgs, cmd: IntegrationCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(api)?;
    let path = |id: &str, op: &str| format!("/v1/integrations/{id}{op}");
    let v = match cmd {
        IntegrationCmd::List => api.call(Method::GET, "/v1/integrations", None).await?,
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
            api.call(Method::POST, "/v1/integrations", Some(body))
                .await?
        }
        IntegrationCmd::Status { id } => api.call(Method::GET, &path(&id, "/status"), None).await?,
        IntegrationCmd::Attempts { id } => {
            api.call(Method::GET, &path(&id, "/attempts"), None).await?
        }
        IntegrationCmd::Gaps { id } => api.call(Method::GET, &path(&id, "/gaps"), None).await?,
        IntegrationCmd::Pause { id } => api.call(Method::POST, &path(&id, "/pause"), None).await?,
        IntegrationCmd::Resume { id } => {
            api.call(Method::POST, &path(&id, "/resume"), None).await?
        }
        IntegrationCmd::Test { id } => api.call(Method::POST, &path(&id, "/test"), None).await?,
        IntegrationCmd::Delete { id } => api.call(Method::DELETE, &path(&id, ""), None).await?,
    };
    print(&v);
    Ok(())
}
