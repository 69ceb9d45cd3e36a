//! The report's answers, one per question a reader brings: each a table, a
//! figure and findings computed from them, and one line for the summary.
//!
//! A finding states a difference only where `stats::compare` (a two-sided
//! Mann–Whitney rank test over the repeats, p < 0.05, at least
//! `MIN_REPEATS` a side) finds one, and says "no measurable difference"
//! otherwise. Every number in a finding or a summary line is read from the
//! cells here, never written by hand.

use std::collections::BTreeSet;

use super::stats::{self, micros, show_p, si, significant, Metric, Spread};
use super::table::{figure_ref, label, show, show_pct, Table};
use super::Ctx;
use crate::results::{is_reference, Cell, CompareResults, Purpose, Workload, SATURATED};
use crate::spec::{is_model_row, twin_of, FLOOR_ROW, OFFERED_SHARE};
use crate::stats::{samples_needed, Family, Paired, Verdict, EQUIVALENCE, MIN_PAIRS};

/// One question's answer: its section and its line of the summary.
pub struct Answer {
    pub body: String,
    pub summary: Option<String>,
}

fn timing<'a>(r: &'a CompareResults, model: &str, w: &Workload) -> Option<&'a Cell> {
    r.cell(model, w, Purpose::Timing)
}

pub fn models(r: &CompareResults) -> Vec<String> {
    r.available_models().map(|m| m.model.clone()).collect()
}

/// The rows findings and summaries rank: the models, without the A/A twin
/// (compared with its original in its own section) and the floor (the
/// instrument, not a model).
pub fn ranked(r: &CompareResults) -> Vec<String> {
    models(r).into_iter().filter(|m| is_model_row(m)).collect()
}

/// The yardstick every answer compares with: the first peer measured, or,
/// without one, the lab's `epoll:level`.
pub fn yardstick(r: &CompareResults) -> Option<String> {
    let ms = models(r);
    ms.iter()
        .find(|m| is_reference(m))
        .or_else(|| ms.iter().find(|m| *m == "epoll:level"))
        .cloned()
}

/// The open-loop sweep, ascending by rate: the open-loop workloads over
/// the connection count measured at the most rates (the others are the
/// crossover map's and the ladder's: "Which model, when?" and the
/// connection question read them).
pub fn sweep(r: &CompareResults) -> Vec<Workload> {
    let open = |c: usize| {
        r.workloads
            .iter()
            .copied()
            .filter(move |w| matches!(w, Workload::OpenLoop { conns, .. } if *conns == c))
    };
    let mut counts: Vec<usize> = Vec::new();
    for w in &r.workloads {
        if let Workload::OpenLoop { conns, .. } = *w {
            if !counts.contains(&conns) {
                counts.push(conns);
            }
        }
    }
    // The first seen wins a tie: the matrix runs the sweep first.
    let Some(conns) = counts
        .iter()
        .copied()
        .rev()
        .max_by_key(|c| open(*c).count())
    else {
        return Vec::new();
    };
    let mut v: Vec<Workload> = open(conns).collect();
    v.sort_by_key(|w| w.offered_rate());
    v
}

pub(super) fn rate_label(w: &Workload) -> String {
    format!("{}/s", si(w.offered_rate().unwrap_or(0) as f64))
}

/// Whether every run of the cell answered at least `OFFERED_SHARE` of its
/// offer (and there was one).
pub fn sustained(c: Option<&Cell>) -> bool {
    c.is_some_and(|c| {
        !c.runs.is_empty()
            && c.failures.is_empty()
            && c.runs
                .iter()
                .all(|m| stats::offered_share(m).is_some_and(|s| s >= OFFERED_SHARE))
    })
}

/// The highest rate of the sweep `model` sustained in every repeat.
pub fn highest_sustained(r: &CompareResults, model: &str) -> Option<u64> {
    sweep(r)
        .iter()
        .filter(|w| sustained(timing(r, model, w)))
        .filter_map(|w| w.offered_rate())
        .max()
}

/// The rate the answers compare models at: the highest of the sweep that
/// at least half of the models measured on it sustained (so that most
/// models can be compared, and none is compared past its saturation).
pub fn reference_rate(r: &CompareResults) -> Option<Workload> {
    let s = sweep(r);
    let measured: Vec<String> = models(r)
        .into_iter()
        .filter(|m| {
            s.iter()
                .any(|w| timing(r, m, w).is_some_and(|c| !c.runs.is_empty()))
        })
        .collect();
    if measured.is_empty() {
        return None;
    }
    s.iter()
        .rev()
        .find(|w| {
            let n = measured
                .iter()
                .filter(|m| sustained(timing(r, m, w)))
                .count();
            2 * n >= measured.len()
        })
        .or(s.first())
        .copied()
}

/// A ratio and its interval as a finding states them: `1.23× (95 % CI
/// 1.10–1.38×)`.
pub(super) fn show_paired(p: &Paired) -> String {
    format!(
        "{}× (95 % CI {}–{}×)",
        significant(p.ratio, 3),
        significant(p.lo, 3),
        significant(p.hi, 3)
    )
}

/// The name of one comparison in the report's family: the same comparison
/// asked by two sections is counted once.
pub(super) fn comparison_key(what: &str, a: &Cell, b: &Cell) -> String {
    format!(
        "{what} | {} {} | {} {}",
        a.model,
        a.workload.label(),
        b.model,
        b.workload.label()
    )
}

