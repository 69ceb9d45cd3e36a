//! `results/REPORT.md`: the environment, the tables per workload, findings
//! computed from the data, the load generator's efficiency, the accounting
//! cross-check, and what this machine distorts.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::results::{Cell, CompareResults, Purpose, Workload};
use super::stats::{self, mib, micros, si, Compared, Metric, Spread};
use super::Figure;
use crate::account::AGREEMENT_TOLERANCE;
use crate::run::OFFERED_SHARE;

/// A markdown table.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn render(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::new();
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            )
        };
        out.push_str(&line(&self.head));
        out.push_str(&format!("|{}\n", " --- |".repeat(self.head.len())));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// How one cell reads in a table: the spread of `metric`, or why not.
fn show(cell: Option<&Cell>, metric: Metric, f: fn(f64) -> String) -> String {
    let Some(cell) = cell else {
        return "—".into();
    };
    if cell.not_run.is_some() {
        return "not run †".into();
    }
    if cell.runs.is_empty() {
        return "failed †".into();
    }
    // A failed run, or one without this figure (no request completed, so
    // no latency), leaves fewer values than attempts: said, not hidden.
    let text = match cell.spread(metric) {
        Some(s) if s.n < cell.attempted() => {
            format!("{} [{}/{}]", s.show(f), s.n, cell.attempted())
        }
        Some(s) => s.show(f),
        None => "n/a".into(),
    };
    if cell.failures.is_empty() {
        text
    } else {
        format!(
            "{text} ({} of {} failed †)",
            cell.failures.len(),
            cell.failures.len() + cell.runs.len()
        )
    }
}

fn us(v: f64) -> String {
    micros(v)
}
fn num(v: f64) -> String {
    si(v)
}
fn kib(v: f64) -> String {
    mib(v)
}
fn count(v: f64) -> String {
    format!("{v:.0}")
}
fn ratio(v: f64) -> String {
    format!("{v:.3}")
}
fn percent(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

fn timing<'a>(r: &'a CompareResults, model: &str, w: &Workload) -> Option<&'a Cell> {
    r.cell(model, w, Purpose::Timing)
}

fn models(r: &CompareResults) -> Vec<String> {
    r.available_models().map(|m| m.model.clone()).collect()
}

fn workloads<F: Fn(&Workload) -> bool>(r: &CompareResults, keep: F) -> Vec<Workload> {
    r.workloads.iter().copied().filter(|w| keep(w)).collect()
}

fn pingpongs(r: &CompareResults) -> Vec<Workload> {
    workloads(r, |w| matches!(w, Workload::Pingpong { .. }))
}
fn idles(r: &CompareResults) -> Vec<Workload> {
    workloads(r, |w| matches!(w, Workload::Idle { .. }))
}
fn connects(r: &CompareResults) -> Vec<Workload> {
    workloads(r, |w| matches!(w, Workload::Connect { .. }))
}
fn open_loops(r: &CompareResults) -> Vec<Workload> {
    workloads(r, |w| matches!(w, Workload::OpenLoop { .. }))
}

fn column_label(w: &Workload) -> String {
    match w {
        Workload::Pingpong { conns } => format!("c={conns}"),
        Workload::Connect { conns } => format!("{conns} in flight"),
        Workload::Idle { idle, .. } => format!("idle {idle}"),
        Workload::OpenLoop { rate, .. } => format!("{rate}/s"),
    }
}

/// One row per model, one column per workload, `metric` in each cell.
fn grid(r: &CompareResults, ws: &[Workload], metric: Metric, f: fn(f64) -> String) -> String {
    let mut head = vec!["model".to_string()];
    head.extend(ws.iter().map(column_label));
    let mut t = Table {
        head,
        rows: Vec::new(),
    };
    for model in models(r) {
        let mut row = vec![model.clone()];
        row.extend(ws.iter().map(|w| show(timing(r, &model, w), metric, f)));
        t.rows.push(row);
    }
    t.render()
}

