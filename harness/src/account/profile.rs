//! Where a server's CPU goes, part by part, over one window: user time,
//! kernel time inside each system call, kernel time outside system calls,
//! and io_uring's kernel threads (`harness run --profile`).
//!
//! Totals come from `/proc` per thread: `schedstat`'s run time (ns, exact)
//! and `stat`'s `utime`/`stime`, which the kernel splits from the run time
//! by where the scheduler tick found the thread (user or kernel mode): a
//! sampled split, in 1/100 s units, so a window needs many ticks (1 s at
//! 250 Hz on a busy CPU gives a hundred or more; a few ticks either way is
//! the split's error).
//!
//! The time inside each call comes from a private ftrace instance
//! (`account::ftrace`) recording, for the server's threads only,
//! `raw_syscalls:sys_enter`/`sys_exit` (which call, entered and left when)
//! and `sched:sched_switch` (when the thread left a CPU and came back). A
//! call's on-CPU time is its span less every interval inside it between a
//! switch out and the next switch in: a wait that sleeps (`epoll_wait`,
//! `io_uring_enter` with `min_complete`) costs only what it ran, and a
//! call preempted by another task is not charged for that task. With
//! `CONFIG_IRQ_TIME_ACCOUNTING` off (as here), an interrupt or a softirq
//! that runs while the thread is in a call is in the call's time; the
//! same on the way back to user space (task work, signal delivery, an
//! interrupt in user mode) is kernel time outside calls: `stime` less the
//! time inside calls.
//!
//! Two markers written into the trace (`trace_marker`) bound the window,
//! each next to the `/proc` read it matches, so the trace and the totals
//! cover the same time. A thread already inside a call at the first marker
//! is charged from the marker on; a call still open at the last marker is
//! charged up to it (its time counts, the call does not).
//!
//! The tracepoints put every system call of the machine on the slow path
//! and the filter runs at each: the server is slower traced than not, so
//! a profile gives shares, measured once, not the untraced CPU figures.

use std::collections::BTreeMap;
use std::io;

use super::ftrace::{field, Event, Instance};
use super::procfs::{self, clock_ticks_per_sec, thread_cpu_ns, thread_stat, threads_named};
use crate::measurement::{CpuProfile, SyscallTime};

/// The trace's ring buffer per CPU, KiB. The server's events land on its
/// CPU's buffer: at 40 000 requests/s an event loop makes about 10^5 calls
/// a second, some 10 MiB of events over a 1 s window (compare's), twice
/// that over 2 s.
pub const BUFFER_KB: u64 = 98_304;

/// The markers' text (`tracing_mark_write` events).
const BEGIN: &str = "harness-profile begin";
const END: &str = "harness-profile end";

