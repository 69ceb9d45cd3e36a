//! The environment stamp: what a reader needs to know about the machine a
//! report was measured on before comparing its numbers with their own.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Clock ticks per second, the unit of `/proc/PID/stat` CPU fields.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // POSIX allows -1 (unknown); Linux has always exported USER_HZ = 100.
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Environment {
    /// `/proc/sys/kernel/osrelease` and `version`.
    pub kernel: String,
    pub cpu_model: String,
    /// Mean of the CPUs' current `cpu MHz` in `/proc/cpuinfo` when the run
    /// started (a virtual machine reports the host's nominal clock).
    #[serde(default)]
    pub cpu_mhz: Option<f64>,
    /// CPUs this process may run on (`sched_getaffinity`).
    pub cpus: usize,
    /// CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`).
    pub cpus_online: usize,
    /// Whether the CPU flags say `hypervisor` (a virtual machine).
    pub virtualised: bool,
    pub memory_total: String,
    /// `/sys/devices/system/cpu/vulnerabilities/*`: name → status.
    pub vulnerabilities: BTreeMap<String, String>,
    /// `RLIMIT_NOFILE` of the harness (soft, hard); servers get their own.
    pub rlimit_nofile: (u64, u64),
    /// `git rev-parse HEAD`, with `-dirty` if the tree had changes.
    pub git_commit: Option<String>,
    pub clock_ticks_per_sec: u64,
    pub perf_event_paranoid: Option<String>,
    /// Whether the syscall tracepoints are reachable (tracefs mounted).
    pub syscall_tracepoints: bool,
    /// `release` or `debug`: the harness' own build.
    pub harness_build: String,
    /// `rustc --version` of the toolchain on the PATH when the run started
    /// (cargo builds the models with it).
    #[serde(default)]
    pub rustc: Option<String>,
}

/// The machine-wide CPU time counters of `/proc/stat`'s `cpu` line, in
/// clock ticks: the time stolen by the hypervisor, and the total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    pub steal: u64,
    pub total: u64,
}

impl CpuTicks {
    /// Reads `/proc/stat`; `None` if it is unreadable or has no steal field
    /// (kernels before 2.6.11).
    pub fn read() -> Option<CpuTicks> {
        CpuTicks::parse(&fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(stat: &str) -> Option<CpuTicks> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user and nice).
        let steal = *v.get(7)?;
        Some(CpuTicks {
            steal,
            total: v.iter().take(8).sum(),
        })
    }

    /// The share of the CPU time between `self` and `later` that was stolen.
    pub fn steal_share_until(&self, later: &CpuTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

fn mean_mhz(cpuinfo: &str) -> Option<f64> {
    let v: Vec<f64> = cpuinfo
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == "cpu MHz").then(|| v.trim().parse().ok())?
        })
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn rustc_version() -> Option<String> {
    let out = Command::new("rustc").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn cpuinfo_field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn vulnerabilities() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let dir = "/sys/devices/system/cpu/vulnerabilities";
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(status) = read_trimmed(entry.path()) {
                out.insert(name, status);
            }
        }
    }
    out
}

/// The commit of the checkout this harness was built from (or of the
/// current directory's repository, if that one is gone).
pub fn git_commit() -> Option<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = if workspace.join(".git").exists() {
        workspace
    } else {
        std::env::current_dir().ok()?
    };
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

fn rlimit_nofile() -> (u64, u64) {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => (soft, hard),
        Err(_) => (0, 0),
    }
}

impl Environment {
    /// Reads the stamp from this machine.
    pub fn read() -> Environment {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        // SAFETY: sysconf has no memory-safety preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        Environment {
            kernel: format!(
                "Linux {} {}",
                read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".into()),
                read_trimmed("/proc/sys/kernel/version").unwrap_or_default()
            ),
            cpu_model: cpuinfo_field(&cpuinfo, "model name")
                .unwrap_or_else(|| "unknown (no `model name` in /proc/cpuinfo)".into()),
            cpu_mhz: mean_mhz(&cpuinfo),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpus_online: online.max(0) as usize,
            virtualised: cpuinfo_field(&cpuinfo, "flags")
                .is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")),
            memory_total: cpuinfo_field(&meminfo, "MemTotal").unwrap_or_else(|| "?".into()),
            vulnerabilities: vulnerabilities(),
            rlimit_nofile: rlimit_nofile(),
            git_commit: git_commit(),
            clock_ticks_per_sec: clock_ticks_per_sec(),
            perf_event_paranoid: read_trimmed("/proc/sys/kernel/perf_event_paranoid"),
            syscall_tracepoints: ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
                .iter()
                .any(|root| {
                    Path::new(root)
                        .join("events/raw_syscalls/sys_enter/id")
                        .exists()
                }),
            harness_build: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
            rustc: rustc_version(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_field_takes_the_first_match() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu hypervisor\n\
                    processor\t: 1\nmodel name\t: Some CPU @ 2.0GHz\n";
        assert_eq!(
            cpuinfo_field(text, "model name").as_deref(),
            Some("Some CPU @ 2.0GHz")
        );
        assert_eq!(cpuinfo_field(text, "bogomips"), None);
    }

    #[test]
    fn steal_share_is_read_from_the_cpu_line() {
        let before =
            CpuTicks::parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n").expect("parsed");
        assert_eq!(
            before,
            CpuTicks {
                steal: 40,
                total: 1000
            }
        );
        let after = CpuTicks::parse("cpu  130 0 60 840 10 0 0 60 0 0\n").expect("parsed");
        assert_eq!(before.steal_share_until(&after), Some(0.2));
        assert_eq!(CpuTicks::parse("cpu  1 2 3\n"), None);
        let text = "cpu MHz\t\t: 2000.0\ncpu MHz\t\t: 3000.0\n";
        assert_eq!(mean_mhz(text), Some(2500.0));
    }

    #[test]
    fn stamp_of_this_machine_has_a_kernel_and_cpus() {
        let env = Environment::read();
        assert!(env.kernel.starts_with("Linux "), "{}", env.kernel);
        assert!(env.cpus >= 1 && env.cpus_online >= 1);
        assert!(env.rlimit_nofile.0 >= 1);
    }
}
