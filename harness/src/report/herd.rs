//! The report's section on several loops sharing one port: the thundering
//! herd, its two remedies, and how evenly connections spread (issue 13).
//!
//! Each sharing mode is measured with `harness run MODEL --workload connect
//! -- --workers 2 ...`, repeated in alternating order: wasted wake-ups per
//! connection (`measurement::Wakeups`), connections per second, server CPU
//! per connection, and connections per loop (the summary's `per_loop=`).
//! Then `reuseport` and `exclusive` again under skew, where they differ:
//! beside one busy ping-pong connection and many idle ones (`--busy
//! --idle`), one new connection at a time (`--conns 1`), so that the
//! harness can tell which loop served each (`account::landed`) and show
//! the latency of those that landed on the busy loop. The runs go to
//! `herd.json`; the section is appended to `REPORT.md`, with one figure,
//! `herd_wasted_wakeups.svg`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::plots;
use super::questions::show_paired;
use super::stats::{micros, percent, significant, Spread};
use super::{io_err, write_file, write_json};
use crate::compare::herd::{
    HerdResults, HerdRun, BUSY, IDLE, LOOPS, SHARINGS, SKEWED, SKEW_IN_FLIGHT,
};
use crate::measurement::{LoopLatency, Measurement};
use crate::stats::{paired, Family as StatFamily, InRound, Verdict, EQUIVALENCE, MIN_PAIRS};

/// One sharing mode's medians over its repeats.
struct Row<'a> {
    label: &'static str,
    /// Its runs' measurements with their round, for `versus`.
    measurements: Vec<(usize, &'a Measurement)>,
    runs: usize,
    failed: Vec<String>,
    wasted: Option<Spread>,
    eagain: Option<Spread>,
    rate: Option<Spread>,
    cpu_us: Option<Spread>,
    ctx: Option<Spread>,
    /// Max/min of connections per loop.
    spread: Option<Spread>,
    /// Under skew (`Measurement::server.landed`): the share of new
    /// connections attributed to a loop, the latency of all of them
    /// (`socket()` to reply), and of those the busy loop (serving the busy
    /// connection, `landed::busy_loops`) and the other served; the busy
    /// loop's share of the server's CPU and of the attributed connections.
    attributed: Option<Spread>,
    all_p99: Option<Spread>,
    busy_p50: Option<Spread>,
    busy_p99: Option<Spread>,
    other_p99: Option<Spread>,
    busy_cpu_share: Option<Spread>,
    busy_conn_share: Option<Spread>,
}

fn row<'a>(r: &'a HerdResults, label: &'static str, skewed: bool) -> Row<'a> {
    let runs: Vec<&HerdRun> = r
        .runs
        .iter()
        .filter(|x| x.sharing == label && x.skewed == skewed)
        .collect();
    let ms: Vec<&Measurement> = runs.iter().filter_map(|x| x.measurement.as_ref()).collect();
    let of = |f: &dyn Fn(&Measurement) -> Option<f64>| Spread::of(ms.iter().filter_map(|m| f(m)));
    Row {
        label,
        measurements: runs
            .iter()
            .enumerate()
            .filter_map(|(round, x)| Some((round, x.measurement.as_ref()?)))
            .collect(),
        runs: runs.len(),
        failed: runs.iter().filter_map(|x| x.error.clone()).collect(),
        wasted: of(&|m| m.server.wakeups.as_ref()?.wasted_per_conn),
        eagain: of(&|m| Some(m.server.wakeups.as_ref()?.eagain_per_conn)),
        rate: of(&|m| Some(m.rate)),
        cpu_us: of(&cpu_us),
        ctx: of(&|m| m.server.ctx_voluntary_per_request),
        spread: of(&loop_spread),
        attributed: of(&|m| {
            let l = m.server.landed.as_ref()?;
            (l.connections > 0).then(|| l.attributed as f64 / l.connections as f64)
        }),
        all_p99: of(&all_p99),
        busy_p50: of(&|m| Some(loop_of(m, true)?.latency.as_ref()?.p50_us)),
        busy_p99: of(&busy_p99),
        other_p99: of(&|m| Some(loop_of(m, false)?.latency.as_ref()?.p99_us)),
        busy_cpu_share: of(&|m| {
            let loops = &m.server.landed.as_ref()?.loops;
            let total: f64 = loops.iter().map(|l| l.cpu_s).sum();
            let busy = loop_of(m, true)?;
            (total > 0.0).then(|| busy.cpu_s / total)
        }),
        busy_conn_share: of(&busy_conn_share),
    }
}

