//! CPU time, context switches and resident memory of a whole process tree,
//! read from `/proc`.
//!
//! The tree is the root process and every live descendant, found by scanning
//! `/proc/*/stat` for parent pids (`/proc/PID/task/TID/children` needs
//! `CONFIG_PROC_CHILDREN`, which not every kernel has). CPU comes from
//! `/proc/PID/stat`: `utime`/`stime` cover every thread of a process, dead
//! ones included, and `cutime`/`cstime` every child the process has reaped
//! (with what those children had reaped), so a fork-per-connection server's
//! short-lived children are counted once their parent waits for them.
//!
//! Caveats, each stated where it applies:
//! - a descendant that exits inside the window and is not reaped by a member
//!   of the tree (reparented to init or a subreaper) takes its CPU with it;
//! - a child reaped while the tree is being read would be counted twice or
//!   not at all: snapshots are re-read until no reap happened during the
//!   scan (`Snapshot::settled` says whether that succeeded);
//! - context switches come from `/proc/PID/task/TID/status`, per live
//!   thread: a thread that exits inside the window takes its switches since
//!   the first snapshot with it (`TreeDelta::tasks_exited` counts them; the
//!   perf counter in `super::perf` has the exact total);
//! - `/proc` CPU times are in clock ticks (`sysconf(_SC_CLK_TCK)`, usually
//!   100 Hz), and each live process's user and system time is rounded down
//!   to a tick: over hundreds of processes an absolute reading loses
//!   seconds (a difference of two readings does not drift that way). The
//!   user/system split of a snapshot keeps that rounding; its total
//!   (`Snapshot::cpu_ns`) reads each live process's CPU-time clock instead,
//!   exact to the nanosecond, so only `cutime`/`cstime` stay rounded (two
//!   ticks at most per process that reaped children).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
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

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// The fields of one `/proc/PID/stat` line that the harness uses: the one
/// parser, for accounting and for the server's process tree alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    /// Field 3: `R`, `S`, `D`, `Z` (a zombie nobody reaped yet), ...
    pub state: u8,
    pub ppid: i32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    /// Field 22, clock ticks after boot: with the pid, it names a process
    /// uniquely (a pid can be reused, a (pid, start time) pair cannot).
    pub start_time: u64,
    /// Field 20: threads in the process.
    pub num_threads: u64,
    pub rss_pages: u64,
    /// The process's CPU-time clock (see `process_cpu_ns`), when read.
    pub cpu_ns: Option<u64>,
}

impl ProcStat {
    /// `utime + stime + cutime + cstime`, clock ticks: its own CPU and that
    /// of its children already reaped.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses `/proc/PID/stat`. The command name sits in parentheses and may
/// itself hold spaces and `)`, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find(" (")?;
    let pid = text[..open].trim().parse().ok()?;
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 of proc(5) (`state`), so field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).copied();
    let unsigned = |n: usize| field(n)?.parse::<u64>().ok();
    // cutime/cstime are printed as signed longs.
    let signed = |n: usize| field(n)?.parse::<i64>().ok().map(|v| v.max(0) as u64);
    Some(ProcStat {
        pid,
        state: *field(3)?.as_bytes().first()?,
        ppid: field(4)?.parse().ok()?,
        utime: unsigned(14)?,
        stime: unsigned(15)?,
        cutime: signed(16)?,
        cstime: signed(17)?,
        start_time: unsigned(22)?,
        num_threads: unsigned(20)?,
        rss_pages: signed(24)?,
        cpu_ns: None,
    })
}

/// User + system CPU of a whole process in nanoseconds, every thread
/// included (exited ones too, from `signal->sum_sched_runtime`), from its
/// CPU-time clock (`clock_getcpuclockid` + `clock_gettime`): the same
/// `sum_exec_runtime` that `getrusage` splits into user and system, with no
/// tick rounding. Linux lets any process read another's process clock.
/// `None` when the process is gone.
fn process_cpu_ns(pid: i32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock is a valid out-pointer; glibc checks that the pid
    // exists (ESRCH otherwise).
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; a clock of a process that exited
    // since gives EINVAL, not undefined behaviour.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn ticks_to_ns(ticks: u64) -> u64 {
    ticks * (1_000_000_000 / clock_ticks_per_sec())
}

