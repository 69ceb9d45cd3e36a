//! Writes what `harness compare` measured: `REPORT.md`, its SVG figures,
//! and the raw runs as JSON, all in one directory (`results/`).

mod axes;
mod control;
mod csv;
mod flags;
pub mod herd;
mod instrument;
mod ladder;
mod markdown;
pub mod phases;
mod plots;
mod questions;
mod run_table;
mod stats;
mod table;
mod when;
pub mod where_time;

pub use crate::env::{CpuTicks, Environment};
pub use crate::results::{
    is_reference, Cell, CompareResults, ModelStatus, Purpose, RunFailure, RunKey, Workload,
    EXCLUDED, SATURATED,
};
pub use markdown::{render as render_markdown, Section, SECTIONS};
pub use run_table::run_table;
pub use stats::Spread;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::compare::Compared;
use plots::{Axis, Bar, Family, LineChart, Scale, Series, Stack};
use stats::{micros_tick as micros, si_tick, Metric};

/// One figure of the report: drawn to `file`, or why not.
pub struct Figure {
    pub title: String,
    pub file: String,
    pub missing: Option<String>,
}

/// What every section is written from: the results and the figures drawn.
pub struct Ctx<'a> {
    pub r: &'a CompareResults,
    pub figures: &'a [Figure],
    /// Every comparison of the report, under one multiplicity control.
    pub family: &'a crate::stats::Family,
}

/// Every comparison the report's Markdown makes, with their
/// Benjamini–Hochberg q-values: a first rendering (its text discarded)
/// collects them, so that a difference is claimed only as a discovery
/// among all of them. The figures are drawn from this family too; they
/// make no comparison the Markdown does not (the same keys), so that a
/// verdict drawn reads as the verdict written.
fn controlled(r: &CompareResults) -> crate::stats::Family {
    let first = crate::stats::Family::collecting();
    markdown::render(&Ctx {
        r,
        figures: &[],
        family: &first,
    });
    first.adjust()
}

/// The report's Markdown under the report's multiplicity control
/// (`controlled`), referring to `figures`.
pub fn render_controlled(r: &CompareResults, figures: &[Figure]) -> String {
    markdown::render(&Ctx {
        r,
        figures,
        family: &controlled(r),
    })
}

/// Every figure file this module writes, so that a stale one from an
/// earlier run (a figure this run had no data for) is removed rather than
/// shown; the names of earlier versions too.
const FIGURES: &[&str] = &[
    "cpu_per_request_vs_rate.svg",
    "latency_vs_rate.svg",
    "latency_spectrum.svg",
    "cpu_per_request_vs_idle.svg",
    "connections_per_second.svg",
    "syscalls_per_request.svg",
    "closed_loop_throughput.svg",
    "rate_vs_connections.svg",
    "cpu_per_request_vs_connections.svg",
    "latency_percentiles.svg",
    "open_loop_latency.svg",
    "crossover.svg",
];
const FAMILIES: &[&str] = &["pingpong", "connect", "idle", "openloop", "message"];

fn io_err(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, text: &str) -> io::Result<()> {
    fs::write(path, text).map_err(|e| io_err(path, e))
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| io_err(path, e))?;
    write_file(path, &(text + "\n"))
}

/// Reads back a `compare.json`.
/// Reads a `compare.json`; a run whose cross-check disagreed is moved to its
/// cell's failures, as `harness compare` does today, so that a record
/// written before that rule publishes no doubted number either.
pub fn load(path: &Path) -> io::Result<CompareResults> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let mut r: CompareResults = serde_json::from_str(&text).map_err(|e| io_err(path, e))?;
    for c in &mut r.cells {
        c.exclude_doubted();
    }
    Ok(r)
}

/// Each model's place among the rows of its family in the matrix: its
/// colour in every panel, whichever rows a figure has.
fn family_color(r: &CompareResults, model: &str) -> usize {
    let family = Family::of(model);
    r.models
        .iter()
        .filter(|m| Family::of(&m.model) == family)
        .position(|m| m.model == model)
        .unwrap_or(0)
}