/// The full detail of one workload: one row per model.
fn detail(r: &CompareResults, w: &Workload) -> String {
    let per = match w {
        Workload::Connect { .. } => "conn",
        _ => "req",
    };
    let rate_head = match w {
        Workload::Connect { .. } => "conns/s",
        _ => "requests/s",
    };
    let cpu_head = format!("server CPU/{per}");
    let client_head = format!("client CPU/{per}");
    let vol_head = format!("vol. cs/{per}");
    let invol_head = format!("invol. cs/{per}");
    let mut head = vec![
        "model",
        rate_head,
        "p50",
        "p99",
        "p99.9",
        &cpu_head,
        "user share",
        &client_head,
        &vol_head,
        &invol_head,
        "peak RSS",
        "errors",
    ];
    if matches!(w, Workload::Idle { .. }) {
        head.push("idle dropped");
        head.push("idle unserved");
    }
    let mut t = Table::new(&head);
    for model in models(r) {
        let c = timing(r, &model, w);
        let mut row = vec![
            model.clone(),
            show(c, stats::rate, num),
            show(c, stats::p50, us),
            show(c, stats::p99, us),
            show(c, stats::p999, us),
            show(c, stats::server_cpu, us),
            show(c, stats::server_user_share, percent),
            show(c, stats::client_cpu, us),
            show(c, stats::ctx_voluntary, ratio),
            show(c, stats::ctx_involuntary, ratio),
            show(c, stats::peak_rss_kib, kib),
            show(c, stats::errors, count),
        ];
        if matches!(w, Workload::Idle { .. }) {
            row.push(show(c, stats::idle_dropped, count));
            row.push(show(c, stats::idle_unserved, count));
        }
        t.rows.push(row);
    }
    t.render()
}

/// Repeats of an open-loop cell that answered less than `OFFERED_SHARE` of
/// the rate asked for in the window.
fn short_of_rate(cell: Option<&Cell>) -> usize {
    cell.map_or(0, |c| {
        c.runs
            .iter()
            .filter(|m| {
                m.workload
                    .rate
                    .is_some_and(|offered| m.rate < offered * OFFERED_SHARE)
            })
            .count()
    })
}

/// The mark on an open-loop cell that fell short of its rate.
const SHORT_MARK: &str = "‡";

fn short_footnote() -> String {
    format!(
        "{SHORT_MARK} achieved less than {:.0} % of the offered rate in the repeats counted: \
         the server (or client) could not keep up, and requests still unanswered at the \
         window's end are counted at their wait so far — those latencies are lower bounds.\n",
        OFFERED_SHARE * 100.0
    )
}

/// Open-loop p99 by model and rate, short cells marked.
fn open_loop_grid(r: &CompareResults, ws: &[Workload]) -> (String, bool) {
    let mut head = vec!["model".to_string()];
    head.extend(ws.iter().map(column_label));
    let mut t = Table {
        head,
        rows: Vec::new(),
    };
    let mut any = false;
    for model in models(r) {
        let mut row = vec![model.clone()];
        for w in ws {
            let c = timing(r, &model, w);
            let mut text = show(c, stats::p99, us);
            if short_of_rate(c) > 0 {
                any = true;
                text.push_str(&format!(" {SHORT_MARK}"));
            }
            row.push(text);
        }
        t.rows.push(row);
    }
    (t.render(), any)
}

fn open_loop_detail(r: &CompareResults, w: &Workload) -> String {
    let mut t = Table::new(&[
        "model",
        "achieved requests/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "server CPU/req",
        "client CPU/req",
        "errors",
    ]);
    let mut any_short = false;
    for model in models(r) {
        let c = timing(r, &model, w);
        let mut achieved = show(c, stats::rate, num);
        let short = short_of_rate(c);
        if short > 0 {
            any_short = true;
            let offered = match w {
                Workload::OpenLoop { rate, .. } => num(*rate as f64),
                _ => "?".into(),
            };
            let runs = c.map_or(0, |c| c.runs.len());
            achieved = format!("{achieved} of {offered}/s {SHORT_MARK} ({short}/{runs} short)");
        }
        t.rows.push(vec![
            model.clone(),
            achieved,
            show(c, stats::p50, us),
            show(c, stats::p99, us),
            show(c, stats::p999, us),
            show(c, stats::max_latency, us),
            show(c, stats::server_cpu, us),
            show(c, stats::client_cpu, us),
            show(c, stats::errors, count),
        ]);
    }
    let mut out = t.render();
    if any_short {
        out.push('\n');
        out.push_str(&short_footnote());
    }
    out
}