/// The name of system call `nr` on this architecture (the ones the lab's
/// servers make; any other as `syscall NR`).
pub fn syscall_name(nr: i64) -> String {
    #[cfg(target_arch = "x86_64")]
    let legacy: &[(i64, &str)] = &[
        (libc::SYS_epoll_wait, "epoll_wait"),
        (libc::SYS_select, "select"),
        (libc::SYS_poll, "poll"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let legacy: &[(i64, &str)] = &[];
    let known: &[(i64, &str)] = &[
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_readv, "readv"),
        (libc::SYS_writev, "writev"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_sendmsg, "sendmsg"),
        (libc::SYS_accept, "accept"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_close, "close"),
        (libc::SYS_shutdown, "shutdown"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_epoll_ctl, "epoll_ctl"),
        (libc::SYS_pselect6, "pselect6"),
        (libc::SYS_ppoll, "ppoll"),
        (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait"),
        (libc::SYS_io_uring_enter, "io_uring_enter"),
        (libc::SYS_io_uring_register, "io_uring_register"),
        (libc::SYS_futex, "futex"),
        (libc::SYS_sched_yield, "sched_yield"),
        (libc::SYS_fcntl, "fcntl"),
        (libc::SYS_setsockopt, "setsockopt"),
        (libc::SYS_getrusage, "getrusage"),
        (libc::SYS_mmap, "mmap"),
        (libc::SYS_mprotect, "mprotect"),
        (libc::SYS_munmap, "munmap"),
        (libc::SYS_madvise, "madvise"),
        (libc::SYS_brk, "brk"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_timerfd_settime, "timerfd_settime"),
    ];
    legacy
        .iter()
        .chain(known)
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("syscall {nr}"), |(_, name)| name.to_string())
}

/// What the trace says of one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attribution {
    /// From the begin marker to the end marker, seconds.
    pub window_s: f64,
    /// The threads' time on a CPU (window less time switched out), summed,
    /// seconds; a thread with no event in the window counts as off-CPU.
    pub on_cpu_s: f64,
    /// By syscall number: calls returned, on-CPU and off-CPU seconds.
    pub calls: BTreeMap<i64, (u64, f64, f64)>,
    /// Threads seen in the window.
    pub threads_seen: usize,
    /// Switches in the trace lacked, inferred from the thread's next call.
    /// On this machine (a VM under load) a switch from some tasks to the
    /// server's thread is now and then not recorded, filtered or not:
    /// without this, a sleeping wait would count as on a CPU until the
    /// thread's next switch out. Each is placed at the last switch recorded
    /// on the CPU before the call (the latest time the thread can have been
    /// off), so the time to the call may have been another task's.
    pub inferred: u64,
    /// That time, summed: how much of `on_cpu_s` is uncertain, seconds.
    pub inferred_s: f64,
    /// Over the threads' runs in the window (switch in to switch out, both
    /// recorded), the run time the scheduler charged less their length:
    /// the scheduler charges a woken thread from the wake-up that preempts
    /// the task on its CPU (`wakeup_preempt` skips the next clock update,
    /// so the switch reuses the wake-up's clock), not from its switch in;
    /// the hypervisor's stolen time is left out of the charge.
    pub clock_excess_s: f64,
    /// Those runs.
    pub runs: u64,
}

/// One thread's state while the trace is replayed.
#[derive(Default)]
struct Thread {
    seen: bool,
    /// Switched out since then.
    off_since: Option<f64>,
    off_total: f64,
    /// The call it is in: (number, entered at, off-CPU inside so far);
    /// number `None` while unknown (before its first event: it may have
    /// been inside a call since before the window).
    call: Option<(Option<i64>, f64, f64)>,
    /// Switched in at (inside the window, by a recorded switch), and the
    /// run time the scheduler charged it since (`sched_stat_runtime`).
    switched_in: Option<f64>,
    charged: f64,
}

fn syscall_nr(fields: &str) -> Option<i64> {
    field(fields, "NR").and_then(|n| n.parse().ok())
}

fn is_mark(e: &Event, text: &str) -> bool {
    e.name == "tracing_mark_write" && e.fields.trim() == text
}

