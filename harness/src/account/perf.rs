//! Exact per-tree counters from `perf_event_open(2)`: syscalls by name
//! (tracepoints `syscalls:sys_enter_NAME`), all syscalls
//! (`raw_syscalls:sys_enter`), CPU time in nanoseconds (`task-clock`) and
//! context switches, over every thread and child of a server.
//!
//! A perf event opened on a task counts that one thread. With `inherit = 1`
//! the kernel copies it into every thread and process the task creates
//! afterwards, and folds their counts back into it when they exit, so a
//! `read` of the original descriptor covers the whole subtree, dead members
//! included. Threads and processes that already exist at attach time are
//! not covered by inheritance: each existing thread gets its own events.
//! Attach right after the server printed `listening on`, before any client
//! connects, and read the counters at both ends of the measurement window.
//!
//! Race: a task created by a not-yet-attached thread while attaching would
//! be missed, and one created by an attached thread would be counted through
//! inheritance; the attach is therefore repeated until the set of threads
//! is the same before and after it.
//!
//! Cost: while any syscall tracepoint is enabled the kernel sends every
//! task's syscalls through its tracing slow path (tens of nanoseconds each,
//! for the load generator too). `CounterSet::cpu_only` avoids it.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::procfs::{thread_ids, tree_pids};
use super::tracefs::{self, tracepoint_id};

/// The syscalls counted by name by default: what the lab's models use to
/// wait, accept, read, write and hand work between threads and processes.
pub const DEFAULT_SYSCALLS: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "accept",
    "accept4",
    "close",
    "shutdown",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "timerfd_settime",
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "rt_sigtimedwait",
    "io_uring_enter",
    "futex",
    "sched_yield",
    "nanosleep",
    "clock_nanosleep",
    "clone",
    "clone3",
    "wait4",
    "fcntl",
];

/// Syscall returns counted by value: a `syscalls:sys_exit_NAME` tracepoint
/// with a kernel-side filter on `ret`, so the count is exact and nothing is
/// sampled or buffered (an inherited event uses its parent's filter).
#[derive(Clone, Debug, PartialEq)]
pub struct ReturnCount {
    /// The key the count is reported under, e.g. `accept4=EAGAIN`.
    pub key: &'static str,
    pub syscall: &'static str,
    /// An ftrace filter on the tracepoint's fields, e.g. `ret == -11`.
    pub filter: &'static str,
}

/// What the thundering herd is counted with: every `accept4` that found
/// the queue empty (`EAGAIN`, -11), every one that returned a connection,
/// and every `epoll_wait` (or `epoll_pwait`, which libc may call instead)
/// that returned events.
pub const HERD_RETURNS: &[ReturnCount] = &[
    ReturnCount {
        key: "accept4=EAGAIN",
        syscall: "accept4",
        filter: "ret == -11",
    },
    ReturnCount {
        key: "accept4=fd",
        syscall: "accept4",
        filter: "ret >= 0",
    },
    ReturnCount {
        key: "epoll_wait>0",
        syscall: "epoll_wait",
        filter: "ret > 0",
    },
    ReturnCount {
        key: "epoll_pwait>0",
        syscall: "epoll_pwait",
        filter: "ret > 0",
    },
];

/// `PERF_EVENT_IOC_SET_FILTER`, `_IOW('$', 6, char *)` in the generic ioctl
/// encoding (x86, arm, riscv); `libc` does not define it.
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;

/// Attach passes tried before giving up on a tree whose threads keep changing.
const ATTACH_ATTEMPTS: usize = 20;

/// What to count.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterSet {
    /// Syscalls counted by name (a name this kernel has no tracepoint for is
    /// reported in `SyscallCounts::missing`).
    pub syscalls: Vec<String>,
    /// Every syscall, by `raw_syscalls:sys_enter`.
    pub total_syscalls: bool,
    /// Precise CPU time (`PERF_COUNT_SW_TASK_CLOCK`) and context switches
    /// (`PERF_COUNT_SW_CONTEXT_SWITCHES`), exited tasks included.
    pub cpu_and_switches: bool,
    /// Syscall returns counted by value (see `HERD_RETURNS`).
    pub returns: Vec<ReturnCount>,
}

impl CounterSet {
    /// Syscalls by name and in total, CPU time and context switches.
    pub fn standard() -> CounterSet {
        CounterSet {
            syscalls: DEFAULT_SYSCALLS.iter().map(|s| s.to_string()).collect(),
            total_syscalls: true,
            cpu_and_switches: true,
            returns: Vec::new(),
        }
    }

