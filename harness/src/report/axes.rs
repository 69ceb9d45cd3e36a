//! The crossover map's two other axes as sections: what the number of
//! active connections and what the message size change in a request's
//! cost at a fixed offered rate. "Which model, when?" sets the pairs
//! against each other cell by cell; these sections show every row's cells.

use super::questions::{rate_label, sustained, total_syscalls, versus, Answer};
use super::stats::{self, mib, micros, si, Metric};
use super::table::{figure_ref, label, show, show_pct, Table};
use super::Ctx;
use crate::results::{Cell, CompareResults, Purpose, Workload};

fn timing<'a>(r: &'a CompareResults, model: &str, w: &Workload) -> Option<&'a Cell> {
    r.cell(model, w, Purpose::Timing)
}

/// The rows measured on any of `ws`, in matrix order.
fn rows_on(r: &CompareResults, ws: &[Workload]) -> Vec<String> {
    r.available_models()
        .map(|m| m.model.clone())
        .filter(|m| {
            ws.iter()
                .any(|w| timing(r, m, w).is_some_and(|c| !c.runs.is_empty()))
        })
        .collect()
}

/// The open-loop workloads of the connection question: those at the rate
/// measured over the most connection counts (at least three), ascending by
/// connections.
pub fn connection_axis(r: &CompareResults) -> Vec<Workload> {
    let open: Vec<(usize, u64)> = r
        .workloads
        .iter()
        .filter_map(|w| match *w {
            Workload::OpenLoop { conns, rate } => Some((conns, rate)),
            _ => None,
        })
        .collect();
    let at = |rate: u64| open.iter().filter(|(_, r)| *r == rate).count();
    let mut rates: Vec<u64> = open.iter().map(|(_, r)| *r).collect();
    rates.sort();
    rates.dedup();
    // The lowest rate wins a tie: every row sustains it.
    let Some(rate) = rates.iter().copied().rev().max_by_key(|r| at(*r)) else {
        return Vec::new();
    };
    if at(rate) < 3 {
        return Vec::new();
    }
    let mut v: Vec<Workload> = open
        .iter()
        .filter(|(_, r)| *r == rate)
        .map(|(conns, rate)| Workload::OpenLoop {
            conns: *conns,
            rate: *rate,
        })
        .collect();
    v.sort_by_key(Workload::concurrent_conns);
    v
}

/// The message-size workloads, ascending by size.
pub fn size_axis(r: &CompareResults) -> Vec<Workload> {
    let mut v: Vec<Workload> = r
        .workloads
        .iter()
        .copied()
        .filter(|w| matches!(w, Workload::Message { .. }))
        .collect();
    v.sort_by_key(|w| w.size());
    v
}

/// A size as a column reads: 64 B, 1 KiB, 64 KiB.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// How a table shows one cell.
type ShowCell<'a> = &'a dyn Fn(Option<&Cell>) -> String;

/// One metric over the axis, a row per model; a cell short of its offer is
/// marked with its limiter (`‡S`, `‡L`, ...).
fn axis_table(
    r: &CompareResults,
    rows: &[String],
    axis: &[(String, Workload)],
    cell: ShowCell,
) -> String {
    let mut head = vec!["model".to_string()];
    head.extend(axis.iter().map(|(h, _)| h.clone()));
    let mut t = Table::from(head);
    for m in rows {
        let mut row = vec![label(m)];
        for (_, w) in axis {
            let c = timing(r, m, w);
            let mut text = cell(c);
            if let Some(c) = c.filter(|c| !c.runs.is_empty() && !sustained(Some(c))) {
                text.push(' ');
                text.push_str(stats::Limiter::of(c).map_or("‡", stats::Limiter::mark));
            }
            row.push(text);
        }
        t.rows.push(row);
    }
    t.render()
}

/// The tables every axis shows: CPU per request, the load generator's,
/// p50 and p99, voluntary switches and peak memory.
fn tables(r: &CompareResults, rows: &[String], axis: &[(String, Workload)]) -> String {
    let with = |metric: Metric, f: fn(f64) -> String| move |c: Option<&Cell>| show(c, metric, f);
    let parts: [(&str, ShowCell); 6] = [
        ("Server CPU per request", &with(stats::server_cpu, micros)),
        (
            "The load generator's CPU per request (the instrument's side)",
            &with(stats::client_cpu, micros),
        ),
        ("p50 latency", &|c| show_pct(c, 50.0)),
        ("p99 latency", &|c| show_pct(c, 99.0)),
        (
            "Voluntary context switches of the server per request",
            &with(stats::ctx_voluntary, |v| stats::significant(v, 3)),
        ),
        ("Server peak RSS", &with(stats::peak_rss_kib, mib)),
    ];
    let mut out = String::new();
    for (title, cell) in parts {
        out.push_str(&format!(
            "**{title}** (median (min–max) of the rounds, n = runs):\n\n{}\n",
            axis_table(r, rows, axis, cell)
        ));
    }
    // Syscalls where this run counted them (separate traced runs).
    let counted: Vec<&(String, Workload)> = axis
        .iter()
        .filter(|(_, w)| {
            r.cells
                .iter()
                .any(|c| c.workload == *w && c.purpose == Purpose::Syscalls)
        })
        .collect();
    if !counted.is_empty() {
        let mut head = vec!["model".to_string()];
        head.extend(counted.iter().map(|(h, _)| h.clone()));
        let mut t = Table::from(head);
        for m in rows {
            let mut row = vec![label(m)];
            for (_, w) in &counted {
                row.push(
                    r.cell(m, w, Purpose::Syscalls)
                        .filter(|c| !c.runs.is_empty())
                        .and_then(total_syscalls)
                        .map_or("—".into(), |v| stats::significant(v, 3)),
                );
            }
            t.rows.push(row);
        }
        out.push_str(&format!(
            "**System calls per request** (one counting run each, where this run made one; by \
             call in the syscall section):\n\n{}\n",
            t.render()
        ));
    }
    out
}