/// "a vs b" as a finding states it, paired by round and under the report's
/// multiplicity control (`crate::stats`): the ratio a/b with its interval
/// when it is a discovery, "no measurable difference" when the interval
/// lies within the equivalence margin, "not resolved" otherwise.
pub(super) fn versus(
    family: &Family,
    a: &Cell,
    b: &Cell,
    metric: Metric,
    f: fn(f64) -> String,
    what: &str,
    other: &str,
) -> Option<String> {
    let (sa, sb) = (a.spread(metric)?, b.spread(metric)?);
    let key = comparison_key(what, a, b);
    let medians = format!("medians {} vs {}", f(sa.median), f(sb.median));
    Some(
        match family.judge(&key, &a.in_rounds(metric), &b.in_rounds(metric)) {
            Verdict::Differs { paired, q } => format!(
                "{} the {what} of {other} ({medians}; {} rounds paired, {}, q = {})",
                show_paired(&paired),
                paired.pairs,
                show_p(paired.p),
                significant(q, 2)
            ),
            Verdict::Equivalent { paired, .. } => format!(
                "no measurable difference in {what} from {other}: {} lies within ±{:.0} % \
                 ({medians}; {} rounds paired)",
                show_paired(&paired),
                EQUIVALENCE * 100.0,
                paired.pairs
            ),
            Verdict::NotResolved { paired, q } => format!(
                "not resolved: {what} {} {other}'s, an interval too wide to call a difference \
                 or an equivalence ({medians}; {} rounds paired, q = {})",
                show_paired(&paired),
                paired.pairs,
                significant(q, 2)
            ),
            Verdict::TooFew { pairs } => format!(
                "too few rounds with both to compare its {what} with {other} ({medians}; {pairs} \
                 paired, an interval needs {MIN_PAIRS})"
            ),
        },
    )
}

/// Every model against the yardstick on `w`.
fn against_yardstick(
    x: &Ctx,
    w: &Workload,
    purpose: Purpose,
    metric: Metric,
    f: fn(f64) -> String,
    what: &str,
) -> Vec<String> {
    let r = x.r;
    let Some(y) = yardstick(r) else {
        return Vec::new();
    };
    let Some(base) = r.cell(&y, w, purpose).filter(|c| !c.runs.is_empty()) else {
        return Vec::new();
    };
    // Past its saturation a model's figures describe a backlog, not the
    // offered load: such a model (or yardstick) is not compared there.
    let open = w.offered_rate().is_some() && purpose == Purpose::Timing;
    let short = |c: &Cell| open && !sustained(Some(c));
    let why_not = |m: &str, c: &Cell| {
        format!(
            "{}: did not sustain {} in every repeat (answered {}/s), so it is not compared there.",
            label(m),
            rate_label(w),
            c.spread(stats::rate).map_or("?".into(), |s| si(s.median))
        )
    };
    if short(base) {
        return vec![why_not(&y, base)];
    }
    ranked(r)
        .iter()
        .filter(|m| **m != y)
        .filter_map(|m| {
            let c = r.cell(m, w, purpose).filter(|c| !c.runs.is_empty())?;
            if short(c) {
                return Some(why_not(m, c));
            }
            let v = versus(x.family, c, base, metric, f, what, &label(&y))?;
            Some(format!("{}: {v}.", label(m)))
        })
        .collect()
}

/// The models' `metric` on `w`, smallest first; on an open-loop workload
/// only the models that sustained its rate (past saturation a figure
/// describes a backlog, not the load).
fn cheapest(r: &CompareResults, w: &Workload, metric: Metric) -> Vec<(String, Spread)> {
    let open = w.offered_rate().is_some();
    let mut v: Vec<(String, Spread)> = ranked(r)
        .into_iter()
        .filter(|m| !open || sustained(timing(r, m, w)))
        .filter_map(|m| {
            let s = timing(r, &m, w)?.spread(metric)?;
            Some((m, s))
        })
        .collect();
    v.sort_by(|a, b| a.1.median.total_cmp(&b.1.median));
    v
}

pub(super) fn findings_list(found: &[String]) -> String {
    if found.is_empty() {
        return "Findings: none — the cells above hold no pair to compare.\n".into();
    }
    let mut out = String::from("Findings (computed from the table):\n\n");
    for f in found {
        out.push_str(&format!("- {f}\n"));
    }
    out
}

/// The table of one metric over the sweep, short cells marked, and the
/// highest sustained rate.
fn sweep_table(r: &CompareResults, metric: Metric, f: fn(f64) -> String) -> String {
    let s = sweep(r);
    let mut head = vec!["model".to_string()];
    head.extend(s.iter().map(rate_label));
    head.push("highest rate sustained".into());
    let mut t = Table::from(head);
    for m in models(r) {
        let mut row = vec![label(&m)];
        for w in &s {
            let c = timing(r, &m, w);
            let mut text = show(c, metric, f);
            if let Some(c) = c.filter(|c| !c.runs.is_empty() && !sustained(Some(c))) {
                text.push(' ');
                text.push_str(stats::Limiter::of(c).map_or("‡", stats::Limiter::mark));
            }
            row.push(text);
        }
        row.push(match highest_sustained(r, &m) {
            Some(rate) => format!("{}/s", si(rate as f64)),
            None => "none".into(),
        });
        t.rows.push(row);
    }
    t.render()
}