pub(crate) fn read_stat(pid: i32) -> io::Result<ProcStat> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path)?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })
}

/// Every process in the tree rooted at `root` (root first, parents before
/// children). A process that exits during the walk is left out.
///
/// The walk follows `/proc/PID/task/TID/children` (each thread's children,
/// `CONFIG_PROC_CHILDREN`) down from the root: it reads only the tree, so a
/// fork server's 10 000 children cost 10 000 `stat` reads, not a scan of
/// every process on the machine plus a listing per process. A kernel
/// without those files falls back to one scan of `/proc` by parent pid.
fn tree_stats(root: i32) -> io::Result<Vec<ProcStat>> {
    let root_stat = read_stat(root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("read /proc/{root}/stat (server process): {e}"),
        )
    })?;
    let mut tree = vec![root_stat];
    let mut next = 0;
    while next < tree.len() {
        let Some(children) = children_of(&tree[next]) else {
            return scan_tree_stats(root_stat);
        };
        // ENOENT/ESRCH: the child exited between the listing and the read.
        tree.extend(children.into_iter().filter_map(|pid| read_stat(pid).ok()));
        next += 1;
    }
    Ok(tree)
}

/// The children of every thread of a process (`Some(empty)` if it exited
/// meanwhile); `None` when this kernel has no `children` files.
fn children_of(stat: &ProcStat) -> Option<Vec<i32>> {
    let pid = stat.pid;
    // A single-threaded process's one thread has the process's id: its
    // task directory need not be listed.
    let tids = if stat.num_threads == 1 {
        vec![pid]
    } else {
        thread_ids(pid)
    };
    let mut children = Vec::new();
    for tid in tids {
        match fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            Ok(text) => children.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            ),
            // The root's own first thread: a missing file means no
            // CONFIG_PROC_CHILDREN, not an exit (the root was just read).
            Err(e) if e.kind() == io::ErrorKind::NotFound && pid == tid => {
                if fs::metadata(format!("/proc/{pid}/task/{tid}")).is_ok() {
                    return None;
                }
            }
            Err(_) => {}
        }
    }
    Some(children)
}

