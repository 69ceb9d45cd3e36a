//! The claims decided from `harness phases` traces (C1, C7, C8, C10, C16):
//! which call waits, which copies, and for `uring`, where the kernel runs
//! the copy.

use super::lab::{phase_figures, spec, Lab};
use super::probe;
use super::{fixed, Measured, Verdict};
use crate::phases::{self, uring};

pub fn c1(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    commands.push("harness phases blocking:iterative".into());
    let t = lab.phases("blocking:iterative")?;
    let main = phases::main_wait(&t.calls);
    Ok(fixed(
        c1_verdict(&t.totals, main.as_deref()),
        phase_figures(&t),
    ))
}

/// C1 holds if one read-family call both waited (lasted at least
/// `phases::BLOCKED`) and returned the bytes: blocked in both phases.
pub fn c1_verdict(t: &phases::Totals, main_wait: Option<&str>) -> Verdict {
    let read = main_wait.is_some_and(|w| ["read", "recvfrom", "recvmsg", "readv"].contains(&w));
    if t.wait_then_copy >= 1 && read {
        Verdict::Holds
    } else {
        Verdict::DoesNotHold(format!(
            "no call both waited and copied (main wait: {})",
            main_wait.unwrap_or("none")
        ))
    }
}

const C7_IDLE: usize = 1000;

pub fn c7(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    commands.extend([
        "harness claims --only C7".into(),
        "harness phases epoll:level".into(),
    ]);
    let idle = probe::idle_use(&spec("epoll:level"), C7_IDLE)
        .map_err(|e| e.to_string())?
        .runnable;
    let t = lab.phases("epoll:level")?;
    let waits = phases::segments(&t.calls)
        .iter()
        .filter(|s| s.phase == phases::Phase::Wait)
        .count();
    Ok(fixed(
        c7_verdict(idle, waits),
        format!(
            "epoll:level with {C7_IDLE} idle connections and no traffic: {:.2} % of a CPU over 1 s; {}",
            idle * 100.0,
            phase_figures(&t)
        ),
    ))
}

/// C7 does not hold if an epoll server with many idle connections uses
/// under 1 % of a CPU and waits for a request in at most two calls (one
/// sleep, not a polling loop); it holds if it uses over half a CPU.
pub fn c7_verdict(epoll_idle_cpu: f64, wait_calls: usize) -> Verdict {
    if epoll_idle_cpu < 0.01 && wait_calls <= 2 {
        Verdict::DoesNotHold(
            "epoll sleeps: the process blocks in one epoll_wait and the kernel wakes it when a \
             packet makes a socket readable (a callback on the socket's wait queue); nothing is \
             polled while nothing happens. select and poll do scan every descriptor, but once \
             per call, not continuously"
                .into(),
        )
    } else if epoll_idle_cpu > 0.5 {
        Verdict::Holds
    } else {
        Verdict::HoldsWithCaveat(format!(
            "idle CPU {:.1} %, {wait_calls} wait calls for one request",
            epoll_idle_cpu * 100.0
        ))
    }
}

pub fn c8(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    commands.extend([
        "harness claims --only C8".into(),
        "harness phases select".into(),
    ]);
    let t = lab.phases("select")?;
    // After the copy in, is the next wait-family call before the copy out?
    let segs = phases::segments(&t.calls);
    let recv = segs.iter().position(|s| s.phase == phases::Phase::Copy);
    let direct = recv.is_some_and(|i| {
        segs[i + 1..]
            .iter()
            .find(|s| s.phase != phases::Phase::Other)
            .is_some_and(|s| s.phase == phases::Phase::Copy)
    });
    let answered = probe::answered_beside(&spec("select"), probe::Hog::NotReading)
        .map_err(|e| e.to_string())?;
    Ok(fixed(
        c8_verdict(direct, answered.is_some()),
        format!(
            "select: the reply is sent {} after the read; a second client beside one that sends \
             without reading: {}; {}",
            if direct {
                "directly"
            } else {
                "only after another wait"
            },
            answered.map_or("no reply within 1 s".into(), |ms| format!(
                "answered in {ms:.2} ms"
            )),
            phase_figures(&t)
        ),
    ))
}

/// C8: if `select` sends right after readable (no wait for writability in
/// between) and still answers another client while one reads nothing, the
/// danger is real only for blocking sockets.
pub fn c8_verdict(sends_right_after_readable: bool, answered_beside_non_reader: bool) -> Verdict {
    match (sends_right_after_readable, answered_beside_non_reader) {
        (_, false) => Verdict::Holds,
        (true, true) => Verdict::HoldsWithCaveat(
            "only for a blocking socket. On an O_NONBLOCK socket a full send buffer answers \
             EAGAIN at once, never blocks: the lab's select sends right after readable (one \
             call fewer per request) and hands the socket to select for writability only for \
             what did not fit"
                .into(),
        ),
        (false, true) => Verdict::HoldsWithCaveat(
            "the model waits for writability before every send; that is safe, not necessary".into(),
        ),
    }
}

