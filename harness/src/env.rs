//! The environment stamp: what a reader needs to know about the machine a
//! report was measured on before comparing its numbers with their own.
//! The data and its parsers; `account::machine` reads it from this machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// The `cpu` line of `/proc/stat`; `None` if it has no steal field
    /// (kernels before 2.6.11).
    pub fn parse(stat: &str) -> Option<CpuTicks> {
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

/// The mean of `/proc/cpuinfo`'s `cpu MHz` lines.
pub fn mean_mhz(cpuinfo: &str) -> Option<f64> {
    let v: Vec<f64> = cpuinfo
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == "cpu MHz").then(|| v.trim().parse().ok())?
        })
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The first `key: value` of `/proc/cpuinfo` (or `/proc/meminfo`).
pub fn cpuinfo_field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
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
}