/// Syscalls per request for every syscall-counting cell of a workload.
fn syscall_table(r: &CompareResults, w: &Workload) -> Option<String> {
    let cells: Vec<&Cell> = models(r)
        .iter()
        .filter_map(|m| r.cell(m, w, Purpose::Syscalls))
        .collect();
    if cells.is_empty() {
        return None;
    }
    // Columns: every syscall seen at 0.01 per request or more somewhere.
    let mut names = BTreeSet::new();
    for c in &cells {
        for m in &c.runs {
            if let Some(map) = &m.server.syscalls_per_request {
                names.extend(
                    map.iter()
                        .filter(|(k, v)| **v >= 0.01 && *k != "total" && *k != "other")
                        .map(|(k, _)| k.clone()),
                );
            }
        }
    }
    let mut head = vec!["model".to_string(), "total".to_string()];
    head.extend(names.iter().cloned());
    head.push("other".into());
    let mut t = Table {
        head: head.clone(),
        rows: Vec::new(),
    };
    for c in cells {
        let mut row = vec![c.model.clone()];
        if let Some(why) = c.why_empty() {
            row.push(why);
            row.extend(std::iter::repeat_n(String::new(), head.len() - 2));
        } else if let Some(reason) = c
            .runs
            .iter()
            .find(|m| m.server.syscalls_per_request.is_none())
            .map(|m| m.server.syscalls_na_reason.clone().unwrap_or_default())
        {
            row.push(format!("n/a ({reason})"));
            row.extend(std::iter::repeat_n(String::new(), head.len() - 2));
        } else {
            for name in &head[1..] {
                row.push(
                    c.syscall(name)
                        .map(|s| format!("{:.2}", s.median))
                        .unwrap_or_default(),
                );
            }
        }
        t.rows.push(row);
    }
    Some(t.render())
}

