//! Readiness and its costs: busy-polling (C4), `select` (C5, C6),
//! signal-driven I/O (C9), what waiting and I/O cost (C11).

use super::lab::{cpu_us, in_rounds, metric, ratio, said, spec, spread, Run, Said};
use super::probe;
use super::{fixed, Measured, Verdict};
use crate::measurement::Measurement;
use crate::stats::Family;
use std::io;

pub fn c4(commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C4".into());
    let spin = probe::idle_use(&spec("nonblocking:spin"), 0).map_err(|e| e.to_string())?;
    let epoll = probe::idle_use(&spec("epoll:level"), 0).map_err(|e| e.to_string())?;
    Ok(fixed(
        c4_verdict(spin.runnable),
        format!(
            "no client, over 1 s: nonblocking:spin on a CPU {:.1} % of the time and runnable \
             (on one or waiting for one) {:.1} %; epoll:level {:.1} % and {:.1} %",
            spin.cpu * 100.0,
            spin.runnable * 100.0,
            epoll.cpu * 100.0,
            epoll.runnable * 100.0
        ),
    ))
}

/// C4 holds if `nonblocking:spin` with no client wants more than 90 % of
/// a CPU (on one, or runnable waiting for one: the machine is shared); it
/// does not if it wants less than half of one.
pub fn c4_verdict(spin_cpu: f64) -> Verdict {
    if spin_cpu > 0.9 {
        Verdict::Holds
    } else if spin_cpu < 0.5 {
        Verdict::DoesNotHold(format!(
            "the busy-poll used only {:.0} % of a CPU",
            spin_cpu * 100.0
        ))
    } else {
        Verdict::HoldsWithCaveat(format!(
            "it burns {:.0} % of a CPU, not all of one",
            spin_cpu * 100.0
        ))
    }
}

/// C5's offered load, requests/s in total, and its connection counts (all
/// active): a fixed load, so CPU per request is a cost, not a rate's
/// by-product as in a closed loop.
const C5_RATE: f64 = 4000.0;
const C5_CONNS: [usize; 3] = [10, 100, 500];

pub fn c5(commands: &mut Vec<String>) -> Measured {
    let at = |model, conns| Run {
        rate: Some(C5_RATE),
        ..Run::pingpong(model, conns)
    };
    let runs: Vec<Run> = C5_CONNS
        .iter()
        .flat_map(|&n| [at("select", n), at("epoll:level", n)])
        .collect();
    commands.push("harness claims --only C5".into());
    commands.extend(runs.iter().map(Run::command));
    let (_, threads) = probe::threads_serving(&spec("select"), 10).map_err(|e| e.to_string())?;
    let (m, order) = in_rounds(&runs)?;
    let cpu: Vec<_> = m.iter().map(|r| metric(r, cpu_us)).collect();
    Ok(Box::new(move |family: &Family| {
        let mut vs_epoll = Vec::new();
        let mut parts = Vec::new();
        for (k, n) in C5_CONNS.iter().enumerate() {
            let (s, e) = (&cpu[2 * k], &cpu[2 * k + 1]);
            let v = family.judge(
                &format!("C5 select against epoll, CPU per request, {n} connections"),
                s,
                e,
            );
            parts.push(format!(
                "{n} connections: select {} µs, epoll {} µs, {}",
                spread(s, 1),
                spread(e, 1),
                ratio(&v)
            ));
            vs_epoll.push(said(&v));
        }
        let last = 2 * (C5_CONNS.len() - 1);
        let growth = family.judge(
            "C5 select, CPU per request, most against fewest connections",
            &cpu[last],
            &cpu[0],
        );
        let figures = format!(
            "select serving 10 clients: {threads} thread(s) ran. Server CPU per request at \
             {C5_RATE:.0} req/s offered, every connection active ({order}): {}; select at {} \
             against {} connections {}",
            parts.join("; "),
            C5_CONNS[C5_CONNS.len() - 1],
            C5_CONNS[0],
            ratio(&growth)
        );
        (c5_verdict(threads, &vs_epoll, said(&growth)), figures)
    }))
}

