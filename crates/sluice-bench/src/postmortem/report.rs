//! The report: the machine, then both runs side by side, the per-kind table and the verdict.

use super::kinds::FAILURES;
use super::outcome::RunResult;
use super::receivers::FLAKY_EVERY;
use super::stats::pcts;
use super::{
    CREATE_GOAL_SECS, IDLE_CPU_GOAL_PCT, PAUSE_GOAL_SECS, PostmortemArgs, RSS_GOAL_BYTES,
    SLOW_PAST_TIMEOUT_MS,
};

pub(super) fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

pub(super) fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

pub(super) fn header(cells: &[&str]) {
    row(&cells.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    println!("|{}", cells.iter().map(|_| "---|").collect::<String>());
}

/// Prints the results; `true` when the target was met and nothing was lost.
pub(super) fn report(args: &PostmortemArgs, base: Option<&RunResult>, fail: &RunResult) -> bool {
    println!();
    println!("## Postmortem benchmark: results");
    println!();
    settings(args, fail);
    println!();
    runs_table(base, fail);
    println!();
    kinds_table(fail);
    println!();
    verdict(args, base, fail)
}

/// What was run, in one paragraph.
fn settings(args: &PostmortemArgs, fail: &RunResult) {
    let timeout = fail.protection["requestTimeoutMs"].as_u64().unwrap_or(0);
    println!(
        "{} integrations on one environment, {}% failing in run 2 (hang / refuse / 500 / slow), {} impressions/s ingested ({} per request) for {} s; flushIntervalMs {}, maxBatchImpressions {}; protection: sluice's defaults, `{}`; slow destinations answer after {} ms{}.",
        args.integrations,
        args.failing_percent,
        args.rate,
        args.per_request,
        args.seconds,
        fail.flush_interval_ms,
        args.max_batch_impressions
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        fail.protection,
        timeout + SLOW_PAST_TIMEOUT_MS,
        if args.flaky_percent > 0 {
            format!(
                "; {}% flaky (500 to 2 of every {FLAKY_EVERY} requests: one batch's attempt and its retry)",
                args.flaky_percent
            )
        } else {
            String::new()
        }
    );
}

/// Both runs side by side.
fn runs_table(base: Option<&RunResult>, fail: &RunResult) {
    let runs: Vec<&RunResult> = base.into_iter().chain(std::iter::once(fail)).collect();
    let mut h = vec![""];
    h.extend(runs.iter().map(|r| {
        if r.label == "baseline" {
            "all healthy"
        } else {
            "with failing"
        }
    }));
    header(&h);
    let line = |name: &str, f: &dyn Fn(&RunResult) -> String| {
        let mut c = vec![name.to_owned()];
        c.extend(runs.iter().map(|r| f(r)));
        row(&c);
    };
    line("integrations created (bulk) / all started", &|r| {
        format!("{:.1} s / {:.1} s", r.create_secs, r.started_secs)
    });
    line("sluice CPU in the first seconds after start-up", &|r| {
        format!(
            "{:.1}% of a core over {} s",
            r.idle.settle_cpu_pct, r.idle.settle_secs
        )
    });
    line("**sluice idle CPU** (started, nothing ingested)", &|r| {
        format!(
            "**{:.1}%** of a core over the next {} s",
            r.idle.cpu_pct, r.idle.secs
        )
    });
    line(
        "sluice when idle before ingest: RSS / fds / threads",
        &|r| format!("{} / {} / {}", mib(r.idle.rss), r.idle.fds, r.idle.threads),
    );
    line("healthy integrations", &|r| r.healthy.to_string());
    line("impressions ingested (acknowledged)", &|r| {
        r.impressions.to_string()
    });
    line("deliveries to healthy integrations", &|r| {
        (r.impressions * r.healthy as u64).to_string()
    });
    line("healthy lag p50", &|r| format!("{} ms", r.lag.p50));
    line("**healthy lag p99**", &|r| format!("**{} ms**", r.lag.p99));
    line("healthy lag p99.9", &|r| format!("{} ms", r.lag.p999));
    line("healthy lag max", &|r| format!("{} ms", r.lag.max));
    if fail.flaky_lag.is_some() {
        line("flaky integrations' lag p50 / p99 / max", &|r| {
            r.flaky_lag.map_or_else(
                || "(healthy above)".to_owned(),
                |p| format!("{} / {} / {} ms", p.p50, p.p99, p.max),
            )
        });
        line("flaky caught up after end of ingest", &|r| {
            if r.flaky_lag.is_none() {
                return "".to_owned();
            }
            r.flaky_caught_up
                .map_or_else(|| "not in 60 s".to_owned(), |s| format!("{s:.1} s"))
        });
    }
    line("healthy lag p99 per 10 s of ingest", &|r| {
        r.timeline
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" / ")
            + " ms"
    });
    line("healthy caught up after end of ingest", &|r| {
        r.healthy_caught_up.map_or_else(
            || format!("not in 60 s ({} missing)", r.healthy_missing_then),
            |s| format!("{s:.1} s"),
        )
    });
    line("requests per healthy endpoint (min / median / max)", &|r| {
        let (a, b, c) = r.healthy_requests;
        format!("{a} / {b} / {c}")
    });
    line("ingest latency p50 / p99 / max", &|r| {
        let p = pcts(&r.ingest.latencies_ms);
        format!("{} / {} / {} ms", p.p50, p.p99, p.max)
    });
    line("ingest requests failed / sent late", &|r| {
        format!("{} / {}", r.ingest.failed, r.ingest.late)
    });
    line("sluice CPU during ingest (% of one core)", &|r| {
        format!("{:.0}%", r.sluice_cpu_pct)
    });
    line("bench process CPU (ingest + receivers)", &|r| {
        format!("{:.0}%", r.bench_cpu_pct)
    });
    line("other processes' CPU (machine busy − both)", &|r| {
        format!(
            "{:.0}% (machine {:.0}%)",
            r.others_cpu_pct, r.machine_cpu_pct
        )
    });
    line(
        "sluice peak RSS (VmHWM): before healing / incl. drain / at end",
        &|r| {
            format!(
                "{} / {} / {}",
                mib(r.hwm_before_heal),
                mib(r.peaks.rss),
                mib(r.rss_end)
            )
        },
    );
    line("sluice threads (max)", &|r| r.peaks.threads.to_string());
    line("**sluice open fds** (max)", &|r| {
        format!("**{}**", r.peaks.fds)
    });
    line("sluice open fds once idle after the drain", &|r| {
        r.fds_after_idle.to_string()
    });
    line("sluice log WARN / ERROR lines", &|r| {
        format!("{} / {}", r.log_lines.0, r.log_lines.1)
    });
}

