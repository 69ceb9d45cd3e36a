//! "Which model, when?": the pairs a reader weighs, each answered in plain
//! words from this run's paired comparisons, cell by cell over connections
//! and offered rate, and nowhere written by hand.

use super::axes::{size_axis, size_label};
use super::questions::{
    comparison_key, idle_points, models, rate_label, rss_per_idle, sustained, Answer,
};
use super::stats::{self, si, significant, Metric, Spread};
use super::table::{label, Table};
use super::Ctx;
use crate::results::{Cell, CompareResults, Purpose, Workload};
use crate::spec::PAIRS;
use crate::stats::{Family, InRound, Paired, Verdict};

/// How one cell of a pair came out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Lower(Paired),
    Higher(Paired),
    Same(Paired),
    Unresolved(Paired),
    /// A side fell short of the offer, or too few rounds.
    NotCompared,
}

/// The pair's server CPU per request on `w`, by the report's rule.
pub fn outcome(family: &Family, r: &CompareResults, a: &str, b: &str, w: &Workload) -> Outcome {
    let (Some(ca), Some(cb)) = (r.cell(a, w, Purpose::Timing), r.cell(b, w, Purpose::Timing))
    else {
        return Outcome::NotCompared;
    };
    if !(sustained(Some(ca)) && sustained(Some(cb))) {
        return Outcome::NotCompared;
    }
    judged(family, "server CPU per request", ca, cb, stats::server_cpu)
}

fn judged(family: &Family, what: &str, a: &Cell, b: &Cell, metric: Metric) -> Outcome {
    // The sections' own key: one comparison is counted once in the family.
    let key = comparison_key(what, a, b);
    match family.judge(&key, &a.in_rounds(metric), &b.in_rounds(metric)) {
        Verdict::Differs { paired, .. } if paired.ratio < 1.0 => Outcome::Lower(paired),
        Verdict::Differs { paired, .. } => Outcome::Higher(paired),
        Verdict::Equivalent { paired, .. } => Outcome::Same(paired),
        Verdict::NotResolved { paired, .. } => Outcome::Unresolved(paired),
        Verdict::TooFew { .. } => Outcome::NotCompared,
    }
}

fn short(o: &Outcome) -> String {
    let ci = |p: &Paired| {
        format!(
            "{}× ({}–{})",
            significant(p.ratio, 3),
            significant(p.lo, 3),
            significant(p.hi, 3)
        )
    };
    match o {
        Outcome::Lower(p) => format!("**{}** less", ci(p)),
        Outcome::Higher(p) => format!("**{}** more", ci(p)),
        Outcome::Same(p) => format!("{} same", ci(p)),
        Outcome::Unresolved(p) => format!("{} ?", ci(p)),
        Outcome::NotCompared => "—".into(),
    }
}

/// The open-loop workloads, as (connections, rates ascending).
pub fn grid(r: &CompareResults) -> (Vec<usize>, Vec<u64>) {
    let mut conns = Vec::new();
    let mut rates = Vec::new();
    for w in &r.workloads {
        if let Workload::OpenLoop { conns: c, rate } = *w {
            conns.push(c);
            rates.push(rate);
        }
    }
    conns.sort();
    conns.dedup();
    rates.sort();
    rates.dedup();
    (conns, rates)
}