    /// CPU time and context switches only: no tracepoint, so syscalls keep
    /// their fast path.
    pub fn cpu_only() -> CounterSet {
        CounterSet {
            syscalls: Vec::new(),
            total_syscalls: false,
            cpu_and_switches: true,
            returns: Vec::new(),
        }
    }

    /// The same, and the syscall returns of the thundering herd.
    pub fn with_herd_returns(mut self) -> CounterSet {
        self.returns = HERD_RETURNS.to_vec();
        self
    }

    fn counts_syscalls(&self) -> bool {
        self.total_syscalls || !self.syscalls.is_empty() || !self.returns.is_empty()
    }
}

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER5` (112 bytes), which
/// every kernel since 4.1 accepts; fields added later stay zero.
#[repr(C)]
#[derive(Default)]
pub(super) struct PerfEventAttr {
    pub(super) kind: u32,
    pub(super) size: u32,
    pub(super) config: u64,
    pub(super) sample_period: u64,
    pub(super) sample_type: u64,
    pub(super) read_format: u64,
    pub(super) flags: u64,
    pub(super) wakeup_events: u32,
    pub(super) bp_type: u32,
    pub(super) config1: u64,
    pub(super) config2: u64,
    pub(super) branch_sample_type: u64,
    pub(super) sample_regs_user: u64,
    pub(super) sample_stack_user: u32,
    pub(super) clockid: i32,
    pub(super) sample_regs_intr: u64,
    pub(super) aux_watermark: u32,
    pub(super) sample_max_stack: u16,
    pub(super) reserved_2: u16,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
pub(super) const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
/// `perf_event_attr.inherit`, bit 1 of the flags word.
pub(super) const ATTR_FLAG_INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// One kind of event, opened once per attached thread.
#[derive(Clone, Debug, PartialEq)]
enum Event {
    Syscall { name: String, id: u64 },
    AllSyscalls { id: u64 },
    Return { count: ReturnCount, id: u64 },
    TaskClock,
    ContextSwitches,
}

impl Event {
    fn attr(&self) -> PerfEventAttr {
        let (kind, config) = match self {
            Event::Syscall { id, .. } | Event::AllSyscalls { id } | Event::Return { id, .. } => {
                (PERF_TYPE_TRACEPOINT, *id)
            }
            Event::TaskClock => (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK),
            Event::ContextSwitches => (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES),
        };
        PerfEventAttr {
            kind,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config,
            // Counting, not sampling: period 0, enabled at once.
            flags: ATTR_FLAG_INHERIT,
            ..PerfEventAttr::default()
        }
    }

    fn label(&self) -> String {
        match self {
            Event::Syscall { name, .. } => format!("tracepoint syscalls:sys_enter_{name}"),
            Event::AllSyscalls { .. } => "tracepoint raw_syscalls:sys_enter".into(),
            Event::Return { count, .. } => format!(
                "tracepoint syscalls:sys_exit_{} if {}",
                count.syscall, count.filter
            ),
            Event::TaskClock => "software task-clock".into(),
            Event::ContextSwitches => "software context-switches".into(),
        }
    }
}

fn perf_event_open(event: &Event, tid: i32) -> io::Result<OwnedFd> {
    let fd = open_attr(&event.attr(), tid, &event.label())?;
    if let Event::Return { count, .. } = event {
        set_filter(&fd, count.filter)
            .map_err(|e| io::Error::new(e.kind(), format!("{} (tid {tid}): {e}", event.label())))?;
    }
    Ok(fd)
}

/// `perf_event_open(attr, tid, cpu -1, no group, CLOEXEC)`; errors name the
/// event (`label`) and the thread.
pub(super) fn open_attr(attr: &PerfEventAttr, tid: i32, label: &str) -> io::Result<OwnedFd> {
    // SAFETY: attr is a valid perf_event_attr of the size it declares and
    // outlives the call; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            tid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("perf_event_open({label}, tid {tid}): {e}"),
        ));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Installs an ftrace filter on a tracepoint event: it then counts only the
/// hits whose fields match. Set before the event counts anything: it is
/// enabled at open, but attached before the server's first client.
fn set_filter(fd: &OwnedFd, filter: &str) -> io::Result<()> {
    let text = std::ffi::CString::new(filter)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter with a NUL byte"))?;
    // SAFETY: `text` is a NUL-terminated string that outlives the call; the
    // kernel only reads it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_FILTER, text.as_ptr()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ioctl(PERF_EVENT_IOC_SET_FILTER, {filter:?}): {e}"),
        ));
    }
    Ok(())
}

fn read_count(fd: &OwnedFd) -> io::Result<u64> {
    let mut value = [0u8; 8];
    // SAFETY: value is 8 writable bytes; with read_format 0 the kernel
    // writes exactly one u64.
    let n = unsafe { libc::read(fd.as_raw_fd(), value.as_mut_ptr().cast(), value.len()) };
    if n != 8 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("read(perf event fd {}): {e}", fd.as_raw_fd()),
        ));
    }
    Ok(u64::from_ne_bytes(value))
}

/// Syscalls made by the tree in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyscallCounts {
    /// Every syscall (`raw_syscalls:sys_enter`).
    pub total: u64,
    /// The syscalls counted by name.
    pub by_name: BTreeMap<String, u64>,
    /// Names asked for that this kernel has no tracepoint for.
    pub missing: Vec<String>,
}

impl SyscallCounts {
    /// Syscalls not among the named ones.
    pub fn other(&self) -> u64 {
        self.total
            .saturating_sub(self.by_name.values().copied().sum::<u64>())
    }
}

/// Counter values at one instant; subtract two with `since`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    values: Vec<u64>,
}

/// What the perf counters saw in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerfDelta {
    /// CPU time of the tree in seconds (nanosecond resolution), exited
    /// threads and children included; `None` unless asked for.
    pub task_clock_s: Option<f64>,
    /// Context switches of the tree, exited tasks included.
    pub context_switches: Option<u64>,
    /// `None` with the reason in `syscalls_unavailable` if not counted.
    pub syscalls: Option<SyscallCounts>,
    pub syscalls_unavailable: Option<String>,
    /// Syscall returns by `ReturnCount::key`; `None` unless asked for.
    #[serde(default)]
    pub returns: Option<BTreeMap<String, u64>>,
}

/// Perf counters attached to every thread of a process tree.
pub struct TreeCounters {
    events: Vec<Event>,
    /// fds[event][task]
    fds: Vec<Vec<OwnedFd>>,
    missing: Vec<String>,
    syscalls_unavailable: Option<String>,
    tasks: usize,
}

impl TreeCounters {
    /// Attaches `set` to every thread of the tree rooted at `root_pid`.
    /// `Err` carries the reason, to be printed as `n/a (reason)`. Syscall
    /// tracepoints that cannot be opened (no tracefs) leave the other
    /// counters working, with the reason in `PerfDelta::syscalls_unavailable`.
    pub fn attach(root_pid: i32, set: &CounterSet) -> Result<TreeCounters, String> {
        let mut events = Vec::new();
        let mut missing = Vec::new();
        let mut syscalls_unavailable = None;
        if set.counts_syscalls() {
            match tracepoint_id("raw_syscalls", "sys_enter") {
                None => syscalls_unavailable = Some(tracefs::syscalls_reason()),
                Some(id) => {
                    if set.total_syscalls {
                        events.push(Event::AllSyscalls { id });
                    }
                    for name in &set.syscalls {
                        match tracepoint_id("syscalls", &format!("sys_enter_{name}")) {
                            Some(id) => events.push(Event::Syscall {
                                name: name.clone(),
                                id,
                            }),
                            None => missing.push(name.clone()),
                        }
                    }
                    for count in &set.returns {
                        let tracepoint = format!("sys_exit_{}", count.syscall);
                        match tracepoint_id("syscalls", &tracepoint) {
                            Some(id) => events.push(Event::Return {
                                count: count.clone(),
                                id,
                            }),
                            None => missing.push(count.key.to_string()),
                        }
                    }
                }
            }
        }
        if set.cpu_and_switches {
            events.push(Event::TaskClock);
            events.push(Event::ContextSwitches);
        }
        if events.is_empty() {
            return Err(syscalls_unavailable.unwrap_or_else(|| "no counter asked for".into()));
        }
        let mut counters = TreeCounters {
            events,
            fds: Vec::new(),
            missing,
            syscalls_unavailable,
            tasks: 0,
        };
        for _ in 0..ATTACH_ATTEMPTS {
            match counters.try_attach(root_pid) {
                Ok(()) => return Ok(counters),
                Err(Attach::Failed(e)) => {
                    // Tracepoints refused (e.g. not permitted): keep the
                    // software counters if they alone can be opened.
                    let tracepoints = counters.events.iter().any(|e| {
                        matches!(
                            e,
                            Event::Syscall { .. }
                                | Event::AllSyscalls { .. }
                                | Event::Return { .. }
                        )
                    });
                    let software = counters
                        .events
                        .iter()
                        .any(|e| matches!(e, Event::TaskClock | Event::ContextSwitches));
                    if tracepoints && software && counters.syscalls_unavailable.is_none() {
                        counters
                            .events
                            .retain(|e| matches!(e, Event::TaskClock | Event::ContextSwitches));
                        counters.syscalls_unavailable = Some(e);
                        continue;
                    }
                    return Err(e);
                }
                Err(Attach::TreeChanged) => continue,
            }
        }
        Err(format!(
            "threads of pid {root_pid} kept appearing while perf events were attached \
             ({ATTACH_ATTEMPTS} attempts): attach before clients connect"
        ))
    }

    /// One attach pass; `TreeChanged` when threads appeared meanwhile (all
    /// descriptors of the pass are then dropped and the pass is retried).
    fn try_attach(&mut self, root: i32) -> Result<(), Attach> {
        let tasks_before = tree_tasks(root).map_err(|e| Attach::Failed(e.to_string()))?;
        let mut fds: Vec<Vec<OwnedFd>> = self.events.iter().map(|_| Vec::new()).collect();
        // Parents' threads come first, so a task one of them forks after
        // its own attach is inherited rather than missed.
        for &tid in &tasks_before {
            for (event, per_task) in self.events.iter().zip(fds.iter_mut()) {
                match perf_event_open(event, tid) {
                    Ok(fd) => per_task.push(fd),
                    // The thread exited since the listing: it is gone from
                    // the next listing too, which decides.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(Attach::Failed(e.to_string())),
                }
            }
        }
        let tasks_after = tree_tasks(root).map_err(|e| Attach::Failed(e.to_string()))?;
        if tasks_after.iter().any(|tid| !tasks_before.contains(tid)) {
            return Err(Attach::TreeChanged);
        }
        self.tasks = tasks_before.len();
        self.fds = fds;
        Ok(())
    }

    /// Threads that were given their own events (not counting inherited).
    pub fn tasks_attached(&self) -> usize {
        self.tasks
    }

    /// Current values of every counter.
    pub fn read(&self) -> io::Result<Reading> {
        let mut values = Vec::with_capacity(self.fds.len());
        for per_task in &self.fds {
            let mut sum = 0u64;
            for fd in per_task {
                sum = sum.wrapping_add(read_count(fd)?);
            }
            values.push(sum);
        }
        Ok(Reading { values })
    }

    /// What the counters saw between two readings.
    pub fn delta(&self, before: &Reading, after: &Reading) -> PerfDelta {
        let mut task_clock_s = None;
        let mut context_switches = None;
        let mut syscalls: Option<SyscallCounts> = None;
        let mut returns: Option<BTreeMap<String, u64>> = None;
        for (i, event) in self.events.iter().enumerate() {
            let diff = after.values[i].saturating_sub(before.values[i]);
            match event {
                Event::TaskClock => task_clock_s = Some(diff as f64 / 1e9),
                Event::ContextSwitches => context_switches = Some(diff),
                Event::AllSyscalls { .. } => {
                    syscalls.get_or_insert_with(Default::default).total = diff
                }
                Event::Syscall { name, .. } => {
                    syscalls
                        .get_or_insert_with(Default::default)
                        .by_name
                        .insert(name.clone(), diff);
                }
                Event::Return { count, .. } => {
                    returns
                        .get_or_insert_with(Default::default)
                        .insert(count.key.to_string(), diff);
                }
            }
        }
        if let Some(counts) = syscalls.as_mut() {
            counts.missing = self.missing.clone();
        }
        PerfDelta {
            task_clock_s,
            context_switches,
            syscalls,
            syscalls_unavailable: self.syscalls_unavailable.clone(),
            returns,
        }
    }
}

enum Attach {
    Failed(String),
    TreeChanged,
}

/// Every thread of every process of the tree, parents before children.
pub(super) fn tree_tasks(root: i32) -> io::Result<Vec<i32>> {
    let mut tasks = Vec::new();
    for pid in tree_pids(root)? {
        tasks.extend(thread_ids(pid));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_event_attr_has_the_ver5_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 112);
    }

    #[test]
    fn other_is_total_minus_named() {
        let counts = SyscallCounts {
            total: 10,
            by_name: [("read".to_string(), 3), ("write".to_string(), 4)].into(),
            missing: vec![],
        };
        assert_eq!(counts.other(), 3);
    }
}