/// One line per model over `points` (x value, workload): `metric` of
/// each timing cell.
fn series(r: &CompareResults, points: &[(f64, Workload)], metric: Metric) -> Vec<Series> {
    r.models
        .iter()
        .filter(|m| m.unavailable.is_none())
        .map(|m| Series {
            name: m.model.clone(),
            color: family_color(r, &m.model),
            reference: is_reference(&m.model),
            points: points
                .iter()
                .filter_map(|(x, w)| {
                    Some((*x, r.cell(&m.model, w, Purpose::Timing)?.spread(metric)?))
                })
                .collect(),
            short: points
                .iter()
                .filter(|(_, w)| w.offered_rate().is_some())
                .filter(|(_, w)| {
                    let c = r.cell(&m.model, w, Purpose::Timing);
                    c.is_some_and(|c| !c.runs.is_empty()) && !questions::sustained(c)
                })
                .map(|(x, _)| *x)
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// A log axis where the values span more than a decade, else linear.
fn scale_for(series: &[Series]) -> Scale<'static> {
    let v: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, p)| p.median))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    if !v.is_empty() && hi / lo > 10.0 {
        Scale::Log
    } else {
        Scale::Linear
    }
}

fn figure(file: &str, title: &str, drawn: io::Result<bool>) -> io::Result<Figure> {
    Ok(Figure {
        title: title.into(),
        file: file.into(),
        missing: (!drawn?).then(|| "no measurement to draw".into()),
    })
}

/// Draws `chart` to `file` in `dir`, titled as the chart.
fn line_figure(dir: &Path, file: &str, chart: &LineChart) -> io::Result<Figure> {
    figure(file, chart.title, plots::line_chart(&dir.join(file), chart))
}

fn count(v: f64) -> String {
    si_tick(v)
}

fn rate_tick(v: f64) -> String {
    format!("{}/s", si_tick(v))
}

fn percentile_tick(v: f64) -> String {
    format!("p{v}")
}

/// One bar per model with a `purpose` cell on `w`: `metric` of it, or no
/// value where its runs have none; coloured by family.
fn bars(r: &CompareResults, w: &Workload, purpose: Purpose, metric: Metric) -> Vec<Bar> {
    r.models
        .iter()
        .filter_map(|m| {
            let c = r.cell(&m.model, w, purpose)?;
            Some(Bar {
                name: table::label(&m.model),
                color: Family::of(&m.model).color(),
                value: c.spread(metric),
            })
        })
        .collect()
}

fn models(r: &CompareResults) -> Vec<String> {
    r.models.iter().map(|m| m.model.clone()).collect()
}

/// The colour key of bars coloured by family: the families of `models`.
fn family_key(models: &[String]) -> Vec<(&'static str, usize)> {
    Family::ALL
        .iter()
        .filter(|f| models.iter().any(|m| Family::of(m) == **f))
        .map(|f| (f.short(), f.color()))
        .collect()
}

/// The system calls counted, by role: the colours of the syscall figure
/// (palette index), a call not listed being "other".
const CALL_ROLES: &[(&str, usize, &[&str])] = &[
    (
        "wait for readiness",
        0,
        &[
            "epoll_wait",
            "epoll_pwait",
            "poll",
            "ppoll",
            "select",
            "pselect6",
            "rt_sigtimedwait",
        ],
    ),
    ("io_uring_enter", 4, &["io_uring_enter"]),
    ("read", 2, &["read", "recvfrom", "recvmsg", "readv"]),
    ("write", 1, &["write", "sendto", "sendmsg", "writev"]),
    ("accept", 3, &["accept", "accept4"]),
    ("other", 7, &[]),
];

/// A call's role in `CALL_ROLES`: its index there.
fn call_role(call: &str) -> usize {
    CALL_ROLES
        .iter()
        .position(|(_, _, calls)| calls.contains(&call))
        .unwrap_or(CALL_ROLES.len() - 1)
}