/// One sentence from a pair's cells: where the row costs less, where more,
/// and where the run cannot tell.
fn sentence(a: &str, b: &str, cells: &[(Workload, Outcome)]) -> String {
    let at = |f: fn(&Outcome) -> bool| -> Vec<String> {
        cells
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(w, o)| {
                let pct = match o {
                    Outcome::Lower(p) | Outcome::Higher(p) => {
                        format!(
                            " ({:+.0} %, CI {:+.0} to {:+.0} %)",
                            (p.ratio - 1.0) * 100.0,
                            (p.lo - 1.0) * 100.0,
                            (p.hi - 1.0) * 100.0
                        )
                    }
                    _ => String::new(),
                };
                let size = w
                    .size()
                    .map(|s| format!(" {}", size_label(s)))
                    .unwrap_or_default();
                format!("{} c={}{size}{pct}", rate_label(w), w.concurrent_conns())
            })
            .collect()
    };
    let lower = at(|o| matches!(o, Outcome::Lower(_)));
    let higher = at(|o| matches!(o, Outcome::Higher(_)));
    let same = at(|o| matches!(o, Outcome::Same(_)));
    let open = at(|o| matches!(o, Outcome::Unresolved(_)));
    let compared = lower.len() + higher.len() + same.len() + open.len();
    if compared == 0 {
        return format!(
            "{} against {}: no cell where both sustained the offer in enough rounds; this run \
             cannot answer.",
            label(a),
            label(b)
        );
    }
    let list = |v: &[String]| v.join(", ");
    let mut parts = Vec::new();
    if !lower.is_empty() {
        parts.push(format!("spends less CPU per request at {}", list(&lower)));
    }
    if !higher.is_empty() {
        parts.push(format!("spends more at {}", list(&higher)));
    }
    if !same.is_empty() {
        parts.push(format!(
            "no measurable difference (within ±10 %) at {}",
            list(&same)
        ));
    }
    if !open.is_empty() {
        parts.push(format!("not resolved at {}", list(&open)));
    }
    // Nothing resolved: how large a difference could have gone unseen.
    let bound = if lower.is_empty() && higher.is_empty() {
        let intervals: Vec<(f64, f64)> = cells
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Same(p) | Outcome::Unresolved(p) => Some((p.lo, p.hi)),
                _ => None,
            })
            .collect();
        let lo = intervals.iter().map(|i| i.0).fold(f64::INFINITY, f64::min);
        let hi = intervals.iter().map(|i| i.1).fold(0.0, f64::max);
        format!(
            " No difference resolved: in every cell the true ratio lies, with 95 % confidence, \
             within {}–{}×.",
            significant(lo, 3),
            significant(hi, 3)
        )
    } else {
        String::new()
    };
    format!(
        "{} against {}, over the {compared} cells both sustained: {}.{bound}",
        label(a),
        label(b),
        parts.join("; ")
    )
}

/// Where the row's side of a pair turns: at each rate, the fewest
/// connections from which every compared cell up to the most found the
/// same resolved difference, and what the cells below it found.
fn crossover(cells: &[(Workload, Outcome)]) -> Vec<String> {
    let mut rates: Vec<u64> = cells.iter().filter_map(|(w, _)| w.offered_rate()).collect();
    rates.sort();
    rates.dedup();
    let mut out = Vec::new();
    for rate in rates {
        let mut at: Vec<&(Workload, Outcome)> = cells
            .iter()
            .filter(|(w, _)| w.offered_rate() == Some(rate))
            .collect();
        at.sort_by_key(|(w, _)| w.concurrent_conns());
        if at.len() < 2 {
            continue;
        }
        let lower = |o: &Outcome| matches!(o, Outcome::Lower(_));
        let higher = |o: &Outcome| matches!(o, Outcome::Higher(_));
        for (side, f) in [
            ("less", &lower as &dyn Fn(&Outcome) -> bool),
            ("more", &higher),
        ] {
            let from = at.iter().rposition(|(_, o)| !f(o)).map_or(0, |i| i + 1);
            if from == at.len() {
                continue;
            }
            let n = at[from].0.concurrent_conns();
            let below = if from == 0 {
                format!(
                    "at every count measured ({n} to {})",
                    at[at.len() - 1].0.concurrent_conns()
                )
            } else {
                let none = at[..from].iter().all(|(_, o)| !lower(o) && !higher(o));
                format!(
                    "from {n} active connections; below that {}",
                    if none {
                        "no resolved difference"
                    } else {
                        "the cells disagree (see the table)"
                    }
                )
            };
            out.push(format!(
                "at {}/s it spends {side} CPU per request {below}",
                si(rate as f64)
            ));
        }
    }
    out
}

