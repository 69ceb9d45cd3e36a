//! "Where the server's time goes": a traced run's CPU per request, part
//! by part (`measurement::CpuProfile`, taken by `account::profile`), as
//! `harness run --profile` prints it and as the io_uring ladder's table
//! sets `epoll:level` beside `uring:multishot` and the best combination.

use std::fmt::Write as _;

use super::table::{label, repeat_command, Table};
use crate::measurement::CpuProfile;
use crate::results::{CompareResults, Purpose};

/// One part of a profile, per request.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub name: String,
    pub us: f64,
    /// How a system call's time is made up: calls per request and time on
    /// a CPU per call (and asleep per call, for a wait).
    pub detail: Option<String>,
}

/// The label of a system call's part.
fn in_call(name: &str) -> String {
    format!("kernel, in {name}")
}

const USER: &str = "user";
const OUTSIDE: &str = "kernel, outside system calls";
const WAKE: &str = "scheduler's charge beyond the runs";
const IO_URING: &str = "io_uring kernel threads";

/// The profile's parts, per request: user, each system call (most costly
/// first), kernel outside calls, io_uring's kernel threads (if any).
pub fn parts(p: &CpuProfile) -> Vec<Part> {
    let per = |s: f64| p.per_request_us(s);
    let mut v = vec![Part {
        name: USER.into(),
        us: per(p.user_part_s()),
        detail: None,
    }];
    for s in &p.syscalls {
        let calls = s.calls as f64 / p.requests;
        let each = |t: f64| {
            if s.calls > 0 {
                t * 1e6 / s.calls as f64
            } else {
                f64::NAN
            }
        };
        let asleep = if s.off_cpu_s > 0.0 {
            format!(", {:.1} µs off a CPU", each(s.off_cpu_s))
        } else {
            String::new()
        };
        v.push(Part {
            name: in_call(&s.name),
            us: per(s.on_cpu_s),
            detail: Some(format!(
                "{calls:.2} calls/req × {:.2} µs on a CPU{asleep}",
                each(s.on_cpu_s)
            )),
        });
    }
    v.push(Part {
        name: OUTSIDE.into(),
        us: per(p.outside_syscalls_s()),
        detail: None,
    });
    v.push(Part {
        name: WAKE.into(),
        us: per(p.clock_excess_s),
        detail: (p.runs > 0).then(|| {
            format!(
                "{:.2} runs/req × {:.2} µs: + from the preempting wake-up, − stolen",
                p.runs as f64 / p.requests,
                p.clock_excess_s * 1e6 / p.runs as f64
            )
        }),
    });
    if let Some(k) = p.io_uring_threads_cpu_s {
        v.push(Part {
            name: IO_URING.into(),
            us: per(k),
            detail: None,
        });
    }
    v
}

/// The check every profile carries: its parts' sum against the CPU clock,
/// and the trace's own view of the threads' time on a CPU.
pub fn check(p: &CpuProfile) -> String {
    let per = |s: f64| p.per_request_us(s);
    let sum = p.user_s + p.sys_s + p.io_uring_threads_cpu_s.unwrap_or(0.0);
    let clock = p.total_s();
    // Each thread's utime and stime are read in whole ticks at both ends.
    let split = 2.0 * p.threads as f64 / p.tick_hz as f64;
    let mut s = format!(
        "parts sum to {:.2} µs/req, the CPU clock says {:.2} (user and kernel are split by the \
         scheduler tick, read in 1/{} s: ±{:.2} µs/req); the trace saw the threads on a CPU for \
         {:.2} µs/req, and with the wake-ups' charge {:.2} ({:+.1} % of the clock)",
        per(sum),
        per(clock),
        p.tick_hz,
        per(split),
        per(p.traced_cpu_s),
        per(p.traced_cpu_s + p.clock_excess_s),
        ((p.traced_cpu_s + p.clock_excess_s) / p.cpu_s - 1.0) * 100.0
    );
    if p.switch_ins_inferred > 0 {
        let _ = write!(
            s,
            ", {} switches to the server missing from the trace inferred (up to {:.2} µs/req uncertain)",
            p.switch_ins_inferred,
            per(p.inferred_s)
        );
    }
    s
}