/// One stack per model with a syscall-counting cell on `w`: its calls per
/// request (median over the cell's runs), grouped by role.
fn syscall_stacks(r: &CompareResults, w: &Workload) -> Vec<Stack> {
    r.models
        .iter()
        .filter_map(|m| {
            let c = r.cell(&m.model, w, Purpose::Syscalls)?;
            let counted: Vec<_> = c
                .runs
                .iter()
                .filter_map(|run| run.server.syscalls_per_request.as_ref())
                .collect();
            if counted.is_empty() {
                return Some(Stack {
                    name: table::label(&m.model),
                    parts: None,
                });
            }
            let calls: std::collections::BTreeSet<&String> = counted
                .iter()
                .flat_map(|counts| counts.keys())
                .filter(|k| *k != "total")
                .collect();
            let mut parts: Vec<(String, usize, f64)> = calls
                .into_iter()
                .filter_map(|call| Some((call.clone(), c.syscall(call)?.median)))
                .filter(|(_, v)| *v > 0.0)
                .map(|(call, v)| {
                    let role = call_role(&call);
                    (call, role, v)
                })
                .collect();
            parts.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)));
            let parts = parts
                .into_iter()
                .map(|(call, role, v)| (call, CALL_ROLES[role].1, v))
                .collect();
            Some(Stack {
                name: table::label(&m.model),
                parts: Some(parts),
            })
        })
        .collect()
}

/// A pair's cell as the crossover map draws it.
fn mark(o: &when::Outcome) -> plots::Mark {
    match o {
        when::Outcome::Lower(p) | when::Outcome::Higher(p) => plots::Mark::Resolved {
            ratio: p.ratio,
            lo: p.lo,
            hi: p.hi,
        },
        when::Outcome::Same(p) => plots::Mark::Same { lo: p.lo, hi: p.hi },
        when::Outcome::Unresolved(p) => plots::Mark::Unresolved { lo: p.lo, hi: p.hi },
        when::Outcome::NotCompared => plots::Mark::NotCompared,
    }
}

/// The crossover map's panels: each pair of "Which model, when?" whose
/// rows were both measured, its outcome in every open-loop cell (`grid`'s
/// rates by its connection counts), as that section judges it. A pair
/// with no cell compared has no panel: its title is in the second list.
fn crossover_panels(
    r: &CompareResults,
    family: &crate::stats::Family,
) -> (Vec<plots::CrossPanel>, Vec<String>) {
    let measured = questions::models(r);
    let (conns, rates) = when::grid(r);
    let (drawn, empty): (Vec<_>, Vec<_>) = crate::spec::PAIRS
        .iter()
        .filter(|(a, b, _)| measured.iter().any(|m| m == a) && measured.iter().any(|m| m == b))
        .map(|(a, b, _)| {
            let cells: Vec<Vec<plots::Mark>> = rates
                .iter()
                .map(|rate| {
                    conns
                        .iter()
                        .map(|c| {
                            let w = Workload::OpenLoop {
                                conns: *c,
                                rate: *rate,
                            };
                            mark(&when::outcome(family, r, a, b, &w))
                        })
                        .collect()
                })
                .collect();
            let sizes = axes::size_axis(r)
                .iter()
                .map(|w| mark(&when::outcome(family, r, a, b, w)))
                .collect();
            plots::CrossPanel {
                title: format!("{} over {}", table::label(a), table::label(b)),
                cells,
                sizes,
            }
        })
        .partition(|p| {
            p.cells
                .iter()
                .flatten()
                .chain(&p.sizes)
                .any(|m| *m != plots::Mark::NotCompared)
        });
    (drawn, empty.into_iter().map(|p| p.title).collect())
}

/// The categories of the map where some panel compared a cell; the rest
/// are taken out of every panel (a row or column of "—" alone says only
/// what the note says). Returns the connection counts and rates kept.
fn compared_only(
    conns: &[usize],
    rates: &[u64],
    panels: &mut [plots::CrossPanel],
) -> (Vec<usize>, Vec<u64>) {
    let compared = |m: &plots::Mark| *m != plots::Mark::NotCompared;
    let keep_rate: Vec<bool> = (0..rates.len())
        .map(|ri| panels.iter().any(|p| p.cells[ri].iter().any(compared)))
        .collect();
    let keep_conns: Vec<bool> = (0..conns.len())
        .map(|ci| {
            panels
                .iter()
                .any(|p| p.cells.iter().any(|row| compared(&row[ci])))
        })
        .collect();
    for p in panels.iter_mut() {
        let rows: Vec<Vec<plots::Mark>> =
            p.cells.iter().map(|row| kept(row, &keep_conns)).collect();
        p.cells = rows
            .into_iter()
            .zip(&keep_rate)
            .filter(|(_, keep)| **keep)
            .map(|(row, _)| row)
            .collect();
    }
    (kept(conns, &keep_conns), kept(rates, &keep_rate))
}

