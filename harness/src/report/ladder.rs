//! io_uring's ablation ladder: `uring:multishot` and one kernel feature more
//! per rung, each rung set against the one below it in the same rounds,
//! with `epoll:level` beside, at a low rate and near saturation, over 100
//! and over 1 000 connections; then the syscalls, the memory at 10 000
//! idle connections, and the three goals of the ladder, each computed.

use super::questions::{
    comparison_key, findings_list, idle_points, models, rate_label, sustained, sweep,
    total_syscalls, versus, Answer,
};
use super::stats::{self, io_uring_threads_share, micros, percent, significant};
use super::table::{label, show, show_pct, Table};
use super::where_time;
use super::Ctx;
use crate::compare::LADDER_CONNS;
use crate::results::{CompareResults, Purpose, Workload};
use crate::spec::{base_row, row, twin_of, URING_BEST};
use crate::stats::Verdict;

/// The ladder's base and the readiness loop it is weighed against.
const BASE: &str = "uring:multishot";
const EPOLL: &str = "epoll:level";

/// Whether a row is a rung of the ladder: the base, or the base with flags
/// among which is no SQPOLL (a flag with a section of its own, `flags`,
/// since its poller takes a CPU rather than a feature of the loop's).
pub fn is_rung(m: &str) -> bool {
    twin_of(m).is_none() && (m == BASE || (base_row(m) == Some(BASE) && !is_sqpoll(m)))
}

/// Whether a row runs the ladder's base with SQPOLL.
fn is_sqpoll(m: &str) -> bool {
    base_row(m) == Some(BASE) && m.split('+').any(|f| f == "sqpoll")
}

/// The rungs measured, base first, by how many flags they add.
fn rungs(r: &CompareResults) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = models(r)
        .into_iter()
        .filter(|m| is_rung(m))
        .filter_map(|m| {
            let (_, args) = row(&m).ok()?;
            let flags: Vec<String> = args.into_iter().filter(|a| a.starts_with("--")).collect();
            Some((m, flags))
        })
        .collect();
    v.sort_by_key(|(_, flags)| flags.len());
    v
}

/// The rung below `flags`: the one rung with the most flags that are all
/// among `flags` (fewer of them); where two such rungs tie (a combination
/// above single-feature rungs), the base, so that the combination is set
/// against what it is built on, not against one of its parts.
fn below<'a>(rungs: &'a [(String, Vec<String>)], flags: &[String]) -> Option<&'a str> {
    let under: Vec<&(String, Vec<String>)> = rungs
        .iter()
        .filter(|(_, f)| f.len() < flags.len() && f.iter().all(|x| flags.contains(x)))
        .collect();
    let most = under.iter().map(|(_, f)| f.len()).max()?;
    let top: Vec<&&(String, Vec<String>)> = under.iter().filter(|(_, f)| f.len() == most).collect();
    match top.as_slice() {
        [one] => Some(one.0.as_str()),
        _ => under
            .iter()
            .find(|(_, f)| f.is_empty())
            .map(|(m, _)| m.as_str()),
    }
}

/// The open-loop workloads the base was measured on: per connection count,
/// the sweep's first rate and the highest the base sustained in every
/// round (near its saturation).
fn points(r: &CompareResults) -> Vec<Workload> {
    let mut conns: Vec<usize> = r
        .workloads
        .iter()
        .filter_map(|w| match w {
            Workload::OpenLoop { conns, .. } => Some(*conns),
            _ => None,
        })
        .collect();
    conns.sort();
    conns.dedup();
    let mut out = Vec::new();
    for c in conns {
        let mut rates: Vec<Workload> = r
            .workloads
            .iter()
            .copied()
            .filter(|w| matches!(w, Workload::OpenLoop { conns, .. } if *conns == c))
            .filter(|w| r.cell(BASE, w, Purpose::Timing).is_some())
            .collect();
        rates.sort_by_key(|w| w.offered_rate());
        let Some(low) = rates.first().copied() else {
            continue;
        };
        out.push(low);
        let high = rates
            .iter()
            .rev()
            .find(|w| sustained(r.cell(BASE, w, Purpose::Timing)))
            .copied();
        if let Some(high) = high.filter(|h| *h != low) {
            out.push(high);
        }
    }
    out
}

