//! Threads and processes: a thread per connection (C2, C3), zombies
//! (C17), what creating a thread or a process costs (C18).

use super::lab::{cpu_us, in_rounds, metric, ratio, said, spec, spread, Run, Said, ROUNDS};
use super::probe::{self, Creation, Zombie};
use super::{fixed, Measured, Verdict};
use crate::stats::{self, Family, InRound};

pub fn c2(commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C2".into());
    let thread = probe::answered_beside(&spec("blocking:thread"), probe::Hog::Silent)
        .map_err(|e| e.to_string())?;
    let iterative = probe::answered_beside(&spec("blocking:iterative"), probe::Hog::Silent)
        .map_err(|e| e.to_string())?;
    let ms = |v: Option<f64>| v.map_or("no reply within 1 s".into(), |ms| format!("{ms:.2} ms"));
    Ok(fixed(
        c2_verdict(thread, iterative),
        format!(
            "second client beside a silent one: blocking:thread {}; blocking:iterative {}",
            ms(thread),
            ms(iterative)
        ),
    ))
}

/// C2 holds if `blocking:thread` answers a client within a second while
/// another sends nothing; `blocking:iterative` must fail the same probe,
/// or the probe proves nothing.
pub fn c2_verdict(thread_ms: Option<f64>, iterative_ms: Option<f64>) -> Verdict {
    match (thread_ms, iterative_ms) {
        (Some(_), None) => Verdict::Holds,
        (None, _) => Verdict::DoesNotHold(
            "thread-per-connection left the second client unanswered for 1 s".into(),
        ),
        (Some(_), Some(_)) => Verdict::NotApplicable(
            "the iterative server answered too, so the probe did not hold a connection busy".into(),
        ),
    }
}

/// C3's connection counts, all active, at one offered load.
const C3_FEW: usize = 10;
const C3_MANY: usize = 2000;
/// Offered load of C3, requests/s in total: low enough that ten threads
/// serve it with CPU to spare, so a wall shows as a cost, not a limit.
const C3_RATE: f64 = 5000.0;
/// Idle clients beside the pool's active ones, and its workers.
const C3_IDLE: usize = 2000;
const C3_POOL: usize = 128;
/// Active clients of the pool's run.
const C3_ACTIVE: usize = 10;

/// Figures of C3, per round.
#[derive(Clone, Debug, PartialEq)]
pub struct C3 {
    pub cpu_few: Vec<InRound>,
    pub cpu_many: Vec<InRound>,
    pub p99_few: Vec<InRound>,
    pub p99_many: Vec<InRound>,
    /// Achieved rate with many connections, per round.
    pub rate_many: Vec<InRound>,
    pub errors_many: u64,
    /// (RSS with many − RSS with few) / (many − few), KiB, per round.
    pub rss_per_thread_kib: Vec<InRound>,
    /// Idle clients of the pool's run never answered before the window.
    pub pool_unserved: usize,
}

