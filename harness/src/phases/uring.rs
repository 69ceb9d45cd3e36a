//! Where an io_uring RECV's copy runs, from the kernel's own tracepoints.
//!
//! strace sees a `uring` server make no read call, but the bytes are still
//! copied by a CPU, in some task's kernel context. A RECV is issued at
//! submission (inside `io_uring_enter`); if data is already queued it
//! completes there, inline. If not, the kernel arms an internal poll on the
//! socket (`io_uring_poll_arm`); when data arrives the socket's wake-up
//! queues *task work* for the submitting task (`io_uring_task_add`, fired
//! in whoever woke the socket: softirq, or the sender's own system call on
//! loopback), and that task runs the retry, copy included, in its own
//! kernel context: inside `io_uring_enter` while it waits for completions,
//! or on the way out of another system call. Only with `IOSQE_ASYNC` or an
//! operation that cannot be retried by poll does an io-wq worker
//! (`iou-wrk-*`, `io_uring_queue_async_work`) do it instead; with SQPOLL
//! the kernel's `iou-sqp-*` thread submits.
//!
//! This module reads those tracepoints through a private ftrace instance
//! (tracefs `instances/`), together with `raw_syscalls` entry and exit of
//! `io_uring_enter` (number 426) and `sched_switch` for the server's
//! threads, and says for each RECV completion which task posted it, inside
//! which call, and how long after the task got the CPU back. ftrace stamps
//! events in µs: that is the resolution of every time here.

use std::collections::BTreeMap;
use std::io;

use crate::account::ftrace::field;
pub use crate::account::ftrace::{Event, Instance};

/// `io_uring_enter`'s number on x86-64 and arm64 alike (the generic table).
const IO_URING_ENTER: u32 = 426;

/// The tracepoints read, `category/name`.
const EVENTS: &[&str] = &[
    "io_uring/io_uring_submit_req",
    "io_uring/io_uring_poll_arm",
    "io_uring/io_uring_task_add",
    "io_uring/io_uring_queue_async_work",
    "io_uring/io_uring_complete",
    "raw_syscalls/sys_enter",
    "raw_syscalls/sys_exit",
    "sched/sched_switch",
];

/// Where one RECV's copy ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Where {
    /// Data was there at submission: issued and copied inside the
    /// submitting `io_uring_enter`, no poll armed.
    Inline,
    /// Run as task work by the submitting thread inside its
    /// `io_uring_enter` (woken there by the socket's data).
    TaskWorkInEnter,
    /// Task work run by the submitting thread outside `io_uring_enter`
    /// (on the way out of another system call).
    TaskWorkElsewhere,
    /// An io-wq worker or the SQPOLL thread: not the process's own thread.
    KernelThread,
}

impl Where {
    pub fn label(self) -> &'static str {
        match self {
            Where::Inline => "inline at submission, inside io_uring_enter",
            Where::TaskWorkInEnter => "task work of the server thread, inside io_uring_enter",
            Where::TaskWorkElsewhere => "task work of the server thread, outside io_uring_enter",
            Where::KernelThread => "a kernel thread (io-wq worker or SQPOLL)",
        }
    }
}

/// One RECV completion of the server's ring.
#[derive(Clone, Debug, PartialEq)]
pub struct Recv {
    pub at: Where,
    /// The task that posted the completion (its comm).
    pub comm: String,
    /// Bytes received (the CQE's result).
    pub bytes: i64,
    /// From the socket's wake-up queueing the task work to the completion,
    /// µs (includes the thread's wake-up); `None` for inline.
    pub queued_to_done_us: Option<f64>,
    /// From the posting thread getting the CPU back (or, inline, from the
    /// submission) to the completion, µs: the kernel path that ran the
    /// copy, an upper bound of the copy's own time.
    pub run_us: Option<f64>,
}

/// What one traced run showed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTrace {
    pub recvs: Vec<Recv>,
    /// RECVs handed to an io-wq worker.
    pub async_work: usize,
}

impl KernelTrace {
    /// How many RECVs ran where, in `Where` order.
    pub fn counts(&self) -> BTreeMap<Where, usize> {
        let mut m = BTreeMap::new();
        for r in &self.recvs {
            *m.entry(r.at).or_insert(0) += 1;
        }
        m
    }

    /// The median `run_us` of the RECVs that ran at `at`.
    pub fn median_run_us(&self, at: Where) -> Option<f64> {
        let v: Vec<f64> = self
            .recvs
            .iter()
            .filter(|r| r.at == at)
            .filter_map(|r| r.run_us)
            .collect();
        (!v.is_empty()).then(|| crate::stats::median(&v))
    }

    /// One line per place, for `harness phases` and CLAIMS.md.
    pub fn summary(&self) -> String {
        if self.recvs.is_empty() {
            return "kernel trace: no RECV completion of the server's ring was seen".into();
        }
        let parts: Vec<String> = self
            .counts()
            .iter()
            .map(|(at, n)| {
                let run = self.median_run_us(*at).map_or(String::new(), |us| {
                    format!(", median {us:.0} µs from on-CPU to posted")
                });
                format!("{n} × {}{run}", at.label())
            })
            .collect();
        format!(
            "kernel trace (io_uring tracepoints, µs clock): {} RECV completions: {}; {} handed to io-wq",
            self.recvs.len(),
            parts.join("; "),
            self.async_work
        )
    }
}