/// The pair over message size: a table row and the cells compared.
fn over_sizes(x: &Ctx, a: &str, b: &str) -> Option<(String, Vec<(Workload, Outcome)>)> {
    let ws = size_axis(x.r);
    let first = ws.first()?;
    let mut head = vec!["size".to_string()];
    head.extend(ws.iter().map(|w| size_label(w.size().unwrap_or(x.r.size))));
    let mut t = Table::from(head);
    let mut row = vec![format!(
        "{} c={}",
        rate_label(first),
        first.concurrent_conns()
    )];
    let mut cells = Vec::new();
    for w in &ws {
        let o = outcome(x.family, x.r, a, b, w);
        row.push(short(&o));
        if o != Outcome::NotCompared {
            cells.push((*w, o));
        }
    }
    t.rows.push(row);
    Some((t.render(), cells))
}

/// What a switch itself costs: a corosensei coroutine's against a same-CPU
/// thread hand-off, paired by the round of the measurement.
fn switch_cost(x: &Ctx) -> Option<String> {
    let s = &x.r.switching;
    let co: Vec<InRound> = s
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.coroutine_switch_ns))
        .collect();
    let th: Vec<InRound> = s
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.thread_handoff_ns))
        .collect();
    let median = |v: &[InRound]| Spread::of(v.iter().map(|(_, x)| *x)).map(|s| s.median);
    let (c, t) = (median(&co)?, median(&th)?);
    let verdict = match x.family.judge(SWITCH_KEY, &co, &th) {
        Verdict::Differs { paired, .. } => format!(
            "{}× (95 % CI {}–{}), a difference",
            significant(paired.ratio, 3),
            significant(paired.lo, 3),
            significant(paired.hi, 3)
        ),
        Verdict::Equivalent { .. } => "no measurable difference".into(),
        Verdict::NotResolved { paired, .. } => format!(
            "{}× (95 % CI {}–{}), not resolved",
            significant(paired.ratio, 3),
            significant(paired.lo, 3),
            significant(paired.hi, 3)
        ),
        Verdict::TooFew { .. } => format!("{} measurements, too few to compare", s.len()),
    };
    Some(format!(
        "A switch (measured {} times before the matrix, one thread pinned to one CPU): a \
         coroutine's resume or suspend takes {} ns, a hand-off between two threads on that CPU \
         {} ns (a kernel context switch each): {verdict}.",
        s.len(),
        significant(c, 3),
        significant(t, 3)
    ))
}

/// The family's key of the switch comparison: one comparison, however many
/// pairs show it.
const SWITCH_KEY: &str = "switch: a coroutine's against a same-CPU thread hand-off";

/// The coroutine-against-thread costs that are not CPU at a fixed load:
/// memory per idle connection, accepting, closed-loop rate.
fn beyond_cpu(x: &Ctx, a: &str, b: &str) -> Vec<String> {
    let r = x.r;
    let mut out = Vec::new();
    // corosensei's switch is the stackful coroutine's; an async task
    // returns from `poll` instead.
    if a == "coroutine:stackful" {
        out.extend(switch_cost(x));
    }
    let points = idle_points(r);
    if let (Some((na, ka)), Some((nb, kb))) =
        (rss_per_idle(r, a, &points), rss_per_idle(r, b, &points))
    {
        out.push(format!(
            "Memory per idle connection (peak RSS growth over the idle count, medians): {} {} \
             KiB (to {na}), {} {} KiB (to {nb}).",
            label(a),
            si(ka),
            label(b),
            si(kb)
        ));
    }
    for (w, what, note) in r.workloads.iter().filter_map(|w| match w {
        Workload::Connect { .. } => Some((w, "connections/s", "accepting")),
        Workload::Pingpong { .. } => Some((w, "requests/s", "closed loop")),
        _ => None,
    }) {
        let (Some(ca), Some(cb)) = (r.cell(a, w, Purpose::Timing), r.cell(b, w, Purpose::Timing))
        else {
            continue;
        };
        let o = judged(x.family, what, ca, cb, stats::rate);
        let said = match &o {
            Outcome::Lower(_) => "lower",
            Outcome::Higher(_) => "higher",
            Outcome::Same(_) => "no measurable difference",
            Outcome::Unresolved(_) => "not resolved",
            Outcome::NotCompared => continue,
        };
        out.push(format!(
            "{} ({}): {} against {}: {} — {said}.",
            note,
            w.label(),
            label(a),
            label(b),
            short(&o).replace("**", "")
        ));
    }
    out
}