/// `tree_stats` by one scan of `/proc`, grouping every process by parent.
fn scan_tree_stats(root_stat: ProcStat) -> io::Result<Vec<ProcStat>> {
    let root = root_stat.pid;
    let mut by_parent: HashMap<i32, Vec<ProcStat>> = HashMap::new();
    let entries = fs::read_dir("/proc")
        .map_err(|e| io::Error::new(e.kind(), format!("readdir /proc: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| io::Error::new(e.kind(), format!("readdir /proc: {e}")))?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == root {
            continue;
        }
        // ENOENT/ESRCH: the process exited between readdir and open.
        if let Ok(stat) = read_stat(pid) {
            by_parent.entry(stat.ppid).or_default().push(stat);
        }
    }
    let mut tree = vec![root_stat];
    let mut next = 0;
    while next < tree.len() {
        if let Some(children) = by_parent.remove(&tree[next].pid) {
            tree.extend(children);
        }
        next += 1;
    }
    Ok(tree)
}

/// Thread ids of one process (empty if it exited meanwhile).
pub(crate) fn thread_ids(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// Scans in a row before a snapshot settles for one during which a reap
/// happened (see `consistent_tree_stats`).
pub(crate) const SNAPSHOT_ATTEMPTS: usize = 10;

/// Like `tree_stats`, but free of the reaping race: a child reaped while the
/// tree is being read would be counted twice (its own entry, then in its
/// parent's `cutime`) or not at all (parent read first, child gone when
/// reached). The root's and every parent's `cutime`/`cstime` are read again
/// after the scan (a member that was reaped moved its parent's; a leaf's can
/// only take in a child never listed, counted in this read or the next); if
/// one changed, a reap happened meanwhile and the scan is repeated. When
/// many connections close at once (the end of a run), every child of a
/// fork-per-connection server is reaped within milliseconds, so this is not
/// a corner case. Returns the tree and whether it settled.
fn consistent_tree_stats(root: i32) -> io::Result<(Vec<ProcStat>, bool)> {
    // Each member's CPU clock is read between the scan and the re-check,
    // so that a reap racing with it is caught like one racing the scan.
    let with_clocks = |mut tree: Vec<ProcStat>| {
        for stat in &mut tree {
            stat.cpu_ns = process_cpu_ns(stat.pid);
        }
        tree
    };
    let mut tree = with_clocks(tree_stats(root)?);
    for _ in 1..SNAPSHOT_ATTEMPTS {
        // The root always: a child reaped between the root's `stat` and
        // its `children` read is in neither, and the root's cutime moved.
        let parents: HashSet<i32> = tree.iter().skip(1).map(|s| s.ppid).chain([root]).collect();
        let mut members = tree.iter().filter(|s| parents.contains(&s.pid));
        let settled = members.all(|before| match read_stat(before.pid) {
            Ok(now) => now.cutime == before.cutime && now.cstime == before.cstime,
            // Gone: its own parent's cutime moved (or its children were
            // reparented away); either way this scan is stale.
            Err(_) => false,
        });
        if settled {
            return Ok((tree, true));
        }
        tree = with_clocks(tree_stats(root)?);
    }
    Ok((tree, false))
}

/// Pids of the live tree rooted at `root`, root first, parents before
/// children.
pub(crate) fn tree_pids(root: i32) -> io::Result<Vec<i32>> {
    Ok(tree_stats(root)?.iter().map(|s| s.pid).collect())
}

/// What `/proc/PID/task/TID/status` says of one thread: its name and
/// (voluntary, involuntary) context switches; `None` if it has exited.
fn thread_status(pid: i32, tid: i32) -> Option<(String, (u64, u64))> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let mut name = None;
    let mut voluntary = None;
    let mut involuntary = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
            voluntary = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
            involuntary = v.trim().parse().ok();
        }
    }
    Some((name?, (voluntary?, involuntary?)))
}

/// (voluntary, involuntary) context switches of thread `tid` of `pid`;
/// `None` if it has exited.
pub fn thread_switches(pid: i32, tid: i32) -> Option<(u64, u64)> {
    thread_status(pid, tid).map(|(_, switches)| switches)
}

/// The scheduler state of thread `tid` of `pid`, from its `stat`: `R`
/// running or runnable, `S` asleep, and so on; `None` if it has exited.
pub fn thread_state(pid: i32, tid: i32) -> Option<u8> {
    thread_stat(pid, tid).map(|stat| stat.state)
}

/// `/proc/PID/task/TID/stat` of one thread (its own `utime` and `stime`,
/// not the process's); `None` if it has exited.
pub(crate) fn thread_stat(pid: i32, tid: i32) -> Option<ProcStat> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|text| parse_stat(&text))
}

/// The name prefix of io_uring's kernel threads: `iou-sqp-PID`, the
/// SQPOLL poller, and `iou-wrk-PID`, io-wq workers that run an operation
/// that would block. They belong to the process that set the ring up, so
/// their CPU is in that process's; this tells it apart.
pub const IO_URING_THREADS: &str = "iou-";

