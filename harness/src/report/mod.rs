//! Writes what `harness compare` measured: `REPORT.md`, its SVG figures,
//! and the raw runs as JSON, all in one directory (`results/`).

mod env;
pub mod herd;
mod markdown;
mod plots;
mod results;
mod stats;

pub use env::Environment;
pub use markdown::findings;
pub use results::{Cell, CompareResults, ModelStatus, Purpose, RunFailure, Workload};
pub use stats::Spread;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plots::{LineChart, Series};
use stats::Metric;

/// One figure of the report: drawn to `file`, or why not.
pub struct Figure {
    pub title: String,
    pub file: String,
    pub missing: Option<String>,
}

/// Every file this module writes, so that a stale one from an earlier run
/// (a figure this run had no data for) is removed rather than shown.
const FIGURES: &[&str] = &[
    "rate_vs_connections.svg",
    "cpu_per_request_vs_connections.svg",
    "cpu_per_request_vs_idle.svg",
    "connections_per_second.svg",
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
pub fn load(path: &Path) -> io::Result<CompareResults> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| io_err(path, e))
}

/// One line per model over the workloads `ws` (x axis in their order).
fn series(r: &CompareResults, ws: &[Workload], metric: Metric) -> Vec<Series> {
    r.models
        .iter()
        .enumerate()
        .filter(|(_, m)| m.unavailable.is_none())
        .map(|(color, m)| Series {
            name: m.model.clone(),
            color,
            points: ws
                .iter()
                .enumerate()
                .filter_map(|(i, w)| {
                    Some((i, r.cell(&m.model, w, Purpose::Timing)?.spread(metric)?))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
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

fn figures(dir: &Path, r: &CompareResults) -> io::Result<Vec<Figure>> {
    let of = |keep: fn(&Workload) -> bool| -> Vec<Workload> {
        r.workloads.iter().copied().filter(&keep).collect()
    };
    let pingpong = of(|w| matches!(w, Workload::Pingpong { .. }));
    let idle = of(|w| matches!(w, Workload::Idle { .. }));
    let connect = of(|w| matches!(w, Workload::Connect { .. }));
    let open = of(|w| matches!(w, Workload::OpenLoop { .. }));
    let labels = |ws: &[Workload], f: fn(&Workload) -> String| ws.iter().map(f).collect::<Vec<_>>();
    let conns_labels = labels(&pingpong, |w| w.concurrent_conns().to_string());
    let idle_labels = labels(&idle, |w| match w {
        Workload::Idle { idle, .. } => idle.to_string(),
        _ => String::new(),
    });
    let rate_labels = labels(&open, |w| match w {
        Workload::OpenLoop { rate, .. } => rate.to_string(),
        _ => String::new(),
    });
    let mut out = Vec::new();

    let file = "rate_vs_connections.svg";
    let title = "Ping-pong: requests per second vs connections";
    let s = series(r, &pingpong, stats::rate);
    let chart = LineChart {
        title,
        x_desc: "connections",
        x_labels: &conns_labels,
        y_desc: "requests/s (median, bar: min–max)",
        log_y: false,
        series: &s,
    };
    out.push(line_figure(dir, file, &chart)?);

    let file = "cpu_per_request_vs_connections.svg";
    let title = "Ping-pong: server CPU per request vs connections";
    let s = series(r, &pingpong, stats::server_cpu);
    let chart = LineChart {
        title,
        x_desc: "connections",
        x_labels: &conns_labels,
        y_desc: "server CPU µs/request",
        log_y: true,
        series: &s,
    };
    out.push(line_figure(dir, file, &chart)?);

    let file = "cpu_per_request_vs_idle.svg";
    let active = idle.first().map_or(0, |w| match w {
        Workload::Idle { active, .. } => *active,
        _ => 0,
    });
    let title =
        format!("Server CPU per request of {active} active connections vs idle connections");
    let s = series(r, &idle, stats::server_cpu);
    let chart = LineChart {
        title: &title,
        x_desc: "idle connections",
        x_labels: &idle_labels,
        y_desc: "server CPU µs/request",
        log_y: true,
        series: &s,
    };
    out.push(line_figure(dir, file, &chart)?);

    let file = "connections_per_second.svg";
    let title = "Connections per second (connect, one request, close)";
    let bars: Vec<(String, usize, Spread)> = match connect.first() {
        Some(w) => r
            .models
            .iter()
            .enumerate()
            .filter_map(|(color, m)| {
                let c = r.cell(&m.model, w, Purpose::Timing)?;
                Some((m.model.clone(), color, c.spread(stats::rate)?))
            })
            .collect(),
        None => Vec::new(),
    };
    let drawn = plots::bar_chart(
        &dir.join(file),
        title,
        "connections/s (median, line: min–max)",
        &bars,
    );
    out.push(figure(file, title, drawn)?);

    let file = "latency_percentiles.svg";
    // The busiest ping-pong cell up to 100 connections: the lab's reference
    // load (issue 5's efficiency figure uses it too).
    let reference = pingpong
        .iter()
        .filter(|w| w.concurrent_conns() <= 100)
        .max_by_key(|w| w.concurrent_conns())
        .copied();
    let title = match reference {
        Some(w) => format!("Ping-pong latency percentiles, {}", w.label()),
        None => "Ping-pong latency percentiles".into(),
    };
    let pct_labels = vec!["p50".to_string(), "p99".to_string(), "p99.9".to_string()];
    let s: Vec<Series> = match reference {
        Some(w) => r
            .models
            .iter()
            .enumerate()
            .filter_map(|(color, m)| {
                let c = r.cell(&m.model, &w, Purpose::Timing)?;
                let metrics: [Metric; 3] = [stats::p50, stats::p99, stats::p999];
                let points: Vec<(usize, Spread)> = metrics
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| Some((i, c.spread(*f)?)))
                    .collect();
                (!points.is_empty()).then(|| Series {
                    name: m.model.clone(),
                    color,
                    points,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let chart = LineChart {
        title: &title,
        x_desc: "percentile",
        x_labels: &pct_labels,
        y_desc: "latency µs",
        log_y: true,
        series: &s,
    };
    out.push(line_figure(dir, file, &chart)?);

    if !open.is_empty() {
        let file = "open_loop_latency.svg";
        let title = "Open loop: p99 latency vs scheduled rate";
        let s = series(r, &open, stats::p99);
        let chart = LineChart {
            title,
            x_desc: "requests/s scheduled",
            x_labels: &rate_labels,
            y_desc: "p99 latency µs, from the scheduled time",
            log_y: true,
            series: &s,
        };
        out.push(line_figure(dir, file, &chart)?);
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
    let figs = figures(dir, r)?;
    written.extend(
        figs.iter()
            .filter(|f| f.missing.is_none())
            .map(|f| dir.join(&f.file)),
    );
    let path = dir.join("REPORT.md");
    write_file(&path, &markdown::render(r, &figs))?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests;