fn short_note() -> String {
    format!(
        "‡ at least one round answered less than {:.0} % of the offered rate; requests still \
         unanswered at the window's end count at their wait so far, so latencies there are lower \
         bounds. The letters say which side ran out of CPU (median share of a CPU at least {:.0} \
         %): ‡S the server, ‡L the load generator, ‡SL both; a bare ‡, neither (the shortfall \
         is waiting, not work). A model is not asked for a rate above one it fell short of in \
         every round.\n",
        OFFERED_SHARE * 100.0,
        stats::CPU_BOUND * 100.0
    )
}

/// Where each model's sweep ended, and which side ran out: a capacity is
/// claimed for the model only where the server, not the load generator,
/// was the limit.
fn saturation_findings(r: &CompareResults) -> Vec<String> {
    let s = sweep(r);
    let Some(top) = s.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // The floor's row too: where it ran out is the load generator's own limit.
    for m in models(r).into_iter().filter(|m| twin_of(m).is_none()) {
        let short = s.iter().find_map(|w| {
            let c = timing(r, &m, w).filter(|c| !c.runs.is_empty() && !sustained(Some(c)))?;
            Some((w, c))
        });
        let best = highest_sustained(r, &m);
        let below = best.map_or("none of the rates".to_string(), |b| {
            format!("{}/s", si(b as f64))
        });
        let line = match short {
            None if best == top.offered_rate() => format!(
                "{}: sustained every rate up to {} (the sweep's top): its capacity lies above it.",
                label(&m),
                rate_label(top)
            ),
            None => continue,
            Some((w, c)) => {
                let share = |f: Metric| {
                    c.spread(f)
                        .map_or("?".to_string(), |s| format!("{:.0} %", s.median * 100.0))
                };
                let limiter = stats::Limiter::of(c);
                let verdict = match limiter {
                    Some(stats::Limiter::Server) => {
                        format!(
                            "the server ran out: its capacity here is between {below} and {}",
                            rate_label(w)
                        )
                    }
                    Some(stats::Limiter::LoadGenerator) | Some(stats::Limiter::Both) => format!(
                        "the load generator ran out, so this run measures no capacity for the \
                         model (only that it is at least {below})"
                    ),
                    _ => format!(
                        "neither side used {:.0} % of a CPU: the model fell behind while \
                         waiting, its capacity here is between {below} and {}",
                        stats::CPU_BOUND * 100.0,
                        rate_label(w)
                    ),
                };
                format!(
                    "{}: sustained {below}; at {} it answered {}/s with the server at {} and the \
                     load generator at {} of a CPU (medians): {verdict}.",
                    label(&m),
                    rate_label(w),
                    c.spread(stats::rate).map_or("?".into(), |s| si(s.median)),
                    share(stats::server_utilisation),
                    share(stats::client_utilisation),
                )
            }
        };
        out.push(line);
    }
    out
}

/// Question 1: what does a request cost at a given load?
pub fn request_cost(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let s = sweep(r);
    let first = s.first()?;
    let conns = first.concurrent_conns();
    let mut body = format!(
        "The load generator offers a fixed rate of {} B requests over {conns} connections (open \
         loop: each request is sent when it is due, whether or not the previous reply came), \
         rising until the model cannot keep up. At a fixed offered load the server CPU per \
         request is a cost, not the reciprocal of a saturated rate.\n\n\
         **Server CPU per request at each offered rate** (median (min–max) of the repeats, n = \
         runs):\n\n{}\n{}\n",
        r.size,
        sweep_table(r, stats::server_cpu, micros),
        short_note()
    );
    body.push_str(&format!(
        "**The load generator's CPU per request in the same runs** (the instrument's cost, \
         beside the server's; `reflector` is its floor):\n\n{}\n",
        sweep_table(r, stats::client_cpu, micros)
    ));
    body.push_str(&figure_ref(x, "cpu_per_request_vs_rate.svg"));
    let mut found = Vec::new();
    let reference = reference_rate(r);
    if let Some(w) = reference {
        found.push(format!(
            "The answers compare at {} — the highest rate of the sweep at least half the models \
             sustained in every repeat.",
            rate_label(&w)
        ));
        found.extend(against_yardstick(
            x,
            &w,
            Purpose::Timing,
            stats::server_cpu,
            micros,
            "server CPU per request",
        ));
    }
    found.extend(saturation_findings(r));
    body.push_str(&findings_list(&found));
    let summary = reference.and_then(|w| {
        let v = cheapest(r, &w, stats::server_cpu);
        let (lo, hi) = (v.first()?, v.last()?);
        let y = yardstick(r);
        let peer = y
            .as_ref()
            .and_then(|y| v.iter().find(|(m, _)| m == y))
            .map(|(m, s)| format!("; yardstick {}: {}", label(m), micros(s.median)))
            .unwrap_or_default();
        let best_rates: Vec<(String, u64)> = models(r)
            .iter()
            .filter_map(|m| Some((m.clone(), highest_sustained(r, m)?)))
            .collect();
        let top = best_rates
            .iter()
            .map(|(_, rate)| *rate)
            .max()
            .map(|best| {
                let at: Vec<String> = best_rates
                    .iter()
                    .filter(|(_, rate)| *rate == best)
                    .map(|(m, _)| label(m))
                    .collect();
                let peer = y
                    .as_ref()
                    .map(|y| match highest_sustained(r, y) {
                        Some(yr) => format!("; yardstick: {}/s", si(yr as f64)),
                        None => "; yardstick: none of the rates".into(),
                    })
                    .unwrap_or_default();
                let limits: Vec<stats::Limiter> = models(r)
                    .iter()
                    .filter_map(|m| {
                        sweep(r).iter().find_map(|w| {
                            let c = timing(r, m, w)
                                .filter(|c| !c.runs.is_empty() && !sustained(Some(c)))?;
                            stats::Limiter::of(c)
                        })
                    })
                    .collect();
                let count = |l: stats::Limiter| limits.iter().filter(|x| **x == l).count();
                let limited = format!(
                    " Where a sweep ended, the server ran out of CPU {} time(s), the load \
                     generator {} (both: {}, neither: {}).",
                    count(stats::Limiter::Server),
                    count(stats::Limiter::LoadGenerator),
                    count(stats::Limiter::Both),
                    count(stats::Limiter::Neither)
                );
                format!(
                    " Highest rate sustained in every round: {}/s, by {} of {} rows ({}){peer}.{limited}",
                    si(best as f64),
                    at.len(),
                    models(r).len(),
                    if at.len() > 4 {
                        format!("{} and others", at[..4].join(", "))
                    } else {
                        at.join(", ")
                    }
                )
            })
            .unwrap_or_default();
        Some(format!(
            "**A request's cost** at {} over {conns} connections: server CPU per request from {} \
             ({}) to {} ({}){peer}{}.{top}",
            rate_label(&w),
            micros(lo.1.median),
            label(&lo.0),
            micros(hi.1.median),
            label(&hi.0),
            not_sustained(r, &w)
        ))
    });
    Some(Answer { body, summary })
}