/// The items of `v` whose `keep` is true.
fn kept<T: Copy>(v: &[T], keep: &[bool]) -> Vec<T> {
    v.iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(x, _)| *x)
        .collect()
}

fn figures(
    dir: &Path,
    r: &CompareResults,
    family: &crate::stats::Family,
) -> io::Result<Vec<Figure>> {
    let mut out = Vec::new();
    let sweep: Vec<(f64, Workload)> = questions::sweep(r)
        .into_iter()
        .filter_map(|w| Some((w.offered_rate()? as f64, w)))
        .collect();
    let conns = sweep.first().map_or(0, |(_, w)| w.concurrent_conns());
    let rate_axis = Axis {
        desc: "offered requests/s",
        scale: Scale::Log,
        format: rate_tick,
    };

    let title = format!("Server CPU per request vs offered load ({conns} connections, open loop)");
    let s = series(r, &sweep, stats::server_cpu);
    let chart = LineChart {
        title: &title,
        x: rate_axis,
        y: Axis {
            desc: "server CPU per request",
            scale: scale_for(&s),
            format: micros,
        },
        series: &s,
    };
    out.push(line_figure(dir, "cpu_per_request_vs_rate.svg", &chart)?);

    let title =
        format!("p99 latency vs offered load ({conns} connections, from the scheduled time)");
    let s = series(r, &sweep, stats::p99);
    let chart = LineChart {
        title: &title,
        x: rate_axis,
        y: Axis {
            desc: "p99 latency",
            scale: scale_for(&s),
            format: micros,
        },
        series: &s,
    };
    out.push(line_figure(dir, "latency_vs_rate.svg", &chart)?);

    if let Some(w) = questions::reference_rate(r) {
        let title = format!("Latency spectrum at {}", w.label());
        let s: Vec<Series> = r
            .models
            .iter()
            .filter_map(|m| {
                let c = r.cell(&m.model, &w, Purpose::Timing)?;
                let points: Vec<(f64, Spread)> = questions::spectrum(c)
                    .into_iter()
                    .filter(|(p, _)| *p < 100.0)
                    .collect();
                (!points.is_empty()).then(|| Series {
                    name: m.model.clone(),
                    color: family_color(r, &m.model),
                    reference: is_reference(&m.model),
                    // Past saturation the whole spectrum is a backlog's.
                    short: if questions::sustained(Some(c)) {
                        Vec::new()
                    } else {
                        points.iter().map(|(p, _)| *p).collect()
                    },
                    points,
                })
            })
            .collect();
        let chart = LineChart {
            title: &title,
            x: Axis {
                desc: "percentile, from the HdrHistogram",
                scale: Scale::Nines,
                format: percentile_tick,
            },
            y: Axis {
                desc: "latency",
                scale: Scale::Log,
                format: micros,
            },
            series: &s,
        };
        out.push(line_figure(dir, "latency_spectrum.svg", &chart)?);
    }

    // The idle figure's x values are the idle connections held, 0 among
    // them: categories, evenly spaced, since a log axis has no 0.
    let idle: Vec<(usize, Workload)> = r
        .workloads
        .iter()
        .copied()
        .filter(|w| matches!(w, Workload::Idle { .. }))
        .collect::<Vec<_>>()
        .first()
        .map(|first| {
            let Workload::Idle { active, rate, .. } = *first else {
                return Vec::new();
            };
            let zero = match rate {
                Some(rate) => Workload::OpenLoop {
                    conns: active,
                    rate,
                },
                None => Workload::Pingpong { conns: active },
            };
            std::iter::once((0, zero))
                .chain(r.workloads.iter().filter_map(|w| match *w {
                    Workload::Idle { idle, .. } => Some((idle, *w)),
                    _ => None,
                }))
                .collect()
        })
        .unwrap_or_default();
    if !idle.is_empty() {
        let active = idle.first().map_or(0, |(_, w)| w.concurrent_conns());
        let title = format!(
            "Server CPU per request of {active} active connections vs idle connections held"
        );
        let categories: Vec<String> = idle.iter().map(|(n, _)| n.to_string()).collect();
        let points: Vec<(f64, Workload)> = idle
            .iter()
            .enumerate()
            .map(|(i, (_, w))| (i as f64, *w))
            .collect();
        let s = series(r, &points, stats::server_cpu);
        let desc = "idle connections held (categories, not to scale: a log axis has no 0)";
        let chart = LineChart {
            title: &title,
            x: Axis {
                desc,
                scale: Scale::Categories(&categories),
                format: count,
            },
            y: Axis {
                desc: "server CPU per request",
                scale: scale_for(&s),
                format: micros,
            },
            series: &s,
        };
        out.push(line_figure(dir, "cpu_per_request_vs_idle.svg", &chart)?);
    }

    if let Some(w) = r
        .workloads
        .iter()
        .find(|w| matches!(w, Workload::Connect { .. }))
    {
        let title = format!("Connections per second ({})", w.label());
        let b = bars(r, w, Purpose::Timing, stats::rate);
        let x = Axis {
            desc: "connections/s (median, whisker: min–max)",
            scale: Scale::Linear,
            format: count,
        };
        let key = family_key(&models(r));
        let drawn = plots::bar_chart(
            &dir.join("connections_per_second.svg"),
            &title,
            &x,
            &b,
            &key,
        );
        out.push(figure("connections_per_second.svg", &title, drawn)?);
    }

    if let Some(w) = questions::syscall_workloads(r).first() {
        let title = format!(
            "System calls per request by call ({}, one counting run)",
            w.label()
        );
        let key: Vec<(&str, usize)> = CALL_ROLES.iter().map(|(n, c, _)| (*n, *c)).collect();
        let drawn = plots::stacked_bar_chart(
            &dir.join("syscalls_per_request.svg"),
            &title,
            "system calls per request",
            &syscall_stacks(r, w),
            &key,
        );
        out.push(figure("syscalls_per_request.svg", &title, drawn)?);
    }

    let pingpong: Vec<(f64, Workload)> = r
        .workloads
        .iter()
        .copied()
        .filter(|w| matches!(w, Workload::Pingpong { .. }))
        .map(|w| (w.concurrent_conns() as f64, w))
        .collect();
    let file = "closed_loop_throughput.svg";
    match pingpong.as_slice() {
        [] => {}
        [(_, w)] => {
            let title = format!(
                "Closed-loop throughput ({}; saturation, not cost)",
                w.label()
            );
            let b = bars(r, w, Purpose::Timing, stats::rate);
            let x = Axis {
                desc: "requests/s (median, whisker: min–max)",
                scale: Scale::Linear,
                format: count,
            };
            let key = family_key(&models(r));
            let drawn = plots::bar_chart(&dir.join(file), &title, &x, &b, &key);
            out.push(figure(file, &title, drawn)?);
        }
        _ => {
            let title = "Closed-loop throughput vs connections (saturation, not cost)";
            let s = series(r, &pingpong, stats::rate);
            let chart = LineChart {
                title,
                x: Axis {
                    desc: "connections",
                    scale: Scale::Log,
                    format: count,
                },
                y: Axis {
                    desc: "requests/s",
                    scale: scale_for(&s),
                    format: count,
                },
                series: &s,
            };
            out.push(line_figure(dir, file, &chart)?);
        }
    }

    let (mut panels, empty) = crossover_panels(r, family);
    if !panels.is_empty() {
        let (all_conns, all_rates) = when::grid(r);
        let (conns, rates) = compared_only(&all_conns, &all_rates, &mut panels);
        let title = "Which model, when? CPU per request, row over its rival";
        let mut note = String::from(
            "Each square: the server CPU per request of the panel's first row over its rival's \
             at that load (open loop), the geometric mean of the per-round ratios, with its 95 % \
             interval in small type; coloured only where the difference is resolved under the \
             report's Benjamini–Hochberg control, as in the section's tables.",
        );
        let left_out: Vec<String> = all_rates
            .iter()
            .filter(|v| !rates.contains(v))
            .map(|v| rate_tick(*v as f64))
            .chain(
                all_conns
                    .iter()
                    .filter(|c| !conns.contains(c))
                    .map(|c| format!("{c} connections")),
            )
            .collect();
        if !left_out.is_empty() {
            note.push_str(&format!(
                " Left out, no pair compared there: {}.",
                left_out.join(", ")
            ));
        }
        if !empty.is_empty() {
            note.push_str(&format!(
                " No panel, no cell where both sustained the offer in enough rounds: {}.",
                empty.join("; ")
            ));
        }
        let conns: Vec<String> = conns.iter().map(|c| c.to_string()).collect();
        let rates: Vec<String> = rates.iter().map(|v| rate_tick(*v as f64)).collect();
        let size_axis = axes::size_axis(r);
        let sizes: Vec<String> = size_axis
            .iter()
            .map(|w| axes::size_label(w.size().unwrap_or(r.size)))
            .collect();
        let sizes_at = size_axis.first().map_or(String::new(), |w| {
            format!(
                "message size, at {} over {} connections",
                rate_tick(w.offered_rate().unwrap_or(0) as f64),
                w.concurrent_conns()
            )
        });
        let chart = plots::Crossover {
            title,
            conns: &conns,
            rates: &rates,
            sizes: &sizes,
            sizes_at: &sizes_at,
            panels: &panels,
            note: &note,
        };
        let drawn = plots::crossover_chart(&dir.join("crossover.svg"), &chart);
        out.push(figure("crossover.svg", title, drawn)?);
    }
    Ok(out)
}

