//! `cells.csv`: one row per cell of the matrix (timing and syscall cells,
//! those not run too), each metric as the median, smallest and largest of
//! its repeats, beside `compare.json` for a spreadsheet or a script.

use super::stats::{self, Metric};
use crate::results::{is_reference, Cell, CompareResults, Purpose, Workload};

/// The metrics of the CSV: column stem and how it is read.
const METRICS: &[(&str, Metric)] = &[
    ("rate", stats::rate),
    ("echoed_bytes_per_s", stats::echoed_bytes),
    ("server_cpu_per_req_us", stats::server_cpu),
    ("client_cpu_per_req_us", stats::client_cpu),
    ("server_cpu_share", stats::server_utilisation),
    ("client_cpu_share", stats::client_utilisation),
    ("p50_us", stats::p50),
    ("p99_us", stats::p99),
    ("p999_us", stats::p999),
    ("max_us", stats::max_latency),
    ("ctx_voluntary_per_req", stats::ctx_voluntary),
    ("ctx_involuntary_per_req", stats::ctx_involuntary),
    ("peak_rss_kib", stats::peak_rss_kib),
    ("errors", stats::errors),
    ("syscalls_per_req", syscalls_total),
    ("server_user_share", stats::server_user_share),
    ("idle_dropped", stats::idle_dropped),
    ("idle_unserved", stats::idle_unserved),
];

fn syscalls_total(m: &crate::measurement::Measurement) -> Option<f64> {
    m.server
        .syscalls_per_request
        .as_ref()?
        .get("total")
        .copied()
}

/// A field quoted when it holds a separator, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn number(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_default()
}

fn row(c: &Cell, size: usize) -> Vec<String> {
    let (kind, idle, offered) = match c.workload {
        Workload::Pingpong { .. } => ("pingpong", 0, None),
        Workload::Connect { .. } => ("connect", 0, None),
        Workload::Idle { idle, rate, .. } => ("idle", idle, rate),
        Workload::OpenLoop { rate, .. } => ("open_loop", 0, Some(rate)),
        Workload::Message { rate, .. } => ("message", 0, Some(rate)),
    };
    let conns = c.workload.concurrent_conns() - idle;
    let mut out = vec![
        field(&c.model),
        is_reference(&c.model).to_string(),
        field(&c.workload.label()),
        kind.to_string(),
        conns.to_string(),
        idle.to_string(),
        offered.map(|r| r.to_string()).unwrap_or_default(),
        c.workload.size().unwrap_or(size).to_string(),
        match c.purpose {
            Purpose::Timing => "timing",
            Purpose::Syscalls => "syscalls",
            Purpose::Profile => "profile",
        }
        .to_string(),
        c.runs.len().to_string(),
        c.failures.len().to_string(),
        c.samples().to_string(),
        field(c.not_run.as_deref().unwrap_or("")),
    ];
    for (_, metric) in METRICS {
        let s = c.spread(*metric);
        out.push(number(s.map(|s| s.median)));
        out.push(number(s.map(|s| s.min)));
        out.push(number(s.map(|s| s.max)));
    }
    out
}

/// The whole CSV, header first.
pub fn cells(r: &CompareResults) -> String {
    let mut head: Vec<String> = [
        "model",
        "reference",
        "workload",
        "kind",
        "active_conns",
        "idle_conns",
        "offered_rate",
        "size_bytes",
        "purpose",
        "runs",
        "failed_runs",
        "latency_samples",
        "not_run",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (stem, _) in METRICS {
        for part in ["median", "min", "max"] {
            head.push(format!("{stem}_{part}"));
        }
    }
    let mut out = head.join(",") + "\n";
    for c in &r.cells {
        out.push_str(&row(c, r.size).join(","));
        out.push('\n');
    }
    out
}
