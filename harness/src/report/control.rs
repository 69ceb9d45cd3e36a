//! The A/A control: one model measured twice under two labels
//! (`epoll:level` and `epoll:level#aa`), in the same rounds, and compared
//! by the report's own rule. Two identical servers must come out with no
//! difference; the width of their intervals is what this run can resolve.

use super::questions::{models, show_paired, Answer};
use super::stats::{self, Metric};
use super::table::{label, Table};
use super::Ctx;
use crate::results::{CompareResults, Purpose, Workload};
use crate::spec::twin_of;
use crate::stats::{median, Verdict, EQUIVALENCE, FDR};

/// The metrics the control compares: what the report's findings compare.
const METRICS: &[(&str, Metric)] = &[
    ("server CPU per request", stats::server_cpu),
    ("p50", stats::p50),
    ("p99", stats::p99),
    ("rate", stats::rate),
];

/// The twin rows measured with their original, as (twin, original).
pub fn twins(r: &CompareResults) -> Vec<(String, String)> {
    let measured = models(r);
    measured
        .iter()
        .filter_map(|m| {
            let original = twin_of(m)?;
            measured
                .iter()
                .any(|o| o == original)
                .then(|| (m.clone(), original.to_string()))
        })
        .collect()
}

/// Whether `metric` is one a workload's findings compare: the rate only
/// where it is the outcome (closed loops, connect), not where it is the
/// offer.
fn compared_on(w: &Workload, name: &str) -> bool {
    name != "rate" || w.offered_rate().is_none()
}

/// The section.
pub fn aa_control(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let pairs = twins(r);
    if pairs.is_empty() {
        return None;
    }
    let mut body = String::from(
        "The same model:mode is measured twice in every round, under two labels, and the two are \
         compared exactly as the findings compare two models (ratio by round, 95 % interval, \
         the report's Benjamini–Hochberg family). Identical servers differ only by chance and \
         by where each fell in its round's random order: a difference found here would be the \
         method's error, and the interval widths are the resolution of this run — two models \
         whose true difference is smaller than that cannot be told apart by it.\n\n",
    );
    let mut summary = None;
    for (twin, original) in &pairs {
        let mut t = Table::new(&[
            "workload",
            "metric",
            "twin / original",
            "interval width",
            "verdict",
        ]);
        let (mut compared, mut differ, mut widths) = (0, 0, Vec::new());
        for w in &r.workloads {
            let (Some(a), Some(b)) = (
                r.cell(twin, w, Purpose::Timing),
                r.cell(original, w, Purpose::Timing),
            ) else {
                continue;
            };
            for (name, metric) in METRICS.iter().filter(|(n, _)| compared_on(w, n)) {
                let key = format!("A/A {name} | {twin} | {original} | {}", w.label());
                let verdict = x
                    .family
                    .judge(&key, &a.in_rounds(*metric), &b.in_rounds(*metric));
                let Some(p) = verdict.paired().copied() else {
                    continue;
                };
                compared += 1;
                widths.push(p.resolution());
                let said = match verdict {
                    Verdict::Differs { q, .. } => {
                        differ += 1;
                        format!("**differs** (q = {q:.2}): the method's error")
                    }
                    Verdict::Equivalent { .. } => "no measurable difference".into(),
                    Verdict::NotResolved { .. } => "not resolved".into(),
                    Verdict::TooFew { .. } => continue,
                };
                t.rows.push(vec![
                    w.label(),
                    name.to_string(),
                    show_paired(&p),
                    format!("{:.0} %", p.resolution() * 100.0),
                    said,
                ]);
            }
        }
        if compared == 0 {
            body.push_str(&format!(
                "{} and {}: no workload measured both in enough rounds to compare.\n\n",
                label(twin),
                label(original)
            ));
            continue;
        }
        let typical = median(&widths);
        body.push_str(&format!(
            "**{} against {}**\n\n{}\n",
            label(twin),
            label(original),
            t.render()
        ));
        body.push_str(&format!(
            "The method called {differ} of {compared} comparisons of identical servers different \
             (at a false-discovery rate of {:.0} %, about {:.1} would be expected by chance if \
             every one were a discovery's candidate). The median interval spans {:.0} % from end \
             to end; the equivalence margin is ±{:.0} %, so \"no measurable difference\" needs an \
             interval narrower than about {:.0} %.\n\n",
            FDR * 100.0,
            FDR * compared as f64,
            typical * 100.0,
            EQUIVALENCE * 100.0,
            ((1.0 + EQUIVALENCE) * (1.0 + EQUIVALENCE) - 1.0) * 100.0
        ));
        summary.get_or_insert(format!(
            "**A/A control** ({} measured twice, as {}): {differ} of {compared} comparisons of \
             identical servers called different; median interval width {:.0} %, the resolution \
             of this run.",
            label(original),
            label(twin),
            typical * 100.0
        ));
    }
    Some(Answer { body, summary })
}