/// Writes `REPORT.md`, the figures, `compare.json` and one JSON file per
/// workload family into `dir` (created if needed); returns the files
/// written.
pub fn write(dir: &Path, r: &CompareResults) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    for name in FIGURES {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path, e)),
            _ => {}
        }
    }
    let mut written = Vec::new();
    let path = dir.join("compare.json");
    write_json(&path, r)?;
    written.push(path);
    for family in FAMILIES {
        let cells: Vec<&Cell> = r
            .cells
            .iter()
            .filter(|c| c.workload.family() == *family)
            .collect();
        let path = dir.join(format!("{family}.json"));
        if cells.is_empty() {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path, e)),
                _ => {}
            }
            continue;
        }
        write_json(&path, &cells)?;
        written.push(path);
    }
    let path = dir.join("cells.csv");
    write_file(&path, &csv::cells(r))?;
    written.push(path);
    // The family first, so that the figures draw the verdicts the text
    // states; then the text, referring to the figures drawn.
    let family = controlled(r);
    let figs = figures(dir, r, &family)?;
    written.extend(
        figs.iter()
            .filter(|f| f.missing.is_none())
            .map(|f| dir.join(&f.file)),
    );
    let path = dir.join("REPORT.md");
    let md = markdown::render(&Ctx {
        r,
        figures: &figs,
        family: &family,
    });
    write_file(&path, &md)?;
    written.push(path);
    Ok(written)
}