/// The figures findings compare, one function each (`Row` and `versus`).
type Metric = fn(&Measurement) -> Option<f64>;

fn cpu_us(m: &Measurement) -> Option<f64> {
    m.server.cpu_per_request_us
}

/// Most over fewest connections per loop.
fn loop_spread(m: &Measurement) -> Option<f64> {
    let (max, min) = m.server.exit_summary.as_ref()?.spread()?;
    (min > 0).then(|| max as f64 / min as f64)
}

fn all_p99(m: &Measurement) -> Option<f64> {
    Some(m.server.landed.as_ref()?.all.as_ref()?.p99_us)
}

fn busy_p99(m: &Measurement) -> Option<f64> {
    Some(loop_of(m, true)?.latency.as_ref()?.p99_us)
}

/// The busy loop's share of the attributed new connections.
fn busy_conn_share(m: &Measurement) -> Option<f64> {
    let l = m.server.landed.as_ref()?;
    let busy = loop_of(m, true)?;
    (l.attributed > 0).then(|| busy.connections as f64 / l.attributed as f64)
}

/// A run's loop serving the busy connection (`busy`), or the first other.
fn loop_of(m: &Measurement, busy: bool) -> Option<&LoopLatency> {
    let loops = &m.server.landed.as_ref()?.loops;
    loops.iter().find(|l| l.busy == busy)
}

/// `a` against `b` on `metric`, in words: the report's rank test over the
/// repeats (`stats::compare`), a difference claimed only where it finds one.
/// `a` against `b`, paired by round, under the section's own family
/// (`crate::stats`: the report's rule, Benjamini–Hochberg over the
/// section's comparisons); the verdict and its words.
fn versus(fam: &StatFamily, a: &Row, b: &Row, metric: Metric) -> (Verdict, String) {
    let values = |x: &Row| -> Vec<InRound> {
        x.measurements
            .iter()
            .filter_map(|(round, m)| Some((*round, metric(m)?)))
            .collect()
    };
    let key = format!("herd | {} | {} | {metric:p}", a.label, b.label);
    let verdict = fam.judge(&key, &values(a), &values(b));
    let words = match verdict {
        Verdict::Differs { paired, q } => format!(
            "{} ({}, q = {})",
            if paired.ratio > 1.0 {
                "higher"
            } else {
                "lower"
            },
            show_paired(&paired),
            significant(q, 2)
        ),
        Verdict::Equivalent { paired, .. } => format!(
            "no measurable difference ({} within ±{:.0} %)",
            show_paired(&paired),
            EQUIVALENCE * 100.0
        ),
        Verdict::NotResolved { paired, q } => format!(
            "not resolved ({}, q = {})",
            show_paired(&paired),
            significant(q, 2)
        ),
        Verdict::TooFew { pairs } => {
            format!("not compared: {pairs} rounds with both, an interval needs {MIN_PAIRS}")
        }
    };
    (verdict, words)
}

fn show(s: &Option<Spread>, f: impl Fn(f64) -> String) -> String {
    s.as_ref().map_or("n/a".into(), |s| s.show(f))
}

fn fixed(digits: usize) -> impl Fn(f64) -> String {
    move |v| format!("{v:.digits$}")
}