pub fn c3(commands: &mut Vec<String>) -> Measured {
    let at = |conns| Run {
        rate: Some(C3_RATE),
        ..Run::pingpong("blocking:thread", conns)
    };
    let runs = [at(C3_FEW), at(C3_MANY)];
    let pool = Run {
        server_args: &["--workers", "128"],
        timeout_s: 2.0,
        ..Run::idle("blocking:pool", C3_IDLE, C3_ACTIVE)
    };
    commands.extend(runs.iter().map(Run::command));
    commands.push(pool.command());
    let (m, order) = in_rounds(&runs)?;
    let pool_m = pool.measure().map_err(|e| e.to_string())?;
    let rss = |m: &crate::measurement::Measurement| m.server.peak_rss_kib.unwrap_or(0) as f64;
    let p99 =
        |m: &crate::measurement::Measurement| m.latency.as_ref().map_or(f64::NAN, |l| l.p99_us);
    let rss_per_thread_kib = m[0]
        .iter()
        .zip(&m[1])
        .map(|((r, few), (_, many))| (*r, (rss(many) - rss(few)) / (C3_MANY - C3_FEW) as f64))
        .collect();
    let f = C3 {
        cpu_few: metric(&m[0], cpu_us),
        cpu_many: metric(&m[1], cpu_us),
        p99_few: metric(&m[0], p99),
        p99_many: metric(&m[1], p99),
        rate_many: metric(&m[1], |m| m.rate),
        errors_many: m[1].iter().map(|(_, m)| m.errors.total()).sum(),
        rss_per_thread_kib,
        pool_unserved: pool_m.idle.as_ref().map_or(0, |i| i.unserved),
    };
    Ok(Box::new(move |family: &Family| {
        let cpu = family.judge(
            "C3 CPU per request, many against few threads",
            &f.cpu_many,
            &f.cpu_few,
        );
        let p99 = family.judge(
            "C3 p99 latency, many against few threads",
            &f.p99_many,
            &f.p99_few,
        );
        let figures = format!(
            "blocking:thread at {C3_RATE:.0} req/s offered, {C3_FEW} against {C3_MANY} \
             connections, all active ({order}): server CPU per request {} µs against {} µs, \
             {}; p99 {} µs against {} µs, {}; achieved {} req/s with {C3_MANY} ({} errors); \
             peak RSS per added thread {} KiB. blocking:pool --workers {C3_POOL} with \
             {C3_IDLE} idle clients beside {C3_ACTIVE} active: {} never answered (2 s timeout)",
            spread(&f.cpu_few, 1),
            spread(&f.cpu_many, 1),
            ratio(&cpu),
            spread(&f.p99_few, 0),
            spread(&f.p99_many, 0),
            ratio(&p99),
            spread(&f.rate_many, 0),
            f.errors_many,
            spread(&f.rss_per_thread_kib, 1),
            f.pool_unserved
        );
        (c3_verdict(&f, said(&cpu), said(&p99)), figures)
    }))
}