/// ", not sustained by: a, b" for the models measured on `w` that fell
/// short of its rate, or nothing.
fn not_sustained(r: &CompareResults, w: &Workload) -> String {
    // Measured and short, or not asked for past an earlier saturation.
    let short: Vec<String> = models(r)
        .iter()
        .filter(|m| {
            timing(r, m, w).is_some_and(|c| {
                (!c.runs.is_empty() && !sustained(Some(c)))
                    || c.not_run
                        .as_deref()
                        .is_some_and(|why| why.starts_with(SATURATED))
            })
        })
        .map(|m| label(m))
        .collect();
    if short.is_empty() {
        String::new()
    } else {
        format!("; not sustained there by {}", short.join(", "))
    }
}

/// Closed loop: throughput at saturation, with both sides' CPU.
pub fn saturation(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let pp: Vec<Workload> = r
        .workloads
        .iter()
        .copied()
        .filter(|w| matches!(w, Workload::Pingpong { .. }))
        .collect();
    if pp.is_empty() {
        return None;
    }
    let mut body = String::from(
        "Closed loop: every connection sends its next request as soon as the reply is in, so \
         the rate is whatever the server and the load generator together can do — a throughput, \
         not a cost. Where both sides use about a whole CPU, the server CPU per request is just \
         1/rate of two saturated processes sharing the machine; the utilisation columns show \
         where that is so.\n\n",
    );
    let mut saturated = 0;
    let mut measured = 0;
    for w in &pp {
        let mut t = Table::new(&[
            "model",
            "requests/s",
            "server CPU (share of a CPU)",
            "client CPU (share of a CPU)",
            "server CPU/req",
            "p99",
        ]);
        for m in models(r) {
            let c = timing(r, &m, w);
            if let (Some(s), Some(cl)) = (
                c.and_then(|c| c.spread(stats::server_utilisation)),
                c.and_then(|c| c.spread(stats::client_utilisation)),
            ) {
                measured += 1;
                if s.median >= 0.9 && cl.median >= 0.9 {
                    saturated += 1;
                }
            }
            t.rows.push(vec![
                label(&m),
                show(c, stats::rate, si),
                show(c, stats::server_utilisation, share),
                show(c, stats::client_utilisation, share),
                show(c, stats::server_cpu, micros),
                show_pct(c, 99.0),
            ]);
        }
        body.push_str(&format!("**{}**\n\n{}\n", w.label(), t.render()));
    }
    body.push_str(&figure_ref(x, "closed_loop_throughput.svg"));
    let mut found = vec![format!(
        "In {saturated} of {measured} closed-loop cells both the server and the load generator \
         used at least 0.9 of a CPU (medians): there the rate is the pair's saturation."
    )];
    if let Some(w) = pp
        .iter()
        .find(|w| w.concurrent_conns() == 100)
        .or(pp.last())
    {
        found.extend(against_yardstick(
            x,
            w,
            Purpose::Timing,
            stats::rate,
            si,
            &format!("requests/s at {}", w.label()),
        ));
    }
    body.push_str(&findings_list(&found));
    Some(Answer {
        body,
        summary: None,
    })
}

fn share(v: f64) -> String {
    format!("{v:.2}")
}

fn kib_each(v: f64) -> String {
    format!("{} KiB", si(v))
}