/// Nanoseconds thread `tid` of `pid` has spent on a CPU: the first field
/// of `/proc/PID/task/TID/schedstat`, in nanoseconds but brought up to date
/// only when the thread is switched out and at each scheduler tick, so it
/// lags a running thread by up to a tick (`/proc/.../stat` rounds to 10 ms
/// ticks, and another process's thread CPU clock is not ours to read).
pub fn thread_cpu_ns(pid: i32, tid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The state of a server's process tree at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// User CPU of the tree: live processes' `utime` plus what each reaped.
    pub user_ticks: u64,
    /// System CPU of the tree, likewise.
    pub sys_ticks: u64,
    /// User + system CPU of the tree in nanoseconds: each live process's
    /// CPU clock (exact; its `/proc` ticks if the clock could not be read)
    /// plus what each reaped (`cutime + cstime`, in ticks: rounded down
    /// once per reaping process, not once per child).
    pub cpu_ns: u64,
    /// Resident set summed over the tree's processes (pages shared between
    /// forked processes are counted once per process).
    pub rss_bytes: u64,
    pub pids: BTreeSet<i32>,
    /// (voluntary, involuntary) context switches of every live thread.
    pub switches: BTreeMap<i32, (u64, u64)>,
    /// CPU nanoseconds of every live io_uring kernel thread
    /// (`IO_URING_THREADS`), by thread id.
    pub io_uring_threads: BTreeMap<i32, u64>,
    /// False when children kept being reaped during every attempt to read
    /// the tree: the CPU sums may then miss or double-count one child each.
    pub settled: bool,
}

impl Snapshot {
    /// Reads the tree rooted at `root_pid`. Fails only if the root itself
    /// cannot be read (it has exited, or `/proc` is not Linux's).
    pub fn take(root_pid: i32) -> io::Result<Snapshot> {
        let at = Instant::now();
        let (tree, settled) = consistent_tree_stats(root_pid)?;
        let mut switches = BTreeMap::new();
        let mut io_uring_threads = BTreeMap::new();
        for stat in &tree {
            let tids = if stat.num_threads == 1 {
                vec![stat.pid]
            } else {
                thread_ids(stat.pid)
            };
            for tid in tids {
                let Some((name, counts)) = thread_status(stat.pid, tid) else {
                    continue;
                };
                switches.insert(tid, counts);
                if name.starts_with(IO_URING_THREADS) {
                    if let Some(ns) = thread_cpu_ns(stat.pid, tid) {
                        io_uring_threads.insert(tid, ns);
                    }
                }
            }
        }
        let page = page_size();
        Ok(Snapshot {
            at,
            user_ticks: tree.iter().map(|s| s.utime + s.cutime).sum(),
            sys_ticks: tree.iter().map(|s| s.stime + s.cstime).sum(),
            cpu_ns: tree
                .iter()
                .map(|s| {
                    s.cpu_ns.unwrap_or(ticks_to_ns(s.utime + s.stime))
                        + ticks_to_ns(s.cutime + s.cstime)
                })
                .sum(),
            rss_bytes: tree.iter().map(|s| s.rss_pages * page).sum(),
            pids: tree.iter().map(|s| s.pid).collect(),
            switches,
            io_uring_threads,
            settled,
        })
    }

    /// CPU the tree has used since it started (user + system, seconds,
    /// from `cpu_ns`): what the server's own exit summary should agree with.
    pub fn cpu_s(&self) -> f64 {
        self.cpu_ns as f64 / 1e9
    }