/// Replays `events` (time order) of threads `tids` between the markers.
pub fn attribute(events: &[Event], tids: &[i32]) -> Result<Attribution, String> {
    let begin = events
        .iter()
        .position(|e| is_mark(e, BEGIN))
        .ok_or("the trace has no begin marker (the buffer overwrote it?)")?;
    let end = begin
        + events[begin..]
            .iter()
            .position(|e| is_mark(e, END))
            .ok_or("the trace has no end marker")?;
    let (b, e_ts) = (events[begin].ts, events[end].ts);
    let mut threads: BTreeMap<i32, Thread> = tids
        .iter()
        .map(|t| {
            (
                *t,
                Thread {
                    call: Some((None, b, 0.0)),
                    ..Thread::default()
                },
            )
        })
        .collect();
    let mut calls: BTreeMap<i64, (u64, f64, f64)> = BTreeMap::new();
    let mut inferred = 0;
    let mut inferred_s = 0.0;
    let (mut clock_excess, mut runs) = (0.0, 0u64);
    // The last switch recorded on each CPU.
    let mut last_switch: BTreeMap<u32, f64> = BTreeMap::new();
    let mut charge = |nr: i64, on: f64, off: f64, returned: bool| {
        let c = calls.entry(nr).or_default();
        c.0 += u64::from(returned);
        c.1 += on.max(0.0);
        c.2 += off;
    };
    for ev in &events[begin + 1..end] {
        match ev.name.as_str() {
            "sys_enter" | "sys_exit" => {
                let (Some(t), Some(nr)) = (threads.get_mut(&ev.pid), syscall_nr(&ev.fields)) else {
                    continue;
                };
                // Its first event finds it on a CPU: it was there since the
                // window began unless a switch in said otherwise.
                t.seen = true;
                // A thread making a call is on a CPU: a switch in that
                // the trace lacks (see `Attribution::inferred`) came after
                // the last switch recorded on this CPU, and before this.
                if let Some(since) = t.off_since.take() {
                    let last = last_switch.get(&ev.cpu).copied().unwrap_or(since);
                    let back_in = last.clamp(since, ev.ts);
                    inferred += 1;
                    inferred_s += ev.ts - back_in;
                    let off = back_in - since;
                    t.off_total += off;
                    if let Some(call) = t.call.as_mut() {
                        call.2 += off;
                    }
                }
                if ev.name == "sys_enter" {
                    t.call = Some((Some(nr), ev.ts, 0.0));
                } else if let Some((n, start, off)) = t.call.take() {
                    // An exit of another call than the one entered means
                    // events were lost: the time is not charged.
                    if n.is_none_or(|n| n == nr) {
                        charge(nr, ev.ts - start - off, off, true);
                    }
                }
            }
            "sched_switch" => {
                last_switch.insert(ev.cpu, ev.ts);
                let pid = |k: &str| field(&ev.fields, k).and_then(|p| p.parse::<i32>().ok());
                if let Some(t) = pid("prev_pid").and_then(|p| threads.get_mut(&p)) {
                    t.seen = true;
                    // The scheduler charges the thread's last stretch
                    // before this switch is recorded, so its run is whole.
                    if let Some(since) = t.switched_in.take() {
                        clock_excess += t.charged - (ev.ts - since);
                        runs += 1;
                    }
                    // Switched out twice with no sign of life between: off
                    // since the first (the switch in between is missing,
                    // and the thread made no call meanwhile).
                    t.off_since.get_or_insert(ev.ts);
                }
                if let Some(t) = pid("next_pid").and_then(|p| threads.get_mut(&p)) {
                    // Switched in with no switch out seen: off since the
                    // window began.
                    let since = match (t.off_since.take(), t.seen) {
                        (Some(s), _) => s,
                        (None, false) => b,
                        (None, true) => ev.ts,
                    };
                    t.seen = true;
                    t.switched_in = Some(ev.ts);
                    t.charged = 0.0;
                    let off = ev.ts - since;
                    t.off_total += off;
                    if let Some(call) = t.call.as_mut() {
                        call.2 += off;
                    }
                }
            }
            "sched_stat_runtime" => {
                let charged = field(&ev.fields, "runtime").and_then(|r| r.parse::<u64>().ok());
                let t = field(&ev.fields, "pid")
                    .and_then(|p| p.parse::<i32>().ok())
                    .and_then(|p| threads.get_mut(&p));
                if let (Some(t), Some(ns)) = (t, charged) {
                    t.charged += ns as f64 / 1e9;
                }
            }
            _ => {}
        }
    }
    let window_s = e_ts - b;
    let mut on_cpu_s = 0.0;
    let mut threads_seen = 0;
    for t in threads.values_mut() {
        if !t.seen {
            continue;
        }
        threads_seen += 1;
        if let Some(since) = t.off_since.take() {
            let off = e_ts - since;
            t.off_total += off;
            if let Some(call) = t.call.as_mut() {
                call.2 += off;
            }
        }
        on_cpu_s += window_s - t.off_total;
        if let Some((Some(nr), start, off)) = t.call {
            charge(nr, e_ts - start - off, off, false);
        }
    }
    Ok(Attribution {
        window_s,
        on_cpu_s,
        calls,
        threads_seen,
        inferred,
        inferred_s,
        clock_excess_s: clock_excess,
        runs,
    })
}

/// The `/proc` figures of the server's threads at one instant.
#[derive(Clone, Debug, Default)]
struct Totals {
    /// Own threads: tid -> (utime ticks, stime ticks, run ns).
    own: BTreeMap<i32, (u64, u64, u64)>,
    /// io_uring's kernel threads: tid -> run ns.
    io_uring: BTreeMap<i32, u64>,
}

