//! `sluice alerts …`: operator alert destinations over the admin API.

use super::output::{answer, block, rows, set_given, table};
use super::{AlertsCmd, ApiArgs, OutputArgs, client};
use serde_json::{Value, json};

const SHOW: &[&str] = &["id", "url", "project", "events", "secret"];
const STATUS: &[&str] = &[
    "state",
    "pendingEvents",
    "deliveredEvents",
    "failedAttempts",
    "droppedEvents",
    "lastError",
    "lastErrorAt",
    "pausedUntil",
    "sentBy",
];

pub async fn alerts_cmd(args: &ApiArgs, out: &OutputArgs, cmd: AlertsCmd) -> anyhow::Result<()> {
    let api = client(args)?;
    let (v, human) = match cmd {
        AlertsCmd::List => {
            let v = api.alert_destinations().await?;
            let human = list_table(&v);
            (v, human)
        }
        AlertsCmd::Show { id } => {
            let d = api.alert_destination(&id).await?;
            let st = api.alert_destination_status(&id).await?;
            let human = format!("{}{}", block(&d, Some(SHOW)), block(&st, Some(STATUS)));
            (json!({"destination": d, "status": st}), human)
        }
        AlertsCmd::Create {
            url,
            secret,
            events,
            project,
            id,
        } => {
            let mut body = json!({ "url": url, "secret": secret, "events": events });
            set_given(&mut body, "project", project);
            set_given(&mut body, "id", id);
            let v = api.create_alert_destination(&body).await?;
            let human = format!("created alert destination\n{}", block(&v, Some(SHOW)));
            (v, human)
        }
        AlertsCmd::Update {
            id,
            url,
            secret,
            events,
        } => {
            let mut patch = json!({});
            set_given(&mut patch, "url", url);
            set_given(&mut patch, "secret", secret);
            if !events.is_empty() {
                patch["events"] = events.into();
            }
            if patch.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!("nothing to change: give --url, --secret or --event");
            }
            let v = api.patch_alert_destination(&id, &patch).await?;
            let human = format!("updated alert destination\n{}", block(&v, Some(SHOW)));
            (v, human)
        }
        AlertsCmd::Delete { id } => {
            let v = api.delete_alert_destination(&id).await?;
            let human = format!("deleted alert destination {id} and the events waiting for it\n");
            (v, human)
        }
    };
    answer(out.json, &v, &human);
    Ok(())
}

fn list_table(v: &Value) -> String {
    let mut r = rows(v, &["id", "url", "project"]);
    if let Some(items) = v.as_array() {
        for (row, item) in r.iter_mut().zip(items) {
            if row.get(2).is_some_and(|p| p.is_empty() || p == "-") {
                row[2] = "(every project)".into();
            }
            let events: Vec<&str> = item
                .get("events")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            row.push(events.join(","));
        }
    }
    table(&["ID", "URL", "PROJECT", "EVENTS"], &r)
}