    /// What happened between two snapshots of the same tree.
    pub fn delta(before: &Snapshot, after: &Snapshot) -> TreeDelta {
        let hz = clock_ticks_per_sec() as f64;
        let mut voluntary = 0;
        let mut involuntary = 0;
        for (tid, &(v, i)) in &after.switches {
            // A thread born inside the window contributes all its switches.
            let (v0, i0) = before.switches.get(tid).copied().unwrap_or((0, 0));
            voluntary += v.saturating_sub(v0);
            involuntary += i.saturating_sub(i0);
        }
        let tasks_exited = before
            .switches
            .keys()
            .filter(|tid| !after.switches.contains_key(tid))
            .count() as u64;
        // A thread born inside the window counts from zero; one gone by its
        // end takes its time with it (io-wq workers come and go).
        let io_uring_threads_cpu_s = (!after.io_uring_threads.is_empty()
            || !before.io_uring_threads.is_empty())
        .then(|| {
            after
                .io_uring_threads
                .iter()
                .map(|(tid, &ns)| {
                    ns.saturating_sub(before.io_uring_threads.get(tid).copied().unwrap_or(0))
                })
                .sum::<u64>() as f64
                / 1e9
        });
        TreeDelta {
            window_s: after.at.duration_since(before.at).as_secs_f64(),
            io_uring_threads_cpu_s,
            // Reaping moves a child's time into its parent's cutime, so the
            // tree's sum never decreases; saturate against the bounded race
            // described in the module header.
            user_s: after.user_ticks.saturating_sub(before.user_ticks) as f64 / hz,
            sys_s: after.sys_ticks.saturating_sub(before.sys_ticks) as f64 / hz,
            voluntary_switches: voluntary,
            involuntary_switches: involuntary,
            tasks_exited,
            processes_before: before.pids.len() as u64,
            processes_after: after.pids.len() as u64,
            threads_after: after.switches.len() as u64,
            settled: before.settled && after.settled,
        }
    }
}

/// The difference between two snapshots of one tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeDelta {
    pub window_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// CPU of the tree's io_uring kernel threads, seconds (part of the
    /// above); `None`: the tree had none, or their `schedstat` could not be
    /// read. A lower bound: a thread that exits inside the window (io-wq
    /// workers come and go) takes its time with it.
    pub io_uring_threads_cpu_s: Option<f64>,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Threads alive at the first snapshot and gone at the second: their
    /// switches after the first snapshot are not in the two counts above.
    pub tasks_exited: u64,
    pub processes_before: u64,
    pub processes_after: u64,
    pub threads_after: u64,
    /// Both snapshots were read without a reap in between (see
    /// `Snapshot::settled`).
    pub settled: bool,
}

impl TreeDelta {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// User and system CPU of a process or thread, from `getrusage`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
}

impl Usage {
    /// `getrusage(who)`: `RUSAGE_SELF` for the harness (the client side),
    /// `RUSAGE_THREAD` for one of its threads.
    pub fn of(who: UsageWho) -> io::Result<Usage> {
        let usage = getrusage(who).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("getrusage({who:?}): {e}"),
            )
        })?;
        let secs = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        Ok(Usage {
            user_s: secs(usage.user_time()),
            sys_s: secs(usage.system_time()),
        })
    }

    pub fn since(&self, before: &Usage) -> Usage {
        Usage {
            user_s: (self.user_s - before.user_s).max(0.0),
            sys_s: (self.sys_s - before.sys_s).max(0.0),
        }
    }

    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// The largest tree RSS seen by the sampler, and what sampling cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RssPeak {
    pub peak_bytes: u64,
    pub samples: u64,
    /// The longest pause between two samples (the interval asked for, or
    /// longer when reading the tree was slow).
    pub interval_ms: u64,
    /// CPU the sampler thread itself used (it runs inside the harness, so
    /// it is taken out of the client's CPU).
    pub sampler_cpu_s: f64,
    /// Why sampling stopped early (the server exited), if it did.
    pub error: Option<String>,
}

/// A thread that reads the tree's RSS every `interval` until finished: a
/// peak between two samples is missed, so the interval bounds what is seen.
pub struct RssSampler {
    stop: mpsc::Sender<()>,
    samples: Arc<AtomicU64>,
    handle: thread::JoinHandle<RssPeak>,
}

