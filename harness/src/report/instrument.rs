//! The floor under every figure: what the load generator itself costs and
//! adds, measured in the same rounds against the cheapest reflector there
//! is (`FLOOR_ROW`: one thread busy-polling, no wake-up on its side).

use super::questions::{highest_sustained, rate_label, sweep, Answer};
use super::stats::{self, micros, si};
use super::table::{label, show, show_pct, Table};
use super::Ctx;
use crate::results::{CompareResults, Purpose};
use crate::spec::FLOOR_ROW;

/// The section.
pub fn floor(x: &Ctx) -> Option<Answer> {
    let r = x.r;
    let cells: Vec<_> = sweep(r)
        .into_iter()
        .filter_map(|w| Some((w, r.cell(FLOOR_ROW, &w, Purpose::Timing)?)))
        .collect();
    if cells.is_empty() {
        return None;
    }
    let mut body = format!(
        "The load generator, run against `{FLOOR_ROW}` — one thread that busy-polls its \
         sockets, so that nothing on the server's side sleeps or is woken — at every rate of the \
         sweep, in the same rounds as the models. Its latency is the floor under every model's: \
         the load generator's own wake-ups, the loopback path and the reply's copy, with no \
         server wake-up in it. Its CPU per request is what the instrument spends on each \
         request (beside every model's in *What does a request cost*).\n\n"
    );
    let mut t = Table::new(&[
        "offered",
        "answered/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "load generator CPU/req",
        "load generator (share of a CPU)",
    ]);
    for (w, c) in &cells {
        t.rows.push(vec![
            rate_label(w),
            show(Some(c), stats::rate, si),
            show_pct(Some(c), 50.0),
            show_pct(Some(c), 99.0),
            show_pct(Some(c), 99.9),
            show(Some(c), stats::max_latency, micros),
            show(Some(c), stats::client_cpu, micros),
            show(Some(c), stats::client_utilisation, |v| format!("{v:.2}")),
        ]);
    }
    body.push_str(&t.render());
    body.push('\n');
    body.push_str(&wakeup_table(r));
    let top = highest_sustained(r, FLOOR_ROW);
    let wake: Vec<String> = r
        .wakeups
        .iter()
        .map(|t| {
            format!(
                "CPU {}: p99 {}, p99.9 {}",
                t.cpu,
                micros(t.p99_us),
                micros(t.p999_us)
            )
        })
        .collect();
    let summary =
        cells.first().map(|(w, c)| {
            let med = |f: stats::Metric| c.spread(f).map_or("n/a".into(), |s| micros(s.median));
            format!(
            "**The instrument's floor** ({} at {}): p50 {}, p99 {}; the load generator spends {} \
             of CPU per request and sustains up to {} against it. A sleeping thread on this \
             machine wakes late by {}.",
            label(FLOOR_ROW),
            rate_label(w),
            med(stats::p50),
            med(stats::p99),
            med(stats::client_cpu),
            top.map_or("none of the rates".into(), |t| format!("{}/s", si(t as f64))),
            if wake.is_empty() {
                "an amount not measured in this run".to_string()
            } else {
                wake.join("; ")
            }
        )
        });
    Some(Answer { body, summary })
}

/// The machine's timer wake-up lateness per CPU, as measured before the
/// matrix.
fn wakeup_table(r: &CompareResults) -> String {
    if r.wakeups.is_empty() {
        return "The machine's timer wake-up floor was not measured in this run.\n\n".into();
    }
    let mut t = Table::new(&[
        "CPU",
        "wake-ups",
        "p50",
        "p99",
        "p99.9",
        "max",
        "timer slack",
    ]);
    for w in &r.wakeups {
        t.rows.push(vec![
            w.cpu.to_string(),
            w.samples.to_string(),
            micros(w.p50_us),
            micros(w.p99_us),
            micros(w.p999_us),
            micros(w.max_us),
            format!("{} ns", w.timer_slack_ns),
        ]);
    }
    format!(
        "**How late a sleeping thread wakes on this machine** (`harness floor`: a thread pinned \
         to each CPU sleeps until an absolute deadline every {} µs, timer slack 1 ns, and \
         records how late it woke). Every request needs at least one such wake-up on each side \
         that sleeps, so a tail inside these figures is the machine's, not a model's; the load \
         generator's threads run with the same 1 ns slack.\n\n{}\n",
        r.wakeups.first().map_or(0.0, |w| w.period_us),
        t.render()
    )
}