pub fn c10(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    commands.push("harness phases uring:single".into());
    let t = lab.phases("uring:single")?;
    let main = phases::main_wait(&t.calls);
    let kernel = match &t.kernel {
        Some(Ok(k)) => Ok(k.clone()),
        Some(Err(why)) => Err(why.clone()),
        None => Err("no kernel trace was taken".into()),
    };
    let figures = format!(
        "{}; {}",
        phase_figures(&t),
        match &kernel {
            Ok(k) => k.summary(),
            Err(why) => format!("kernel trace not taken: {why}"),
        }
    );
    Ok(fixed(
        c10_verdict(t.totals.copies, main.as_deref(), kernel.as_ref()),
        figures,
    ))
}

/// C10, decided by where the kernel ran each RECV's copy (the io_uring
/// tracepoints of `harness phases uring:*`), not by what strace sees. The
/// process makes no read call (else: does not hold). If the server's own
/// thread ran every copy, inline at submission or as task work inside its
/// `io_uring_enter`, the claim does not hold as stated: the thread is in
/// the kernel doing phase 2, on its own CPU time, just not in a read call.
/// If some copies ran in a kernel thread (io-wq, SQPOLL), it holds for
/// those, with the caveat of the split. No RECV seen: not yet measured.
pub fn c10_verdict(
    copy_calls: usize,
    main_wait: Option<&str>,
    kernel: Result<&uring::KernelTrace, &String>,
) -> Verdict {
    if copy_calls > 0 {
        return Verdict::DoesNotHold(format!("the process made {copy_calls} copy calls"));
    }
    if main_wait != Some("io_uring_enter") {
        return Verdict::DoesNotHold(format!(
            "it waited in {}, not for a completion",
            main_wait.unwrap_or("nothing")
        ));
    }
    let k = match kernel {
        Ok(k) if !k.recvs.is_empty() => k,
        Ok(_) => {
            return Verdict::NotYetMeasured(
                "the io_uring tracepoints showed no RECV completion of the server's ring".into(),
            )
        }
        Err(why) => {
            return Verdict::NotYetMeasured(format!(
                "where the copy runs needs the io_uring tracepoints: {why}"
            ))
        }
    };
    let counts = k.counts();
    let n = |w: uring::Where| counts.get(&w).copied().unwrap_or(0);
    let own = n(uring::Where::Inline)
        + n(uring::Where::TaskWorkInEnter)
        + n(uring::Where::TaskWorkElsewhere);
    let kthread = n(uring::Where::KernelThread);
    let run = k
        .median_run_us(uring::Where::TaskWorkInEnter)
        .map_or(String::new(), |us| {
            format!(" (median {us:.0} µs from the thread's wake-up to the completion posted)")
        });
    if kthread == 0 {
        Verdict::DoesNotHold(format!(
            "no read call, but the copy is the process's own work: of {} RECVs, {} ran as task \
             work of the server thread inside its io_uring_enter{run}, {} inline at submission, \
             {} on the way out of another call; none in a kernel thread. The kernel waits for \
             the data (the thread sleeps in io_uring_enter, as it would in epoll_wait); the copy \
             runs on the thread's own CPU time once the socket's wake-up queues it",
            k.recvs.len(),
            n(uring::Where::TaskWorkInEnter),
            n(uring::Where::Inline),
            n(uring::Where::TaskWorkElsewhere)
        ))
    } else {
        Verdict::HoldsWithCaveat(format!(
            "{kthread} of {} RECVs were copied by a kernel thread (io-wq or SQPOLL), {own} by \
             the process's own thread in its kernel context",
            k.recvs.len()
        ))
    }
}

pub fn c16(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    commands.push("harness phases coroutine:stackful".into());
    let t = lab.phases("coroutine:stackful")?;
    let main = phases::main_wait(&t.calls);
    Ok(fixed(
        c16_verdict(&t.totals, main.as_deref()),
        phase_figures(&t),
    ))
}

/// C16: the coroutine model's straight-line reads wait in `epoll_wait`,
/// never in a blocking read: the mechanism of gevent's monkey patching.
pub fn c16_verdict(t: &phases::Totals, main_wait: Option<&str>) -> Verdict {
    let epoll = main_wait.is_some_and(|w| w.starts_with("epoll_"));
    if t.wait_then_copy == 0 && epoll && t.copies > 0 {
        Verdict::HoldsWithCaveat(
            "measured on the lab's coroutine model, not on gevent: code written as blocking \
             read/write never blocks in read; a read that would block parks the task and the \
             one thread waits in epoll_wait for every socket. Monkey patching swaps that \
             mechanism in under unchanged code; code that calls into C blocking calls is not \
             patched"
                .into(),
        )
    } else {
        Verdict::DoesNotHold(format!(
            "the coroutine model waited in {} ({} blocking reads)",
            main_wait.unwrap_or("nothing"),
            t.wait_then_copy
        ))
    }
}