impl RssSampler {
    pub fn start(root_pid: i32, interval: Duration) -> io::Result<RssSampler> {
        let (stop, stopped) = mpsc::channel();
        let samples = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&samples);
        let handle = thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || sample_until_stopped(root_pid, interval, &stopped, &counter))?;
        Ok(RssSampler {
            stop,
            samples,
            handle,
        })
    }

    /// Samples taken so far (lets a caller wait until one has been taken).
    pub fn samples_taken(&self) -> u64 {
        self.samples.load(Ordering::Acquire)
    }

    /// Takes a last sample, stops the thread and returns the peak.
    pub fn finish(self) -> RssPeak {
        // A send error means the thread already stopped on its own.
        let _ = self.stop.send(());
        match self.handle.join() {
            Ok(peak) => peak,
            Err(_) => RssPeak {
                peak_bytes: 0,
                samples: 0,
                interval_ms: 0,
                sampler_cpu_s: 0.0,
                error: Some("rss sampler thread panicked".into()),
            },
        }
    }
}

/// The sampler pauses at least this many times as long as a scan took.
const SAMPLER_DUTY_INVERSE: u32 = 9;

fn sample_until_stopped(
    root: i32,
    interval: Duration,
    stopped: &mpsc::Receiver<()>,
    samples: &AtomicU64,
) -> RssPeak {
    let page = page_size();
    let mut peak = 0;
    let mut error = None;
    let mut longest = interval;
    loop {
        let scan = Instant::now();
        match tree_stats(root) {
            Ok(tree) => peak = peak.max(tree.iter().map(|s| s.rss_pages * page).sum()),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        samples.fetch_add(1, Ordering::AcqRel);
        // The sampler shares the load generator's CPU: a tree of thousands
        // of processes takes tens of milliseconds to read, so the pause
        // grows to keep sampling under a tenth of that CPU.
        let pause = interval.max(scan.elapsed() * SAMPLER_DUTY_INVERSE);
        longest = longest.max(pause);
        match stopped.recv_timeout(pause) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // One last sample was just taken above the stop request.
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // A failed RUSAGE_THREAD leaves the sampler's cost counted as client CPU.
    let sampler_cpu_s = Usage::of(UsageWho::RUSAGE_THREAD)
        .map(|u| u.cpu_s())
        .unwrap_or(0.0);
    RssPeak {
        peak_bytes: peak,
        samples: samples.load(Ordering::Acquire),
        interval_ms: longest.as_millis() as u64,
        sampler_cpu_s,
        error,
    }
}

/// The threads of process `pid` whose name (`/proc/PID/task/TID/comm`)
/// starts with `prefix` (`""`: every thread), with their names. A thread
/// that exits during the scan is left out.
pub fn threads_named(pid: i32, prefix: &str) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let tid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
        let comm = comm.trim();
        comm.starts_with(prefix).then(|| (tid, comm.to_string()))
    })
    .collect()
}

/// Whether thread `tid` of process `pid` is asleep (state `S`) inside
/// `epoll_wait` or `epoll_pwait`, which libc may call instead.
pub fn asleep_in_epoll_wait(pid: i32, tid: i32) -> bool {
    asleep_in(pid, tid, &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait])
}

