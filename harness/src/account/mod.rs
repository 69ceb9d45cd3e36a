//! Server-side accounting for a measurement window: what the server's whole
//! process tree (every thread, every live descendant, every reaped child)
//! spent in CPU, context switches, memory and syscalls, and what the
//! harness itself (the client) spent meanwhile.
//!
//! Use:
//! ```no_run
//! # use harness::account::{CounterSet, TreeCounters, Window};
//! # use std::time::Duration;
//! # fn f(server_pid: i32) -> std::io::Result<()> {
//! // Right after the server printed `listening on`, before clients connect:
//! let counters = TreeCounters::attach(server_pid, &CounterSet::standard());
//! // ... connect, warm up ...
//! let window = Window::begin(server_pid, &counters, Duration::from_millis(50))?;
//! // ... the timed window ...
//! let account = window.end()?;
//! let per_request = account.per_request(123_456.0);
//! # Ok(()) }
//! ```
//!
//! `procfs` reads `/proc` (always available on Linux, CPU in clock ticks);
//! `perf` adds exact counters from `perf_event_open` when permitted.

pub mod ftrace;
pub mod landed;
mod machine;
mod perf;
pub(crate) mod procfs;
pub mod profile;
mod tracefs;
mod wakes;

pub use crate::measurement::{Agreement, WakeCounts, AGREEMENT_TOLERANCE};
pub use machine::{cpu_ticks, environment, git_commit};
pub use perf::{
    CounterSet, PerfDelta, Reading, ReturnCount, SyscallCounts, TreeCounters, DEFAULT_SYSCALLS,
    HERD_RETURNS,
};
pub use procfs::{
    asleep_in, asleep_in_epoll_wait, clock_ticks_per_sec, thread_cpu_ns, thread_state,
    thread_switches, threads_named, RssPeak, RssSampler, Snapshot, TreeDelta, Usage,
};
pub use wakes::{AcceptLog, WakeTrace, DRAIN_EVERY};

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use nix::sys::resource::UsageWho;
use serde::{Deserialize, Serialize};

/// Whether syscall tracepoints can be counted on this machine: the tracefs
/// root their ids are read from (mounted by the harness if it had to and
/// could), or why not.
pub fn syscall_tracepoints() -> Result<&'static str, String> {
    let root = tracefs::root()?;
    tracefs::tracepoint_id("raw_syscalls", "sys_enter")
        .map(|_| root)
        .ok_or_else(tracefs::syscalls_reason)
}

/// A measurement window in progress.
pub struct Window<'a> {
    root: i32,
    before: Snapshot,
    counters: Result<(&'a TreeCounters, Reading), String>,
    client_before: Usage,
    sampler: RssSampler,
}

