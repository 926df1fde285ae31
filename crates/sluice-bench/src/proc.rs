//! Reading a process's CPU time, memory and I/O from `/proc` (Linux).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/*/stat` CPU times (`getconf CLK_TCK`, almost always 100).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(100.0)
    })
}

/// `(utime + stime)` in ticks from the text of a `stat` file.
fn stat_ticks(text: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Thread names (`comm`, cut to 15 bytes by the kernel) without trailing digits and
/// separators, so that the threads of one pool add up.
fn thread_group(name: &str) -> String {
    let name = name.trim();
    let base =
        name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_' || c == '#');
    if base.is_empty() {
        name.to_owned()
    } else {
        base.to_owned()
    }
}

/// One reading of a process.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at: Option<Instant>,
    /// User + system CPU time of the whole process.
    pub cpu: Duration,
    /// CPU time per thread group (see [`thread_group`]).
    pub threads: BTreeMap<String, Duration>,
    pub rss_bytes: u64,
    /// Peak RSS since the process started.
    pub hwm_bytes: u64,
    /// Bytes the process caused to be written to / read from storage (`/proc/<pid>/io`).
    pub write_bytes: u64,
    pub read_bytes: u64,
}

fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    }
}

/// What `/proc/<pid>/status` says of memory and threads.
#[derive(Debug, Clone, Copy, Default)]
struct Status {
    rss_bytes: u64,
    hwm_bytes: u64,
    threads: u64,
}

fn status(dir: &str) -> Status {
    let mut s = Status::default();
    let Ok(text) = std::fs::read_to_string(format!("{dir}/status")) else {
        return s;
    };
    for line in text.lines() {
        let v = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            s.rss_bytes = v() * 1024;
        } else if line.starts_with("VmHWM:") {
            s.hwm_bytes = v() * 1024;
        } else if line.starts_with("Threads:") {
            s.threads = v();
        }
    }
    s
}

/// A cheap reading for frequent sampling (no walk over the threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct Light {
    /// User + system CPU time of the whole process.
    pub cpu: Duration,
    pub rss_bytes: u64,
    /// Peak RSS since the process started.
    pub hwm_bytes: u64,
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// `pid`: a process id, or `None` for this process.
pub fn light(pid: Option<u32>) -> Light {
    let dir = proc_dir(pid);
    let ticks = std::fs::read_to_string(format!("{dir}/stat"))
        .ok()
        .as_deref()
        .and_then(stat_ticks)
        .unwrap_or(0);
    let st = status(&dir);
    Light {
        cpu: Duration::from_secs_f64(ticks as f64 / clk_tck()),
        rss_bytes: st.rss_bytes,
        hwm_bytes: st.hwm_bytes,
        threads: st.threads,
        fds: std::fs::read_dir(format!("{dir}/fd")).map_or(0, |d| d.count() as u64),
    }
}

/// `pid`: a process id, or `None` for this process.
pub fn sample(pid: Option<u32>) -> Sample {
    let dir = proc_dir(pid);
    let tck = clk_tck();
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / tck);
    let mut s = Sample {
        at: Some(Instant::now()),
        ..Sample::default()
    };
    if let Some(t) = std::fs::read_to_string(format!("{dir}/stat"))
        .ok()
        .as_deref()
        .and_then(stat_ticks)
    {
        s.cpu = ticks(t);
    }
    if let Ok(entries) = std::fs::read_dir(format!("{dir}/task")) {
        for e in entries.flatten() {
            let p = e.path();
            let Some(t) = std::fs::read_to_string(p.join("stat"))
                .ok()
                .as_deref()
                .and_then(stat_ticks)
            else {
                continue;
            };
            let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            *s.threads.entry(thread_group(&name)).or_default() += ticks(t);
        }
    }
    let st = status(&dir);
    (s.rss_bytes, s.hwm_bytes) = (st.rss_bytes, st.hwm_bytes);
    if let Ok(io) = std::fs::read_to_string(format!("{dir}/io")) {
        for line in io.lines() {
            let v = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("write_bytes:") {
                s.write_bytes = v();
            } else if line.starts_with("read_bytes:") {
                s.read_bytes = v();
            }
        }
    }
    s
}

/// What a process did between two samples.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub wall: Duration,
    pub cpu: Duration,
    /// Per thread group, busiest first; threads that appeared in between count from zero
    /// (threads that exited in between are lost, which only undercounts short-lived ones).
    pub threads: Vec<(String, Duration)>,
    pub write_bytes: u64,
    pub read_bytes: u64,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
}

impl Delta {
    pub fn between(a: &Sample, b: &Sample) -> Delta {
        let wall = match (a.at, b.at) {
            (Some(x), Some(y)) => y.saturating_duration_since(x),
            _ => Duration::ZERO,
        };
        let mut threads: Vec<(String, Duration)> = b
            .threads
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(a.threads.get(k).copied().unwrap_or_default()),
                )
            })
            .filter(|(_, d)| !d.is_zero())
            .collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        Delta {
            wall,
            cpu: b.cpu.saturating_sub(a.cpu),
            threads,
            write_bytes: b.write_bytes.saturating_sub(a.write_bytes),
            read_bytes: b.read_bytes.saturating_sub(a.read_bytes),
            rss_bytes: b.rss_bytes,
            hwm_bytes: b.hwm_bytes,
        }
    }

    /// CPU use in percent of one core (200% = both cores of a 2-core machine busy).
    pub fn cpu_percent(&self) -> f64 {
        pct_of(self.cpu, self.wall)
    }
}

pub fn pct_of(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    }
}

/// Whole-machine CPU time (all processes), from `/proc/stat`: (busy, total) in ticks.
pub fn machine_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4]; // idle + iowait
    Some((total - idle, total))
}

/// CPU used by all other processes, in percent of one core: the machine's busy share times its
/// cores, minus what the measured processes used. Anything well above zero means the figures
/// were taken on a machine that was doing other work too.
pub fn others_percent(machine_busy: Option<f64>, measured: &[&Delta]) -> Option<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ours: f64 = measured.iter().map(|d| d.cpu_percent()).sum();
    machine_busy.map(|b| (b * cpus - ours).max(0.0))
}

/// Share of all cores that were busy between two [`machine_cpu`] readings, and the share spent
/// in iowait, in percent of the whole machine.
pub fn machine_busy(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let total = b.1.checked_sub(a.1)?;
    if total == 0 {
        return None;
    }
    Some((b.0.saturating_sub(a.0)) as f64 / total as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let t = "1234 (tokio (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(stat_ticks(t), Some(300));
        assert_eq!(thread_group("tokio-runtime-w"), "tokio-runtime-w");
        assert_eq!(thread_group("sluice-log-writ"), "sluice-log-writ");
        assert_eq!(thread_group("worker-12"), "worker");
        assert!(sample(None).cpu > Duration::ZERO || sample(None).rss_bytes > 0);
        let l = light(None);
        assert!(l.rss_bytes > 0 && l.hwm_bytes >= l.rss_bytes / 2 && l.threads >= 1 && l.fds >= 1);
    }
}