/// The idle workloads, by idle count. The idle-0 point is an idle workload
/// with no idle connection, measured in the same rounds as the others; a
/// record from before it was measured uses the open-loop cell at the same
/// rate instead (measured minutes apart: said in the section).
pub(super) fn idle_points(r: &CompareResults) -> Vec<(usize, Workload)> {
    let mut v: Vec<(usize, Workload)> = r
        .workloads
        .iter()
        .filter_map(|w| match *w {
            Workload::Idle { idle, .. } => Some((idle, *w)),
            _ => None,
        })
        .collect();
    v.sort_by_key(|(n, _)| *n);
    if let Some((n, Workload::Idle { active, rate, .. })) = v.first().copied() {
        let zero = match rate {
            Some(rate) => Workload::OpenLoop {
                conns: active,
                rate,
            },
            None => Workload::Pingpong { conns: active },
        };
        if n > 0 && r.workloads.contains(&zero) {
            v.insert(0, (0, zero));
        }
    }
    v.dedup_by_key(|(n, _)| *n);
    v
}

/// Memory per idle connection: the growth of the median peak RSS from no
/// idle connection to `n`, over `n`, KiB.
pub(super) fn rss_per_idle(
    r: &CompareResults,
    model: &str,
    points: &[(usize, Workload)],
) -> Option<(usize, f64)> {
    let base = timing(r, model, &points.first()?.1)?.spread(stats::peak_rss_kib)?;
    points.iter().rev().find_map(|(n, w)| {
        let top = timing(r, model, w)?.spread(stats::peak_rss_kib)?;
        (*n > 0).then(|| (*n, (top.median - base.median) / *n as f64))
    })
}

/// Question 2: what does an idle connection cost?
pub fn idle_cost(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let points = idle_points(r);
    if points.len() < 2 {
        return None;
    }
    let (active, rate) = match points.last().map(|p| p.1) {
        Some(Workload::Idle { active, rate, .. }) => (active, rate),
        _ => return None,
    };
    let mut body = format!(
        "Idle connections (open, each answered once, then silent) are held beside {active} \
         active ones{}. The CPU per request of the active connections shows what the idle ones \
         cost the loop that serves them; the growth of the peak resident set, divided by the \
         idle count, what each costs in the server's own memory (forked processes share pages but \
         are counted once each, so fork and prefork are overstated; the kernel's socket buffers \
         are not part of a resident set at all).\n\n",
        rate.map_or(String::new(), |r| format!(
            " that are offered {}/s",
            si(r as f64)
        ))
    );
    let mut head = vec!["model".to_string()];
    head.extend(points.iter().map(|(n, _)| format!("CPU/req, {n} idle")));
    head.push("peak RSS, most idle".into());
    head.push("memory per idle connection".into());
    let mut t = Table::from(head);
    for m in models(r) {
        let mut row = vec![label(&m)];
        row.extend(
            points
                .iter()
                .map(|(_, w)| show(timing(r, &m, w), stats::server_cpu, micros)),
        );
        let top = points
            .iter()
            .rev()
            .find(|(_, w)| timing(r, &m, w).is_some_and(|c| !c.runs.is_empty()));
        row.push(match top {
            Some((n, w)) => format!(
                "{} at {n}",
                show(timing(r, &m, w), stats::peak_rss_kib, stats::mib)
            ),
            None => "—".into(),
        });
        row.push(match rss_per_idle(r, &m, &points) {
            Some((n, k)) if k > 0.0 => format!("{} (to {n})", kib_each(k)),
            // Page-granular RSS can even shrink between runs.
            Some((n, _)) => format!("no growth measured (to {n})"),
            None => "—".into(),
        });
        t.rows.push(row);
    }
    body.push_str(&t.render());
    body.push('\n');
    body.push_str(&figure_ref(x, "cpu_per_request_vs_idle.svg"));
    let mut found = Vec::new();
    for m in models(r) {
        let base = timing(r, &m, &points[0].1).filter(|c| !c.runs.is_empty());
        // The largest idle count with repeats enough to test, else the
        // largest measured (a count measured once is there for its memory).
        let measured = |enough: usize| {
            points[1..]
                .iter()
                .rev()
                .find_map(|(n, w)| Some((*n, timing(r, &m, w).filter(|c| c.runs.len() >= enough)?)))
        };
        let top = measured(MIN_PAIRS).or_else(|| measured(1));
        let (Some(base), Some((n, top))) = (base, top) else {
            continue;
        };
        let other = format!("itself at {} idle", points[0].0);
        let Some(v) = versus(
            x.family,
            top,
            base,
            stats::server_cpu,
            micros,
            "server CPU per request",
            &other,
        ) else {
            continue;
        };
        found.push(format!("{} at {n} idle connections: {v}.", label(&m)));
    }
    body.push_str(&findings_list(&found));
    let per: Vec<(String, f64)> = ranked(r)
        .into_iter()
        .filter_map(|m| Some((m.clone(), rss_per_idle(r, &m, &points)?.1)))
        .filter(|(_, k)| *k > 0.0)
        .collect();
    let lo = per.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let hi = per.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let y = yardstick(r);
    let summary = lo.zip(hi).map(|(lo, hi)| {
        let peer = y
            .as_ref()
            .and_then(|y| per.iter().find(|(m, _)| m == y))
            .map(|(m, k)| format!("; yardstick {}: {}", label(m), kib_each(*k)))
            .unwrap_or_default();
        format!(
            "**An idle connection** costs from {} ({}) to {} ({}) of resident memory{peer} \
             (peak RSS growth over the idle count, medians).",
            kib_each(lo.1),
            label(&lo.0),
            kib_each(hi.1),
            label(&hi.0)
        )
    });
    Some(Answer { body, summary })
}

