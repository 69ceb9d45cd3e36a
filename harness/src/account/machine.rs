//! Reads the environment stamp (`crate::env`) from this machine: `/proc`,
//! `/sys`, `sysconf`, `getrlimit`, and the `git` and `rustc` on the PATH.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::clock_ticks_per_sec;
use crate::env::{cpuinfo_field, mean_mhz, CpuTicks, Environment};

/// Reads the stamp from this machine.
pub fn environment() -> Environment {
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
        syscall_tracepoints: super::syscall_tracepoints().is_ok(),
        harness_build: if cfg!(debug_assertions) {
            "debug".into()
        } else {
            "release".into()
        },
        rustc: rustc_version(),
    }
}

/// Reads `/proc/stat`; `None` if it is unreadable or has no steal field
/// (kernels before 2.6.11).
pub fn cpu_ticks() -> Option<CpuTicks> {
    CpuTicks::parse(&fs::read_to_string("/proc/stat").ok()?)
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

fn rustc_version() -> Option<String> {
    let out = Command::new("rustc").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
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

fn rlimit_nofile() -> (u64, u64) {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => (soft, hard),
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_of_this_machine_has_a_kernel_and_cpus() {
        let env = environment();
        assert!(env.kernel.starts_with("Linux "), "{}", env.kernel);
        assert!(env.cpus >= 1 && env.cpus_online >= 1);
        assert!(env.rlimit_nofile.0 >= 1);
    }
}
