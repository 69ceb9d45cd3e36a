//! Coroutines against threads: what a switch costs (C12, C13), how many
//! cores one thread of coroutines uses (C14), and the topology the notes
//! quote (C15).

use super::lab::{
    bench_figures, cpu_us, in_rounds, metric, ratio, said, spec, spread, Lab, Run, Said, ROUNDS,
    SWITCH_BENCH,
};
use super::probe;
use super::{Measured, Verdict};
use crate::measurement::Measurement;
use crate::stats::{self, Family, InRound};
use crate::switching::{self, Switching};

/// C12's offered loads, requests/s over `C12_CONNS` connections: from one
/// where both models sleep between requests to one near the threads'
/// closed-loop rate on two CPUs.
const C12_RATES: [f64; 3] = [5000.0, 20000.0, 40000.0];
const C12_CONNS: usize = 50;

fn switching_rounds() -> Result<Vec<(usize, Switching)>, String> {
    (0..ROUNDS)
        .map(|r| switching::switching().map(|s| (r, s)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

fn voluntary(m: &Measurement) -> f64 {
    m.server.ctx_voluntary_per_request.unwrap_or(f64::NAN)
}

/// C12 at one offered load (or closed loop, `rate` None).
pub struct C12Load {
    pub rate: Option<f64>,
    pub switches: Said,
    pub cpu: Said,
}

pub fn c12(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    let at = |model, rate| Run {
        rate,
        ..Run::pingpong(model, C12_CONNS)
    };
    let loads: Vec<Option<f64>> = C12_RATES.iter().map(|r| Some(*r)).chain([None]).collect();
    let runs: Vec<Run> = loads
        .iter()
        .flat_map(|&r| [at("coroutine:stackful", r), at("blocking:thread", r)])
        .collect();
    commands.push("harness claims --only C12".into());
    commands.extend(runs.iter().map(Run::command));
    commands.push(SWITCH_BENCH.into());
    if let Some(why) = lab.missing("coroutine") {
        return Err(why);
    }
    let (m, order) = in_rounds(&runs)?;
    let switching = switching_rounds()?;
    let handoff: Vec<InRound> = switching
        .iter()
        .map(|(r, s)| (*r, s.thread_handoff_ns))
        .collect();
    let coroutine: Vec<InRound> = switching
        .iter()
        .map(|(r, s)| (*r, s.coroutine_switch_ns))
        .collect();
    let bench = lab.bench();
    let sw: Vec<Vec<InRound>> = m.iter().map(|r| metric(r, voluntary)).collect();
    let cpu: Vec<Vec<InRound>> = m.iter().map(|r| metric(r, cpu_us)).collect();
    let rate: Vec<Vec<InRound>> = m.iter().map(|r| metric(r, |m| m.rate)).collect();
    Ok(Box::new(move |family: &Family| {
        let mut per_load = Vec::new();
        let mut parts = Vec::new();
        for (k, load) in loads.iter().enumerate() {
            let (co, th) = (2 * k, 2 * k + 1);
            let name = load.map_or("closed loop".to_string(), |r| format!("{r:.0} req/s"));
            let s = family.judge(
                &format!("C12 voluntary switches per request, {name}"),
                &sw[co],
                &sw[th],
            );
            let c = family.judge(&format!("C12 CPU per request, {name}"), &cpu[co], &cpu[th]);
            let mut part = format!(
                "{name}: voluntary switches per request {} against {}, {}; CPU per request {} µs \
                 against {} µs, {}",
                spread(&sw[co], 2),
                spread(&sw[th], 2),
                ratio(&s),
                spread(&cpu[co], 1),
                spread(&cpu[th], 1),
                ratio(&c)
            );
            if load.is_none() {
                let r = family.judge("C12 closed-loop rate", &rate[co], &rate[th]);
                part.push_str(&format!(
                    "; rate {} against {} req/s, {}",
                    spread(&rate[co], 0),
                    spread(&rate[th], 0),
                    ratio(&r)
                ));
            }
            parts.push(part);
            per_load.push(C12Load {
                rate: *load,
                switches: said(&s),
                cpu: said(&c),
            });
        }
        let switch = family.judge(
            "C12 coroutine switch against a same-CPU thread hand-off",
            &coroutine,
            &handoff,
        );
        let figures = format!(
            "{ROUNDS} rounds in the harness: a coroutine switch (corosensei, half a resume and \
             its suspend) {} ns against two threads pinned to one CPU handing a value back and \
             forth, {} ns per hand-off (each a kernel context switch), {}. {}. Server, \
             coroutine:stackful against blocking:thread over {C12_CONNS} connections ({order}): \
             {}",
            spread(&coroutine, 1),
            spread(&handoff, 0),
            ratio(&switch),
            bench_figures(&bench),
            parts.join("; ")
        );
        let far = switch.paired().map(|p| (said(&switch), p.hi));
        (c12_verdict(far, &per_load), figures)
    }))
}

/// C12: the switch itself first, a coroutine's switch against a same-CPU
/// thread hand-off (a kernel context switch, no migration), paired by
/// round: "far less" is a discovery whose whole interval lies below a
/// tenth; anything else does not hold (or, with too few rounds, is not
/// resolved). Then the servers, coroutine:stackful against
/// blocking:thread at each offered load and closed loop: more CPU per
/// request anywhere refutes it in a server; fewer kernel switches and less
/// CPU per request at every load, it holds; at some loads only, it holds
/// with the caveat of where (the one thread still sleeps in epoll_wait
/// when there is nothing to do); at none, not resolved.
pub fn c12_verdict(switch: Option<(Said, f64)>, loads: &[C12Load]) -> Verdict {
    match switch {
        Some((Said::Lower, hi)) if hi < 0.1 => {}
        Some((Said::NotResolved | Said::TooFew, _)) | None => {
            return Verdict::NotResolved("the switch against a thread hand-off".into())
        }
        Some(_) => {
            return Verdict::DoesNotHold(
                "a coroutine switch is not under a tenth of a same-CPU thread hand-off".into(),
            )
        }
    }
    let name = |l: &C12Load| {
        l.rate
            .map_or("closed loop".to_string(), |r| format!("{r:.0} req/s"))
    };
    let worse: Vec<String> = loads
        .iter()
        .filter(|l| l.cpu == Said::Higher)
        .map(name)
        .collect();
    if !worse.is_empty() {
        return Verdict::DoesNotHold(format!(
            "the switch is far cheaper, but in a server the coroutines used more CPU per \
             request at {}",
            worse.join(", ")
        ));
    }
    let both: Vec<String> = loads
        .iter()
        .filter(|l| l.switches == Said::Lower && l.cpu == Said::Lower)
        .map(name)
        .collect();
    if both.len() == loads.len() {
        return Verdict::Holds;
    }
    let rest: Vec<String> = loads
        .iter()
        .filter(|l| !(l.switches == Said::Lower && l.cpu == Said::Lower))
        .map(name)
        .collect();
    let caveat = format!(
        "the switch is far cheaper than a same-CPU thread hand-off, but a server saves kernel \
         switches and CPU per request only where its one thread has work waiting: at {}; not \
         at {} (there it still sleeps in epoll_wait between requests, a kernel switch per \
         wake-up, and the system calls dominate a request's CPU)",
        if both.is_empty() {
            "no load".to_string()
        } else {
            both.join(", ")
        },
        rest.join(", ")
    );
    if both.is_empty() {
        Verdict::NotResolved(caveat)
    } else {
        Verdict::HoldsWithCaveat(caveat)
    }
}

pub fn c13(_lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    commands.push("harness claims --only C13".into());
    let rounds = switching_rounds()?;
    let handoff: Vec<InRound> = rounds
        .iter()
        .map(|(r, s)| (*r, s.thread_handoff_ns))
        .collect();
    let call: Vec<InRound> = rounds.iter().map(|(r, s)| (*r, s.call_ns)).collect();
    let per_trip: Vec<InRound> = rounds
        .iter()
        .map(|(r, s)| (*r, s.switches_per_round_trip))
        .collect();
    Ok(Box::new(move |family: &Family| {
        let v = family.judge("C13 thread hand-off against a call", &handoff, &call);
        let figures = format!(
            "{ROUNDS} rounds: two threads on one CPU handing a value back and forth: {} ns per \
             hand-off, each thread blocking (a voluntary kernel context switch) {} times per \
             round trip; the same hand-off as a function call: {} ns; {}. Where a task would \
             block, switching pays: see C2",
            spread(&handoff, 0),
            spread(&per_trip, 2),
            spread(&call, 1),
            ratio(&v)
        );
        (c13_verdict(said(&v)), figures)
    }))
}

/// C13: with nothing to wait for, a switch only slows a program down if a
/// hand-off between two threads costs measurably more than the same
/// hand-off as a call (paired rounds); within the margin, no measurable
/// difference; otherwise not resolved.
pub fn c13_verdict(handoff_vs_call: Said) -> Verdict {
    match handoff_vs_call {
        Said::Higher => Verdict::Holds,
        Said::Same => Verdict::NoMeasurableDifference("a hand-off against a call".into()),
        Said::Lower => Verdict::DoesNotHold("a hand-off cost less than a call".into()),
        Said::NotResolved | Said::TooFew => {
            Verdict::NotResolved("a hand-off against a call".into())
        }
    }
}

/// Connections of C14's closed loop.
const C14_CONNS: usize = 100;

fn cores(m: &Measurement) -> f64 {
    m.server.cpu_s.unwrap_or(f64::NAN) / m.window_s
}

pub fn c14(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    let cpus = crate::load::sys::allowed_cpus().map_err(|e| e.to_string())?;
    let single = Run {
        server_cpus: Some(cpus.clone()),
        ..Run::pingpong("coroutine:stackful", C14_CONNS)
    };
    let control = Run {
        server_args: &["--workers", "2", "--share", "reuseport"],
        ..single.clone()
    };
    commands.extend([
        "harness claims --only C14".to_string(),
        single.command(),
        control.command(),
    ]);
    if let Some(why) = lab.missing("coroutine") {
        return Err(why);
    }
    let (all_threads, threads) =
        probe::threads_serving(&spec("coroutine:stackful"), 10).map_err(|e| e.to_string())?;
    let (m, order) = in_rounds(&[single, control])?;
    let used = [metric(&m[0], cores), metric(&m[1], cores)];
    let rate = [metric(&m[0], |m| m.rate), metric(&m[1], |m| m.rate)];
    let n = cpus.len();
    Ok(Box::new(move |family: &Family| {
        let c = family.judge("C14 cores used, two hubs against one", &used[1], &used[0]);
        let r = family.judge("C14 rate, two hubs against one", &rate[1], &rate[0]);
        let single_max = used[0].iter().map(|(_, v)| *v).fold(f64::NAN, f64::max);
        let figures = format!(
            "coroutine:stackful: {threads} of its {all_threads} threads ran while serving 10 \
             connections. Closed loop over {C14_CONNS} connections, the server allowed on all {n} \
             CPUs (shared with the load generator; {order}): one hub {} CPU-seconds per second, \
             {} req/s; the control, two hubs (--workers 2) on two threads, {} CPU-seconds per \
             second, {} req/s; cores {}, rate {}",
            spread(&used[0], 2),
            spread(&rate[0], 0),
            spread(&used[1], 2),
            spread(&rate[1], 0),
            ratio(&c),
            ratio(&r)
        );
        (
            c14_verdict(threads, single_max, said(&c), said(&r), n),
            figures,
        )
    }))
}

/// C14: one thread runs and never uses more than one core (at most 1.05
/// CPU-seconds per second in any round); the control, two hubs on two
/// threads on the same CPUs, shows whether the machine lets a server use
/// more: if it uses measurably more, the limit is the one thread's. That
/// more loops multiply the rate needs CPUs beside the load generator's: on
/// fewer than four it is not decided here.
pub fn c14_verdict(
    threads: usize,
    single_cores: f64,
    control_cores: Said,
    control_rate: Said,
    cpus: usize,
) -> Verdict {
    if threads != 1 {
        return Verdict::DoesNotHold(format!("the coroutine model ran {threads} threads"));
    }
    if single_cores > 1.05 {
        return Verdict::DoesNotHold(format!("one thread used {single_cores:.2} cores"));
    }
    if control_cores != Said::Higher {
        return Verdict::NotDecidedHere(format!(
            "one thread used at most {single_cores:.2} cores, but the two-hub control did not \
             use measurably more on these {cpus} CPUs shared with the load generator, so the \
             limit shown may be the machine's: a machine with two CPUs for the server and others \
             for the load would decide it"
        ));
    }
    match (cpus >= 4, control_rate) {
        (true, Said::Higher) => Verdict::Holds,
        (true, _) => Verdict::HoldsWithCaveat(
            "one thread stays on one core while two hubs use more, but the second core did not \
             raise the rate measurably"
                .into(),
        ),
        (false, _) => Verdict::HoldsWithCaveat(format!(
            "one thread used at most {single_cores:.2} cores while the two-hub control used \
             measurably more on the same CPUs: the limit is the thread's. That more loops \
             multiply the rate is not decided here: the load generator shares these {cpus} \
             CPUs; four or more (two for the server, the rest for the load) would decide it"
        )),
    }
}

/// C15's scaled topology: one server process (the harness starts one),
/// `C15_HUBS` hubs on as many threads sharing the port with SO_REUSEPORT
/// (as processes would), a coroutine per connection.
const C15_HUBS: usize = 2;
const C15_CONNS: usize = 200;
/// The rate the notes quote, requests/s.
const C15_QUOTED: f64 = 50_000.0;

/// What bounded a closed loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limiter {
    /// The server used ≥ 90 % of the CPUs it may use.
    ServerCpu,
    /// The load generator used ≥ 90 % of its CPUs.
    LoadGenerator,
    /// Neither reached 90 % of its CPUs: the CPU went elsewhere (other
    /// processes on a shared machine) or each connection's round trip
    /// bounds it.
    Neither,
}

fn limiter(server_cores: f64, server_cpus: usize, load_cores: f64, load_cpus: usize) -> Limiter {
    if server_cores >= 0.9 * server_cpus as f64 {
        Limiter::ServerCpu
    } else if load_cores >= 0.9 * load_cpus as f64 {
        Limiter::LoadGenerator
    } else {
        Limiter::Neither
    }
}

pub fn c15(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    let cpus = crate::load::sys::allowed_cpus().map_err(|e| e.to_string())?;
    let single = Run {
        server_cpus: Some(cpus.clone()),
        ..Run::pingpong("coroutine:stackful", C15_CONNS)
    };
    let topology = Run {
        server_args: &["--workers", "2", "--share", "reuseport"],
        ..single.clone()
    };
    commands.extend([
        "harness claims --only C15".to_string(),
        topology.command(),
        single.command(),
    ]);
    if let Some(why) = lab.missing("coroutine") {
        return Err(why);
    }
    let (m, order) = in_rounds(&[topology, single])?;
    let rate = [metric(&m[0], |m| m.rate), metric(&m[1], |m| m.rate)];
    let cpu = metric(&m[0], cpu_us);
    let server_cores = stats::median(&m[0].iter().map(|(_, m)| cores(m)).collect::<Vec<_>>());
    let load_cores = stats::median(
        &m[0]
            .iter()
            .map(|(_, m)| (m.client.user_s + m.client.sys_s) / m.window_s)
            .collect::<Vec<_>>(),
    );
    let load_cpus = m[0]
        .first()
        .map_or(1, |(_, m)| m.workload.load_cpus.len().max(1));
    let limit = limiter(server_cores, cpus.len(), load_cores, load_cpus);
    let n = cpus.len();
    Ok(Box::new(move |family: &Family| {
        let r = family.judge(
            "C15 rate, the scaled topology against one hub",
            &rate[0],
            &rate[1],
        );
        let figures = format!(
            "scaled to {n} CPUs: 1 process × {C15_HUBS} hubs (threads, --share reuseport) × \
             {C15_CONNS} coroutines (one per connection), closed loop ({order}): {} req/s, {} µs \
             server CPU per request, the server {server_cores:.2} CPU-seconds per second on {n} \
             CPUs, the load generator {load_cores:.2} on {load_cpus}; one hub: {} req/s; \
             topology against one hub {}",
            spread(&rate[0], 0),
            spread(&cpu, 1),
            spread(&rate[1], 0),
            ratio(&r)
        );
        let quoted: Vec<InRound> = rate[0].iter().map(|(r, _)| (*r, C15_QUOTED)).collect();
        let vs = family.judge("C15 rate against the quoted 50 000/s", &rate[0], &quoted);
        let median = stats::median(&rate[0].iter().map(|(_, v)| *v).collect::<Vec<_>>());
        (
            c15_verdict(said(&vs), median, limit, n),
            format!("{figures}; against the quoted 50 000/s {}", ratio(&vs)),
        )
    }))
}

/// C15: "5 × 20 × 500" is 100 kernel threads and 50 000 coroutines; this
/// machine runs it scaled, and the stated topology is never a verdict. If
/// the scaled rate is measurably above the quoted 50 000/s, or within the
/// margin of it, it holds with the caveat that the rate is the machine's;
/// otherwise it is not decided here, the limiter named, with what would
/// decide it.
pub fn c15_verdict(vs_quoted: Said, rate: f64, limit: Limiter, cpus: usize) -> Verdict {
    let limited = match limit {
        Limiter::ServerCpu => "the server's CPUs",
        Limiter::LoadGenerator => "the load generator",
        Limiter::Neither => {
            "neither the server's nor the load generator's CPU time (under 90 % of its CPUs \
             each: the rest went to other processes on this machine, or to each connection's \
             round trip)"
        }
    };
    if matches!(vs_quoted, Said::Higher | Said::Same) {
        Verdict::HoldsWithCaveat(format!(
            "the scaled topology reaches {rate:.0}/s here, limited by {limited}: a rate is a \
             machine's, not a topology's"
        ))
    } else {
        Verdict::NotDecidedHere(format!(
            "5 processes × 20 threads × 500 coroutines was not run: 100 kernel threads on {cpus} \
             CPUs shared with the load generator measures the scheduler, not the topology. \
             Scaled to this machine it gives {rate:.0}/s, limited by {limited}; the stated \
             topology on a machine with a core per thread and the load generator on other \
             hosts would decide it"
        ))
    }
}
