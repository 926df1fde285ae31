//! `sluice integration …`: integrations over the admin API.

use super::output::{answer, block, rows, set_given, table};
use super::{ApiArgs, IntegrationCmd, OutputArgs, client};
use serde_json::{Value, json};

const STATUS: &[&str] = &[
    "id",
    "state",
    "manuallyPaused",
    "lagImpressions",
    "lagSeconds",
    "deliveredImpressions",
    "failedAttempts",
    "errorRatePercent",
    "lastSuccess",
    "lastError",
    "pausedUntil",
    "pauseCount",
];

const JOB: &[&str] = &[
    "id",
    "state",
    "gapId",
    "from",
    "to",
    "deliveredImpressions",
    "deliveredBatches",
    "failedAttempts",
    "scannedOffsets",
    "totalOffsets",
    "createdAt",
    "finishedAt",
    "lastError",
];

const TEST: &[&str] = &[
    "delivered",
    "status",
    "error",
    "durationMs",
    "batchId",
    "response",
];

pub async fn integration_cmd(
    args: &ApiArgs,
    out: &OutputArgs,
    cmd: IntegrationCmd,
) -> anyhow::Result<()> {
    let api = client(args)?;
    let (v, human) = match cmd {
        IntegrationCmd::List => {
            let v = api.integrations().await?;
            let r = rows(&v, &["id", "name", "project", "environments", "url"]);
            let human = table(&["ID", "NAME", "PROJECT", "ENVIRONMENTS", "URL"], &r);
            (v, human)
        }
        IntegrationCmd::Show { id } => {
            let v = api.integration(&id).await?;
            let human = block(&v, None);
            (v, human)
        }
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
            let mut body = json!({ "name": name, "url": url, "environments": environments });
            set_given(&mut body, "id", id);
            set_given(&mut body, "secret", secret);
            set_given(&mut body, "flushIntervalMs", flush_interval_ms);
            set_given(&mut body, "maxBatchImpressions", max_batch_impressions);
            if no_gzip {
                body["gzip"] = false.into();
            }
            let v = api.create_integration(&body).await?;
            let human = format!("created integration\n{}", block(&v, None));
            (v, human)
        }
        IntegrationCmd::Update {
            id,
            name,
            url,
            environments,
            secret,
            flush_interval_ms,
            max_batch_impressions,
            gzip,
        } => {
            let mut patch = json!({});
            set_given(&mut patch, "name", name);
            set_given(&mut patch, "url", url);
            if !environments.is_empty() {
                patch["environments"] = environments.into();
            }
            set_given(&mut patch, "secret", secret);
            set_given(&mut patch, "flushIntervalMs", flush_interval_ms);
            set_given(&mut patch, "maxBatchImpressions", max_batch_impressions);
            set_given(&mut patch, "gzip", gzip);
            if patch.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!(
                    "nothing to change: give --name, --url, --env, --secret, \
                     --flush-interval-ms, --max-batch-impressions or --gzip"
                );
            }
            let v = api.patch_integration(&id, &patch).await?;
            let human = format!("updated integration\n{}", block(&v, None));
            (v, human)
        }
        IntegrationCmd::Status { id } => {
            let v = api.integration_status(&id).await?;
            let human = status_text(&v);
            (v, human)
        }
        IntegrationCmd::Attempts { id } => {
            let v = api.attempts(&id).await?;
            let items = v.get("attempts").cloned().unwrap_or(Value::Null);
            let cols = [
                "time",
                "kind",
                "environmentId",
                "impressions",
                "bytes",
                "status",
                "durationMs",
                "error",
            ];
            let heads = [
                "TIME",
                "KIND",
                "ENVIRONMENT",
                "IMPRESSIONS",
                "BYTES",
                "STATUS",
                "MS",
                "ERROR",
            ];
            let human = table(&heads, &rows(&items, &cols));
            (v, human)
        }
        IntegrationCmd::Gaps { id } => {
            let v = api.gaps(&id).await?;
            let items = v.get("gaps").cloned().unwrap_or(Value::Null);
            let cols = [
                "id",
                "environmentId",
                "from",
                "to",
                "impressions",
                "reason",
                "closedBy",
            ];
            let heads = [
                "ID",
                "ENVIRONMENT",
                "FROM",
                "TO",
                "IMPRESSIONS",
                "REASON",
                "CLOSED BY",
            ];
            let human = table(&heads, &rows(&items, &cols));
            (v, human)
        }
        IntegrationCmd::Replay { id, gap, from, to } => {
            let body = match gap {
                Some(g) => json!({ "gapId": g }),
                None => json!({ "from": from, "to": to }),
            };
            let v = api.replay(&id, &body).await?;
            let human = format!("started replay job\n{}", block(&v, Some(JOB)));
            (v, human)
        }
        IntegrationCmd::Replays { id } => {
            let v = api.replays(&id).await?;
            let items = v.get("replays").cloned().unwrap_or(Value::Null);
            let cols = [
                "id",
                "state",
                "gapId",
                "from",
                "to",
                "deliveredImpressions",
                "scannedOffsets",
                "totalOffsets",
            ];
            let heads = [
                "ID",
                "STATE",
                "GAP",
                "FROM",
                "TO",
                "DELIVERED",
                "SCANNED",
                "TOTAL",
            ];
            let human = table(&heads, &rows(&items, &cols));
            (v, human)
        }
        IntegrationCmd::Pause { id } => {
            let v = api.pause(&id).await?;
            let human = format!("paused integration {id}\n{}", status_text(&v));
            (v, human)
        }
        IntegrationCmd::Resume { id } => {
            let v = api.resume(&id).await?;
            let human = format!("resumed integration {id}\n{}", status_text(&v));
            (v, human)
        }
        IntegrationCmd::Test { id } => {
            let v = api.test_integration(&id).await?;
            let human = block(&v, Some(TEST));
            (v, human)
        }
        IntegrationCmd::Delete { id } => {
            let v = api.delete_integration(&id).await?;
            let human = format!("deleted integration {id}\n");
            (v, human)
        }
    };
    answer(out.json, &v, &human);
    Ok(())
}

/// A status as a key-value block, then its pause history as a table when it has one.
fn status_text(v: &Value) -> String {
    let mut out = block(v, Some(STATUS));
    if let Some(history) = v.get("pauseHistory")
        && history.as_array().is_some_and(|h| !h.is_empty())
    {
        out.push_str("\npause history:\n");
        out.push_str(&table(
            &["PAUSED AT", "COOLDOWN MS", "FAILURE %", "REASON"],
            &rows(
                history,
                &["pausedAt", "cooldownMs", "failureRatePercent", "reason"],
            ),
        ));
    }
    out
}