/// The section, in Markdown.
/// The section, its comparisons under one multiplicity control: rendered
/// once to collect them, then with their q-values.
pub fn section(r: &HerdResults, figure: Option<&str>) -> String {
    let first = StatFamily::collecting();
    section_with(r, figure, &first);
    section_with(r, figure, &first.adjust())
}

fn section_with(r: &HerdResults, figure: Option<&str>, fam: &StatFamily) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Several loops on one port: the thundering herd\n");
    let _ = writeln!(
        out,
        "`harness run MODEL --workload connect -- --workers {LOOPS} ...`, each mode \
         repeated in alternating order (median, min–max). Wasted wake-ups: wake-ups of a \
         server thread that got no connection, whether `epoll_wait`/`accept4` returned \
         with nothing or the thread was woken inside the call and slept again, counted \
         from the server's syscall returns and switches to sleep (`harness::account::WakeTrace`), \
         per connection accepted. The tracepoints cost the server CPU in every mode alike. \
         Spread: most over fewest connections per loop (the summary's `per_loop=`, whole run).\n"
    );
    let rows: Vec<Row> = SHARINGS.iter().map(|s| row(r, s.label, false)).collect();
    let _ = writeln!(
        out,
        "| sharing | runs | wasted wake-ups/conn | accept4 EAGAIN/conn | voluntary switches/conn | connections/s | server CPU/conn | spread max/min |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            x.label,
            x.runs,
            show(&x.wasted, fixed(3)),
            show(&x.eagain, fixed(3)),
            show(&x.ctx, fixed(3)),
            show(&x.rate, fixed(0)),
            show(&x.cpu_us, micros),
            show(&x.spread, fixed(2)),
        );
    }
    for x in &rows {
        for e in &x.failed {
            let _ = writeln!(out, "\n- `{}`: a run failed: {e}", x.label);
        }
    }
    if let Some(file) = figure {
        let _ = writeln!(out, "\n![wasted wake-ups per connection]({file})\n");
    }
    let _ = writeln!(out, "\nFindings (computed from the table):\n");
    for line in findings(fam, &rows) {
        let _ = writeln!(out, "- {line}");
    }
    let skewed: Vec<Row> = SKEWED.iter().map(|l| row(r, l, true)).collect();
    let _ = writeln!(
        out,
        "\n### Under skew: new connections beside {BUSY} busy and {IDLE} idle connections\n\n\
         `--conns {SKEW_IN_FLIGHT} --busy {BUSY} --idle {IDLE}`: {BUSY} closed-loop ping-pong \
         connection keeps the loop it landed on busy, {IDLE} idle ones are held open, and new \
         connections arrive one at a time. Each new connection is attributed to the loop \
         whose `accept4` returned it: the one accept (from the wake-up trace, on \
         `CLOCK_MONOTONIC`) inside the connection's span from `socket()` to its reply, on \
         the same clock (`harness::account::landed`); spans that hold no accept or share \
         one are left out, and the attributed column says how many were kept. The busy \
         loop is the one whose epoll instance holds the busy connection (read from \
         `/proc`: its descriptor in the epoll's `fdinfo`, the thread asleep in \
         `epoll_wait` on it). Latency here is the span, \
         `socket()` to reply (the connect workload's own latency also counts the previous \
         connection's close). Both loops share one CPU on this machine, so a busy loop \
         delays the other too.\n"
    );
    let _ = writeln!(
        out,
        "| sharing | runs | attributed | busy loop: CPU share | busy loop: share of new conns | busy loop p50 | busy loop p99 | other loop p99 | all new conns p99 | connections/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for x in &skewed {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.label,
            x.runs,
            show(&x.attributed, percent),
            show(&x.busy_cpu_share, percent),
            show(&x.busy_conn_share, percent),
            show(&x.busy_p50, micros),
            show(&x.busy_p99, micros),
            show(&x.other_p99, micros),
            show(&x.all_p99, micros),
            show(&x.rate, fixed(0)),
        );
    }
    for x in &skewed {
        for e in &x.failed {
            let _ = writeln!(out, "\n- `{}` under skew: a run failed: {e}", x.label);
        }
    }
    let _ = writeln!(out);
    for line in skew_findings(fam, &skewed) {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n### On N cores (an estimate, not a measurement)\n");
    for line in estimate(&rows) {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// Under skew: `reuseport` against `exclusive`, each figure compared over
/// the repeats and a difference claimed only where they separate.
fn skew_findings(fam: &StatFamily, skewed: &[Row]) -> Vec<String> {
    let (Some(exclusive), Some(reuseport)) = (find(skewed, "exclusive"), find(skewed, "reuseport"))
    else {
        return vec!["needs the exclusive and reuseport rows under skew".into()];
    };
    let mut out = Vec::new();
    let low = [exclusive, reuseport]
        .iter()
        .filter(|x| x.attributed.is_none_or(|a| a.min < 0.9))
        .map(|x| format!("`{}`", x.label))
        .collect::<Vec<_>>();
    if !low.is_empty() {
        out.push(format!(
            "{}: under 90 % of the new connections attributed in some repeat (or none), so \
             the per-loop figures cover only part of them; the all-connections column \
             covers every one.",
            low.join(", ")
        ));
    }
    let finding = |what: &str,
                   u: Option<Spread>,
                   e: Option<Spread>,
                   metric: Metric,
                   f: &dyn Fn(f64) -> String| {
        let (u, e) = (u?, e?);
        Some(format!(
            "{what}: `reuseport` {} against `exclusive` {}: {}.",
            f(u.median),
            f(e.median),
            versus(fam, reuseport, exclusive, metric).1
        ))
    };
    out.extend(finding(
        "Share of the new connections the busy loop served",
        reuseport.busy_conn_share,
        exclusive.busy_conn_share,
        busy_conn_share,
        &percent,
    ));
    out.extend(finding(
        "p99 of the new connections that landed on the busy loop",
        reuseport.busy_p99,
        exclusive.busy_p99,
        busy_p99,
        &micros,
    ));
    out.extend(finding(
        "p99 of all new connections",
        reuseport.all_p99,
        exclusive.all_p99,
        all_p99,
        &micros,
    ));
    out
}

fn find<'r, 'a>(rows: &'r [Row<'a>], label: &str) -> Option<&'r Row<'a>> {
    rows.iter().find(|x| x.label == label)
}

fn findings(fam: &StatFamily, rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let per_mode: Vec<String> = rows
        .iter()
        .filter_map(|x| Some(format!("{}: {:.3}", x.label, x.wasted?.median)))
        .collect();
    if !per_mode.is_empty() {
        out.push(format!(
            "Wasted wake-ups per connection: {}.",
            per_mode.join("; ")
        ));
    }
    if let (Some(shared), Some(reuseport)) = (find(rows, "shared"), find(rows, "reuseport")) {
        if let (Some(s), Some(u)) = (shared.cpu_us, reuseport.cpu_us) {
            out.push(format!(
                "Server CPU per connection: shared {} against reuseport {} ({:+.1} %): {}.",
                micros(s.median),
                micros(u.median),
                (s.median / u.median - 1.0) * 100.0,
                versus(fam, shared, reuseport, cpu_us).1
            ));
        }
    }
    let spreads: Vec<String> = rows
        .iter()
        .filter_map(|x| Some(format!("{} {:.2}×", x.label, x.spread?.median)))
        .collect();
    if !spreads.is_empty() {
        out.push(format!(
            "Connections per loop, most over fewest: {}.",
            spreads.join(", ")
        ));
    }
    if let (Some(exclusive), Some(reuseport)) = (find(rows, "exclusive"), find(rows, "reuseport")) {
        if exclusive.spread.is_some() && reuseport.spread.is_some() {
            out.push(match versus(fam, exclusive, reuseport, loop_spread) {
                (Verdict::Differs { paired, .. }, words) if paired.ratio > 1.0 => format!(
                    "`exclusive` spreads connections less evenly than `reuseport` ({words}): it \
                     wakes the loop that waits first, so its spread follows who is idle, \
                     where `reuseport` hashes."
                ),
                (_, words) => format!("Spread, `exclusive` against `reuseport`: {words}."),
            });
        }
    }
    out
}

/// `v` to two significant digits: the precision of the inputs of the
/// estimate (a few repeats, spreads of several per cent).
fn two_digits(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let unit = 10f64.powi(v.log10().floor() as i32 - 1);
    let rounded = (v / unit).round() * unit;
    let decimals = (1 - rounded.log10().floor() as i32).max(0) as usize;
    format!("{rounded:.decimals$}")
}

/// A rate to two significant digits, with k and M.
fn rate_two_digits(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", two_digits(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", two_digits(v / 1e3))
    } else {
        two_digits(v)
    }
}