/// Findings: statements each computed from the table data. A difference is
/// stated only where `Spread::compare` finds one (at least two repeats on
/// each side, ranges disjoint).
pub fn findings(r: &CompareResults) -> Vec<String> {
    let mut out = Vec::new();
    let cpu = |m: &str, w: &Workload| timing(r, m, w).and_then(|c| c.spread(stats::server_cpu));
    let idle = idles(r);
    if let (Some(first), true) = (idle.first(), idle.len() >= 2) {
        let Workload::Idle { idle: n0, .. } = *first else {
            unreachable!("idles() holds idle workloads only")
        };
        for model in models(r) {
            let Some(base) = cpu(&model, first) else {
                continue;
            };
            // The largest idle count this model was measured at.
            let Some((n, top)) = idle[1..].iter().rev().find_map(|w| match *w {
                Workload::Idle { idle, .. } => Some((idle, cpu(&model, w)?)),
                _ => None,
            }) else {
                continue;
            };
            let (t, b) = (micros(top.median), micros(base.median));
            let x = top.median / base.median;
            match top.compare(&base) {
                Compared::Higher if x >= 1.1 => out.push(format!(
                    "{model}'s server CPU per request at {n} idle connections is {x:.1}× its cost \
                     at {n0} ({t} vs {b}; every repeat higher)."
                )),
                Compared::Higher => out.push(format!(
                    "{model}'s server CPU per request is {:.0} % higher at {n} idle connections \
                     than at {n0} ({t} vs {b}; every repeat higher).",
                    (x - 1.0) * 100.0
                )),
                Compared::Lower => out.push(format!(
                    "{model}'s server CPU per request is lower at {n} idle connections than at \
                     {n0} ({t} vs {b}; every repeat lower)."
                )),
                Compared::Overlap => out.push(format!(
                    "{model}'s server CPU per request shows no measurable change from {n0} to {n} \
                     idle connections ({b} vs {t}; the repeats' ranges overlap)."
                )),
                Compared::TooFewRepeats => {}
            }
        }
    }
    let ranked = |w: &Workload| {
        let mut v: Vec<(String, Spread)> = models(r)
            .into_iter()
            .filter_map(|m| Some((m.clone(), timing(r, &m, w)?.spread(stats::rate)?)))
            .collect();
        v.sort_by(|a, b| b.1.median.total_cmp(&a.1.median));
        v
    };
    for w in pingpongs(r) {
        let v = ranked(&w);
        let (Some((best, b)), Some((second, s)), Some((worst, lo))) =
            (v.first(), v.get(1), v.last())
        else {
            continue;
        };
        let lead = match b.compare(s) {
            Compared::Higher => format!(", clearly ahead of {second} ({})", si(s.median)),
            Compared::TooFewRepeats => continue,
            _ => format!(" (within the spread of {second}'s {})", si(s.median)),
        };
        let tail = match b.compare(lo) {
            Compared::Higher => format!(
                "; the fewest: {worst}, {} ({:.1}× less)",
                si(lo.median),
                b.median / lo.median
            ),
            _ => String::new(),
        };
        out.push(format!(
            "Ping-pong at {}: {best} served the most, {} requests/s{lead}{tail}.",
            column_label(&w),
            si(b.median)
        ));
    }
    // The cost of a thread or process per connection, against one loop.
    if let Some(w) = pingpongs(r).last().copied() {
        let vol = |m: &str| timing(r, m, &w).and_then(|c| c.spread(stats::ctx_voluntary));
        for model in [
            "blocking:thread",
            "blocking:fork",
            "blocking:prefork",
            "blocking:pool",
        ] {
            let (Some(a), Some(e)) = (cpu(model, &w), cpu("epoll:level", &w)) else {
                continue;
            };
            if a.compare(&e) != Compared::Higher {
                continue;
            }
            let switches = match (vol(model), vol("epoll:level")) {
                (Some(v), Some(ve)) => format!(
                    "; voluntary context switches per request {:.2} vs {:.2}",
                    v.median, ve.median
                ),
                _ => String::new(),
            };
            out.push(format!(
                "At {}, {model} spends {:.1}× the server CPU per request of epoll:level ({} vs {}){switches}.",
                column_label(&w),
                a.median / e.median,
                micros(a.median),
                micros(e.median)
            ));
        }
    }
    for w in connects(r) {
        let v = ranked(&w);
        let (Some((best, b)), Some((worst, lo))) = (v.first(), v.last()) else {
            continue;
        };
        if b.compare(lo) == Compared::Higher {
            out.push(format!(
                "Connections per second ({}): {best} accepted the most, {}/s; {worst} the fewest, {}/s.",
                column_label(&w),
                si(b.median),
                si(lo.median)
            ));
        }
    }
    // Syscall counts come from one counting run per model: counts, not
    // timings, so they are stated, with how they were measured.
    for w in r.workloads.iter() {
        let total = |m: &str| {
            let c = r.cell(m, w, Purpose::Syscalls)?;
            (c.runs.len() == 1).then(|| c.syscall("total")).flatten()
        };
        let Some(base) = total("epoll:level") else {
            continue;
        };
        for model in models(r) {
            let Some(t) = total(&model) else { continue };
            let x = t.median / base.median;
            if x >= 2.0 {
                out.push(format!(
                    "In the syscall-counting run at {}, {model} made {:.2} syscalls per request, \
                     {x:.1}× epoll:level's {:.2} (one counting run each).",
                    w.label(),
                    t.median,
                    base.median
                ));
            }
        }
    }
    let mut with_errors = Vec::new();
    for c in r.cells.iter().filter(|c| c.purpose == Purpose::Timing) {
        let total: u64 = c.runs.iter().map(|m| m.errors.total()).sum();
        if total > 0 {
            with_errors.push(format!("{} / {} ({total})", c.model, c.workload.label()));
        }
    }
    if !with_errors.is_empty() {
        out.push(format!(
            "Runs with client-side errors (all repeats summed): {}.",
            with_errors.join("; ")
        ));
    }
    out
}

/// The efficiency target of issue 5: at 100 connections against
/// epoll:level, the load generator's CPU per request is no more than the
/// server's.
fn efficiency(r: &CompareResults) -> String {
    let w = Workload::Pingpong { conns: 100 };
    let Some(cell) = timing(r, "epoll:level", &w) else {
        return "Not measured: the matrix had no epoll:level ping-pong at 100 connections.\n"
            .into();
    };
    if let Some(why) = cell.why_empty() {
        return format!("Not measured: epoll:level at c=100 {why}.\n");
    }
    let (Some(client), Some(server)) = (
        cell.spread(stats::client_cpu),
        cell.spread(stats::server_cpu),
    ) else {
        return "Not measured: the runs lack client or server CPU per request (see the pingpong table).\n"
            .into();
    };
    let verdict = if client.max <= server.min {
        "met: in every repeat the load generator spent no more CPU per request than the server"
    } else if client.median <= server.median {
        "met by the medians, but not in every repeat"
    } else {
        "NOT met: the load generator spent more CPU per request than the server, so rates in this \
         report may be limited by the client"
    };
    format!(
        "Against epoll:level at 100 connections of {} B ping-pong: the load generator used {} of CPU per \
         request, the server {} (client/server = {:.2}). Target (client ≤ server): {verdict}.\n",
        r.size,
        client.show(micros),
        server.show(micros),
        client.median / server.median
    )
}