/// The section.
pub fn ladder(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let rungs = rungs(r);
    if rungs.len() < 2 {
        return None;
    }
    let mut body = String::from(
        "`uring:multishot`, then one row per io_uring feature on it, and the best combination \
         (the flags are `uring`'s, each one kernel feature: see `uring/README.md`), all \
         measured in the same rounds as `epoll:level`. Each rung is compared with the rung \
         below it (the base, for a feature alone and for the combination): what the feature \
         bought, with its interval. Server CPU per \
         request counts every thread of the server, io_uring's kernel threads included (their \
         share of a CPU apart).\n\n",
    );
    // SQPOLL's rows, measured in the same blocks, are set beside their
    // base under the flags' section: its poller takes a CPU of its own.
    let sqpoll: Vec<String> = models(r).into_iter().filter(|m| is_sqpoll(m)).collect();
    if !sqpoll.is_empty() {
        body.push_str(&format!(
            "SQPOLL ({}) ran in the same rounds; its kernel thread polls the submission queue \
             on a CPU of its own, a cost of another kind than a feature of the loop's, so it is \
             set against its base under *What does a server flag change?*.\n\n",
            sqpoll
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut found = Vec::new();
    for w in points(r) {
        let mut t = Table::new(&[
            "row",
            "server CPU/req",
            "against the rung below",
            "io_uring threads (share of a CPU)",
            "p50",
            "p99",
        ]);
        let epoll = r.cell(EPOLL, &w, Purpose::Timing);
        t.rows.push(vec![
            label(EPOLL),
            show(epoll, stats::server_cpu, micros),
            "—".into(),
            "—".into(),
            show_pct(epoll, 50.0),
            show_pct(epoll, 99.0),
        ]);
        for (m, flags) in &rungs {
            let Some(c) = r.cell(m, &w, Purpose::Timing) else {
                continue;
            };
            let against = match below(&rungs, flags)
                .and_then(|b| Some((b, r.cell(b, &w, Purpose::Timing)?)))
            {
                Some((b, cb)) if sustained(Some(c)) && sustained(Some(cb)) => {
                    let v = versus(
                        x.family,
                        c,
                        cb,
                        stats::server_cpu,
                        micros,
                        "server CPU per request",
                        &label(b),
                    );
                    if let Some(v) = &v {
                        found.push(format!("{}, {}: {v}.", w.label(), label(m)));
                    }
                    v.map_or("—".into(), |_| format!("see findings ({})", label(b)))
                }
                Some((b, _)) => {
                    format!("not compared: a row fell short of the offer ({})", label(b))
                }
                None => "(the base)".into(),
            };
            let mut cpu = show(Some(c), stats::server_cpu, micros);
            if !c.runs.is_empty() && !sustained(Some(c)) {
                cpu.push_str(" ‡");
            }
            t.rows.push(vec![
                label(m),
                cpu,
                against,
                show(Some(c), io_uring_threads_share, percent),
                show_pct(Some(c), 50.0),
                show_pct(Some(c), 99.0),
            ]);
        }
        body.push_str(&format!(
            "**{}** ({})\n\n{}\n",
            w.label(),
            rate_label(&w),
            t.render()
        ));
    }
    body.push_str(&syscalls_and_memory(r, &rungs));
    let profiles = where_time::section(r);
    if let Some(p) = &profiles {
        body.push_str(p);
    }
    found.extend(goals(x, &rungs, profiles.is_some()));
    body.push_str(&findings_list(&found));
    let summary = best_summary(x);
    Some(Answer { body, summary })
}

/// Syscalls per request (the counting run) and memory at the most idle
/// connections, for every rung and epoll:level.
fn syscalls_and_memory(r: &CompareResults, rungs: &[(String, Vec<String>)]) -> String {
    let counted = counted_workload(r);
    let idle = most_idle(r);
    let mut t = Table::new(&[
        "row",
        "syscalls/req (total)",
        "io_uring_enter/req",
        "epoll_wait/req",
        "peak RSS at the most idle",
    ]);
    for m in std::iter::once(EPOLL).chain(rungs.iter().map(|(m, _)| m.as_str())) {
        let sc = counted.and_then(|w| r.cell(m, &w, Purpose::Syscalls));
        let call = |name: &str| {
            sc.and_then(|c| c.syscall(name))
                .map_or("—".into(), |s| format!("{:.2}", s.median))
        };
        t.rows.push(vec![
            label(m),
            sc.and_then(total_syscalls)
                .map_or("—".into(), |v| significant(v, 3)),
            call("io_uring_enter"),
            call("epoll_wait"),
            idle.map_or("—".into(), |w| {
                show(
                    r.cell(m, &w, Purpose::Timing),
                    stats::peak_rss_kib,
                    stats::mib,
                )
            }),
        ]);
    }
    format!(
        "**System calls per request** ({}, one counting run each) **and memory** ({}):\n\n{}\n",
        counted.map_or("not counted".into(), |w| w.label()),
        idle.map_or("no idle workload".into(), |w| w.label()),
        t.render()
    )
}

/// The workload the ladder's syscalls are read on: the sweep's first (the
/// goal's 10 000/s over 100 connections) where the base was counted there,
/// else the first the base was counted on.
fn counted_workload(r: &CompareResults) -> Option<Workload> {
    let counted = |w: &Workload| r.cell(BASE, w, Purpose::Syscalls).is_some();
    sweep(r).first().copied().filter(counted).or_else(|| {
        r.cells
            .iter()
            .filter(|c| c.purpose == Purpose::Syscalls)
            .map(|c| c.workload)
            .find(counted)
    })
}

/// The idle workload with the most idle connections.
fn most_idle(r: &CompareResults) -> Option<Workload> {
    idle_points(r).last().map(|(_, w)| *w)
}

/// The ladder's three goals, each computed from this run.
/// `profiled`: the section holds "Where the server's time goes".
fn goals(x: &Ctx, rungs: &[(String, Vec<String>)], profiled: bool) -> Vec<String> {
    let r = x.r;
    let mut out = Vec::new();
    if !rungs.iter().any(|(m, _)| m == URING_BEST) {
        out.push(format!(
            "The best combination ({URING_BEST}) was not measured in this run."
        ));
        return out;
    }
    // 1. Syscalls per request at the sweep's first rate over 100 connections.
    let counted = counted_workload(r).and_then(|w| r.cell(URING_BEST, &w, Purpose::Syscalls));
    out.push(match counted.and_then(total_syscalls) {
        Some(t) => format!(
            "Goal, at most 1.05 system calls per request ({}): {} made {} — {}.",
            counted.map_or(String::new(), |c| c.workload.label()),
            label(URING_BEST),
            significant(t, 3),
            if t <= 1.05 { "met" } else { "not met" }
        ),
        None => "Goal, at most 1.05 system calls per request: not counted in this run.".into(),
    });
    // 2. CPU per request below epoll:level's over 1 000 connections near
    // saturation, resolved by the paired rounds.
    let many = points(r)
        .into_iter()
        .filter(|w| w.concurrent_conns() == LADDER_CONNS)
        .max_by_key(|w| w.offered_rate());
    out.push(
        match many.and_then(|w| {
            Some((
                w,
                r.cell(URING_BEST, &w, Purpose::Timing)?,
                r.cell(EPOLL, &w, Purpose::Timing)?,
            ))
        }) {
            Some((w, best, epoll)) => {
                // The key `versus` files it under below: one comparison, counted
                // once in the report's family.
                let key = comparison_key("server CPU per request", best, epoll);
                let verdict = x.family.judge(
                    &key,
                    &best.in_rounds(stats::server_cpu),
                    &epoll.in_rounds(stats::server_cpu),
                );
                let mut said = match verdict {
                    Verdict::Differs { paired, .. } if paired.ratio < 1.0 => "met".to_string(),
                    Verdict::Differs { .. } => "not met: it costs more".into(),
                    Verdict::Equivalent { .. } => "not met: no measurable difference".into(),
                    Verdict::NotResolved { .. } => "not resolved by this run".into(),
                    Verdict::TooFew { .. } => "not compared: too few rounds".into(),
                };
                if said != "met" && profiled {
                    said.push_str(
                        " (where each spends its CPU: “Where the server's time goes” above)",
                    );
                }
                format!(
                    "Goal, server CPU per request below epoll:level's at {} ({}): {} — {said}.",
                    w.label(),
                    versus(
                        x.family,
                        best,
                        epoll,
                        stats::server_cpu,
                        micros,
                        "server CPU per request",
                        EPOLL
                    )
                    .unwrap_or_default(),
                    label(URING_BEST)
                )
            }
            None => {
                "Goal, CPU below epoll:level's over 1 000 connections: not measured in this run."
                    .into()
            }
        },
    );
    // 3. Memory at 10 000 idle connections within 1 MiB of epoll:level's.
    let idle = most_idle(r);
    let rss =
        |m: &str| idle.and_then(|w| r.cell(m, &w, Purpose::Timing)?.spread(stats::peak_rss_kib));
    out.push(match (rss(URING_BEST), rss(EPOLL), idle) {
        (Some(b), Some(e), Some(w)) => format!(
            "Goal, peak RSS within 1 MiB of epoll:level's at {}: {} against {} ({} more) — {}.",
            w.label(),
            stats::mib(b.median),
            stats::mib(e.median),
            stats::mib(b.median - e.median),
            if b.median - e.median <= 1024.0 {
                "met"
            } else {
                "not met"
            }
        ),
        _ => "Goal, RSS within 1 MiB of epoll:level's at 10 000 idle: not measured in this run."
            .into(),
    });
    out
}

/// The summary line: the best combination against the base and epoll.
fn best_summary(x: &Ctx) -> Option<String> {
    let r = x.r;
    let w = counted_workload(r)?;
    let counted = |m: &str| r.cell(m, &w, Purpose::Syscalls).and_then(total_syscalls);
    let (b, base, e) = (counted(URING_BEST)?, counted(BASE)?, counted(EPOLL)?);
    Some(format!(
        "**io_uring's ladder**: at {}, {} makes {} system calls per request where \
         uring:multishot makes {} and epoll:level {} (one counting run each); each rung's CPU \
         and tail are in its section.",
        w.label(),
        label(URING_BEST),
        significant(b, 3),
        significant(base, 3),
        significant(e, 3)
    ))
}