/// The section.
pub fn which_when(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let measured = models(r);
    let pairs: Vec<&(&str, &str, &str)> = PAIRS
        .iter()
        .filter(|(a, b, _)| measured.iter().any(|m| m == a) && measured.iter().any(|m| m == b))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let (conns, rates) = grid(r);
    let mut body = String::from(
        "Each answer below is computed from this run: server CPU per request of the first row \
         over the second's, paired by round, in every open-loop cell (connections × offered \
         rate) where both sustained the offer. **Bold**: a difference (the interval excludes 1, \
         under the report's Benjamini–Hochberg control); *same*: the interval lies within ±10 %; \
         *?*: not resolved by this run; —: not compared (a side fell short, or was not \
         measured there). The map is drawn in the crossover figure.\n\n",
    );
    let mut summary = Vec::new();
    for (a, b, question) in pairs {
        let mut head = vec!["offered".to_string()];
        head.extend(conns.iter().map(|c| format!("{c} connections")));
        let mut t = Table::from(head);
        let mut cells = Vec::new();
        for rate in &rates {
            let mut row = vec![format!("{}/s", si(*rate as f64))];
            for c in &conns {
                let w = Workload::OpenLoop {
                    conns: *c,
                    rate: *rate,
                };
                let o = outcome(x.family, r, a, b, &w);
                row.push(short(&o));
                if o != Outcome::NotCompared {
                    cells.push((w, o));
                }
            }
            t.rows.push(row);
        }
        let turns = crossover(&cells);
        let sizes = over_sizes(x, a, b);
        if let Some((_, by_size)) = &sizes {
            cells.extend(by_size.iter().copied());
        }
        let mut answer = sentence(a, b, &cells);
        if !turns.is_empty() {
            answer.push_str(&format!(" Over connections: {}.", turns.join("; ")));
        }
        body.push_str(&format!("**{question}**\n\n- {answer}\n"));
        if a.starts_with("coroutine") {
            for line in beyond_cpu(x, a, b) {
                body.push_str(&format!("- {line}\n"));
            }
        }
        body.push_str(&format!("\n{}\n", t.render()));
        if let Some((table, _)) = sizes {
            body.push_str(&format!("Over message size:\n\n{table}\n"));
        }
        summary.push(answer);
    }
    body.push_str(&super::table::figure_ref(x, "crossover.svg"));
    Some(Answer {
        body,
        summary: summary
            .first()
            .map(|s| format!("**Which model, when?** {s} (the other pairs: see the section)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(conns: usize, o: Outcome) -> (Workload, Outcome) {
        (
            Workload::OpenLoop {
                conns,
                rate: 10_000,
            },
            o,
        )
    }

    #[test]
    fn a_pair_that_differs_everywhere_says_so_over_every_count() {
        let p = Paired {
            ratio: 0.8,
            lo: 0.75,
            hi: 0.85,
            p: 0.001,
            pairs: 4,
        };
        let cells = [
            at(10, Outcome::Lower(p)),
            at(100, Outcome::Lower(p)),
            at(1000, Outcome::Lower(p)),
        ];
        assert_eq!(
            crossover(&cells),
            ["at 10.0k/s it spends less CPU per request at every count measured (10 to 1000)"]
        );
        // Below the turn, nothing resolved.
        let unresolved = Outcome::Unresolved(Paired {
            lo: 0.7,
            hi: 1.2,
            ..p
        });
        let cells = [
            at(10, unresolved),
            at(100, Outcome::Lower(p)),
            at(1000, Outcome::Lower(p)),
        ];
        assert_eq!(
            crossover(&cells),
            ["at 10.0k/s it spends less CPU per request from 100 active connections; below that \
              no resolved difference"]
        );
    }
}