/// Question 3: how fast does each accept connections?
pub fn accept_rate(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let w = r
        .workloads
        .iter()
        .copied()
        .find(|w| matches!(w, Workload::Connect { .. }))?;
    let mut body = format!(
        "Each connection: `connect`, one {} B request, its reply, close (RST, so that TIME_WAIT \
         cannot exhaust the ports); {} connections in flight at once, closed loop.\n\n",
        r.size,
        w.concurrent_conns()
    );
    let mut t = Table::new(&[
        "model",
        "connections/s",
        "server CPU/conn",
        "server CPU (share of a CPU)",
        "p50",
        "p99",
        "errors",
    ]);
    for m in models(r) {
        let c = timing(r, &m, &w);
        t.rows.push(vec![
            label(&m),
            show(c, stats::rate, si),
            show(c, stats::server_cpu, micros),
            show(c, stats::server_utilisation, share),
            show(c, stats::p50, micros),
            show_pct(c, 99.0),
            show(c, stats::errors, |v| format!("{v:.0}")),
        ]);
    }
    body.push_str(&t.render());
    body.push('\n');
    body.push_str(&figure_ref(x, "connections_per_second.svg"));
    let mut found = against_yardstick(x, &w, Purpose::Timing, stats::rate, si, "connections/s");
    let empty: Vec<String> = models(r)
        .iter()
        .filter_map(|m| {
            let c = timing(r, m, &w)?;
            let n = c.runs.iter().filter(|run| run.requests == 0).count();
            (n > 0).then(|| format!("{} ({n} of {})", label(m), c.runs.len()))
        })
        .collect();
    if !empty.is_empty() {
        found.push(format!(
            "Runs that completed no connection in their {} s window, without an error: {}. \
             Linux retransmits a SYN it got no answer to after 1 s (its initial retransmission \
             timeout), longer than the window, so one dropped SYN per connection in flight is \
             enough; the runs say that it happened, not why.",
            r.duration_s,
            empty.join(", ")
        ));
    }
    body.push_str(&findings_list(&found));
    let v = cheapest(r, &w, stats::rate);
    let y = yardstick(r);
    let summary = v.first().zip(v.last()).map(|(lo, hi)| {
        let peer = y
            .as_ref()
            .and_then(|y| v.iter().find(|(m, _)| m == y))
            .map(|(m, s)| format!("; yardstick {}: {}/s", label(m), si(s.median)))
            .unwrap_or_default();
        format!(
            "**Accepting**: from {}/s ({}) to {}/s ({}) connections{peer}.",
            si(lo.1.median),
            label(&lo.0),
            si(hi.1.median),
            label(&hi.0)
        )
    });
    Some(Answer { body, summary })
}

/// The latency spectrum of a cell: per percentile, the spread over runs.
pub fn spectrum(c: &Cell) -> Vec<(f64, Spread)> {
    let percentiles: BTreeSet<u64> = c
        .runs
        .iter()
        .filter_map(|m| m.latency.as_ref())
        .flat_map(|l| l.spectrum.iter().map(|(p, _)| (p * 1000.0).round() as u64))
        .collect();
    percentiles
        .into_iter()
        .filter_map(|key| {
            let p = key as f64 / 1000.0;
            let values = c.runs.iter().filter_map(|m| {
                m.latency
                    .as_ref()?
                    .spectrum
                    .iter()
                    .find(|(q, _)| (q * 1000.0).round() as u64 == key)
                    .map(|(_, v)| *v)
            });
            Some((p, Spread::of(values)?))
        })
        // A percentile is drawn only where every run holds its samples.
        .filter(|(p, _)| stats::too_few_samples(c, *p).is_none())
        .collect()
}