impl Totals {
    fn read(pids: &[i32]) -> Totals {
        let mut t = Totals::default();
        for &pid in pids {
            for (tid, name) in threads_named(pid, "") {
                let Some(ns) = thread_cpu_ns(pid, tid) else {
                    continue;
                };
                if name.starts_with(procfs::IO_URING_THREADS) {
                    t.io_uring.insert(tid, ns);
                } else if let Some(st) = thread_stat(pid, tid) {
                    t.own.insert(tid, (st.utime, st.stime, ns));
                }
            }
        }
        t
    }
}

/// A profile being taken of the server rooted at `pid`.
pub struct Profiler {
    pids: Vec<i32>,
    tids: Vec<i32>,
    instance: Instance,
    before: Option<Totals>,
    after: Option<Totals>,
}

impl Profiler {
    /// Sets the trace up for the server's threads as they are now (a thread
    /// created later is not followed), recording nothing yet: setting a
    /// large buffer up takes a while, so do it before the window.
    pub fn prepare(pid: i32) -> io::Result<Profiler> {
        let pids = procfs::tree_pids(pid)?;
        let tids: Vec<i32> = pids
            .iter()
            .flat_map(|&p| threads_named(p, ""))
            .filter(|(_, name)| !name.starts_with(procfs::IO_URING_THREADS))
            .map(|(tid, _)| tid)
            .collect();
        let any = |keys: &[&str]| {
            let each: Vec<String> = tids
                .iter()
                .flat_map(|t| keys.iter().map(move |k| format!("{k} == {t}")))
                .collect();
            Some(each.join(" || "))
        };
        let events = [
            ("raw_syscalls/sys_enter", any(&["common_pid"])),
            ("raw_syscalls/sys_exit", any(&["common_pid"])),
            // Every switch, the server's or not: a switch to the server
            // that the trace lacks is placed after the last one recorded
            // on its CPU (`Attribution::inferred`).
            ("sched/sched_switch", None),
            ("sched/sched_stat_runtime", any(&["pid"])),
        ];
        let instance = Instance::create("profile", &events, BUFFER_KB)?;
        Ok(Profiler {
            pids,
            tids,
            instance,
            before: None,
            after: None,
        })
    }

    /// The window begins: recording on, the marker, the totals.
    pub fn begin(&mut self) -> io::Result<()> {
        self.instance.on()?;
        self.instance.mark(BEGIN)?;
        self.before = Some(Totals::read(&self.pids));
        Ok(())
    }

    /// The window ends: the totals, the marker, recording off.
    pub fn stop(&mut self) -> io::Result<()> {
        self.after = Some(Totals::read(&self.pids));
        self.instance.mark(END)?;
        self.instance.off()
    }

    /// Reads the trace and replays it (after the window: reading a large
    /// trace takes a while). `requests` of the profile is left 0 for the
    /// caller, who knows the load's rate.
    pub fn finish(self) -> io::Result<CpuProfile> {
        let (Some(before), Some(after)) = (&self.before, &self.after) else {
            return Err(io::Error::other("profile read before its window ended"));
        };
        let lost = self.instance.lost();
        if lost > 0 {
            return Err(io::Error::other(format!(
                "the trace buffer ({BUFFER_KB} KiB per CPU) lost {lost} events: \
                 shorten the window"
            )));
        }
        let events = self.instance.read()?;
        let traced = attribute(&events, &self.tids).map_err(io::Error::other)?;
        Ok(profile(before, after, &traced))
    }
}