/// Whether thread `tid` of process `pid` is asleep (state `S`) inside one
/// of the system calls numbered `calls`: the first field of
/// `/proc/PID/task/TID/syscall` is the number of the call the thread is
/// blocked in. False when the thread runs or is gone.
pub fn asleep_in(pid: i32, tid: i32, calls: &[i64]) -> bool {
    let task = format!("/proc/{pid}/task/{tid}");
    let number: Option<i64> = fs::read_to_string(format!("{task}/syscall"))
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok());
    let asleep = thread_state(pid, tid) == Some(b'S');
    asleep && number.is_some_and(|n| calls.contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_counts_fields_after_a_name_with_spaces_and_parens() {
        let line = "4242 (a b) c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 31 7 -1 20 0 3 0 12345 1000000 321 18446744073709551615";
        let stat = parse_stat(line).expect("parsable");
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                state: b'S',
                ppid: 17,
                utime: 250,
                stime: 31,
                cutime: 7,
                cstime: 0,
                start_time: 12345,
                num_threads: 3,
                rss_pages: 321,
                cpu_ns: None,
            }
        );
    }

    #[test]
    fn the_children_walk_finds_the_tree_the_proc_scan_finds() {
        // sh, two children of it, and a grandchild under the second.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sh -c 'sleep 30 & wait' & wait"])
            .spawn()
            .expect("spawn sh");
        let root = sh.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        let walked = loop {
            let tree = tree_stats(root).expect("walk");
            if tree.len() == 4 || Instant::now() > deadline {
                break tree;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let scanned = scan_tree_stats(read_stat(root).expect("root")).expect("scan");
        let pids = |t: &[ProcStat]| t.iter().map(|s| s.pid).collect::<BTreeSet<_>>();
        assert_eq!(walked.len(), 4, "{walked:?}");
        assert_eq!(pids(&walked), pids(&scanned));
        assert_eq!(walked[0].pid, root);
        // Parents before children.
        for (i, s) in walked.iter().enumerate().skip(1) {
            assert!(walked[..i].iter().any(|p| p.pid == s.ppid), "{walked:?}");
        }
        for s in walked.iter().rev() {
            // SAFETY: plain kill of a process this test started (or its child).
            unsafe { libc::kill(s.pid, libc::SIGKILL) };
        }
        let _ = sh.wait();
    }

    #[test]
    fn parse_stat_rejects_truncated_line() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
    }

    #[test]
    fn snapshot_of_missing_process_names_the_path() {
        let err = Snapshot::take(i32::MAX).expect_err("no such pid");
        assert!(err.to_string().contains("/proc/2147483647/stat"), "{err}");
    }

    fn with_io_uring_threads(threads: &[(i32, u64)]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            user_ticks: 0,
            sys_ticks: 0,
            cpu_ns: 0,
            rss_bytes: 0,
            pids: BTreeSet::new(),
            switches: BTreeMap::new(),
            io_uring_threads: threads.iter().copied().collect(),
            settled: true,
        }
    }

    #[test]
    fn io_uring_threads_count_their_growth_and_a_newcomer_from_zero() {
        let before = with_io_uring_threads(&[(5, 1_000_000_000)]);
        let after = with_io_uring_threads(&[(5, 1_250_000_000), (6, 50_000_000)]);
        let delta = Snapshot::delta(&before, &after);
        let cpu = delta.io_uring_threads_cpu_s.expect("threads seen");
        assert!((cpu - 0.3).abs() < 1e-9, "{cpu}");
        let none = Snapshot::delta(&with_io_uring_threads(&[]), &with_io_uring_threads(&[]));
        assert_eq!(none.io_uring_threads_cpu_s, None);
    }

    #[test]
    fn thread_status_and_schedstat_read_a_threads_name_switches_and_cpu() {
        let pid = std::process::id() as i32;
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).expect("comm");
        // Spin 20 ms of this thread's own CPU, then sleep: schedstat is
        // brought up to date when the thread is switched out.
        let cpu_now = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: ts is a valid out-pointer for the call.
            let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            assert_eq!(rc, 0, "clock_gettime");
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let start = cpu_now();
        while cpu_now() < start + 20_000_000 {}
        let before_sleep = cpu_now();
        thread::sleep(Duration::from_millis(2));
        let (name, (voluntary, _)) = thread_status(pid, tid).expect("own thread's status");
        assert_eq!(name, comm.trim());
        assert!(voluntary >= 1, "the sleep was a voluntary switch");
        assert_eq!(
            thread_state(pid, tid),
            Some(b'R'),
            "reading its own stat, it runs"
        );
        let ns = thread_cpu_ns(pid, tid).expect("own thread's schedstat");
        assert!(
            ns >= before_sleep,
            "schedstat {ns} ns < the thread's CPU clock {before_sleep} ns"
        );
    }
}