/// The failing destinations by kind: while failing, and after healing.
fn kinds_table(fail: &RunResult) {
    println!(
        "Failing destinations while failing ({:.0} s of ingest, then until the healthy ones caught up), and after healing:",
        fail.ingest_secs
    );
    println!();
    header(&[
        "kind",
        "integrations",
        "requests received (min / med / max)",
        "sluice failedAttempts (min / med / max)",
        "paused ≥ 1×",
        "first pause, s after start (min / med / max)",
        "**first pause, s after the first failed attempt (p50 / max)**",
        "state before healing",
        "lost after healing",
        "duplicate impressions (batches)",
    ]);
    for k in &fail.kinds {
        let states = k
            .states
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        row(&[
            k.kind.label().to_owned(),
            k.count.to_string(),
            format!("{} / {} / {}", k.requests.0, k.requests.1, k.requests.2),
            format!(
                "{} / {} / {}",
                k.failed_attempts.0, k.failed_attempts.1, k.failed_attempts.2
            ),
            format!("{}/{}", k.paused, k.count),
            k.first_pause.map_or_else(
                || "—".to_owned(),
                |(a, b, c)| format!("{a:.0} / {b:.0} / {c:.0}"),
            ),
            k.pause_after_failure.map_or_else(
                || "—".to_owned(),
                |(p50, max)| format!("**{p50:.1} / {max:.1}**"),
            ),
            states,
            if k.integrations_with_loss > 0 {
                format!(
                    "**{}** (at {} integrations)",
                    k.lost, k.integrations_with_loss
                )
            } else {
                "0".to_owned()
            },
            format!("{} ({})", k.duplicates, k.duplicate_batches),
        ]);
    }
}