/// What the measured per-connection costs imply for N loops on N cores.
///
/// Every input is measured on `LOOPS` loops: `shared`'s wasted wake-ups
/// per connection (each of the other `LOOPS − 1` loops woken in vain that
/// often), and the cost of one wasted wake-up: the extra server CPU per
/// connection of `shared` over `reuseport`, divided by its extra wasted
/// wake-ups, when every repeat of the one lies above every repeat of the
/// other (the 95 % interval of their paired ratio above 1). Otherwise (a
/// difference lost in the noise, or one repeat) an upper bound: every
/// connection needs at least one wake-up, so one costs at most
/// `reuseport`'s CPU per connection over its voluntary switches per
/// connection. The one assumption: each other loop is woken in vain as
/// often on N loops as the other loop was here.
fn estimate(rows: &[Row]) -> Vec<String> {
    let (Some(shared), Some(reuseport)) = (find(rows, "shared"), find(rows, "reuseport")) else {
        return vec!["needs the shared and reuseport rows".into()];
    };
    let (Some(ws), Some(cs), Some(cu)) = (shared.wasted, shared.cpu_us, reuseport.cpu_us) else {
        return vec![
            "needs wasted wake-ups and CPU per connection for shared and reuseport".into(),
        ];
    };
    let extra = ws.median - reuseport.wasted.map_or(0.0, |w| w.median);
    let mut out = Vec::new();
    // Measured where shared costs more than reuseport in the paired rounds
    // (the whole 95 % interval of the ratio above 1).
    let cpu_in = |x: &Row| -> Vec<InRound> {
        x.measurements
            .iter()
            .filter_map(|(round, m)| Some((*round, cpu_us(m)?)))
            .collect()
    };
    let separated = paired(&cpu_in(shared), &cpu_in(reuseport)).is_some_and(|p| p.lo > 1.0);
    let measured = extra > 0.0 && separated;
    let per_wake = if measured {
        let per_wake = (cs.median - cu.median) / extra;
        out.push(format!(
            "Measured on {LOOPS} loops: one connection costs reuseport {} of server CPU; \
             shared wastes {extra:.3} more wake-ups per connection and costs {} more: \
             about {} per wasted wake-up.",
            micros(cu.median),
            micros(cs.median - cu.median),
            micros(per_wake)
        ));
        per_wake
    } else {
        let wakes = reuseport.ctx.map_or(1.0, |c| c.median.max(1.0));
        let bound = cu.median / wakes;
        out.push(format!(
            "Measured on {LOOPS} loops: one connection costs reuseport {} of server CPU and \
             shared {}, a difference the repeats do not separate from noise; so a wasted \
             wake-up is costed at an upper bound, {} (reuseport's CPU per connection over \
             its {wakes:.2} wake-ups per connection).",
            micros(cu.median),
            micros(cs.median),
            micros(bound)
        ));
        bound
    };
    // Wake-ups in vain per connection, for each loop besides the one that
    // accepts: measured.
    let per_other = ws.median / (LOOPS - 1) as f64;
    out.push(format!(
        "Assumed: with a plain shared listener each of the N − 1 loops that do not get a \
         connection is woken in vain {} times per connection, as the other loop was here \
         (measured; the worst case, every idle loop woken every time, would be 1), \
         reuseport none, and each loop is limited by its CPU per connection; ignored: the \
         shared accept queue's lock, caches, and the load generator's own cores. The rates \
         are capacities (N × 1 s over the CPU per connection), not what a run here would \
         show: the connections/s measured above share this machine's CPUs with the load \
         generator. Two significant digits: the repeats do not support more.",
        two_digits(per_other)
    ));
    let (cpu_head, rate_head) = if measured {
        ("added CPU/conn", "shared conn/s")
    } else {
        ("added CPU/conn (at most)", "shared conn/s (at least)")
    };
    let mut table = format!(
        "| N loops on N cores | shared: wasted wake-ups/conn | shared: {cpu_head} | reuseport conn/s | {rate_head} |\n|---:|---:|---:|---:|---:|\n"
    );
    for n in [2usize, 4, 8, 16, 32] {
        let wasted = per_other * (n as f64 - 1.0);
        let added = wasted * per_wake;
        let _ = writeln!(
            table,
            "| {n} | {} | {} µs | {} | {} |",
            two_digits(wasted),
            two_digits(added),
            rate_two_digits(n as f64 * 1e6 / cu.median),
            rate_two_digits(n as f64 * 1e6 / (cu.median + added))
        );
    }
    out.push(format!("Estimate:\n\n{table}"));
    out
}