/// Question 4: where does the tail latency come from?
pub fn tail_latency(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let s = sweep(r);
    if s.is_empty() {
        return None;
    }
    let mut body = String::from(
        "Latency counts from the time each request was due (no coordinated omission), so a \
         server that falls behind shows it. **Latency versus load** (p50 / p99 / p99.9, medians \
         of the repeats):\n\n",
    );
    let mut head = vec!["model".to_string()];
    head.extend(s.iter().map(rate_label));
    let mut t = Table::from(head);
    for m in models(r) {
        let mut row = vec![label(&m)];
        for w in &s {
            let c = timing(r, &m, w);
            row.push(match c.filter(|c| !c.runs.is_empty()) {
                Some(c) => {
                    let med = |f: Metric, p: f64| match stats::too_few_samples(c, p) {
                        Some(_) => format!("<{} samples", si(samples_needed(p) as f64)),
                        None => c.spread(f).map_or("n/a".into(), |s| micros(s.median)),
                    };
                    let mark = if sustained(Some(c)) { "" } else { " ‡" };
                    format!(
                        "{} / {} / {}{mark} (n={}, {} samples)",
                        med(stats::p50, 50.0),
                        med(stats::p99, 99.0),
                        med(stats::p999, 99.9),
                        c.runs.len(),
                        si(c.samples() as f64)
                    )
                }
                None => show_pct(c, 99.0),
            });
        }
        t.rows.push(row);
    }
    body.push_str(&t.render());
    body.push('\n');
    body.push_str(&short_note());
    body.push('\n');
    body.push_str(&figure_ref(x, "latency_vs_rate.svg"));
    let reference = reference_rate(r);
    let mut found = Vec::new();
    if let Some(w) = reference {
        let mut t = Table::new(&[
            "model",
            "p50",
            "p99",
            "p99.9",
            "max",
            "voluntary cs/req",
            "involuntary cs/req",
            "server CPU (share of a CPU)",
        ]);
        for m in models(r) {
            let c = timing(r, &m, &w);
            t.rows.push(vec![
                label(&m),
                show(c, stats::p50, micros),
                show_pct(c, 99.0),
                show_pct(c, 99.9),
                show(c, stats::max_latency, micros),
                show(c, stats::ctx_voluntary, |v| significant(v, 2)),
                show(c, stats::ctx_involuntary, |v| significant(v, 2)),
                show(c, stats::server_utilisation, share),
            ]);
        }
        body.push_str(&format!(
            "\n**At {}**, beside what the server did per request: a voluntary context switch is a \
             sleep in the wait call (each one a wake-up to pay for), an involuntary one a \
             preemption (the server's CPU was wanted by another process — on this shared \
             machine, often the load generator).\n\n{}\n",
            rate_label(&w),
            t.render()
        ));
        body.push_str(&figure_ref(x, "latency_spectrum.svg"));
        // The instrument's own p99 at this rate: the reflector's, which
        // answers without a wake-up on its side.
        let floor = timing(r, FLOOR_ROW, &w)
            .filter(|c| sustained(Some(c)))
            .and_then(|c| c.spread(stats::p99));
        for m in ranked(r) {
            // Past saturation the tail is the backlog's (said below).
            let Some(c) = timing(r, &m, &w).filter(|c| sustained(Some(c))) else {
                continue;
            };
            let Some(ratio) =
                crate::stats::paired(&c.in_rounds(stats::p999), &c.in_rounds(stats::p50))
            else {
                continue;
            };
            let (Some(p50), Some(p999)) = (c.spread(stats::p50), c.spread(stats::p999)) else {
                continue;
            };
            let inv = c
                .spread(stats::ctx_involuntary)
                .map(|s| {
                    format!(
                        ", {} involuntary switches per request",
                        significant(s.median, 2)
                    )
                })
                .unwrap_or_default();
            found.push(format!(
                "{} at {}: p99.9 is {} its p50 ({} vs {}, medians of {} rounds){inv}.",
                label(&m),
                rate_label(&w),
                show_paired(&ratio),
                micros(p999.median),
                micros(p50.median),
                c.runs.len()
            ));
        }
        match floor {
            Some(f) => {
                found.push(format!(
                    "The instrument's own p99 at {} (the load generator against the reflector, \
                     which answers without a wake-up) is {}: no two models are ranked on a \
                     p99 difference smaller than that (their medians closer than the floor \
                     read \"within the instrument's floor\").",
                    rate_label(&w),
                    micros(f.median)
                ));
                found.extend(floor_aware_p99(x, &w, f.median));
            }
            None => found.extend(against_yardstick(
                x,
                &w,
                Purpose::Timing,
                stats::p99,
                micros,
                "p99 latency",
            )),
        }
        found.push(
            "Not measured: which part of a late request's time was spent where (queueing in \
             the kernel, waiting to be scheduled, the server's own loop). The columns above show \
             correlates, not a breakdown."
                .into(),
        );
    }
    body.push_str(&findings_list(&found));
    let summary = reference.and_then(|w| {
        let v = cheapest(r, &w, stats::p99);
        let (lo, hi) = (v.first()?, v.last()?);
        let y = yardstick(r);
        let peer = y
            .as_ref()
            .and_then(|y| v.iter().find(|(m, _)| m == y))
            .map(|(m, s)| format!("; yardstick {}: {}", label(m), micros(s.median)))
            .unwrap_or_default();
        Some(format!(
            "**Tail latency** at {}: p99 from {} ({}) to {} ({}){peer}{}.",
            rate_label(&w),
            micros(lo.1.median),
            label(&lo.0),
            micros(hi.1.median),
            label(&hi.0),
            not_sustained(r, &w)
        ))
    });
    Some(Answer { body, summary })
}

/// Every model's p99 against the yardstick's on `w`, except where their
/// medians lie closer than `floor` (the instrument's own p99): a difference
/// the instrument's own tail explains ranks nothing.
fn floor_aware_p99(x: &Ctx, w: &Workload, floor: f64) -> Vec<String> {
    let r = x.r;
    let Some(y) = yardstick(r) else {
        return Vec::new();
    };
    let Some(base) = timing(r, &y, w).filter(|c| sustained(Some(c))) else {
        return Vec::new();
    };
    let Some(yp) = base.spread(stats::p99) else {
        return Vec::new();
    };
    ranked(r)
        .iter()
        .filter(|m| **m != y)
        .filter_map(|m| {
            let c = timing(r, m, w).filter(|c| sustained(Some(c)))?;
            let mp = c.spread(stats::p99)?;
            if (mp.median - yp.median).abs() < floor {
                return Some(format!(
                    "{}: p99 {} against {}'s {}: within the instrument's floor ({}).",
                    label(m),
                    micros(mp.median),
                    label(&y),
                    micros(yp.median),
                    micros(floor)
                ));
            }
            let v = versus(
                x.family,
                c,
                base,
                stats::p99,
                micros,
                "p99 latency",
                &label(&y),
            )?;
            Some(format!("{}: {v}.", label(m)))
        })
        .collect()
}