/// The block `harness run --profile` prints.
pub fn run_lines(p: &CpuProfile) -> String {
    let mut out = format!(
        "  where the server's CPU went, per request ({:.0} requests in a {:.3} s traced window; \
         the tracing slows the server, so these are shares):\n",
        p.requests, p.window_s
    );
    for part in parts(p) {
        let _ = writeln!(
            out,
            "    {:<36} {:>8.2} µs{}",
            part.name,
            part.us,
            part.detail.map_or(String::new(), |d| format!("   ({d})"))
        );
    }
    let _ = writeln!(out, "    {}", check(p));
    out
}

/// The coarse parts a difference is named by: user, kernel inside calls,
/// kernel outside calls, io_uring's threads.
fn coarse(p: &CpuProfile) -> [(&'static str, f64); 5] {
    let per = |s: f64| p.per_request_us(s);
    [
        (USER, per(p.user_part_s())),
        ("kernel, inside system calls", per(p.in_syscalls_s())),
        (OUTSIDE, per(p.outside_syscalls_s())),
        (WAKE, per(p.clock_excess_s)),
        (IO_URING, per(p.io_uring_threads_cpu_s.unwrap_or(0.0))),
    ]
}

/// The table "Where the server's time goes", from the profile runs; `None`
/// when the run made none.
pub fn section(r: &CompareResults) -> Option<String> {
    let cells: Vec<_> = r
        .cells
        .iter()
        .filter(|c| c.purpose == Purpose::Profile)
        .collect();
    let w = cells.first()?.workload;
    let profile = |m: &str| {
        cells
            .iter()
            .find(|c| c.model == m)
            .and_then(|c| c.runs.first())
            .and_then(|run| run.server.profile.as_ref())
    };
    let why = |m: &str| -> String {
        let Some(c) = cells.iter().find(|c| c.model == m) else {
            return "not run".into();
        };
        if let Some(n) = &c.not_run {
            return format!("not run: {n}");
        }
        if let Some(f) = c.failures.first() {
            return format!("failed: {}", f.reason);
        }
        c.runs
            .first()
            .and_then(|run| run.server.profile_na_reason.clone())
            .unwrap_or_else(|| "no profile".into())
    };
    // The rows the matrix profiles at most, those this run profiled.
    let rows: Vec<&str> = crate::compare::PROFILE_FULL_ROWS
        .iter()
        .copied()
        .filter(|m| cells.iter().any(|c| c.model == *m))
        .collect();
    let measured: Vec<(&str, &CpuProfile)> = rows
        .iter()
        .filter_map(|m| Some((*m, profile(m)?)))
        .collect();
    let mut out = format!(
        "**Where the server's time goes** ({}, one traced run each, per request). The server's \
         system calls and context switches are traced (`raw_syscalls`, `sched_switch`): a \
         call's time is its time on a CPU, a wait's sleep left out; user and the kernel's \
         total come from the scheduler tick's split of the threads' CPU; kernel time outside \
         calls is the rest of it (interrupts and softirqs that hit the server, task work on \
         the way back to user space). On loopback a send also runs the receiving socket's \
         input path (the softirq runs in the sending call), so a send's time includes \
         delivering the reply to the client; an io_uring SEND issued at submission does the \
         same inside `io_uring_enter`. The scheduler charges a woken thread from the wake-up \
         that preempts the task on its CPU, not from its switch in (`wakeup_preempt` skips \
         the next clock update), and leaves out time the hypervisor stole: \"scheduler's charge \
         beyond the runs\" is the net of the two, summed over the threads' runs \
         (`sched_stat_runtime` against the runs' recorded switches); it is in the CPU clock and \
         in the paired rounds' figures, and the wake-ups' part grows with how often a server \
         sleeps and how busy its CPU is with other work. \
         Tracing slows every system call, so these are shares, measured once, not the paired \
         rounds' CPU figures.\n\n",
        w.label(),
    );
    let mut t = Table::from(
        std::iter::once("part (µs per request)".to_string())
            .chain(rows.iter().map(|m| label(m)))
            .collect(),
    );
    // Every part any row has, in the order of the first row that has it.
    let mut names: Vec<String> = Vec::new();
    for (_, p) in &measured {
        for part in parts(p) {
            if !names.contains(&part.name) {
                names.push(part.name);
            }
        }
    }
    // System calls after user, before the kernel's rest.
    names.sort_by_key(|n| match n.as_str() {
        USER => 0,
        OUTSIDE => 2,
        WAKE => 3,
        IO_URING => 4,
        _ => 1,
    });
    for name in &names {
        let mut row = vec![name.clone()];
        for &m in &rows {
            row.push(match profile(m) {
                None => "—".into(),
                Some(p) => {
                    parts(p)
                        .into_iter()
                        .find(|x| &x.name == name)
                        .map_or("—".into(), |x| match x.detail {
                            Some(d) => format!("{:.2} ({d})", x.us),
                            None => format!("{:.2}", x.us),
                        })
                }
            });
        }
        t.rows.push(row);
    }
    let mut total = vec!["total (CPU clock)".to_string()];
    let mut checks = Vec::new();
    for &m in &rows {
        total.push(match profile(m) {
            Some(p) => {
                checks.push(format!("{}: {}.", label(m), check(p)));
                format!("{:.2}", p.per_request_us(p.total_s()))
            }
            None => format!("— ({})", why(m)),
        });
    }
    t.rows.push(total);
    out.push_str(&t.render());
    out.push('\n');
    for c in checks {
        let _ = writeln!(out, "- {c}");
    }
    out.push('\n');
    for &m in &rows {
        if let Some(run) = cells
            .iter()
            .find(|c| c.model == m)
            .and_then(|c| c.runs.first())
        {
            let _ = writeln!(
                out,
                "- {}, repeat with `{}`",
                label(m),
                repeat_command(run, &run.model, Some("--profile"), true)
            );
        }
    }
    out.push('\n');
    if let Some(s) = biggest_difference(profile(crate::spec::URING_BEST), profile("epoll:level")) {
        out.push_str(&s);
        out.push_str("\n\n");
    }
    Some(out)
}

/// The computed sentence: where the best combination and `epoll:level`
/// differ most, and which call each spends its kernel time in.
pub fn biggest_difference(best: Option<&CpuProfile>, epoll: Option<&CpuProfile>) -> Option<String> {
    let (b, e) = (best?, epoll?);
    let (cb, ce) = (coarse(b), coarse(e));
    let total = |p: &CpuProfile| p.per_request_us(p.total_s());
    let (name, vb, ve) = cb
        .iter()
        .zip(&ce)
        .map(|((n, vb), (_, ve))| (*n, *vb, *ve))
        .max_by(|x, y| (x.1 - x.2).abs().total_cmp(&(y.1 - y.2).abs()))?;
    let top = |p: &CpuProfile| {
        p.syscalls.first().map_or("no system call".into(), |s| {
            format!(
                "{} ({:.2} µs/req in {:.2} calls/req)",
                s.name,
                p.per_request_us(s.on_cpu_s),
                s.calls as f64 / p.requests
            )
        })
    };
    Some(format!(
        "Traced, {} used {:.2} µs of CPU per request and epoll:level {:.2}; the biggest \
         difference between them is {name}: {vb:.2} against {ve:.2} µs per request ({:+.2} µs). \
         Inside system calls, epoll:level's kernel time goes most to {}, {}'s to {}.",
        crate::spec::URING_BEST,
        total(b),
        total(e),
        vb - ve,
        top(e),
        crate::spec::URING_BEST,
        top(b)
    ))
}