/// Draws the figure (one bar per sharing mode); `None` if there is no data.
fn figure(dir: &Path, r: &HerdResults) -> io::Result<Option<String>> {
    let file = "herd_wasted_wakeups.svg";
    let path = dir.join(file);
    // A mode without a measurement stays in the figure, marked as such; a
    // measured zero (reuseport, prefork) is drawn as a zero.
    let bars: Vec<plots::Bar> = SHARINGS
        .iter()
        .enumerate()
        .map(|(i, s)| plots::Bar {
            name: s.label.to_string(),
            color: i,
            value: row(r, s.label, false).wasted,
        })
        .collect();
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path, e)),
        _ => {}
    }
    let drawn = plots::bar_chart(
        &path,
        &format!("Wasted wake-ups per connection, {LOOPS} loops, connect workload"),
        &plots::Axis {
            desc: "wake-ups that got no connection, per connection accepted",
            scale: plots::Scale::Linear,
            format: plots::count_label,
        },
        &bars,
        &[],
    )?;
    Ok(drawn.then(|| file.to_string()))
}

/// Writes `herd.json` and the figure into `dir` and appends the section to
/// its `REPORT.md` (written before by `report::write`); returns the files
/// written.
pub fn write(dir: &Path, r: &HerdResults) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let json = dir.join("herd.json");
    write_json(&json, r)?;
    written.push(json);
    let figure = figure(dir, r)?;
    if let Some(f) = &figure {
        written.push(dir.join(f));
    }
    let report = dir.join("REPORT.md");
    let mut text = fs::read_to_string(&report).map_err(|e| io_err(&report, e))?;
    text.push_str(&section(r, figure.as_deref()));
    write_file(&report, &text)?;
    Ok(written)
}

/// `--report-from`: the section again from `herd.json`, if there is one.
pub fn rewrite(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let json = dir.join("herd.json");
    let text = match fs::read_to_string(&json) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&json, e)),
    };
    let r: HerdResults = serde_json::from_str(&text).map_err(|e| io_err(&json, e))?;
    write(dir, &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_shown_to_two_significant_digits() {
        assert_eq!(two_digits(0.1353), "0.14");
        assert_eq!(two_digits(4.206), "4.2");
        assert_eq!(two_digits(108.0), "110");
        assert_eq!(two_digits(0.0), "0");
        assert_eq!(rate_two_digits(1_356_000.0), "1.4M");
        assert_eq!(rate_two_digits(57_142.0), "57k");
        assert_eq!(rate_two_digits(100_000.0), "100k");
    }
}