/// Reads the events of the server's threads `tids` into RECV completions.
/// The server's ring is the one its threads submit to; the other rings in
/// the trace (another program's) are left out.
pub fn analyse(events: &[Event], tids: &[i32]) -> KernelTrace {
    let ours = |pid: i32| tids.contains(&pid);
    let rings: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "io_uring_submit_req" && ours(e.pid))
        .filter_map(|e| field(&e.fields, "ring"))
        .collect();
    let ring_of = |e: &Event| field(&e.fields, "ring").is_some_and(|r| rings.contains(&r));
    // Per request, by its user_data (the kernel posts a multishot RECV's
    // later completions with no req pointer, but always with the
    // user_data it was submitted with): its submission time (or last
    // completion) and, since then, the last task_add.
    let mut open: BTreeMap<String, (f64, Option<f64>)> = BTreeMap::new();
    let mut in_enter: BTreeMap<i32, bool> = BTreeMap::new();
    let mut on_cpu: BTreeMap<i32, f64> = BTreeMap::new();
    let mut trace = KernelTrace::default();
    for e in events {
        match e.name.as_str() {
            "sys_enter" if ours(e.pid) && syscall_nr(&e.fields) == Some(IO_URING_ENTER) => {
                in_enter.insert(e.pid, true);
            }
            "sys_exit" if ours(e.pid) && syscall_nr(&e.fields) == Some(IO_URING_ENTER) => {
                in_enter.insert(e.pid, false);
            }
            "sched_switch" => {
                if let Some(next) = field(&e.fields, "next_pid").and_then(|p| p.parse().ok()) {
                    on_cpu.insert(next, e.ts);
                }
            }
            "io_uring_submit_req" if ring_of(e) && e.fields.contains("opcode RECV") => {
                if let Some(req) = field(&e.fields, "user_data") {
                    open.insert(req.to_string(), (e.ts, None));
                }
            }
            "io_uring_task_add" if ring_of(e) => {
                if let Some(o) = field(&e.fields, "user_data").and_then(|r| open.get_mut(r)) {
                    o.1 = Some(e.ts);
                }
            }
            "io_uring_queue_async_work"
                if ring_of(e)
                    && field(&e.fields, "user_data").is_some_and(|r| open.contains_key(r)) =>
            {
                trace.async_work += 1;
            }
            "io_uring_complete" if ring_of(e) => {
                let Some(req) = field(&e.fields, "user_data") else {
                    continue;
                };
                let Some(&(submitted, queued)) = open.get(req) else {
                    continue;
                };
                let bytes = field(&e.fields, "result")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                let more = field(&e.fields, "cflags")
                    .and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok())
                    .is_some_and(|c| c & 2 != 0); // IORING_CQE_F_MORE: multishot goes on
                if more {
                    open.insert(req.to_string(), (e.ts, None));
                } else {
                    open.remove(req);
                }
                let entered = in_enter.get(&e.pid).copied().unwrap_or(false);
                let at = if !ours(e.pid) {
                    Where::KernelThread
                } else if queued.is_none() {
                    Where::Inline
                } else if entered {
                    Where::TaskWorkInEnter
                } else {
                    Where::TaskWorkElsewhere
                };
                let from = match at {
                    Where::Inline => Some(submitted),
                    _ => on_cpu
                        .get(&e.pid)
                        .copied()
                        .filter(|t| queued.is_none_or(|q| *t >= q)),
                };
                trace.recvs.push(Recv {
                    at,
                    comm: e.comm.clone(),
                    bytes,
                    queued_to_done_us: queued.map(|q| (e.ts - q) * 1e6),
                    run_us: from.map(|f| (e.ts - f) * 1e6),
                });
            }
            _ => {}
        }
    }
    trace
}

fn syscall_nr(fields: &str) -> Option<u32> {
    field(fields, "NR").and_then(|n| n.parse().ok())
}