/// Syscalls per request of every syscall-counting cell of `w`, by call.
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
    let mut head = vec!["model".to_string(), "runs".to_string(), "total".to_string()];
    head.extend(names.iter().cloned());
    head.push("other".into());
    let mut t = Table::from(head.clone());
    for c in cells {
        let mut row = vec![label(&c.model), c.runs.len().to_string()];
        if let Some(why) = c.why_empty() {
            row.push(why);
            row.extend(std::iter::repeat_n(String::new(), head.len() - 3));
        } else if uncounted(c) {
            row.push(
                "none counted although requests were served: the counters did not reach the \
                 processes that served them"
                    .into(),
            );
            row.extend(std::iter::repeat_n(String::new(), head.len() - 3));
        } else if let Some(reason) = c
            .runs
            .iter()
            .find(|m| m.server.syscalls_per_request.is_none())
            .map(|m| m.server.syscalls_na_reason.clone().unwrap_or_default())
        {
            row.push(format!("n/a ({reason})"));
            row.extend(std::iter::repeat_n(String::new(), head.len() - 3));
        } else {
            for name in &head[2..] {
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

/// The workloads with syscall-counting cells, in matrix order.
pub fn syscall_workloads(r: &CompareResults) -> Vec<Workload> {
    r.workloads
        .iter()
        .copied()
        .filter(|w| {
            r.cells
                .iter()
                .any(|c| c.workload == *w && c.purpose == Purpose::Syscalls)
        })
        .collect()
}

/// The median of the total syscalls per request, `None` where the counters
/// saw none although requests were served (see `uncounted`).
pub(super) fn total_syscalls(c: &Cell) -> Option<f64> {
    if uncounted(c) {
        return None;
    }
    stats::Spread::of(c.runs.iter().filter_map(|m| {
        m.server
            .syscalls_per_request
            .as_ref()?
            .get("total")
            .copied()
    }))
    .map(|s| s.median)
}

/// Whether a counting run served requests but counted no syscall at all:
/// the counters did not reach the processes that served them (a count of
/// zero there is not a measurement).
fn uncounted(c: &Cell) -> bool {
    c.runs.iter().any(|m| {
        m.requests > 0
            && m.server
                .syscalls_per_request
                .as_ref()
                .and_then(|s| s.get("total"))
                .is_some_and(|t| *t == 0.0)
    })
}

/// Question 5: how many system calls does each make per request, by call?
pub fn syscalls(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let ws = syscall_workloads(r);
    let Some(first) = ws.first().copied() else {
        let why = "no counting run was made (`harness compare --no-syscalls`)";
        return Some(Answer {
            body: format!("Not counted in this run: {why}.\n"),
            summary: Some(format!("**System calls per request**: not counted: {why}.")),
        });
    };
    let mut body = String::from(
        "Counted by the kernel's syscall tracepoints over every thread and child of the server, \
         in separate runs (tracing slows every syscall, so these runs feed no other table). \
         Columns: every syscall seen at 0.01 per request or more; *other* is the rest.\n\n",
    );
    for w in &ws {
        if let Some(t) = syscall_table(r, w) {
            body.push_str(&format!("**{}**\n\n{t}\n", w.label()));
        }
    }
    body.push_str(&figure_ref(x, "syscalls_per_request.svg"));
    let totals: Vec<(String, f64)> = models(r)
        .into_iter()
        .filter_map(|m| {
            Some((
                m.clone(),
                total_syscalls(r.cell(&m, &first, Purpose::Syscalls)?)?,
            ))
        })
        .collect();
    let mut found = Vec::new();
    let y = yardstick(r);
    let base = y
        .as_ref()
        .and_then(|y| totals.iter().find(|(m, _)| m == y).cloned());
    if let Some((ym, yt)) = &base {
        for (m, t) in totals.iter().filter(|(m, _)| m != ym) {
            // Counts of one run each: stated side by side, not as a ratio,
            // since no interval can be put on it.
            found.push(format!(
                "{} at {}: {} syscalls per request, against {}'s {}.",
                label(m),
                first.label(),
                significant(*t, 3),
                label(ym),
                significant(*yt, 3)
            ));
        }
    }
    if !totals.is_empty() {
        found.push(
            "Counts come from one counting run per model and workload: their run-to-run \
             variation is not measured, so no difference here is tested."
                .into(),
        );
    }
    body.push_str(&findings_list(&found));
    let lo = totals.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let hi = totals.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    if totals.is_empty() {
        // Never a silent gap: the reason the counters gave, or that none ran.
        let why = r
            .cells
            .iter()
            .filter(|c| c.purpose == Purpose::Syscalls)
            .flat_map(|c| &c.runs)
            .find_map(|m| m.server.syscalls_na_reason.clone())
            .unwrap_or_else(|| "every counting run failed (see *Cells not run or failed*)".into());
        return Some(Answer {
            body,
            summary: Some(format!(
                "**System calls per request** at {}: not counted: {why}.",
                first.label()
            )),
        });
    }
    let summary = lo.zip(hi).map(|(lo, hi)| {
        let peer = base
            .as_ref()
            .map(|(m, t)| format!("; yardstick {}: {}", label(m), significant(*t, 3)))
            .unwrap_or_default();
        format!(
            "**System calls per request** at {}: from {} ({}) to {} ({}){peer}.",
            first.label(),
            significant(lo.1, 3),
            label(&lo.0),
            significant(hi.1, 3),
            label(&hi.0)
        )
    });
    Some(Answer { body, summary })
}