/// The whole-run cross-check of every run that has one.
fn cross_check(r: &CompareResults) -> String {
    let mut total = 0;
    let mut agreeing = 0;
    let mut by_floor = 0;
    let mut outliers = Vec::new();
    // The largest relative difference among runs judged by the 5 % rule.
    let mut worst: Option<f64> = None;
    for c in r.cells.iter() {
        for (i, m) in c.runs.iter().enumerate() {
            let Some(a) = &m.server.summary_agreement else {
                continue;
            };
            total += 1;
            if a.tolerance_s > AGREEMENT_TOLERANCE * a.summary_cpu_s {
                by_floor += 1;
            } else {
                let rel = (a.ratio - 1.0).abs();
                worst = Some(worst.map_or(rel, |w| w.max(rel)));
            }
            if a.agrees {
                agreeing += 1;
            } else {
                outliers.push(format!(
                    "{} / {} run {}: harness {:.3} s vs summary {:.3} s",
                    c.model,
                    c.workload.label(),
                    i + 1,
                    a.harness_cpu_s,
                    a.summary_cpu_s
                ));
            }
        }
    }
    if total == 0 {
        return "No run recorded a cross-check (the servers' exit summaries were not available).\n"
            .into();
    }
    let mut out = format!(
        "Over each whole run, the harness' reading of the server's CPU (every thread, live \
         descendant and reaped child, read just before SIGTERM) was compared with the server's \
         own exit summary (`getrusage` SELF + CHILDREN). {agreeing} of {total} runs agreed within \
         5 %{}.",
        match worst {
            Some(w) => format!(
                "; the largest difference among runs long enough for 5 % to exceed the \
                                 clock-tick rounding was {:.1} %",
                w * 100.0
            ),
            None => String::new(),
        }
    );
    if by_floor > 0 {
        out.push_str(&format!(
            " {by_floor} runs used so little CPU that 5 % is less than two clock ticks; they were \
             held to two ticks instead."
        ));
    }
    out.push('\n');
    if !outliers.is_empty() {
        out.push_str("\nRuns that did not agree:\n\n");
        for o in outliers {
            let _ = writeln!(out, "- {o}");
        }
        out.push_str(
            "\nThe harness reads the server's CPU just before it sends SIGTERM; the summary also \
             counts what the server spends after that: stopping, and for a forking server every \
             child's exit, charged to the child and reaped into the parent's `RUSAGE_CHILDREN`. \
             With thousands of children alive at the end, that work alone can exceed 5 %.\n",
        );
    }
    out
}