/// The profile of the window between two readings and its trace.
fn profile(before: &Totals, after: &Totals, traced: &Attribution) -> CpuProfile {
    let hz = clock_ticks_per_sec();
    let (mut user, mut sys, mut ns) = (0u64, 0u64, 0u64);
    for (tid, &(u, s, n)) in &after.own {
        // A thread born inside the window counts from zero.
        let (u0, s0, n0) = before.own.get(tid).copied().unwrap_or_default();
        user += u.saturating_sub(u0);
        sys += s.saturating_sub(s0);
        ns += n.saturating_sub(n0);
    }
    let io_uring_threads_cpu_s = (!after.io_uring.is_empty()).then(|| {
        after
            .io_uring
            .iter()
            .map(|(tid, &n)| n.saturating_sub(before.io_uring.get(tid).copied().unwrap_or(0)))
            .sum::<u64>() as f64
            / 1e9
    });
    let mut syscalls: Vec<SyscallTime> = traced
        .calls
        .iter()
        .map(|(&nr, &(calls, on, off))| SyscallTime {
            name: syscall_name(nr),
            calls,
            on_cpu_s: on,
            off_cpu_s: off,
        })
        .collect();
    syscalls.sort_by(|a, b| b.on_cpu_s.total_cmp(&a.on_cpu_s));
    CpuProfile {
        window_s: traced.window_s,
        requests: 0.0,
        cpu_s: ns as f64 / 1e9,
        user_s: user as f64 / hz as f64,
        sys_s: sys as f64 / hz as f64,
        tick_hz: hz,
        traced_cpu_s: traced.on_cpu_s,
        syscalls,
        io_uring_threads_cpu_s,
        threads: after.own.len(),
        switch_ins_inferred: traced.inferred,
        inferred_s: traced.inferred_s,
        clock_excess_s: traced.clock_excess_s,
        runs: traced.runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::ftrace::parse_line;

    fn events(text: &str) -> Vec<Event> {
        text.lines().filter_map(parse_line).collect()
    }

    /// Thread 100 sleeps in epoll_wait across the begin marker, is woken,
    /// reads, writes (preempted inside the write by another task), waits
    /// again and sleeps through the end marker.
    const TRACE: &str = "\
         harness-9     [000] ..... 10.000000: tracing_mark_write: harness-profile begin
          <idle>-0     [001] d..2. 10.000100: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=epoll next_pid=100 next_prio=120
           epoll-100   [001] ..... 10.000110: sys_exit: NR 232 = 1
           epoll-100   [001] ..... 10.000120: sys_enter: NR 0 (5, 7ffd, 64, 0, 0, 0)
           epoll-100   [001] ..... 10.000140: sys_exit: NR 0 = 64
           epoll-100   [001] ..... 10.000150: sys_enter: NR 1 (5, 7ffd, 64, 0, 0, 0)
           epoll-100   [001] d..2. 10.000160: sched_switch: prev_comm=epoll prev_pid=100 prev_prio=120 prev_state=R ==> next_comm=other next_pid=300 next_prio=120
           other-300   [001] d..2. 10.000260: sched_switch: prev_comm=other prev_pid=300 prev_prio=120 prev_state=S ==> next_comm=epoll next_pid=100 next_prio=120
           epoll-100   [001] ..... 10.000290: sys_exit: NR 1 = 64
           epoll-100   [001] ..... 10.000300: sys_enter: NR 232 (4, 7ffd, 1024, -1, 0, 0)
           epoll-100   [001] d..2. 10.000310: sched_switch: prev_comm=epoll prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
           other-300   [000] ..... 10.000400: sys_enter: NR 0 (5, 7ffd, 64, 0, 0, 0)
         harness-9     [000] ..... 10.001000: tracing_mark_write: harness-profile end
           epoll-100   [001] ..... 10.002000: sys_exit: NR 232 = 1
";

    #[test]
    fn a_wait_that_sleeps_is_charged_only_its_time_on_a_cpu() {
        let t = attribute(&events(TRACE), &[100]).expect("markers");
        assert!((t.window_s - 0.001).abs() < 1e-9);
        let us = |s: f64| (s * 1e6).round() as i64;
        // epoll_wait (232): entered before the window, switched in at 100,
        // left at 110: 10 µs on a CPU, 100 off; the second one, entered at
        // 300, ran 10 µs before it slept, and is open at the end (time
        // counted, call not): 20 µs on, 100 + 690 off, one call returned.
        let (calls, on, off) = t.calls[&232];
        assert_eq!(calls, 1);
        assert_eq!(us(on), 20);
        assert_eq!(us(off), 790);
        // read: 20 µs, never off a CPU.
        assert_eq!(t.calls[&0].0, 1);
        assert_eq!((us(t.calls[&0].1), us(t.calls[&0].2)), (20, 0));
        // write: 140 µs span, of which 100 preempted by another task.
        assert_eq!((us(t.calls[&1].1), us(t.calls[&1].2)), (40, 100));
        // On a CPU: 1000 less 100 before the first switch in, 100
        // preempted, 690 asleep at the end.
        assert_eq!(us(t.on_cpu_s), 110);
        // Another task's call is not ours; nothing after the end marker is.
        assert_eq!(t.calls.len(), 3);
        assert_eq!(t.threads_seen, 1);
    }

    #[test]
    fn a_thread_running_at_the_begin_marker_is_on_a_cpu_from_it() {
        let text = "\
         harness-9     [000] ..... 5.000000: tracing_mark_write: harness-profile begin
           loop-7      [001] ..... 5.000050: sys_enter: NR 0 (5, 7ffd, 64, 0, 0, 0)
           loop-7      [001] ..... 5.000080: sys_exit: NR 0 = 64
           loop-7      [001] d..2. 5.000100: sched_switch: prev_comm=loop prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
           loop-8      [000] ..... 5.000200: sys_enter: NR 0 (5, 7ffd, 64, 0, 0, 0)
         harness-9     [000] ..... 5.000500: tracing_mark_write: harness-profile end
";
        let t = attribute(&events(text), &[7, 8]).expect("markers");
        // 7: on from 0 to 100; 8: on from 0 (its first event finds it
        // running) to the end, inside a read from 200 on.
        assert_eq!((t.on_cpu_s * 1e6).round() as i64, 100 + 500);
        let read = t.calls[&0];
        assert_eq!(read.0, 1, "the open read does not count as a call");
        assert_eq!((read.1 * 1e6).round() as i64, 30 + 300);
        assert_eq!(t.threads_seen, 2);
    }

    #[test]
    fn a_switch_in_the_trace_lacks_ends_at_the_threads_next_call() {
        // Woken inside epoll_wait after a task whose switch to it was not
        // recorded: the sleep ends at the last switch on its CPU (200, not
        // CPU 0's at 250), and a second switch out keeps the first one's
        // start.
        let text = "\
         harness-9     [000] ..... 5.000000: tracing_mark_write: harness-profile begin
           loop-7      [001] ..... 5.000010: sys_enter: NR 232 (4, 7ffd, 1024, -1, 0, 0)
           loop-7      [001] d..2. 5.000020: sched_switch: prev_comm=loop prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=rustc next_pid=30 next_prio=120
           rustc-30    [001] d..2. 5.000200: sched_switch: prev_comm=rustc prev_pid=30 prev_prio=120 prev_state=R ==> next_comm=agent next_pid=40 next_prio=110
           other-50    [000] d..2. 5.000250: sched_switch: prev_comm=other prev_pid=50 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
           loop-7      [001] ..... 5.000300: sys_exit: NR 232 = 1
           loop-7      [001] d..2. 5.000400: sched_switch: prev_comm=loop prev_pid=7 prev_prio=120 prev_state=R ==> next_comm=rustc next_pid=30 next_prio=120
           loop-7      [001] d..2. 5.000450: sched_switch: prev_comm=loop prev_pid=7 prev_prio=120 prev_state=R ==> next_comm=rustc next_pid=30 next_prio=120
           rustc-30    [001] d..2. 5.000480: sched_switch: prev_comm=rustc prev_pid=30 prev_prio=120 prev_state=R ==> next_comm=loop next_pid=7 next_prio=120
         harness-9     [000] ..... 5.000500: tracing_mark_write: harness-profile end
";
        let t = attribute(&events(text), &[7]).expect("markers");
        let us = |s: f64| (s * 1e6).round() as i64;
        let (calls, on, off) = t.calls[&232];
        assert_eq!((calls, us(on), us(off)), (1, 110, 180));
        assert_eq!((t.inferred, us(t.inferred_s)), (1, 100));
        // On: 0-20, 200-400, 480-500.
        assert_eq!(us(t.on_cpu_s), 240);
    }

    #[test]
    fn the_scheduler_charging_a_woken_thread_from_its_wake_up_is_measured_per_run() {
        // Thread 7 is woken while another task runs and switched in 25 µs
        // later; the scheduler charges it 125 µs for a 100 µs run. A run
        // already going at the begin marker is not whole: not counted;
        // another thread's charge is not ours.
        let text = "\
         harness-9     [000] ..... 5.000000: tracing_mark_write: harness-profile begin
           loop-7      [001] d..2. 5.000050: sched_stat_runtime: comm=loop pid=7 runtime=50000 [ns]
           loop-7      [001] d..2. 5.000050: sched_switch: prev_comm=loop prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=rustc next_pid=30 next_prio=120
           rustc-30    [001] d..2. 5.000100: sched_switch: prev_comm=rustc prev_pid=30 prev_prio=120 prev_state=R ==> next_comm=loop next_pid=7 next_prio=120
           loop-7      [001] d..2. 5.000120: sched_stat_runtime: comm=loop pid=7 runtime=30000 [ns]
           rustc-30    [000] d..2. 5.000150: sched_stat_runtime: comm=rustc pid=30 runtime=90000 [ns]
           loop-7      [001] d..2. 5.000200: sched_stat_runtime: comm=loop pid=7 runtime=95000 [ns]
           loop-7      [001] d..2. 5.000200: sched_switch: prev_comm=loop prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=rustc next_pid=30 next_prio=120
         harness-9     [000] ..... 5.000500: tracing_mark_write: harness-profile end
";
        let t = attribute(&events(text), &[7]).expect("markers");
        assert_eq!(t.runs, 1);
        assert_eq!((t.clock_excess_s * 1e6).round() as i64, 25);
        assert_eq!((t.on_cpu_s * 1e6).round() as i64, 150);
    }

    #[test]
    fn a_trace_without_its_markers_is_refused() {
        let text =
            "           loop-7      [001] ..... 5.000050: sys_enter: NR 0 (5, 7ffd, 64, 0, 0, 0)\n";
        let e = attribute(&events(text), &[7]).expect_err("no markers");
        assert!(e.contains("begin marker"), "{e}");
    }

    #[test]
    fn the_profile_splits_the_windows_cpu_into_its_parts() {
        let hz = clock_ticks_per_sec();
        let mut before = Totals::default();
        before.own.insert(7, (10, 20, 1_000_000_000));
        before.io_uring.insert(9, 5_000_000);
        let mut after = before.clone();
        after
            .own
            .insert(7, (10 + hz / 2, 20 + hz / 4, 1_750_000_000));
        after.io_uring.insert(9, 15_000_000);
        // A worker born inside the window counts from zero.
        after.io_uring.insert(10, 2_000_000);
        let traced = Attribution {
            window_s: 1.0,
            on_cpu_s: 0.75,
            calls: BTreeMap::from([(libc::SYS_read, (1000, 0.1, 0.0))]),
            threads_seen: 1,
            inferred: 2,
            inferred_s: 0.001,
            clock_excess_s: 0.05,
            runs: 100,
        };
        let p = profile(&before, &after, &traced);
        assert!((p.cpu_s - 0.75).abs() < 1e-9);
        assert!((p.user_s - 0.5).abs() < 1e-9 && (p.sys_s - 0.25).abs() < 1e-9);
        assert!((p.in_syscalls_s() - 0.1).abs() < 1e-9);
        // The clock's excess (0.05 s) is in utime and stime in their
        // proportion (2:1), and a part of its own.
        assert!((p.outside_syscalls_s() - (0.15 - 0.05 / 3.0)).abs() < 1e-9);
        assert!((p.user_part_s() - (0.5 - 0.1 / 3.0)).abs() < 1e-9);
        let parts = p.user_part_s() + p.in_syscalls_s() + p.outside_syscalls_s() + p.clock_excess_s;
        assert!((parts - p.cpu_s).abs() < 1e-9);
        assert!((p.io_uring_threads_cpu_s.expect("io_uring threads") - 0.012).abs() < 1e-9);
        assert_eq!(p.syscalls[0].name, "read");
        assert_eq!(p.switch_ins_inferred, 2);
    }
}