/// C3: with every connection active at one offered load, the wall is
/// there if the server no longer keeps up (achieved below 95 % of offered,
/// or errors) or a request costs more CPU, or waits longer at p99, with
/// `C3_MANY` threads than with `C3_FEW` (paired, past the margin). The
/// memory per thread is what RSS can show: the touched part of each
/// thread's user stack, its TLS and its share of the allocator's arenas;
/// a kernel stack and a `task_struct` are kernel memory, never in RSS. The
/// pool "does not solve it" if, with more clients than workers, some are
/// never answered. A cost comparison that is not resolved leaves the wall
/// undecided.
pub fn c3_verdict(f: &C3, cpu: Said, p99: Said) -> Verdict {
    let rate = stats::median(&f.rate_many.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    let kept_up = rate >= 0.95 * C3_RATE && f.errors_many == 0;
    let kib = stats::median(
        &f.rss_per_thread_kib
            .iter()
            .map(|(_, v)| *v)
            .collect::<Vec<_>>(),
    );
    let memory = format!(
        "each added thread costs {kib:.0} KiB of RSS under load (the touched part of its user \
         stack, its TLS, its share of glibc's malloc arenas); its kernel stack (16 KiB on \
         x86-64) and task_struct are kernel memory on top, not in RSS"
    );
    let pool = if f.pool_unserved > 0 {
        format!(
            "; a pool bounds the threads but not the clients: with {C3_IDLE} idle clients its \
             {C3_POOL} workers left {} unanswered",
            f.pool_unserved
        )
    } else {
        String::new()
    };
    let wall = !kept_up || cpu == Said::Higher || p99 == Said::Higher;
    let undecided = [cpu, p99]
        .iter()
        .any(|s| matches!(s, Said::NotResolved | Said::TooFew));
    match (wall, f.pool_unserved > 0) {
        (true, true) => Verdict::HoldsWithCaveat(format!(
            "at {C3_MANY} threads the cost per request grows{pool}; {memory}"
        )),
        (true, false) => Verdict::HoldsWithCaveat(format!(
            "the wall is there at {C3_MANY} threads, but the pool of {C3_POOL} answered every \
             client; {memory}"
        )),
        (false, _) if undecided => Verdict::NotResolved(format!(
            "at {C3_MANY} threads the cost per request is not resolved from {C3_FEW}'s at {ROUNDS} \
             rounds{pool}; {memory}"
        )),
        (false, true) => Verdict::HoldsWithCaveat(format!(
            "no wall at {C3_MANY} threads here: CPU per request and p99 as with {C3_FEW} (within \
             ±{:.0} %), the price is memory: {memory}{pool}",
            stats::EQUIVALENCE * 100.0
        )),
        (false, false) => Verdict::DoesNotHold(format!(
            "at {C3_MANY} threads neither cost grew and the pool answered every client; {memory}"
        )),
    }
}

pub fn c17(commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C17".into());
    let z = probe::zombie().map_err(|e| e.to_string())?;
    Ok(fixed(
        c17_verdict(&z),
        format!(
            "a child that exited, before waitpid: state {}, VmRSS {} KiB, {} descriptors; after \
             waitpid: {}",
            if z.was_zombie { "Z" } else { "not Z" },
            z.rss_kib,
            z.fds,
            if z.gone_after_wait {
                "gone"
            } else {
                "still there"
            }
        ),
    ))
}

/// C17 holds with a caveat if the exited child is a zombie until waited for
/// but holds no memory and no descriptor: only its pid and exit status.
pub fn c17_verdict(z: &Zombie) -> Verdict {
    if !z.was_zombie || !z.gone_after_wait {
        return Verdict::DoesNotHold(format!(
            "the exited child was {}a zombie and {}gone after waitpid",
            if z.was_zombie { "" } else { "not " },
            if z.gone_after_wait { "" } else { "not " }
        ));
    }
    if z.rss_kib == 0 && z.fds == 0 {
        Verdict::HoldsWithCaveat(
            "a zombie holds no memory and no descriptor: only its pid and its task entry (exit \
             status, resource usage) until waitpid; the resource it uses up is the pid space"
                .into(),
        )
    } else {
        Verdict::Holds
    }
}

pub fn c18(commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C18".into());
    let rounds: Vec<(usize, Creation)> = (0..ROUNDS)
        .map(|r| probe::creation().map(|c| (r, c)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let of = |f: fn(&Creation) -> f64| -> Vec<InRound> {
        rounds.iter().map(|(r, c)| (*r, f(c))).collect()
    };
    let thread = of(|c| c.thread_us);
    let fork = of(|c| c.fork_us);
    let added = of(|c| c.fork_big_us - c.fork_us);
    let copy = of(|c| c.copy_big_us);
    Ok(Box::new(move |family: &Family| {
        let cheap = family.judge("C18 thread against fork", &thread, &fork);
        let copies = family.judge("C18 fork's added time against copying", &added, &copy);
        let figures = format!(
            "{ROUNDS} rounds: thread spawn+join {} µs against fork+exit+waitpid {} µs, {}; {} MiB \
             more touched memory in the parent added {} µs to a fork, copying them takes {} µs, \
             {}",
            spread(&thread, 1),
            spread(&fork, 1),
            ratio(&cheap),
            probe::BIG_PARENT_MIB,
            spread(&added, 0),
            spread(&copy, 0),
            ratio(&copies)
        );
        (c18_verdict(said(&cheap), said(&copies)), figures)
    }))
}

/// C18: a thread is cheap if creating one costs measurably less than a
/// fork (paired rounds); fork does not copy the parent if what the
/// parent's memory adds to a fork is measurably less than copying that
/// memory takes here.
pub fn c18_verdict(thread_vs_fork: Said, added_vs_copy: Said) -> Verdict {
    match thread_vs_fork {
        Said::Lower => {}
        Said::NotResolved | Said::TooFew => {
            return Verdict::NotResolved("a thread against a fork is not resolved".into())
        }
        Said::Same | Said::Higher => {
            return Verdict::DoesNotHold("a thread cost no less than a process".into())
        }
    }
    match added_vs_copy {
        Said::Lower => Verdict::HoldsWithCaveat(format!(
            "a process costs more than a thread, but fork does not copy the parent: {} MiB more \
             of touched memory add less to a fork than copying them takes. The page tables are \
             copied, the pages shared copy-on-write; the cost grows with the parent's mapped \
             memory all the same",
            probe::BIG_PARENT_MIB
        )),
        _ => Verdict::Holds,
    }
}
