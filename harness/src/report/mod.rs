//! Writes what `harness compare` measured: `REPORT.md`, its SVG figures,
//! and the raw runs as JSON, all in one directory (`results/`).

mod control;
mod csv;
mod env;
mod flags;
pub mod herd;
mod markdown;
pub mod phases;
mod plots;
mod questions;
mod results;
mod stats;

pub use env::{git_commit, CpuTicks, Environment};
pub use markdown::{render as render_markdown, Section, SECTIONS};
pub use results::{
    is_reference, Cell, CompareResults, ModelStatus, Purpose, RunFailure, RunKey, Workload,
    EXCLUDED, SATURATED,
};
pub use stats::{Spread, MIN_REPEATS};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::stats::Family;
use plots::{Axis, LineChart, Scale, Series};
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
    pub family: &'a Family,
}

/// The report's Markdown: rendered once to collect every comparison it
/// makes, then again with their Benjamini–Hochberg q-values, so that a
/// difference is claimed only as a discovery among all of them.
pub fn render_controlled(r: &CompareResults, figures: &[Figure]) -> String {
    let first = Family::collecting();
    markdown::render(&Ctx {
        r,
        figures,
        family: &first,
    });
    let family = first.adjust();
    markdown::render(&Ctx {
        r,
        figures,
        family: &family,
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
];
const FAMILIES: &[&str] = &["pingpong", "connect", "idle", "openloop"];

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

/// One line per model over `points` (x value, workload): `metric` of
/// each timing cell.
fn series(r: &CompareResults, points: &[(f64, Workload)], metric: Metric) -> Vec<Series> {
    r.models
        .iter()
        .enumerate()
        .filter(|(_, m)| m.unavailable.is_none())
        .map(|(color, m)| Series {
            name: m.model.clone(),
            color,
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
fn scale_for(series: &[Series]) -> Scale {
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

fn plain(v: f64) -> String {
    si_tick(v)
}

/// One bar per model: `metric` of its `purpose` cell on `w`.
fn bars(
    r: &CompareResults,
    w: &Workload,
    purpose: Purpose,
    metric: Metric,
) -> Vec<(String, usize, Spread)> {
    r.models
        .iter()
        .enumerate()
        .filter_map(|(color, m)| {
            let c = r.cell(&m.model, w, purpose)?;
            Some((markdown::label(&m.model), color, c.spread(metric)?))
        })
        .collect()
}

fn syscalls_total(m: &crate::measurement::Measurement) -> Option<f64> {
    m.server
        .syscalls_per_request
        .as_ref()?
        .get("total")
        .copied()
}

fn figures(dir: &Path, r: &CompareResults) -> io::Result<Vec<Figure>> {
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
            .enumerate()
            .filter_map(|(color, m)| {
                let c = r.cell(&m.model, &w, Purpose::Timing)?;
                let points: Vec<(f64, Spread)> = questions::spectrum(c)
                    .into_iter()
                    .filter(|(p, _)| *p < 100.0)
                    .collect();
                (!points.is_empty()).then(|| Series {
                    name: m.model.clone(),
                    color,
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

    let idle: Vec<(f64, Workload)> = r
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
            std::iter::once(zero)
                .chain(
                    r.workloads
                        .iter()
                        .copied()
                        .filter(|w| matches!(w, Workload::Idle { .. })),
                )
                .map(|w| (w.concurrent_conns() as f64, w))
                .collect()
        })
        .unwrap_or_default();
    if !idle.is_empty() {
        let active = idle.first().map_or(0, |(_, w)| w.concurrent_conns());
        let title =
            format!("Server CPU per request of {active} active connections vs connections held");
        let s = series(r, &idle, stats::server_cpu);
        let desc = format!("connections held ({active} active, the rest idle)");
        let chart = LineChart {
            title: &title,
            x: Axis {
                desc: &desc,
                scale: Scale::Log,
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
            desc: "connections/s (median, line: min–max)",
            scale: Scale::Linear,
            format: count,
        };
        let drawn = plots::bar_chart(&dir.join("connections_per_second.svg"), &title, &x, &b);
        out.push(figure("connections_per_second.svg", &title, drawn)?);
    }

    if let Some(w) = questions::syscall_workloads(r).first() {
        let title = format!("System calls per request ({}, one counting run)", w.label());
        let b = bars(r, w, Purpose::Syscalls, syscalls_total);
        let x = Axis {
            desc: "syscalls per request",
            scale: Scale::Linear,
            format: plain,
        };
        let drawn = plots::bar_chart(&dir.join("syscalls_per_request.svg"), &title, &x, &b);
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
                desc: "requests/s (median, line: min–max)",
                scale: Scale::Linear,
                format: count,
            };
            let drawn = plots::bar_chart(&dir.join(file), &title, &x, &b);
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
    let figs = figures(dir, r)?;
    written.extend(
        figs.iter()
            .filter(|f| f.missing.is_none())
            .map(|f| dir.join(&f.file)),
    );
    let path = dir.join("REPORT.md");
    write_file(&path, &render_controlled(r, &figs))?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests;
