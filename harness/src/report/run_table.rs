//! The readable table `harness run` prints: one measurement, as a reader
//! at a terminal wants it (the JSON is the record).

use std::fmt::Write as _;

use crate::measurement::{ExitSummary, Measurement, WorkloadKind};

/// The readable table `harness run` prints.
pub fn run_table(m: &Measurement) -> String {
    let w = &m.workload;
    let mut out = String::new();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<28} {v}");
    };
    row("model", m.model.clone());
    row("target", m.target.clone());
    let shape = match w.kind {
        WorkloadKind::Pingpong => format!("{} conns, {} B", w.conns, w.size),
        WorkloadKind::Connect => format!(
            "{} in flight, {} B, close {}{}",
            w.conns,
            w.size,
            w.close.as_str(),
            match (w.busy, w.idle) {
                (0, 0) => String::new(),
                (busy, 0) => format!(", beside {busy} busy ping-pong"),
                (busy, idle) => format!(", beside {busy} busy ping-pong and {idle} idle"),
            }
        ),
        WorkloadKind::Idle => {
            format!("{} idle + {} active, {} B", w.idle, w.conns, w.size)
        }
    };
    let lp = match w.rate {
        Some(r) => format!("open loop at {r} req/s"),
        None => "closed loop".to_string(),
    };
    row("workload", format!("{} ({shape}, {lp})", w.kind.as_str()));
    row(
        "window",
        format!(
            "{:.3} s after {} s warm-up, started {}",
            m.window_s, w.warmup_s, m.started_at
        ),
    );
    row(
        "cpus",
        format!(
            "load {:?}, server {}",
            w.load_cpus,
            if w.server_cpus.is_empty() {
                "n/a".to_string()
            } else {
                format!("{:?}", w.server_cpus)
            }
        ),
    );
    row(
        "rate",
        format!(
            "{:.0} {} ({} in window)",
            m.rate,
            m.rate_unit.as_str(),
            m.requests
        ),
    );
    if let Some(missed) = m.openloop_missed {
        row(
            "open loop: due, unanswered",
            format!("{missed} (latency counted to the window's end, a lower bound)"),
        );
    }
    match &m.latency {
        Some(l) => row(
            "latency p50/p99/p99.9/max",
            format!(
                "{} / {} / {} / {} (mean {}, {} samples)",
                us(l.p50_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                us(l.mean_us),
                l.samples
            ),
        ),
        None => row(
            "latency p50/p99/p99.9/max",
            "n/a (no request completed)".into(),
        ),
    }
    let s = &m.server;
    row(
        "server cpu user/sys",
        match (s.user_s, s.sys_s) {
            (Some(u), Some(y)) => format!("{u:.3} s / {y:.3} s"),
            _ => "n/a".into(),
        },
    );
    row(
        "server cpu per request",
        opt(s.cpu_per_request_us, |v| {
            format!(
                "{v:.2} µs ({})",
                s.cpu_source.as_deref().unwrap_or("unknown source")
            )
        }),
    );
    if let (Some(k), Some(total)) = (s.io_uring_threads_cpu_s, s.cpu_s) {
        row(
            "of which io_uring threads",
            format!(
                "{k:.3} s of {total:.3} s, {:.0} % of a CPU (iou-sqp, iou-wrk)",
                k / m.window_s.max(f64::MIN_POSITIVE) * 100.0
            ),
        );
    }
    row(
        "server ctx switches/req",
        match (s.ctx_voluntary_per_request, s.ctx_involuntary_per_request) {
            (Some(v), Some(i)) => format!("{v:.3} voluntary, {i:.3} involuntary"),
            _ => "n/a".into(),
        },
    );
    row(
        "server peak rss",
        opt(s.peak_rss_kib, |k| format!("{:.1} MiB", k as f64 / 1024.0)),
    );
    match &s.syscalls_per_request {
        Some(map) => {
            let mut v: Vec<_> = map.iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(a.1));
            let text: Vec<String> = v
                .iter()
                .filter(|(_, n)| **n >= 0.001)
                .map(|(k, n)| format!("{k} {n:.3}"))
                .collect();
            row("server syscalls/request", text.join(", "));
        }
        None => row(
            "server syscalls/request",
            match &s.syscalls_na_reason {
                Some(r) => format!("n/a ({r})"),
                None => "n/a".into(),
            },
        ),
    }
    if let Some(r) = &s.na_reason {
        row("server n/a because", r.clone());
    }
    if let Some(r) = &s.profile_na_reason {
        row("server profile n/a because", r.clone());
    }
    if let Some(e) = &s.exit_summary {
        row(
            "server exit summary",
            format!(
                "model={} connections={} bytes={} user={:.3}s sys={:.3}s (whole run)",
                e.model, e.connections, e.bytes, e.user_s, e.sys_s
            ),
        );
    }
    if let Some(w) = &s.wakeups {
        row(
            "wasted wake-ups/connection",
            match (&w.replay, w.wasted_per_conn) {
                (Some(r), Some(per)) => format!(
                    "{per:.3} ({} returned with nothing to accept, of {} listener wake-ups; \
                     {} woke in the call and slept again; {} accepted; \
                     {} records lost, {} threads untraced)",
                    r.wasted_wakes,
                    r.listener_wakes,
                    r.kernel_wasted_wakes,
                    r.accepted,
                    r.lost_records,
                    r.threads_untraced
                ),
                _ => format!(
                    "n/a ({})",
                    w.replay_na_reason.as_deref().unwrap_or("no replay")
                ),
            },
        );
        row(
            "accept4 EAGAIN/connection",
            format!(
                "{:.3} ({} EAGAIN, {} accepted; epoll_wait returns {:.3}/conn)",
                w.eagain_per_conn, w.accept_eagain, w.accepted, w.wait_returns_per_conn
            ),
        );
    }
    if let Some(l) = &s.landed {
        let loops: Vec<String> = l
            .loops
            .iter()
            .map(|x| {
                format!(
                    "tid {}{} ({:.2} s CPU): {} conns, p50/p99 {}",
                    x.tid,
                    if x.busy { ", busy" } else { "" },
                    x.cpu_s,
                    x.connections,
                    x.latency.as_ref().map_or("n/a".into(), |q| format!(
                        "{:.1} / {:.1} µs",
                        q.p50_us, q.p99_us
                    ))
                )
            })
            .collect();
        row(
            "latency by loop",
            format!(
                "{} of {} connections attributed (socket() to reply; all: p50/p99 {}); {}",
                l.attributed,
                l.connections,
                l.all.as_ref().map_or("n/a".into(), |q| format!(
                    "{:.1} / {:.1} µs",
                    q.p50_us, q.p99_us
                )),
                loops.join("; ")
            ),
        );
    }
    if let Some((max, min)) = s.exit_summary.as_ref().and_then(ExitSummary::spread) {
        let loops = s.exit_summary.as_ref().map_or(&[][..], |e| &e.per_loop[..]);
        let counts: Vec<String> = loops.iter().map(u64::to_string).collect();
        row(
            "connections per loop",
            format!(
                "{} (max/min {}, whole run)",
                counts.join(", "),
                if min == 0 {
                    "inf".to_string()
                } else {
                    format!("{:.2}", max as f64 / min as f64)
                }
            ),
        );
    }
    if let Some(a) = &s.summary_agreement {
        row(
            "summary cross-check",
            format!(
                "harness {:.3} s vs summary {:.3} s (ratio {:.3}, {})",
                a.harness_cpu_s,
                a.summary_cpu_s,
                a.ratio,
                if a.agrees { "agrees" } else { "DISAGREES" }
            ),
        );
    }
    let c = &m.client;
    row(
        "client cpu user/sys",
        format!(
            "{:.3} s / {:.3} s ({} threads)",
            c.user_s, c.sys_s, c.threads
        ),
    );
    row(
        "client cpu per request",
        opt(c.cpu_per_request_us, |v| format!("{v:.2} µs")),
    );
    let e = &m.errors;
    row(
        "errors",
        format!(
            "{} (refused {}, reset {}, timeout {}, mismatch {}, short {}, other {})",
            e.total(),
            e.refused,
            e.reset,
            e.timeout,
            e.mismatch,
            e.short,
            e.other
        ),
    );
    if let Some(m) = &e.first_mismatch {
        row("first mismatch", m.clone());
    }
    if let Some(m) = &e.first_other {
        row("first other error", m.clone());
    }
    row("bytes verified", m.bytes_verified.to_string());
    if let Some(i) = &m.idle {
        row(
            "idle connections",
            format!(
                "{} asked, {} served, {} unserved, {} dropped ({} EOF, {} RST)",
                i.requested,
                i.served,
                i.unserved,
                i.dropped(),
                i.dropped_eof,
                i.dropped_rst
            ),
        );
    }
    if let Some(c) = &m.connect {
        row(
            "source addresses",
            format!(
                "{} ({} port exhaustions)",
                c.source_addresses, c.ports_exhausted
            ),
        );
    }
    for n in &m.notes {
        row("note", n.clone());
    }
    if let Some(p) = &m.server.profile {
        out.push_str(&super::where_time::run_lines(p));
    }
    out
}

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.1} µs")
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "n/a".into())
}