/// C5: one thread serves them all (else it does not hold). "Little CPU"
/// is tested at a fixed offered load: if select's CPU per request grows
/// with the connections watched, or exceeds epoll's at the same load, it
/// holds only with that caveat (every select call hands the kernel every
/// descriptor); if every comparison is within the margin, it holds; any
/// comparison not resolved leaves it not resolved.
pub fn c5_verdict(threads: usize, vs_epoll: &[Said], growth: Said) -> Verdict {
    if threads != 1 {
        return Verdict::DoesNotHold(format!("it ran {threads} threads"));
    }
    let all = || vs_epoll.iter().chain([&growth]);
    if all().any(|s| *s == Said::Higher) {
        Verdict::HoldsWithCaveat(
            "one thread serves every client, but its CPU per request at the same load grows \
             with the sockets it watches and exceeds epoll's: each select call copies and scans \
             the whole descriptor set, in the kernel and again in the program"
                .into(),
        )
    } else if all().all(|s| matches!(s, Said::Same | Said::Lower)) {
        Verdict::Holds
    } else {
        Verdict::NotResolved(
            "one thread; whether its CPU per request grows with the connections is not \
             resolved at these rounds"
                .into(),
        )
    }
}

const C6_IDLE: usize = 1100;

pub fn c6(commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C6".into());
    let select = Run::idle("select", C6_IDLE, 5);
    let poll = Run::idle("poll", C6_IDLE, 5);
    commands.extend([select.command(), poll.command()]);
    let e = |e: io::Error| e.to_string();
    let lost = |m: &Measurement| m.idle.as_ref().map_or(0, |i| i.unserved + i.dropped());
    let s = select.measure().map_err(e)?;
    let p = poll.measure().map_err(e)?;
    let kernel = probe::kernel_select_beyond_fd_setsize().map_err(e)?;
    let (sl, pl) = (lost(&s), lost(&p));
    Ok(fixed(
        c6_verdict(sl, pl, kernel),
        format!(
            "{C6_IDLE} idle connections: select lost {sl} (closed or never served), poll lost \
             {pl}; the kernel's pselect6 on a descriptor >= {} with a 2048-bit bitmap: {}",
            probe::HIGH_FD,
            if kernel {
                "reported it readable"
            } else {
                "did not"
            }
        ),
    ))
}

/// C6: `select` drops connections beyond 1024 while `poll` does not; if the
/// kernel's own select takes a descriptor above 1024, the limit is the C
/// type's (glibc's `FD_SETSIZE`), not select's design, and poll lifts it
/// as well as epoll.
pub fn c6_verdict(select_lost: usize, poll_lost: usize, kernel_takes_high_fd: bool) -> Verdict {
    if select_lost == 0 {
        return Verdict::DoesNotHold("select served every connection beyond 1024".into());
    }
    if poll_lost > 0 {
        return Verdict::NotApplicable(
            "poll lost connections too: something else limits them here".into(),
        );
    }
    if kernel_takes_high_fd {
        Verdict::HoldsWithCaveat(format!(
            "select fails beyond 1024, but the 1024 is glibc's FD_SETSIZE, the size of the C \
             fd_set type: the kernel's select watched a descriptor >= {} when handed a larger bitmap. \
             And poll, not only epoll, has no such limit (epoll's answer is to the O(n) scan, \
             not to the 1024)",
            probe::HIGH_FD
        ))
    } else {
        Verdict::Holds
    }
}

/// C9's offered load and connections, and the idle ones beside the
/// active in the second pair.
const C9_RATE: f64 = 4000.0;
const C9_CONNS: usize = 100;
const C9_IDLE: usize = 1000;
const C9_ACTIVE: usize = 10;
/// The test that forces rt mode's queue overflow and checks its fallback.
const C9_RT_TEST: &str = "cargo test -p sigio --test semantics rt_queue_overflow_falls_back_to_a_poll_sweep_and_loses_nothing";

fn syscalls_per_request(m: &Measurement) -> f64 {
    m.server
        .syscalls_per_request
        .as_ref()
        .map_or(f64::NAN, |s| s.values().sum())
}