/// A private ftrace instance recording the events, the syscall and
/// scheduler ones only for `tids`.
pub fn start(tids: &[i32]) -> io::Result<Instance> {
    let pids = |field: &str| {
        let each: Vec<String> = tids.iter().map(|t| format!("{field} == {t}")).collect();
        format!("({})", each.join(" || "))
    };
    let events: Vec<(&str, Option<String>)> = EVENTS
        .iter()
        .map(|ev| {
            let filter = match *ev {
                "raw_syscalls/sys_enter" | "raw_syscalls/sys_exit" => {
                    Some(format!("id == {IO_URING_ENTER} && {}", pids("common_pid")))
                }
                "sched/sched_switch" => Some(pids("next_pid")),
                _ => None,
            };
            (*ev, filter)
        })
        .collect();
    Instance::start("uring", &events, 8192)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::ftrace::parse_line;

    const TRACE: &str = "\
# tracer: nop
           uring-100     [001] ..... 10.000000: sys_enter: NR 426 (3, 1, 1, 1, 0, 0)
           uring-100     [001] ..... 10.000010: io_uring_submit_req: ring 00000000aa, req 00000000r1, user_data 0x7, opcode RECV, flags 0x0, sq_thread 0
           uring-100     [001] ..... 10.000012: io_uring_poll_arm: ring 00000000aa, req 00000000r1, user_data 0x7, opcode RECV, mask 0x1, events 0x1
          client-200     [000] ..s1. 10.020000: io_uring_task_add: ring 00000000aa, req 00000000r1, user_data 0x7, opcode RECV, mask 1
          <idle>-0       [001] d..2. 10.020030: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=uring next_pid=100 next_prio=120
           uring-100     [001] ..... 10.020034: io_uring_complete: ring 00000000aa, req 00000000r1, user_data 0x7, result 18, cflags 0x0 extra1 0 extra2 0 
           uring-100     [001] ..... 10.020040: sys_exit: NR 426 = 1
           uring-100     [001] ..... 10.020050: sys_enter: NR 426 (3, 1, 1, 1, 0, 0)
           uring-100     [001] ..... 10.020052: io_uring_submit_req: ring 00000000aa, req 00000000r2, user_data 0x8, opcode RECV, flags 0x0, sq_thread 0
           uring-100     [001] ..... 10.020055: io_uring_complete: ring 00000000aa, req 00000000r2, user_data 0x8, result 5, cflags 0x0 extra1 0 extra2 0 
           other-300     [000] ..... 10.020060: io_uring_submit_req: ring 00000000bb, req 00000000r9, user_data 0x1, opcode RECV, flags 0x0, sq_thread 0
           other-300     [000] ..... 10.020061: io_uring_complete: ring 00000000bb, req 00000000r9, user_data 0x1, result 5, cflags 0x0 extra1 0 extra2 0 
";

    #[test]
    fn a_recv_woken_by_data_is_task_work_inside_enter_and_one_with_data_is_inline() {
        let events: Vec<Event> = TRACE.lines().filter_map(parse_line).collect();
        let t = analyse(&events, &[100]);
        assert_eq!(
            t.recvs.len(),
            2,
            "the other program's ring is left out: {t:?}"
        );
        let woken = &t.recvs[0];
        assert_eq!(woken.at, Where::TaskWorkInEnter);
        assert_eq!(woken.bytes, 18);
        assert!((woken.queued_to_done_us.expect("queued") - 34.0).abs() < 0.5);
        assert!((woken.run_us.expect("on cpu") - 4.0).abs() < 0.5);
        let inline = &t.recvs[1];
        assert_eq!(inline.at, Where::Inline);
        assert!((inline.run_us.expect("submitted") - 3.0).abs() < 0.5);
        assert!(t
            .summary()
            .contains("1 × task work of the server thread, inside io_uring_enter"));
    }

    #[test]
    fn a_multishot_recvs_later_completions_are_matched_by_user_data() {
        // The kernel posts a multishot RECV's later CQEs with no req pointer
        // and IORING_CQE_F_MORE (2) in cflags while it stays armed.
        let text = "\
           uring-100     [001] ..... 1.000000: sys_enter: NR 426 (3, 1, 1, 1, 0, 0)
           uring-100     [001] ..... 1.000010: io_uring_submit_req: ring 00000000aa, req 00000000r1, user_data 0x9, opcode RECV, flags 0x0, sq_thread 0
          client-200     [000] ..s1. 1.020000: io_uring_task_add: ring 00000000aa, req 00000000r1, user_data 0x9, opcode RECV, mask 1
           uring-100     [001] ..... 1.020034: io_uring_complete: ring 00000000aa, req 0000000000000000, user_data 0x9, result 18, cflags 0x10003 extra1 0 extra2 0 
          client-200     [000] ..s1. 1.040000: io_uring_task_add: ring 00000000aa, req 00000000r1, user_data 0x9, opcode RECV, mask 1
           uring-100     [001] ..... 1.040020: io_uring_complete: ring 00000000aa, req 0000000000000000, user_data 0x9, result 18, cflags 0x20003 extra1 0 extra2 0 
";
        let events: Vec<Event> = text.lines().filter_map(parse_line).collect();
        let t = analyse(&events, &[100]);
        assert_eq!(t.recvs.len(), 2, "{t:?}");
        assert!(t.recvs.iter().all(|r| r.at == Where::TaskWorkInEnter));
        assert!((t.recvs[1].queued_to_done_us.expect("queued") - 20.0).abs() < 0.5);
    }

    #[test]
    fn a_completion_posted_by_another_task_is_a_kernel_threads() {
        let text = TRACE.replace(
            "           uring-100     [001] ..... 10.020034: io_uring_complete",
            "       iou-wrk-100-101   [001] ..... 10.020034: io_uring_complete",
        );
        let events: Vec<Event> = text.lines().filter_map(parse_line).collect();
        assert_eq!(analyse(&events, &[100]).recvs[0].at, Where::KernelThread);
    }
}