/// Writes what one `harness compare` measured into `dir`: the matrix's
/// report and files (`write`), then the herd's and the phases' sections;
/// removes the partial record, now complete. Returns the files written.
pub fn write_compared(dir: &Path, c: &Compared) -> io::Result<Vec<PathBuf>> {
    let mut written = write(dir, &c.results)?;
    written.extend(herd::write(dir, &c.herd)?);
    written.extend(phases::write(dir, Some(c.lanes.clone()))?);
    if let Err(e) = fs::remove_file(&c.partial) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("harness compare: remove {}: {e}", c.partial.display());
        }
    }
    Ok(written)
}

/// `harness compare --report-from`: the report again from an earlier
/// `compare.json` (and the `herd.json` and `phases.json` beside it in
/// `dir`), stamped with the commit that renders it when that is not the
/// one measured. Returns the files written.
pub fn rewrite(path: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut results = load(path)?;
    let now = crate::account::git_commit();
    if now != results.environment.git_commit {
        results.rendered_by = Some(now.unwrap_or_else(|| "unknown (not a git checkout)".into()));
    }
    let mut written = write(dir, &results)?;
    written.extend(herd::rewrite(dir)?);
    written.extend(phases::write(dir, None)?);
    Ok(written)
}

#[cfg(test)]
mod tests;
