//! The pieces every section of `REPORT.md` is built from: a Markdown
//! table, a model's label, a figure reference and a cell's value as shown.

use super::stats;
use super::Ctx;
use crate::results::{is_reference, Cell};

/// A markdown table.
pub struct Table {
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table::from(head.iter().map(|s| s.to_string()).collect())
    }

    pub fn from(head: Vec<String>) -> Table {
        Table {
            head,
            rows: Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::new();
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            )
        };
        out.push_str(&line(&self.head));
        out.push_str(&format!("|{}\n", " --- |".repeat(self.head.len())));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// A model's name as the report writes it: a peer is marked as a reference.
pub fn label(model: &str) -> String {
    if is_reference(model) {
        format!("{model} (reference)")
    } else {
        model.to_string()
    }
}

/// The markdown of one figure: the image, or why it was not drawn.
pub fn figure_ref(x: &Ctx, file: &str) -> String {
    match x.figures.iter().find(|f| f.file == file) {
        Some(f) => match &f.missing {
            None => format!("![{}]({})\n\n", f.title, f.file),
            Some(why) => format!("*Figure “{}” not drawn: {why}.*\n\n", f.title),
        },
        None => String::new(),
    }
}

/// How one cell reads in a table: the spread of `metric` and the runs it
/// holds (`n=`), or why there is none.
pub fn show(cell: Option<&Cell>, metric: stats::Metric, f: fn(f64) -> String) -> String {
    let Some(cell) = cell else {
        return "—".into();
    };
    if cell.not_run.is_some() {
        return "not run †".into();
    }
    if cell.runs.is_empty() {
        return "failed †".into();
    }
    // A failed run, or one without this figure (no request completed, so
    // no latency), leaves fewer values than attempts: said, not hidden.
    let text = match cell.spread(metric) {
        Some(s) if s.n < cell.attempted() => {
            format!("{} n={} of {}", s.show(f), s.n, cell.attempted())
        }
        Some(s) => format!("{} n={}", s.show(f), s.n),
        None => "n/a".into(),
    };
    if cell.failures.is_empty() {
        text
    } else {
        format!(
            "{text} ({} of {} failed †)",
            cell.failures.len(),
            cell.failures.len() + cell.runs.len()
        )
    }
}

/// A latency percentile `p` of a cell as a table shows it: `show`, or,
/// where a run holds fewer samples than p needs, what it lacks.
pub fn show_pct(cell: Option<&Cell>, p: f64) -> String {
    let metric: stats::Metric = match p {
        p if p >= 99.9 => stats::p999,
        p if p >= 99.0 => stats::p99,
        _ => stats::p50,
    };
    match cell.and_then(|c| stats::too_few_samples(c, p)) {
        Some(_) => format!(
            "— (<{} samples)",
            stats::si(crate::stats::samples_needed(p) as f64)
        ),
        None => show(cell, metric, stats::micros),
    }
}

/// The `harness run` command that repeats a run, from what the run itself
/// recorded (its workload, window and, with `server_args`, the server's
/// arguments after `--`), `model` where the row goes and `flag` (e.g.
/// `--syscalls`) after the window.
pub fn repeat_command(
    m: &crate::measurement::Measurement,
    model: &str,
    flag: Option<&str>,
    server_args: bool,
) -> String {
    let w = &m.workload;
    let mut a = vec![
        format!("harness run {model}"),
        format!("--workload {}", w.kind.as_str()),
        format!("--conns {}", w.conns),
    ];
    if let Some(rate) = w.rate {
        a.push(format!("--rate {rate}"));
    }
    if w.idle > 0 {
        a.push(format!("--idle {}", w.idle));
    }
    a.push(format!("--size {}", w.size));
    a.push(format!(
        "--warmup {} --duration {}",
        w.warmup_s, w.duration_s
    ));
    a.extend(flag.map(str::to_string));
    if server_args && !w.server_args.is_empty() {
        a.push(format!("-- {}", w.server_args.join(" ")));
    }
    a.join(" ")
}
