//! `sluice env …`: environments over the admin API.

use super::output::{answer, block, rows, set_given, table};
use super::{ApiArgs, EnvCmd, OutputArgs, client};
use serde_json::{Value, json};
use sluice_client::AdminClient;

const SHOW: &[&str] = &["id", "name", "project", "sdkKeys"];

pub async fn env_cmd(args: &ApiArgs, out: &OutputArgs, cmd: EnvCmd) -> anyhow::Result<()> {
    let api = client(args)?;
    let (v, human) = match cmd {
        EnvCmd::List => {
            let v = api.environments().await?;
            let human = list_table(&v);
            (v, human)
        }
        EnvCmd::Show { id } => {
            let v = api.environment(&id).await?;
            let human = block(&v, Some(SHOW));
            (v, human)
        }
        EnvCmd::Create {
            name,
            id,
            project,
            sdk_keys,
            allow_duplicate_name,
        } => {
            if !allow_duplicate_name {
                refuse_duplicate(&api, &name, project.as_deref()).await?;
            }
            let mut body = json!({ "name": name });
            set_given(&mut body, "id", id);
            set_given(&mut body, "project", project);
            if !sdk_keys.is_empty() {
                body["sdkKeys"] = sdk_keys.into();
            }
            let v = api.create_environment(&body).await?;
            let human = format!("created environment\n{}", block(&v, Some(SHOW)));
            (v, human)
        }
        EnvCmd::Update {
            id,
            name,
            project,
            sdk_keys,
        } => {
            let mut patch = json!({});
            set_given(&mut patch, "name", name);
            set_given(&mut patch, "project", project);
            if !sdk_keys.is_empty() {
                patch["sdkKeys"] = sdk_keys.into();
            }
            if patch.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!("nothing to change: give --name, --project or --sdk-key");
            }
            let v = api.patch_environment(&id, &patch).await?;
            let human = format!("updated environment\n{}", block(&v, Some(SHOW)));
            (v, human)
        }
        EnvCmd::Delete { id } => {
            let v = api.delete_environment(&id).await?;
            let human = format!("deleted environment {id} and its stored impressions\n");
            (v, human)
        }
    };
    answer(out.json, &v, &human);
    Ok(())
}

fn list_table(v: &Value) -> String {
    let mut r = rows(v, &["id", "name", "project"]);
    if let Some(items) = v.as_array() {
        for (row, item) in r.iter_mut().zip(items) {
            let keys = item
                .get("sdkKeys")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            row.push(keys.to_string());
        }
    }
    table(&["ID", "NAME", "PROJECT", "SDK KEYS"], &r)
}

/// Errs when an environment named `name` exists in `project` (any visible project when
/// none is given: the server puts it in `default` or the token's project).
async fn refuse_duplicate(
    api: &AdminClient,
    name: &str,
    project: Option<&str>,
) -> anyhow::Result<()> {
    let existing = api.environments().await?;
    let same = existing.as_array().into_iter().flatten().find(|e| {
        e.get("name").and_then(Value::as_str) == Some(name)
            && project.is_none_or(|p| e.get("project").and_then(Value::as_str) == Some(p))
    });
    if let Some(e) = same {
        let id = e.get("id").and_then(Value::as_str).unwrap_or("?");
        let project = e.get("project").and_then(Value::as_str).unwrap_or("?");
        anyhow::bail!(
            "an environment named {name:?} already exists (id {id}, project {project}); \
             pass --allow-duplicate-name to create another one"
        );
    }
    Ok(())
}