/// The question over active connections.
pub fn connections(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let ws = connection_axis(r);
    let first = ws.first()?;
    let rows = rows_on(r, &ws);
    let axis: Vec<(String, Workload)> = ws
        .iter()
        .map(|w| (format!("{} conns", w.concurrent_conns()), *w))
        .collect();
    let last = ws.last()?;
    let mut body = format!(
        "The same total offered rate, {}, of {} B requests, spread over {} to {} active \
         connections (every one sending, open loop; a connection carries one request at a \
         time, so over few connections the round trip bounds the rate). What changes is how \
         many requests each wake-up finds waiting, and how much state the server walks or \
         holds. Each column is a block of its own, so compare rows within a column (\"Which \
         model, when?\" does, paired by round); across columns the medians are from different \
         rounds.\n\n{}",
        rate_label(first),
        r.size,
        first.concurrent_conns(),
        last.concurrent_conns(),
        tables(r, &rows, &axis)
    );
    body.push_str(&figure_ref(x, "crossover.svg"));
    let most = last;
    let summary = cheapest_at(r, &rows, most).map(|(lo, hi)| {
        format!(
            "**Active connections**: at {} over {} connections, server CPU per request from {} to \
             {}; the pairs over {} to {} connections are in \"Which model, when?\".",
            rate_label(most),
            most.concurrent_conns(),
            lo,
            hi,
            first.concurrent_conns(),
            most.concurrent_conns()
        )
    });
    Some(Answer { body, summary })
}

/// "a (model)" for the cheapest and dearest row sustained on `w`.
fn cheapest_at(r: &CompareResults, rows: &[String], w: &Workload) -> Option<(String, String)> {
    let mut v: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|m| {
            let c = timing(r, m, w).filter(|c| sustained(Some(c)))?;
            Some((m.clone(), c.spread(stats::server_cpu)?.median))
        })
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    let show = |(m, v): &(String, f64)| format!("{} ({})", micros(*v), label(m));
    Some((show(v.first()?), show(v.last()?)))
}

/// The question over message size.
pub fn sizes(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let ws = size_axis(r);
    let (first, last) = (ws.first()?, ws.last()?);
    let rows = rows_on(r, &ws);
    let axis: Vec<(String, Workload)> = ws
        .iter()
        .map(|w| (size_label(w.size().unwrap_or(r.size)), *w))
        .collect();
    let mut body = format!(
        "Requests (and their echoes) from {} to {}, at {} over {} connections, every size in the \
         same rounds. Small requests cost wake-ups and system calls; large ones cost copies, \
         and a reply too large for the socket's buffer is written in several parts.\n\n\
         **Bytes echoed per second** (requests answered × size):\n\n{}\n{}",
        size_label(first.size().unwrap_or(r.size)),
        size_label(last.size().unwrap_or(r.size)),
        rate_label(first),
        first.concurrent_conns(),
        axis_table(r, &rows, &axis, &|c| show(c, stats::echoed_bytes, si)),
        tables(r, &rows, &axis)
    );
    // Within a row the sizes are paired by round: what the largest costs
    // against the smallest.
    let mut found = Vec::new();
    for m in &rows {
        let (Some(a), Some(b)) = (timing(r, m, last), timing(r, m, first)) else {
            continue;
        };
        if !(sustained(Some(a)) && sustained(Some(b))) {
            continue;
        }
        let what = "server CPU per request";
        let other = format!("{} requests", size_label(first.size().unwrap_or(r.size)));
        if let Some(v) = versus(x.family, a, b, stats::server_cpu, micros, what, &other) {
            found.push(format!(
                "{} at {}: {v}.",
                label(m),
                size_label(last.size().unwrap_or(r.size))
            ));
        }
    }
    body.push_str(&super::questions::findings_list(&found));
    body.push_str(&figure_ref(x, "crossover.svg"));
    let summary = cheapest_at(r, &rows, last).map(|(lo, hi)| {
        format!(
            "**Message size**: at {} requests ({}, c={}), server CPU per request from {lo} to \
             {hi}.",
            size_label(last.size().unwrap_or(r.size)),
            rate_label(last),
            last.concurrent_conns()
        )
    });
    Some(Answer { body, summary })
}