/// Where this machine bends the numbers, with what the data says about it.
fn distortions(r: &CompareResults) -> String {
    let env = &r.environment;
    let mut out = String::new();
    let pins = r
        .cells
        .iter()
        .flat_map(|c| c.runs.first())
        .next()
        .map(|m| (m.workload.load_cpus.clone(), m.workload.server_cpus.clone()));
    let _ = writeln!(
        out,
        "- **{} CPUs{}.** {} The other processes of this machine compete for the same CPUs; \
         every repeat's range is printed so that a disturbed run shows.",
        env.cpus,
        if env.virtualised { ", virtualised" } else { "" },
        match pins {
            Some((load, server)) if !server.is_empty() => format!(
                "The load generator ran pinned to CPU {load:?} and the server to CPU {server:?}: \
                 the measurement shares the machine with what it measures."
            ),
            _ => "The load generator and the server share the machine.".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "- **Cross-CPU wake-ups.** A request sent from the load generator's CPU wakes the server on \
         the other CPU with an inter-processor interrupt{}; at one connection every request pays \
         for two of them, so the c=1 latencies measure the wake-up path more than the model.",
        if env.virtualised {
            ", which in a virtual machine is a trip through the hypervisor (tens of µs)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- **Loopback softirq work is charged to the sender.** Over loopback the receiving half of \
         TCP runs in the softirq raised by the sending `write`, on the sender's CPU and in its \
         system time: part of the server's receive work is billed to the client and part of the \
         client's to the server. Compare the sum of client and server CPU per request, or the \
         user share, rather than system time alone."
    );
    let _ = writeln!(
        out,
        "- **CPU time resolution.** `/proc` reports CPU in {} Hz ticks, rounded down per \
         process; the per-request CPU therefore comes from each server process's CPU-time \
         clock (`clock_getcpuclockid` + `clock_gettime`, nanoseconds, exited threads \
         included: what `getrusage` reports), and only the user/system split (the user \
         share column) from `/proc`. That split is sampled at ticks: a server that runs in \
         short bursts between sleeps can be missed by most ticks, so on this machine its \
         user share can read 0 % or n/a while its CPU is plainly not zero. \
         The perf counters attached to every server thread (for syscall and context-switch \
         counts) add a little to each of its context switches.",
        env.clock_ticks_per_sec
    );
    // What counting syscalls costs, from the runs that did both.
    let mut slowdown = Vec::new();
    for c in r.cells.iter().filter(|c| c.purpose == Purpose::Syscalls) {
        let counted = c.spread(stats::server_cpu);
        let timed = timing(r, &c.model, &c.workload).and_then(|t| t.spread(stats::server_cpu));
        if let (Some(a), Some(b)) = (counted, timed) {
            slowdown.push(a.median / b.median);
        }
    }
    if let Some(s) = Spread::of(slowdown) {
        let _ = writeln!(
            out,
            "- **Counting syscalls.** In the syscall-counting runs the servers' CPU per request \
             was {:.1}× (from {:.1}× to {:.1}×, over {} model/workload pairs) that of the timing \
             runs. The counts come from separate runs because a syscall tracepoint sends every \
             syscall on the machine through the kernel's tracing path; those runs feed no other \
             table.",
            s.median, s.min, s.max, s.n
        );
    }
    // Cells where the client, not the server, may have set the rate.
    let mut client_bound = Vec::new();
    let mut measured = 0;
    for c in r.cells.iter().filter(|c| c.purpose == Purpose::Timing) {
        if let (Some(cl), Some(sv)) = (c.spread(stats::client_cpu), c.spread(stats::server_cpu)) {
            measured += 1;
            if cl.median > sv.median {
                client_bound.push(format!("{} / {}", c.model, c.workload.label()));
            }
        }
    }
    if client_bound.is_empty() {
        let _ = writeln!(
            out,
            "- **Client cost.** In every cell the load generator used less CPU per request than the \
             server."
        );
    } else {
        let _ = writeln!(
            out,
            "- **Client cost.** In {} of {measured} cells the load generator used more CPU per \
             request than the server (medians), so their rates may be the client's limit as much \
             as the server's: {}.",
            client_bound.len(),
            client_bound.join("; ")
        );
    }
    out
}

fn environment(r: &CompareResults) -> String {
    let e = &r.environment;
    let mut t = Table::new(&["", ""]);
    let mut row = |k: &str, v: String| t.rows.push(vec![k.to_string(), v]);
    row("kernel", e.kernel.clone());
    row(
        "CPU",
        format!(
            "{} — {} usable, {} online{}",
            e.cpu_model,
            e.cpus,
            e.cpus_online,
            if e.virtualised {
                ", virtual machine (`hypervisor` flag)"
            } else {
                ""
            }
        ),
    );
    row("memory", e.memory_total.clone());
    row(
        "RLIMIT_NOFILE (harness)",
        format!("{} soft / {} hard", e.rlimit_nofile.0, e.rlimit_nofile.1),
    );
    row("clock ticks", format!("{} Hz", e.clock_ticks_per_sec));
    row(
        "perf",
        format!(
            "perf_event_paranoid = {}, syscall tracepoints {}",
            e.perf_event_paranoid.as_deref().unwrap_or("?"),
            if e.syscall_tracepoints {
                "available"
            } else {
                "not available"
            }
        ),
    );
    row(
        "commit",
        e.git_commit
            .clone()
            .unwrap_or_else(|| "unknown (not a git checkout)".into()),
    );
    row("harness build", e.harness_build.clone());
    let mut out = t.render();
    if !e.vulnerabilities.is_empty() {
        out.push_str("\nCPU vulnerabilities and their mitigations (`/sys/devices/system/cpu/vulnerabilities`):\n\n");
        for (k, v) in &e.vulnerabilities {
            let _ = writeln!(out, "- `{k}`: {v}");
        }
    }
    out
}

fn models_table(r: &CompareResults) -> String {
    let mut t = Table::new(&["model", "status", "server arguments"]);
    for m in &r.models {
        t.rows.push(vec![
            m.model.clone(),
            match &m.unavailable {
                Some(why) => format!("NOT RUN: {why}"),
                None => "run".into(),
            },
            if m.server_args.is_empty() {
                "—".into()
            } else {
                format!("`{}`", m.server_args.join(" "))
            },
        ]);
    }
    t.render()
}

fn not_run_table(r: &CompareResults) -> Option<String> {
    let mut t = Table::new(&["model", "workload", "what happened"]);
    for c in &r.cells {
        if let Some(why) = &c.not_run {
            t.rows.push(vec![
                c.model.clone(),
                c.workload.label(),
                format!("not run: {why}"),
            ]);
        }
        for f in &c.failures {
            t.rows.push(vec![
                c.model.clone(),
                format!(
                    "{}{}",
                    c.workload.label(),
                    if c.purpose == Purpose::Syscalls {
                        " (syscalls)"
                    } else {
                        ""
                    }
                ),
                format!("repeat {} failed: {}", f.repeat + 1, f.reason),
            ]);
        }
    }
    (!t.rows.is_empty()).then(|| t.render())
}

/// The whole REPORT.md.
pub fn render(r: &CompareResults, figures: &[Figure]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# The I/O-model lab: measured comparison\n");
    let _ = writeln!(
        w,
        "Produced by `{}` from {} to {} ({:.0} s). Every number below was measured in that run; \
         the raw runs are in [`compare.json`](compare.json).\n",
        r.command, r.started_at, r.finished_at, r.elapsed_s
    );
    if r.finished_at == "(in progress)" {
        let _ = writeln!(
            w,
            "> This comparison did not finish: the report covers the {:.0} s measured before it \
             stopped (`compare.partial.json`); cells after that point are empty.\n",
            r.elapsed_s
        );
    }
    if r.quick {
        let _ = writeln!(
            w,
            "> This is a `--quick` run: a reduced matrix, {} repeat(s) of {} s windows. It shows that \
             the pipeline works; do not draw conclusions from it.\n",
            r.repeats, r.duration_s
        );
    }
    let _ = writeln!(w, "## Environment\n\n{}", environment(r));
    let _ = writeln!(
        w,
        "## Method\n\n\
         - Every cell (a model on a workload) ran {} time(s), in alternating order: each round runs \
           every model once before the next round starts, so a slow drift of the machine hits every \
           model alike. Tables show the median and, in parentheses, the smallest and largest repeat.\n\
         - Each run starts the server, connects, warms up for {} s, measures a {} s window, and stops \
           the server with SIGTERM. Requests are {} B; every reply byte is checked.\n\
         - **server CPU/req**: the server's CPU in the window (every thread, every child process, \
           reaped children included) divided by the requests completed in it. **user share**: the \
           part of it spent in user mode. **client CPU/req**: the load generator's own CPU per \
           request. **vol./invol. cs**: voluntary (blocked) and involuntary (preempted) context \
           switches of the server per request. **peak RSS**: the largest resident set summed over \
           the server's processes, sampled during the window (a page shared by forked processes \
           counts once per process, so fork and prefork are overstated).\n\
         - A cell that cannot run (a model's documented limit) says so instead of hanging; every run \
           has a timeout (up to {} s). † marks a cell explained under *Cells not run or failed*.\n",
        r.repeats, r.warmup_s, r.duration_s, r.size, r.cell_timeout_s
    );
    let _ = writeln!(w, "## Models\n\n{}", models_table(r));

    let pp = pingpongs(r);
    if !pp.is_empty() {
        let _ = writeln!(w, "## Ping-pong (closed loop)\n");
        let _ = writeln!(
            w,
            "### Requests per second\n\n{}",
            grid(r, &pp, stats::rate, num)
        );
        let _ = writeln!(
            w,
            "### Server CPU per request\n\n{}",
            grid(r, &pp, stats::server_cpu, us)
        );
        let _ = writeln!(w, "### Latency p99\n\n{}", grid(r, &pp, stats::p99, us));
        for wl in &pp {
            let _ = writeln!(w, "### {} in detail\n\n{}", wl.label(), detail(r, wl));
        }
    }
    let cs = connects(r);
    if !cs.is_empty() {
        let _ = writeln!(
            w,
            "## Connections per second\n\nEach connection: `connect`, one {} B request, its reply, \
             close (RST by default, so that TIME_WAIT cannot exhaust the ports).\n",
            r.size
        );
        for wl in &cs {
            let _ = writeln!(w, "### {}\n\n{}", wl.label(), detail(r, wl));
        }
    }
    let id = idles(r);
    if !id.is_empty() {
        let _ = writeln!(
            w,
            "## Idle connections\n\nIdle connections are held open while a few active ones \
             ping-pong: what does each idle connection cost the loop serving the active ones?\n"
        );
        let _ = writeln!(
            w,
            "### Server CPU per request of the active connections\n\n{}",
            grid(r, &id, stats::server_cpu, us)
        );
        for wl in &id {
            let _ = writeln!(w, "### {} in detail\n\n{}", wl.label(), detail(r, wl));
        }
    }
    let ol = open_loops(r);
    if !ol.is_empty() {
        let _ = writeln!(
            w,
            "## Open loop\n\nRequests are sent on a fixed schedule; latency counts from the time a \
             request was due, so a server that falls behind is not hidden by a client that waits \
             for it.\n"
        );
        let (p99, any_short) = open_loop_grid(r, &ol);
        let _ = writeln!(w, "### Latency p99\n\n{p99}");
        if any_short {
            let _ = writeln!(w, "{}", short_footnote());
        }
        for wl in &ol {
            let _ = writeln!(
                w,
                "### {} in detail\n\n{}",
                wl.label(),
                open_loop_detail(r, wl)
            );
        }
    }
    let sys: Vec<String> = r
        .workloads
        .iter()
        .filter_map(|wl| Some(format!("### {}\n\n{}", wl.label(), syscall_table(r, wl)?)))
        .collect();
    if !sys.is_empty() {
        let _ = writeln!(
            w,
            "## Syscalls per request\n\nCounted by the kernel's syscall tracepoints over every \
             thread and child of the server, in a separate run (tracing slows syscalls down, so \
             these runs feed no other table). Columns: every syscall seen at 0.01 per request or \
             more; *other* is the rest.\n"
        );
        for s in sys {
            let _ = writeln!(w, "{s}");
        }
    }
    let found = findings(r);
    let _ = writeln!(w, "## Findings\n");
    if r.repeats < 2 {
        let _ = writeln!(
            w,
            "None: a finding needs at least two repeats of each cell to show that a difference is \
             larger than the run-to-run spread, and this run made {}.\n",
            r.repeats
        );
    } else if found.is_empty() {
        let _ = writeln!(w, "The data of this run supports no comparison.\n");
    } else {
        let _ = writeln!(
            w,
            "Each statement is computed from the tables above; a difference is called one only \
             when every repeat of one side lies beyond every repeat of the other.\n"
        );
        for f in found {
            let _ = writeln!(w, "- {f}");
        }
        w.push('\n');
    }
    let _ = writeln!(w, "## Load generator efficiency\n\n{}", efficiency(r));
    let _ = writeln!(w, "## Accounting cross-check\n\n{}", cross_check(r));
    let _ = writeln!(w, "## This machine's distortions\n\n{}", distortions(r));
    if !figures.is_empty() {
        let _ = writeln!(w, "## Figures\n");
        for f in figures {
            match &f.missing {
                None => {
                    let _ = writeln!(w, "### {}\n\n![{}]({})\n", f.title, f.title, f.file);
                }
                Some(why) => {
                    let _ = writeln!(w, "### {}\n\nNot drawn: {why}.\n", f.title);
                }
            }
        }
    }
    if let Some(t) = not_run_table(r) {
        let _ = writeln!(w, "## Cells not run or failed\n\n{t}");
    }
    let _ = writeln!(
        w,
        "## Raw data\n\n`compare.json` holds everything (this report can be rewritten from it with \
         `harness compare --report-from results/compare.json`); `pingpong.json`, `connect.json`, \
         `idle.json` and `openloop.json` hold the same runs by workload."
    );
    out
}
