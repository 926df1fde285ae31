//! What the figures were measured on: the machine, the disk under the data directory, the
//! commit and the build profile.

use super::CommonArgs;
use super::report::{self, Table};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The parent of the server's data directory.
pub fn data_parent(c: &CommonArgs) -> PathBuf {
    c.data_dir.clone().unwrap_or_else(std::env::temp_dir)
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total: String,
    pub kernel: String,
    pub commit: String,
    /// When this executable was built (its mtime), and a warning when sources in the checkout
    /// are newer: then `commit` does not describe the code being measured.
    pub built: String,
    pub stale: Option<String>,
    pub profile: &'static str,
    pub data_dir: PathBuf,
    pub data_fs: String,
    /// fdatasync latency of a 4 KiB append and of a 1 MiB append: (p50, p99) each.
    pub fsync_4k: Option<(Duration, Duration)>,
    pub fsync_1m: Option<(Duration, Duration)>,
}

impl Machine {
    pub async fn detect(c: &CommonArgs) -> Machine {
        let data_dir = data_parent(c);
        let probe_dir = data_dir.clone();
        let (fsync_4k, fsync_1m) = if c.no_fsync_probe {
            (None, None)
        } else {
            tokio::task::spawn_blocking(move || {
                (
                    fsync_probe(&probe_dir, 4096, 100).ok(),
                    fsync_probe(&probe_dir, 1 << 20, 30).ok(),
                )
            })
            .await
            .unwrap_or((None, None))
        };
        Machine {
            date: utc_now(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            mem_total: mem_total(),
            kernel: kernel(),
            commit: git_commit(),
            built: exe_mtime().map_or_else(|| "unknown".into(), utc),
            stale: staleness(),
            profile: profile(),
            data_fs: filesystem_of(&data_dir),
            data_dir,
            fsync_4k,
            fsync_1m,
        }
    }

    pub fn print(&self) {
        report::title("Machine");
        let lat = |v: Option<(Duration, Duration)>| {
            v.map_or_else(
                || "not measured".to_owned(),
                |(p50, p99)| format!("p50 {}  p99 {}", report::ms(p50), report::ms(p99)),
            )
        };
        Table::new()
            .row("date (UTC)", &self.date)
            .row("commit (of the checkout)", &self.commit)
            .row("binary built (UTC)", &self.built)
            .row(
                "build",
                format!("sluice {} {}", env!("CARGO_PKG_VERSION"), self.profile),
            )
            .row("cpus (nproc)", self.cpus.to_string())
            .row("cpu model", &self.cpu_model)
            .row("memory", &self.mem_total)
            .row("kernel", &self.kernel)
            .row(
                "data dir",
                format!("{} ({})", self.data_dir.display(), self.data_fs),
            )
            .row("fdatasync, 4 KiB append", lat(self.fsync_4k))
            .row("fdatasync, 1 MiB append", lat(self.fsync_1m))
            .print();
        if let Some(w) = &self.stale {
            println!("  WARNING: {w}");
            eprintln!("warning: {w}");
        }
        if cfg!(debug_assertions) {
            eprintln!(
                "warning: this is a debug build; build with `cargo build --release -p sluice -p sluice-bench` for real figures"
            );
        }
    }
}

/// The build profile, with a warning for debug builds.
fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug (figures NOT meaningful: use --release)"
    } else {
        "release"
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// The machine in a few rows (no disk probe): for reports that print their own table.
pub fn summary() -> Vec<(&'static str, String)> {
    vec![
        ("date (UTC)", utc_now()),
        ("commit", git_commit()),
        ("build", profile().to_owned()),
        (
            "cpus (nproc)",
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("cpu model", cpu_model()),
        ("memory", mem_total()),
        ("kernel", kernel()),
    ]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or_else(|| "unknown".into(), |kb| report::bytes(kb * 1024.0))
}

/// `git ARGS`'s standard output, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `git rev-parse` of the working directory's repository, `-dirty` when tracked files differ.
fn git_commit() -> String {
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.trim().is_empty() => {
            let c = c.trim().to_owned();
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty (uncommitted changes in the tree)")
            } else {
                c
            }
        }
        _ => "unknown (not run inside the git checkout)".into(),
    }
}

fn exe_mtime() -> Option<SystemTime> {
    std::fs::metadata(crate::sluice_exe().ok()?)
        .ok()?
        .modified()
        .ok()
}

/// The commit printed is the checkout's, read when the bench runs; the binary may be older.
/// Says so when a tracked source file is newer than the executable. (Commit times are not
/// compared: committing files the binary was built from does not make it stale.)
fn staleness() -> Option<String> {
    let exe = exe_mtime()?;
    let out = git;
    let root = PathBuf::from(out(&["rev-parse", "--show-toplevel"])?.trim());
    let mut newer: Vec<String> = out(&[
        "-C",
        root.to_str()?,
        "ls-files",
        "--",
        "Cargo.lock",
        "crates",
    ])?
    .lines()
    .filter(|f| {
        f.ends_with(".rs")
            || f.ends_with(".toml")
            || f.ends_with(".lock")
            || f.ends_with(".json")
            || f.ends_with(".html")
    })
    .filter(|f| {
        std::fs::metadata(root.join(f))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > exe)
    })
    .map(str::to_owned)
    .collect();
    if newer.is_empty() {
        return None;
    }
    newer.sort();
    let n = newer.len();
    let some = newer.into_iter().take(3).collect::<Vec<_>>().join(", ");
    Some(format!(
        "this binary is older than the checkout ({n} source file(s) newer: {some}); the commit above may not be what is measured: rebuild"
    ))
}

/// The filesystem type and device of the mount holding `path`, from `/proc/mounts`.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown fs".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let mnt = f[1].replace("\\040", " ");
        if path.starts_with(&mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() > *l) {
            best = Some((mnt.len(), format!("{} on {}", f[2], f[0])));
        }
    }
    best.map_or_else(|| "unknown fs".into(), |(_, s)| s)
}

/// Appends `size` bytes and `fdatasync`s, `n` times, in a scratch file under `dir`.
fn fsync_probe(dir: &Path, size: usize, n: usize) -> std::io::Result<(Duration, Duration)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".sluice-bench-fsync-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let buf = vec![0x5au8; size];
        let mut lat = Vec::with_capacity(n);
        let mut pos = 0u64;
        for _ in 0..n {
            let t = Instant::now();
            f.write_all_at(&buf, pos)?;
            f.sync_data()?;
            lat.push(t.elapsed());
            pos += size as u64;
        }
        f.flush()?;
        lat.sort();
        let q = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
        Ok((q(0.5), q(0.99)))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_now() -> String {
    utc(SystemTime::now())
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}
