//! What a server flag changes: each `MODEL:MODE+FLAG` row of the matrix
//! (`uring:multishot+sqpoll`) set beside its base row (`uring:multishot`),
//! workload by workload, in the same run.

use super::questions::{findings_list, models, rate_label, sustained, sweep, versus, Answer};
use super::stats::{self, io_uring_threads_share, micros, percent, significant, Spread};
use super::table::{label, show, show_pct, Table};
use super::Ctx;
use crate::results::{CompareResults, Purpose, Workload};
use crate::spec::{base_row, row as parse_row};

/// What the flag does, from the model's header and its manual page: words,
/// not a measurement.
fn what_it_does(flag: &str) -> Option<&'static str> {
    match flag {
        "sqpoll" => Some(
            "`--sqpoll` sets the ring up with `IORING_SETUP_SQPOLL`: a kernel thread of the \
             server's process, `iou-sqp-PID`, takes the submissions from the ring, so submitting \
             needs no `io_uring_enter` while it is awake; it spins on a CPU while work comes and \
             until a second (uring's `SQPOLL_IDLE_MS`) passes without a submission, then sleeps. \
             On the kernel `uring`'s semantics tests run on, it may run only where the thread \
             that set the ring up may (they assert it, with the spin and the sleep; kernels \
             differ), so with the server pinned to its CPUs, as `harness run` pins it, the poller \
             and the loop share them. Waiting for completions still takes `io_uring_enter` \
             (`GETEVENTS`). (From `io_uring_setup(2)` and the model's header, not measured \
             here.)",
        ),
        _ => None,
    }
}

/// The timing workloads both rows were measured on: the sweep, then the
/// others in matrix order.
fn workloads(r: &CompareResults) -> Vec<Workload> {
    let mut v = sweep(r);
    v.extend(
        r.workloads
            .iter()
            .copied()
            .filter(|w| !matches!(w, Workload::OpenLoop { .. })),
    );
    v
}

/// The flag rows measured with their base, as (row, base, flags).
fn pairs(r: &CompareResults) -> Vec<(String, String, Vec<String>)> {
    let measured = models(r);
    measured
        .iter()
        // Ladder rungs are set against the rung below them (`ladder`).
        .filter(|m| !super::ladder::is_rung(m))
        .filter_map(|m| {
            let base = base_row(m)?;
            let (_, flags) = parse_row(m).ok()?;
            measured
                .iter()
                .any(|b| b == base)
                .then(|| (m.clone(), base.to_string(), flags))
        })
        .collect()
}