/// The drain, the losses and the lag target.
fn verdict(args: &PostmortemArgs, base: Option<&RunResult>, fail: &RunResult) -> bool {
    println!(
        "Drain after healing: {}. Impressions lost: {}. Duplicate impressions: {}.",
        fail.drain_secs.map_or_else(
            || format!("NOT complete within {} s", args.heal_timeout),
            |s| format!("{s:.1} s")
        ),
        fail.lost_total,
        fail.duplicates_total
    );
    let met = match base {
        Some(b) => {
            let allowed = (f64::from(b.lag.p99) * 1.1).max(f64::from(b.lag.p99) + 1000.0);
            let ok = f64::from(fail.lag.p99) <= allowed;
            println!(
                "Target (healthy p99 within max(10%, 1 s) of all-healthy: ≤ {allowed:.0} ms): {} ({} ms vs {} ms).",
                if ok { "MET" } else { "NOT MET" },
                fail.lag.p99,
                b.lag.p99
            );
            ok
        }
        None => {
            println!("Target: not evaluated (--skip-baseline).");
            true
        }
    };
    let paused_in_time = pause_goal(fail);
    // Every run's cost is printed, so no short-circuiting `all`.
    let mut cheap = true;
    for r in base.into_iter().chain([fail]) {
        cheap &= cost_goals(r);
    }
    met && paused_in_time && cheap && fail.lost_total == 0
}

/// A node's cost in one run: peak RSS, steady idle CPU, time to create the integrations.
fn cost_goals(r: &RunResult) -> bool {
    let checks = [
        (
            format!("peak RSS ≤ {}", mib(RSS_GOAL_BYTES)),
            r.peaks.rss <= RSS_GOAL_BYTES,
            mib(r.peaks.rss),
        ),
        (
            format!("idle CPU ≤ {IDLE_CPU_GOAL_PCT:.0}% of a core"),
            r.idle.cpu_pct <= IDLE_CPU_GOAL_PCT,
            format!("{:.1}%", r.idle.cpu_pct),
        ),
        (
            format!("integrations created in ≤ {CREATE_GOAL_SECS:.0} s"),
            r.create_secs <= CREATE_GOAL_SECS,
            format!("{:.1} s", r.create_secs),
        ),
    ];
    let mut ok = true;
    for (goal, met, value) in checks {
        ok &= met;
        println!(
            "Goal ({}, {goal}): {} ({value}).",
            r.label,
            if met { "MET" } else { "NOT MET" }
        );
    }
    ok
}

/// Every dead destination paused within the goal of its first failed attempt.
fn pause_goal(fail: &RunResult) -> bool {
    let mut ok = true;
    for k in fail.kinds.iter().filter(|k| FAILURES.contains(&k.kind)) {
        let met = k.paused == k.count
            && k.pause_after_failure
                .is_some_and(|(_, max)| max <= PAUSE_GOAL_SECS);
        ok &= met;
        println!(
            "Goal ({}: every one paused within {PAUSE_GOAL_SECS:.0} s of its first failed attempt): {} ({}/{} paused, max {}).",
            k.kind.label(),
            if met { "MET" } else { "NOT MET" },
            k.paused,
            k.count,
            k.pause_after_failure
                .map_or_else(|| "—".to_owned(), |(_, max)| format!("{max:.1} s"))
        );
    }
    ok
}
