//! Golden-output tests of the `sluice env …` / `sluice integration …` commands: the real
//! binary against a live in-process server on 127.0.0.1:0. Volatile values (ports,
//! generated ids, times) are masked or avoided with fixed ids.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a broken setup should panic

mod common;

use common::{Capture, Sluice};
use serde_json::Value;
use std::process::Output;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Runs `sluice ARGS --server SERVER --token test-admin-token`; (success, stdout, stderr).
async fn run(server: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(SLUICE);
    cmd.args(args)
        .args(["--server", server, "--token", "test-admin-token"])
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_ADMIN_TOKEN");
    let out: Output = cmd.output().await.expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run`, which must succeed; its stdout.
async fn ok(server: &str, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(server, args).await;
    assert!(success, "sluice {args:?} failed: {stderr}\n{stdout}");
    stdout
}

/// `run` with `--json`: the printed JSON.
async fn json(server: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(server, &a).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The server as HOST:PORT, without a scheme (accepted: http:// is assumed).
fn bare(s: &Sluice) -> String {
    s.url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
async fn env_commands_print_tables_and_blocks_and_refuse_duplicate_names() {
    let s = Sluice::start().await;
    let server = bare(&s);
    let server = server.as_str();

    let out = ok(
        server,
        &[
            "env",
            "create",
            "Production",
            "--id",
            "prod",
            "--sdk-key",
            "key-prod-1",
        ],
    )
    .await;
    assert_eq!(
        out,
        "created environment\n\
         id:      prod\n\
         name:    Production\n\
         project: default\n\
         sdkKeys: key-prod-1\n"
    );

    // The same name again in the same project is refused, with what to do about it.
    let (success, stdout, stderr) = run(server, &["env", "create", "Production"]).await;
    assert!(!success, "a duplicate name was accepted: {stdout}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(
            "an environment named \"Production\" already exists (id prod, project default); \
             pass --allow-duplicate-name to create another one"
        ),
        "{stderr}"
    );
    let listed = json(server, &["env", "list"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // …and accepted when asked for.
    ok(
        server,
        &[
            "env",
            "create",
            "Production",
            "--id",
            "prod-2",
            "--sdk-key",
            "key-prod-2",
            "--sdk-key",
            "key-prod-3",
            "--allow-duplicate-name",
        ],
    )
    .await;

    assert_eq!(
        ok(server, &["env", "list"]).await,
        "ID      NAME        PROJECT  SDK KEYS\n\
         prod    Production  default  1\n\
         prod-2  Production  default  2\n"
    );

    // update = PATCH: only the name changes, the keys stay.
    assert_eq!(
        ok(server, &["env", "update", "prod-2", "--name", "Staging"]).await,
        "updated environment\n\
         id:      prod-2\n\
         name:    Staging\n\
         project: default\n\
         sdkKeys: key-prod-2, key-prod-3\n"
    );
    assert_eq!(
        ok(server, &["env", "show", "prod-2"]).await,
        "id:      prod-2\n\
         name:    Staging\n\
         project: default\n\
         sdkKeys: key-prod-2, key-prod-3\n"
    );
    let shown = json(server, &["env", "show", "prod-2"]).await;
    assert_eq!(shown["name"], "Staging");
    assert_eq!(
        shown["sdkKeys"],
        serde_json::json!(["key-prod-2", "key-prod-3"])
    );

    let (success, _, stderr) = run(server, &["env", "update", "prod-2"]).await;
    assert!(!success);
    assert!(stderr.contains("nothing to change"), "{stderr}");

    // A full URL works as well as HOST:PORT.
    let full = s.url("");
    assert_eq!(
        ok(&full, &["env", "delete", "prod-2"]).await,
        "deleted environment prod-2 and its stored impressions\n"
    );
    assert_eq!(
        ok(server, &["env", "list"]).await,
        "ID    NAME        PROJECT  SDK KEYS\n\
         prod  Production  default  1\n"
    );
    let (success, _, stderr) = run(server, &["env", "show", "prod-2"]).await;
    assert!(!success);
    assert!(stderr.contains("404"), "{stderr}");
}

#[tokio::test]
async fn integration_commands_show_update_status_attempts_gaps_replay_test_and_delete() {
    let s = Sluice::start().await;
    let server = bare(&s);
    let server = server.as_str();
    let hook = Capture::start(200).await;
    let hook_url = hook.url("/hook");
    ok(server, &["env", "create", "Production", "--id", "prod"]).await;

    let created = ok(
        server,
        &[
            "integration",
            "create",
            "Hook",
            "--id",
            "hook",
            "--env",
            "prod",
            "--url",
            &hook_url,
            "--secret",
            "s3cret",
            "--flush-interval-ms",
            "100",
        ],
    )
    .await;
    assert!(created.starts_with("created integration\n"), "{created}");
    assert!(
        !created.contains("s3cret"),
        "the secret was printed: {created}"
    );

    let list = ok(server, &["integration", "list"]).await;
    assert_eq!(
        list.replace(&hook_url, "<URL>"),
        "ID    NAME  PROJECT  ENVIRONMENTS  URL\n\
         hook  Hook  default  prod          <URL>\n"
    );

    let shown = ok(server, &["integration", "show", "hook"]).await;
    let lines: Vec<&str> = shown.lines().collect();
    for (key, value) in [
        ("id", "hook"),
        ("name", "Hook"),
        ("environments", "prod"),
        ("flushIntervalMs", "100"),
        ("secret", "********"),
        ("url", hook_url.as_str()),
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in {shown}"));
        assert_eq!(
            line.split_once(':').map(|(_, v)| v.trim()),
            Some(value),
            "{shown}"
        );
    }
    // Every value starts in the same column.
    let column = lines[0].len() - lines[0].split_once(':').unwrap().1.trim_start().len();
    for l in &lines {
        assert_eq!(
            l.len() - l.split_once(':').unwrap().1.trim_start().len(),
            column,
            "{shown}"
        );
    }

    // update = PATCH: only the given field changes.
    let updated = json(
        server,
        &[
            "integration",
            "update",
            "hook",
            "--flush-interval-ms",
            "250",
        ],
    )
    .await;
    assert_eq!(updated["flushIntervalMs"], 250);
    assert_eq!(updated["name"], "Hook");
    assert_eq!(updated["environments"], serde_json::json!(["prod"]));
    assert_eq!(updated["secret"], "********");

    let status = ok(server, &["integration", "status", "hook"]).await;
    let keys: Vec<&str> = status
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .collect();
    assert_eq!(
        keys,
        [
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
        ],
        "{status}"
    );
    assert!(
        status.contains("state:                active\n"),
        "{status}"
    );

    let paused = ok(server, &["integration", "pause", "hook"]).await;
    assert!(
        paused.starts_with("paused integration hook\nid:"),
        "{paused}"
    );
    assert!(paused.contains("manuallyPaused:       true\n"), "{paused}");
    let resumed = ok(server, &["integration", "resume", "hook"]).await;
    assert!(
        resumed.starts_with("resumed integration hook\nid:"),
        "{resumed}"
    );
    assert!(
        resumed.contains("manuallyPaused:       false\n"),
        "{resumed}"
    );

    let tested = ok(server, &["integration", "test", "hook"]).await;
    assert!(
        tested.starts_with("delivered:  true\nstatus:     200\nerror:      -\n"),
        "{tested}"
    );
    let tested = json(server, &["integration", "test", "hook"]).await;
    assert_eq!(tested["delivered"], true);

    let attempts = ok(server, &["integration", "attempts", "hook"]).await;
    let header: Vec<&str> = attempts
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "TIME",
            "KIND",
            "ENVIRONMENT",
            "IMPRESSIONS",
            "BYTES",
            "STATUS",
            "MS",
            "ERROR"
        ],
        "{attempts}"
    );
    assert!(json(server, &["integration", "attempts", "hook"]).await["attempts"].is_array());

    assert_eq!(
        ok(server, &["integration", "gaps", "hook"]).await,
        "ID  ENVIRONMENT  FROM  TO  IMPRESSIONS  REASON  CLOSED BY\n(none)\n"
    );
    assert_eq!(
        json(server, &["integration", "gaps", "hook"]).await,
        serde_json::json!({ "gaps": [] })
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let replay = ok(
        server,
        &["integration", "replay", "hook", "--from", "0", "--to", &now],
    )
    .await;
    assert!(replay.starts_with("started replay job\nid:"), "{replay}");
    assert!(
        replay.contains("\nfrom:                 1970-01-01T00:00:00Z\n"),
        "{replay}"
    );
    let replays = ok(server, &["integration", "replays", "hook"]).await;
    assert!(
        replays.starts_with("ID ") && replays.lines().count() == 2,
        "{replays}"
    );
    let (success, _, stderr) = run(server, &["integration", "replay", "hook"]).await;
    assert!(!success, "a replay of nothing was accepted");
    assert!(stderr.contains("--gap"), "{stderr}");

    assert_eq!(
        ok(server, &["integration", "delete", "hook"]).await,
        "deleted integration hook\n"
    );
    assert_eq!(
        ok(server, &["integration", "list"]).await,
        "ID  NAME  PROJECT  ENVIRONMENTS  URL\n(none)\n"
    );
}

#[tokio::test]
async fn a_server_without_a_scheme_is_http_and_a_bad_one_is_refused_clearly() {
    let s = Sluice::start().await;
    assert_eq!(
        ok(&bare(&s), &["env", "list"]).await,
        "ID  NAME  PROJECT  SDK KEYS\n(none)\n"
    );
    let (success, _, stderr) = run("ftp://127.0.0.1:1", &["env", "list"]).await;
    assert!(!success);
    assert!(
        stderr.contains("--server ftp://127.0.0.1:1 is not a usable address"),
        "{stderr}"
    );
}

/// Every command, argument and option of the admin commands says what it is for, and
/// `serve --help` shows the defaults of --listen and --data-dir.
#[tokio::test]
async fn every_command_and_option_has_help() {
    let mut commands: Vec<Vec<&str>> = vec![vec!["env"], vec!["integration"], vec!["alerts"]];
    for sub in ["list", "show", "create", "update", "delete"] {
        commands.push(vec!["env", sub]);
        commands.push(vec!["alerts", sub]);
    }
    for sub in [
        "list", "show", "create", "update", "status", "attempts", "gaps", "replay", "replays",
        "pause", "resume", "test", "delete",
    ] {
        commands.push(vec!["integration", sub]);
    }
    for c in commands {
        let mut args = c.clone();
        args.push("-h");
        let out = tokio::process::Command::new(SLUICE)
            .args(&args)
            .output()
            .await
            .expect("run sluice");
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        let mut section = "";
        for line in help.lines() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            if ["Commands:", "Arguments:", "Options:"].contains(&section) {
                assert!(
                    line.trim().contains("  "),
                    "{args:?}: no help for {:?}:\n{help}",
                    line.trim()
                );
            }
        }
    }
    let out = tokio::process::Command::new(SLUICE)
        .args(["serve", "--help"])
        .output()
        .await
        .expect("run sluice");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("default: 127.0.0.1:8080"), "{help}");
    assert!(help.contains("default: ./sluice-data"), "{help}");
}

#[tokio::test]
async fn alerts_commands_create_list_show_update_and_delete() {
    let s = Sluice::start().await;
    let server = bare(&s);
    let server = server.as_str();
    let url = "http://127.0.0.1:9/ops";
    let out = ok(
        server,
        &[
            "alerts",
            "create",
            "--id",
            "ops",
            "--url",
            url,
            "--secret",
            "whsec-ops",
            "--event",
            "integration.paused",
            "--event",
            "integration.gap",
        ],
    )
    .await;
    assert_eq!(
        out,
        format!(
            "created alert destination\n\
             id:      ops\n\
             url:     {url}\n\
             project: -\n\
             events:  integration.paused, integration.gap\n\
             secret:  ********\n"
        )
    );
    assert_eq!(
        ok(server, &["alerts", "list"]).await,
        format!(
            "ID   URL                     PROJECT          EVENTS\n\
             ops  {url}  (every project)  integration.paused,integration.gap\n"
        )
    );
    let updated = ok(
        server,
        &["alerts", "update", "ops", "--event", "replay.finished"],
    )
    .await;
    assert!(updated.contains("events:  replay.finished\n"), "{updated}");
    let shown = ok(server, &["alerts", "show", "ops"]).await;
    assert!(shown.contains("state:           active\n"), "{shown}");
    assert!(shown.contains("pendingEvents:   0\n"), "{shown}");
    // The node that sends it (a node's name; `local` when alone).
    assert!(shown.contains("sentBy:          local\n"), "{shown}");
    let v = json(server, &["alerts", "show", "ops"]).await;
    assert_eq!(
        v["destination"]["events"],
        serde_json::json!(["replay.finished"])
    );
    let (success, _, stderr) = run(
        server,
        &[
            "alerts",
            "create",
            "--url",
            url,
            "--secret",
            "s",
            "--event",
            "integration.exploded",
        ],
    )
    .await;
    assert!(!success);
    assert!(stderr.contains("events[0]"), "{stderr}");
    assert_eq!(
        ok(server, &["alerts", "delete", "ops"]).await,
        "deleted alert destination ops and the events waiting for it\n"
    );
    assert_eq!(
        json(server, &["alerts", "list"]).await,
        serde_json::json!([])
    );
}