/// The section: one table and findings per flag row.
pub fn flag_cost(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let pairs = pairs(r);
    if pairs.is_empty() {
        return None;
    }
    let mut body = String::from(
        "A row `MODEL:MODE+FLAG` is the same model:mode run with `--FLAG`, measured in the same \
         rounds as its base row, so the two differ only by the flag. Server CPU per request \
         counts every thread of the server, the kernel's io_uring threads included; their own \
         share of a CPU is shown apart.\n\n",
    );
    let mut summary = Vec::new();
    for (row, base, flags) in &pairs {
        let flag = flags.join(" ");
        body.push_str(&format!("### `{flag}`: {row} against {base}\n\n"));
        for text in flags
            .iter()
            .filter_map(|f| what_it_does(f.trim_start_matches('-')))
        {
            body.push_str(&format!("{text}\n\n"));
        }
        let mut t = Table::from(vec![
            "workload".to_string(),
            format!("{base} CPU/req"),
            format!("{row} CPU/req"),
            format!("{base}: share of a CPU"),
            format!("{row}: share of a CPU"),
            "of which io_uring threads".to_string(),
            format!("{base} p99"),
            format!("{row} p99"),
        ]);
        let mut found = Vec::new();
        let mut short = false;
        for w in workloads(r) {
            let (Some(b), Some(v)) = (
                r.cell(base, &w, Purpose::Timing),
                r.cell(row, &w, Purpose::Timing),
            ) else {
                continue;
            };
            let mut mark = |c: &crate::results::Cell, text: String| {
                let open = w.offered_rate().is_some();
                if open && !c.runs.is_empty() && !sustained(Some(c)) {
                    short = true;
                    format!("{text} ‡")
                } else {
                    text
                }
            };
            t.rows.push(vec![
                w.label(),
                mark(b, show(Some(b), stats::server_cpu, micros)),
                mark(v, show(Some(v), stats::server_cpu, micros)),
                show(Some(b), stats::server_utilisation, percent),
                show(Some(v), stats::server_utilisation, percent),
                show(Some(v), io_uring_threads_share, percent),
                show_pct(Some(b), 99.0),
                show_pct(Some(v), 99.0),
            ]);
            let both_sustained =
                w.offered_rate().is_none() || (sustained(Some(b)) && sustained(Some(v)));
            if !b.runs.is_empty() && !v.runs.is_empty() {
                if !both_sustained {
                    found.push(format!(
                        "{}: not compared, a row fell short of the offered rate in a repeat.",
                        w.label()
                    ));
                } else if let Some(text) = versus(
                    x.family,
                    v,
                    b,
                    stats::server_cpu,
                    micros,
                    "server CPU per request",
                    base,
                ) {
                    found.push(format!("{}: {row}: {text}.", w.label()));
                }
            }
        }
        body.push_str(&t.render());
        body.push('\n');
        // The server's share of a CPU, and the io_uring threads' share, at
        // the sweep's lowest and highest rate both rows were measured on.
        let median = |m: &str, w: &Workload, metric: stats::Metric| {
            Some(r.cell(m, w, Purpose::Timing)?.spread(metric)?.median)
        };
        let measured: Vec<Workload> = sweep(r)
            .into_iter()
            .filter(|w| {
                median(base, w, stats::server_utilisation).is_some()
                    && median(row, w, stats::server_utilisation).is_some()
            })
            .collect();
        if let [first, .., last] = measured.as_slice() {
            let at = |m: &str, w: &Workload, metric| {
                median(m, w, metric).map_or_else(|| "?".to_string(), percent)
            };
            found.push(format!(
                "From {} to {} the server used {} then {} of a CPU with the flag, {} then {} \
                 without; io_uring's kernel threads took {} then {} of it (medians).",
                rate_label(first),
                rate_label(last),
                at(row, first, stats::server_utilisation),
                at(row, last, stats::server_utilisation),
                at(base, first, stats::server_utilisation),
                at(base, last, stats::server_utilisation),
                at(row, first, io_uring_threads_share),
                at(row, last, io_uring_threads_share),
            ));
        }
        if let Some(w) = super::questions::syscall_workloads(r).first() {
            let totals = |m: &str| {
                let c = r.cell(m, w, Purpose::Syscalls)?;
                let total =
                    |name: &str| {
                        Spread::of(c.runs.iter().filter_map(|m| {
                            m.server.syscalls_per_request.as_ref()?.get(name).copied()
                        }))
                        .map(|s| s.median)
                    };
                Some((total("total")?, total("io_uring_enter").unwrap_or(0.0)))
            };
            if let (Some((bt, be)), Some((vt, ve))) = (totals(base), totals(row)) {
                found.push(format!(
                    "System calls per request at {} (one counting run each, not tested): {} with \
                     the flag against {} without; `io_uring_enter` {} against {}.",
                    w.label(),
                    significant(vt, 3),
                    significant(bt, 3),
                    significant(ve, 3),
                    significant(be, 3)
                ));
            }
        }
        body.push_str(&findings_list(&found));
        body.push('\n');
        let top = sweep(r).into_iter().rev().find(|w| {
            r.cell(base, w, Purpose::Timing)
                .is_some_and(|c| sustained(Some(c)))
                && r.cell(row, w, Purpose::Timing)
                    .is_some_and(|c| sustained(Some(c)))
        });
        if let Some(w) = top {
            let spread = |m: &str, metric| r.cell(m, &w, Purpose::Timing)?.spread(metric);
            if let (Some(b), Some(v)) = (
                spread(base, stats::server_cpu),
                spread(row, stats::server_cpu),
            ) {
                let poller = spread(row, io_uring_threads_share)
                    .map(|s| format!(", {} of a CPU in its io_uring threads", percent(s.median)))
                    .unwrap_or_default();
                summary.push(format!(
                    "`{flag}` ({}) at {}: {} CPU per request against {} without{poller}",
                    label(row),
                    rate_label(&w),
                    micros(v.median),
                    micros(b.median)
                ));
            }
        }
    }
    let summary =
        (!summary.is_empty()).then(|| format!("**A flag's cost**: {}.", summary.join("; ")));
    Some(Answer { body, summary })
}