impl<'a> Window<'a> {
    /// Starts the window: snapshots the tree rooted at `root_pid`, reads the
    /// perf counters (or keeps the reason they are unavailable), starts the
    /// RSS sampler, and reads the harness' own CPU last so that the
    /// snapshot's cost is not charged to the client.
    pub fn begin(
        root_pid: i32,
        counters: &'a Result<TreeCounters, String>,
        rss_interval: Duration,
    ) -> io::Result<Window<'a>> {
        let before = Snapshot::take(root_pid)?;
        let counters = match counters {
            Ok(c) => c.read().map(|r| (c, r)).map_err(|e| e.to_string()),
            Err(reason) => Err(reason.clone()),
        };
        let sampler = RssSampler::start(root_pid, rss_interval)?;
        let client_before = Usage::of(UsageWho::RUSAGE_SELF)?;
        Ok(Window {
            root: root_pid,
            before,
            counters,
            client_before,
            sampler,
        })
    }

    /// Ends the window (the client's CPU is read first, then the server's).
    pub fn end(self) -> io::Result<ServerAccount> {
        let client = Usage::of(UsageWho::RUSAGE_SELF)?.since(&self.client_before);
        let (perf, perf_unavailable) = match self.counters {
            Ok((counters, before)) => match counters.read() {
                Ok(after) => (Some(counters.delta(&before, &after)), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(reason) => (None, Some(reason)),
        };
        let after = Snapshot::take(self.root);
        let rss = self.sampler.finish();
        let after = after?;
        let tree = Snapshot::delta(&self.before, &after);
        let mut notes = Vec::new();
        if tree.tasks_exited > 0 {
            notes.push(format!(
                "{} threads exited inside the window: their context switches after it began \
                 are missing from the voluntary/involuntary split{}",
                tree.tasks_exited,
                match perf.as_ref().and_then(|p| p.context_switches) {
                    Some(total) => format!(" (perf counted {total} in all)"),
                    None => String::new(),
                }
            ));
        }
        if !tree.settled {
            notes.push(format!(
                "children kept being reaped while the server's process tree was read \
                 ({} attempts): its CPU may miss or double-count a child",
                procfs::SNAPSHOT_ATTEMPTS
            ));
        }
        if let Some(e) = &rss.error {
            notes.push(format!("peak RSS sampling stopped early: {e}"));
        }
        Ok(ServerAccount {
            window_s: tree.window_s,
            user_s: tree.user_s,
            sys_s: tree.sys_s,
            clock_cpu_s: (after.cpu_s() - self.before.cpu_s()).max(0.0),
            io_uring_threads_cpu_s: tree.io_uring_threads_cpu_s,
            task_clock_s: perf.as_ref().and_then(|p| p.task_clock_s),
            voluntary_switches: tree.voluntary_switches,
            involuntary_switches: tree.involuntary_switches,
            context_switches: perf.as_ref().and_then(|p| p.context_switches),
            tasks_exited: tree.tasks_exited,
            processes: tree.processes_after,
            threads: tree.threads_after,
            rss_end_bytes: after.rss_bytes,
            peak_rss_bytes: rss
                .peak_bytes
                .max(after.rss_bytes)
                .max(self.before.rss_bytes),
            rss_samples: rss.samples,
            rss_interval_ms: rss.interval_ms,
            syscalls: perf.as_ref().and_then(|p| p.syscalls.clone()),
            syscalls_unavailable: perf_unavailable
                .clone()
                .or_else(|| perf.as_ref().and_then(|p| p.syscalls_unavailable.clone())),
            syscall_returns: perf.as_ref().and_then(|p| p.returns.clone()),
            perf_unavailable,
            client_user_s: (client.user_s - rss.sampler_cpu_s).max(0.0),
            client_sys_s: client.sys_s,
            sampler_cpu_s: rss.sampler_cpu_s,
            notes,
        })
    }
}

/// Everything measured about the server (and the client's CPU) over one
/// window. Times in seconds, memory in bytes, counts as counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerAccount {
    pub window_s: f64,
    /// User CPU of the tree from `/proc` (clock-tick resolution).
    pub user_s: f64,
    /// System CPU of the tree from `/proc`.
    pub sys_s: f64,
    /// CPU of the tree from each process's CPU-time clock
    /// (`clock_getcpuclockid`, nanoseconds, exited threads included), plus
    /// children reaped in the window: the figure `getrusage` would give.
    pub clock_cpu_s: f64,
    /// Of that, the CPU of io_uring's kernel threads (`iou-sqp`, `iou-wrk`;
    /// `procfs::IO_URING_THREADS`), a lower bound (`TreeDelta` says why);
    /// `None`: the server had none.
    #[serde(default)]
    pub io_uring_threads_cpu_s: Option<f64>,
    /// CPU of the tree from perf `task-clock`, when perf is available. Kept
    /// for comparison only: on this kernel it read about 30 % below the
    /// servers' own `getrusage` for blocking servers, for reasons not yet
    /// understood, so it does not feed the per-request figures.
    pub task_clock_s: Option<f64>,
    /// Voluntary context switches of the tree's threads (`/proc`, live
    /// threads: see `tasks_exited`).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// All context switches of the tree, exited tasks included (perf).
    pub context_switches: Option<u64>,
    /// Threads alive at the start and gone at the end of the window.
    pub tasks_exited: u64,
    /// Processes and threads of the tree at the end of the window.
    pub processes: u64,
    pub threads: u64,
    pub rss_end_bytes: u64,
    /// Largest RSS summed over the tree, sampled every `rss_interval_ms`.
    pub peak_rss_bytes: u64,
    pub rss_samples: u64,
    pub rss_interval_ms: u64,
    /// Syscalls by name and in total, or `None` with the reason in
    /// `syscalls_unavailable`.
    pub syscalls: Option<SyscallCounts>,
    pub syscalls_unavailable: Option<String>,
    /// Syscall returns counted by value (`perf::HERD_RETURNS`), when asked.
    #[serde(default)]
    pub syscall_returns: Option<BTreeMap<String, u64>>,
    /// Why no perf counter at all was available, if so.
    pub perf_unavailable: Option<String>,
    /// The harness' own CPU in the window (`getrusage(RUSAGE_SELF)`), the
    /// RSS sampler's share taken out.
    pub client_user_s: f64,
    pub client_sys_s: f64,
    pub sampler_cpu_s: f64,
    /// Caveats that apply to this window, in words.
    pub notes: Vec<String>,
}