pub fn c9(commands: &mut Vec<String>) -> Measured {
    let counted = |model| Run {
        rate: Some(C9_RATE),
        syscalls: true,
        ..Run::pingpong(model, C9_CONNS)
    };
    let idle = |idle| Run {
        rate: Some(C9_RATE),
        ..Run::idle("sigio:plain", idle, C9_ACTIVE)
    };
    let runs = [
        counted("sigio:plain"),
        counted("epoll:level"),
        idle(0),
        idle(C9_IDLE),
    ];
    commands.extend(runs.iter().map(Run::command));
    commands.push(C9_RT_TEST.into());
    let (m, order) = in_rounds(&runs)?;
    let sys = [
        metric(&m[0], syscalls_per_request),
        metric(&m[1], syscalls_per_request),
    ];
    let cpu = [metric(&m[2], cpu_us), metric(&m[3], cpu_us)];
    Ok(Box::new(move |family: &Family| {
        let calls = family.judge(
            "C9 sigio:plain against epoll, syscalls per request",
            &sys[0],
            &sys[1],
        );
        let idle = family.judge(
            "C9 sigio:plain, CPU per request with idle connections against none",
            &cpu[1],
            &cpu[0],
        );
        let figures = format!(
            "at {C9_RATE:.0} req/s offered ({order}): {C9_CONNS} connections, system calls per \
             request sigio:plain {} against epoll:level {}, {}; sigio:plain's {C9_ACTIVE} active \
             clients, server CPU per request {} µs alone against {} µs beside {C9_IDLE} idle, {}. \
             rt mode: `{C9_RT_TEST}` forces the real-time signal queue to overflow and checks the \
             fallback (one poll over every socket) loses nothing",
            spread(&sys[0], 1),
            spread(&sys[1], 1),
            ratio(&calls),
            spread(&cpu[0], 1),
            spread(&cpu[1], 1),
            ratio(&idle)
        );
        (c9_verdict(said(&calls), said(&idle)), figures)
    }))
}

/// C9: how often a mechanism is used is not a property of this machine (a
/// survey of deployed servers would decide it), so never a verdict here;
/// what the lab can say is whether its cost explains it: plain SIGIO
/// names no socket, so every signal sweeps every socket (more system calls
/// per request than epoll, CPU growing with idle connections), and rt
/// mode's per-event queue overflows into the same sweep.
pub fn c9_verdict(syscalls_vs_epoll: Said, cpu_with_idle: Said) -> Verdict {
    let why = "how often a mechanism is used is not a property of this machine; a survey of \
               deployed servers would decide it";
    if syscalls_vs_epoll == Said::Higher || cpu_with_idle == Said::Higher {
        Verdict::NotDecidedHere(format!(
            "{why}. Its cost explains it: a plain SIGIO names no socket, so each one makes the \
             server try every socket (more system calls per request than epoll, more CPU per \
             request with idle connections beside), and rt mode, which names the socket, falls \
             back to the same sweep when its signal queue overflows"
        ))
    } else {
        Verdict::NotDecidedHere(format!(
            "{why}; and its cost here does not explain it: against epoll and with idle \
             connections beside, no higher cost was shown at these rounds"
        ))
    }
}

pub fn c11(commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C11".into());
    let idle = probe::idle_use(&spec("blocking:thread"), 10)
        .map_err(|e| e.to_string())?
        .runnable;
    let run = Run::pingpong("epoll:level", 10);
    commands.push(run.command());
    let m = run.measure().map_err(|e| e.to_string())?;
    let (user, sys) = (
        m.server.user_s.unwrap_or(0.0),
        m.server.sys_s.unwrap_or(0.0),
    );
    let share = if user + sys > 0.0 {
        sys / (user + sys)
    } else {
        0.0
    };
    Ok(fixed(
        c11_verdict(idle, cpu_us(&m), share),
        format!(
            "blocking:thread with 10 idle connections: {:.2} % of a CPU over 1 s; epoll:level \
             ping-pong: {:.1} µs server CPU per request, {:.0} % system",
            idle * 100.0,
            cpu_us(&m),
            share * 100.0
        ),
    ))
}

/// C11: waiting is free if an idle server uses under 1 % of a CPU; I/O is
/// not free if a request costs CPU, most of it in the kernel.
pub fn c11_verdict(idle_cpu: f64, cpu_us: f64, sys_share: f64) -> Verdict {
    if idle_cpu >= 0.01 {
        return Verdict::DoesNotHold(format!(
            "an idle blocking server used {:.1} % of a CPU",
            idle_cpu * 100.0
        ));
    }
    if sys_share > 0.5 {
        Verdict::HoldsWithCaveat(format!(
            "waiting uses none; moving the bytes does: {cpu_us:.1} µs of CPU per request, {:.0} % \
             of it in the kernel (the network stack, the copies, the system calls)",
            sys_share * 100.0
        ))
    } else {
        Verdict::Holds
    }
}