impl ServerAccount {
    /// The server's CPU in the window, from the process CPU-time clocks
    /// (the split into user and system comes from `/proc`, in ticks).
    pub fn server_cpu_s(&self) -> f64 {
        self.clock_cpu_s
    }

    pub fn client_cpu_s(&self) -> f64 {
        self.client_user_s + self.client_sys_s
    }

    /// Costs per request (or per connection, for a connect workload), given
    /// how many were served in this window (a rate times the window can be
    /// fractional); `None` when nothing was served.
    pub fn per_request(&self, served: f64) -> Option<PerRequest> {
        if served.is_nan() || served <= 0.0 {
            return None;
        }
        let n = served;
        let syscalls = self.syscalls.as_ref().map(|s| {
            let mut per: BTreeMap<String, f64> = s
                .by_name
                .iter()
                .filter(|(_, &count)| count > 0)
                .map(|(name, &count)| (name.clone(), count as f64 / n))
                .collect();
            per.insert("total".into(), s.total as f64 / n);
            per.insert("other".into(), s.other() as f64 / n);
            per
        });
        Some(PerRequest {
            server_cpu_us: self.server_cpu_s() * 1e6 / n,
            server_user_us: self.user_s * 1e6 / n,
            server_sys_us: self.sys_s * 1e6 / n,
            client_cpu_us: self.client_cpu_s() * 1e6 / n,
            voluntary_switches: self.voluntary_switches as f64 / n,
            involuntary_switches: self.involuntary_switches as f64 / n,
            context_switches: self.context_switches.map(|c| c as f64 / n),
            syscalls,
        })
    }
}

/// `ServerAccount` divided by the number of requests served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerRequest {
    pub server_cpu_us: f64,
    pub server_user_us: f64,
    pub server_sys_us: f64,
    pub client_cpu_us: f64,
    pub voluntary_switches: f64,
    pub involuntary_switches: f64,
    pub context_switches: Option<f64>,
    /// Per syscall name, plus `total` and `other` (not among the names).
    pub syscalls: Option<BTreeMap<String, f64>>,
}

/// Compares `harness_cpu_s` (`Snapshot::take(pid)?.cpu_s()` just before
/// SIGTERM: each live process's CPU clock, exact, plus the root's
/// `cutime + cstime`) with the server's summary. The summary also counts
/// the CPU of its shutdown, which the harness cannot see; it is small.
pub fn cpu_agreement(harness_cpu_s: f64, summary_user_s: f64, summary_sys_s: f64) -> Agreement {
    cpu_agreement_reaped(harness_cpu_s, None, summary_user_s, summary_sys_s)
}

/// `cpu_agreement`, with the tree's CPU at reaping when known: the summary
/// is written after SIGTERM and before the exit, so it agrees when it lies
/// between the reading before SIGTERM and the one at reaping, each widened
/// by the tolerance. A fork server's children exit after SIGTERM: for
/// 10 000 of them that shutdown is several percent of the run's CPU, which
/// the summary rightly counts and the reading before SIGTERM cannot.
pub fn cpu_agreement_reaped(
    harness_cpu_s: f64,
    reaped_cpu_s: Option<f64>,
    summary_user_s: f64,
    summary_sys_s: f64,
) -> Agreement {
    let summary_cpu_s = summary_user_s + summary_sys_s;
    let tick = 1.0 / clock_ticks_per_sec() as f64;
    let relative_s = AGREEMENT_TOLERANCE * summary_cpu_s;
    let floor_s = 2.0 * tick + 0.001;
    let tolerance_s = relative_s.max(floor_s);
    let ratio = if summary_cpu_s > 0.0 {
        harness_cpu_s / summary_cpu_s
    } else if harness_cpu_s > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    Agreement {
        harness_cpu_s,
        summary_cpu_s,
        ratio,
        tolerance_s,
        agrees: match reaped_cpu_s {
            Some(reaped) => {
                summary_cpu_s >= harness_cpu_s - tolerance_s
                    && summary_cpu_s <= reaped.max(harness_cpu_s) + tolerance_s
            }
            None => (harness_cpu_s - summary_cpu_s).abs() <= tolerance_s,
        },
        tolerance_ticks: tolerance_s / tick,
        tolerance_share: if summary_cpu_s > 0.0 {
            tolerance_s / summary_cpu_s
        } else {
            f64::INFINITY
        },
        judged_by_ticks: floor_s > relative_s,
        reaped_cpu_s,
    }
}

#[cfg(test)]
mod tests;
