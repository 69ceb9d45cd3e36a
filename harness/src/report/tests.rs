//! Checks of the report writer on a small hand-made `CompareResults`. The
//! numbers here are invented to exercise the writer; they are written only
//! to a temporary directory.

use super::*;
use crate::measurement::Agreement;
use crate::measurement::{
    ClientCpu, CloseMode, Errors, IdleOutcome, Latency, Measurement, RateUnit, ServerSide,
    WorkloadKind, WorkloadParams,
};
use std::collections::{BTreeMap, BTreeSet};

fn env() -> Environment {
    Environment {
        kernel: "Linux 6.1 #1".into(),
        cpu_model: "Test CPU".into(),
        cpu_mhz: Some(2400.0),
        cpus: 2,
        cpus_online: 2,
        virtualised: true,
        memory_total: "1 kB".into(),
        vulnerabilities: BTreeMap::from([("spectre_v2".to_string(), "Mitigation: x".to_string())]),
        rlimit_nofile: (1024, 4096),
        git_commit: Some("abc123".into()),
        clock_ticks_per_sec: 100,
        perf_event_paranoid: Some("2".into()),
        syscall_tracepoints: true,
        harness_build: "debug".into(),
        rustc: Some("rustc 1.85.0".into()),
    }
}

/// A record with the given rate, server and client CPU per request.
fn record(model: &str, w: &Workload, rate: f64, server_us: f64, client_us: f64) -> Measurement {
    let (kind, conns, idle) = match *w {
        Workload::Pingpong { conns }
        | Workload::OpenLoop { conns, .. }
        | Workload::Message { conns, .. } => (WorkloadKind::Pingpong, conns, 0),
        Workload::Connect { conns } => (WorkloadKind::Connect, conns, 0),
        Workload::Idle { idle, active, .. } => (WorkloadKind::Idle, active, idle),
    };
    Measurement {
        schema: 1,
        model: model.into(),
        target: "127.0.0.1:1".into(),
        workload: WorkloadParams {
            kind,
            conns,
            size: w.size().unwrap_or(64),
            rate: w.offered_rate().map(|r| r as f64),
            idle,
            busy: 0,
            warmup_s: 1.0,
            duration_s: 3.0,
            timeout_s: 5.0,
            close: CloseMode::Rst,
            load_cpus: vec![0],
            server_cpus: vec![1],
            server_args: vec![],
            timer_slack_ns: None,
        },
        started_at: "2026-01-01T00:00:00.000Z".into(),
        started_unix_ms: 0,
        window_s: 3.0,
        requests: (rate * 3.0) as u64,
        rate,
        rate_unit: RateUnit::RequestsPerSec,
        latency: Some(Latency {
            samples: (rate * 3.0) as u64,
            p50_us: 50.0,
            p99_us: 90.0,
            p999_us: 120.0,
            max_us: 200.0,
            mean_us: 55.0,
            spectrum: vec![(50.0, 50.0), (99.0, 90.0), (99.9, 120.0), (100.0, 200.0)],
        }),
        openloop_missed: None,
        errors: Errors::default(),
        bytes_verified: 1,
        client: ClientCpu {
            threads: 1,
            user_s: 0.1,
            sys_s: 0.1,
            cpu_per_request_us: Some(client_us),
        },
        server: ServerSide {
            cpu_per_request_us: Some(server_us),
            cpu_s: Some(server_us * rate * 3.0 / 1e6),
            peak_rss_kib: Some(2048 + 10 * idle as u64),
            user_s: Some(0.3),
            sys_s: Some(0.7),
            summary_agreement: Some(Agreement {
                harness_cpu_s: 1.0,
                summary_cpu_s: 1.01,
                ratio: 1.0 / 1.01,
                tolerance_s: 0.05,
                agrees: true,
                tolerance_ticks: 5.0,
                tolerance_share: 0.05 / 1.01,
                judged_by_ticks: false,
                reaped_cpu_s: None,
            }),
            syscalls_per_request: Some(BTreeMap::from([
                ("total".to_string(), 3.0),
                ("read".to_string(), 1.0),
                ("write".to_string(), 1.0),
                ("epoll_wait".to_string(), 0.5),
                ("other".to_string(), 0.5),
            ])),
            ..ServerSide::default()
        },
        idle: (kind == WorkloadKind::Idle).then(IdleOutcome::default),
        connect: None,
        notes: vec![],
    }
}

fn cell(model: &str, w: Workload, purpose: Purpose, runs: Vec<Measurement>) -> Cell {
    Cell {
        model: model.into(),
        workload: w,
        purpose,
        rounds: (0..runs.len()).collect(),
        runs,
        failures: vec![],
        not_run: None,
    }
}

const OPEN_5K: Workload = Workload::OpenLoop {
    conns: 100,
    rate: 5_000,
};
const OPEN_10K: Workload = Workload::OpenLoop {
    conns: 100,
    rate: 10_000,
};
const PP100: Workload = Workload::Pingpong { conns: 100 };
const CONNECT: Workload = Workload::Connect { conns: 4 };
const IDLE_1000: Workload = Workload::Idle {
    idle: 1000,
    active: 100,
    rate: Some(5_000),
};

/// Four repeats of `model` on `w`, rate and CPU per request given per run.
fn reps(model: &str, w: &Workload, rates: [f64; 4], cpus: [f64; 4]) -> Cell {
    cell(
        model,
        *w,
        Purpose::Timing,
        (0..4)
            .map(|i| record(model, w, rates[i], cpus[i], 5.0))
            .collect(),
    )
}

/// select costs more than the peer at 5k/s (disjoint repeats), epoll:level
/// is within its spread; both fall short at 10k/s, which only the peer
/// sustains.
fn results() -> CompareResults {
    let status = |m: &str, unavailable: Option<&str>| ModelStatus {
        model: m.into(),
        binary: None,
        server_args: vec![],
        unavailable: unavailable.map(String::from),
    };
    let mut cells = vec![
        reps("peers:tokio", &OPEN_5K, [5e3; 4], [10.0, 10.5, 11.0, 11.5]),
        reps("select", &OPEN_5K, [5e3; 4], [20.0, 21.0, 22.0, 23.0]),
        reps("epoll:level", &OPEN_5K, [5e3; 4], [10.2, 10.7, 11.2, 11.7]),
        reps("peers:tokio", &OPEN_10K, [10e3; 4], [9.0, 9.5, 10.0, 10.5]),
        reps("select", &OPEN_10K, [7e3, 7.1e3, 7.2e3, 7.3e3], [18.0; 4]),
        reps(
            "epoll:level",
            &OPEN_10K,
            [9e3, 9.1e3, 9.2e3, 9.3e3],
            [9.1, 9.6, 10.1, 10.6],
        ),
        reps("peers:tokio", &PP100, [50e3, 51e3, 52e3, 53e3], [15.0; 4]),
        reps("select", &PP100, [40e3, 41e3, 42e3, 43e3], [20.0; 4]),
        reps("epoll:level", &PP100, [50e3, 51e3, 52e3, 53e3], [16.0; 4]),
        reps(
            "peers:tokio",
            &CONNECT,
            [5e3, 5.1e3, 5.2e3, 5.3e3],
            [50.0; 4],
        ),
        reps("select", &CONNECT, [5e3, 5.1e3, 5.2e3, 5.3e3], [50.0; 4]),
        cell("epoll:level", CONNECT, Purpose::Timing, vec![]),
        reps(
            "peers:tokio",
            &IDLE_1000,
            [5e3; 4],
            [11.0, 11.5, 12.0, 12.5],
        ),
        reps(
            "epoll:level",
            &IDLE_1000,
            [5e3; 4],
            [10.3, 10.8, 11.3, 11.8],
        ),
        cell(
            "peers:tokio",
            OPEN_5K,
            Purpose::Syscalls,
            vec![record("peers:tokio", &OPEN_5K, 5e3, 1.0, 1.0)],
        ),
        cell(
            "select",
            OPEN_5K,
            Purpose::Syscalls,
            vec![record("select", &OPEN_5K, 5e3, 1.0, 1.0)],
        ),
    ];
    cells
        .iter_mut()
        .find(|c| c.model == "epoll:level" && c.workload == CONNECT)
        .expect("connect cell")
        .failures
        .push(RunFailure {
            repeat: 0,
            reason: "timed out after 34 s and was killed".into(),
        });
    let mut not_run = cell("select", IDLE_1000, Purpose::Timing, vec![]);
    not_run.not_run = Some("select can only watch descriptors below FD_SETSIZE (1024)".into());
    cells.push(not_run);
    CompareResults {
        command: "harness compare".into(),
        quick: false,
        repeats: 4,
        size: 64,
        warmup_s: 0.1,
        duration_s: 0.3,
        min_window_s: 0.3,
        seed: Some(7),
        order: vec![],
        wakeups: vec![],
        switching: vec![],
        cell_timeout_s: 34.0,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:10:00.000Z".into(),
        elapsed_s: 600.0,
        environment: env(),
        steal_share: Some(0.012),
        rendered_by: None,
        models: vec![
            status("select", None),
            status("epoll:level", None),
            status("peers:tokio", None),
            status(
                "uring",
                Some("binary missing and not buildable: no such package"),
            ),
        ],
        workloads: vec![OPEN_5K, OPEN_10K, PP100, CONNECT, IDLE_1000],
        cells,
    }
}

fn rendered(r: &CompareResults) -> Vec<(&'static str, questions::Answer)> {
    markdown::answers(&Ctx {
        r,
        figures: &[],
        family: &crate::stats::Family::collecting(),
    })
}

fn findings_of(r: &CompareResults) -> Vec<String> {
    rendered(r)
        .into_iter()
        .flat_map(|(_, a)| {
            a.body
                .lines()
                .filter(|l| l.starts_with("- "))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_difference_is_stated_only_where_the_paired_rule_finds_one() {
    let f = findings_of(&results()).join("\n");
    // select: twice the peer's CPU in every round.
    assert!(
        f.contains(
            "- select: 2.00× (95 % CI 2.00–2.00×) the server CPU per request of peers:tokio \
             (reference) (medians 21.5 µs vs 10.8 µs; 4 rounds paired, p < 0.001, q = "
        ),
        "{f}"
    );
    // epoll:level is 2 % above the peer in every round: consistent, but
    // inside the equivalence margin, so no difference is claimed.
    assert!(
        f.contains(
            "- epoll:level: no measurable difference in server CPU per request from \
             peers:tokio (reference): 1.02× (95 % CI 1.02–1.02×) lies within ±10 %"
        ),
        "{f}"
    );
    // The comparison rate is the highest at least half the models
    // sustained: 5k/s (only the peer kept up at 10k/s).
    assert!(f.contains("The answers compare at 5.00k/s"), "{f}");
    // A model is not compared past its saturation.
    let mut r = results();
    r.cells
        .retain(|c| c.model != "epoll:level" || c.workload != OPEN_10K);
    r.cells
        .push(reps("epoll:level", &OPEN_10K, [10e3; 4], [9.0; 4]));
    let f = findings_of(&r).join("\n");
    assert!(f.contains("The answers compare at 10.0k/s"), "{f}");
    assert!(
        f.contains("- select: did not sustain 10.0k/s in every repeat (answered 7.15k/s), so it is not compared there."),
        "{f}"
    );
}

#[test]
fn two_rounds_never_support_a_difference() {
    let mut r = results();
    for c in &mut r.cells {
        c.runs.truncate(2);
    }
    let f = findings_of(&r).join("\n");
    assert!(!f.contains("rounds paired, p"), "{f}");
    assert!(
        f.contains(
            "select: too few rounds with both to compare its server CPU per request with \
             peers:tokio (reference) (medians 20.5 µs vs 10.2 µs; 2 paired, an interval needs 3)"
        ),
        "{f}"
    );
}

/// `r` with every measured quantity scaled by `k` (workload parameters and
/// counts of runs unchanged).
fn scaled(r: &CompareResults, k: f64) -> CompareResults {
    let mut r = r.clone();
    for c in &mut r.cells {
        for m in &mut c.runs {
            m.rate *= k;
            m.server.cpu_per_request_us = m.server.cpu_per_request_us.map(|v| v * k);
            m.server.cpu_s = m.server.cpu_s.map(|v| v * k);
            m.server.peak_rss_kib = m.server.peak_rss_kib.map(|v| (v as f64 * k) as u64);
            if let Some(s) = &mut m.server.syscalls_per_request {
                s.values_mut().for_each(|v| *v *= k);
            }
            m.server.ctx_involuntary_per_request = Some(0.01 * k);
            if let Some(l) = &mut m.latency {
                l.p50_us *= k;
                l.p99_us *= k;
                l.p999_us *= k;
                l.max_us *= k;
                l.spectrum.iter_mut().for_each(|(_, v)| *v *= k);
            }
        }
    }
    r
}

#[test]
fn every_number_in_the_summary_and_findings_comes_from_the_data() {
    let base = results();
    let (a, b) = (rendered(&base), rendered(&scaled(&base, 1.5)));
    assert_eq!(a.len(), b.len());
    let mut checked = 0;
    for ((title, x), (_, y)) in a.iter().zip(&b) {
        let lines = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("- "))
                .map(String::from)
                .collect()
        };
        let (fx, fy) = (lines(&x.body), lines(&y.body));
        assert_eq!(fx.len(), fy.len(), "{title}");
        for (lx, ly) in fx.iter().zip(&fy) {
            // Sentences whose numbers are the matrix's own parameters or
            // counts of cells, not measurements.
            let parameters = lx.starts_with("- The answers compare at")
                || lx.starts_with("- In ")
                || lx.contains("(the sweep's top)")
                || !lx.chars().any(|c| c.is_ascii_digit());
            if !parameters {
                checked += 1;
                assert_ne!(lx, ly, "{title}: a number that does not follow the data");
            }
        }
        if let (Some(sx), Some(sy)) = (&x.summary, &y.summary) {
            checked += 1;
            assert_ne!(sx, sy, "{title}: summary does not follow the data");
        }
    }
    assert!(checked >= 10, "only {checked} sentences checked");
}

#[test]
fn report_has_every_section_figure_and_reason() {
    let dir = std::env::temp_dir().join(format!("lab-report-{}", std::process::id()));
    let written = write(&dir, &results()).expect("written");
    let names: BTreeSet<String> = written
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for name in [
        "REPORT.md",
        "compare.json",
        "cells.csv",
        "openloop.json",
        "pingpong.json",
        "connect.json",
        "idle.json",
        "cpu_per_request_vs_rate.svg",
        "latency_vs_rate.svg",
        "latency_spectrum.svg",
        "cpu_per_request_vs_idle.svg",
        "connections_per_second.svg",
        "syscalls_per_request.svg",
        "closed_loop_throughput.svg",
        "crossover.svg",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let md = std::fs::read_to_string(dir.join("REPORT.md")).expect("report");
    for needle in [
        "Produced by `harness compare`",
        "## Summary",
        "Yardstick: peers:tokio (reference)",
        "**A request's cost** at 5.00k/s over 100 connections: server CPU per request from \
         10.8 µs (peers:tokio (reference)) to 21.5 µs (select)",
        "**Not run**: uring",
        "| commit measured | abc123 |",
        "2400 MHz",
        "| steal time over the run | 1.2 % of all CPU time",
        "| rustc | rustc 1.85.0 |",
        "`spectre_v2`: Mitigation: x",
        "uring | NOT RUN: binary missing",
        "## What does a request cost at a given load?",
        "## What does an idle connection cost?",
        "## How fast does each accept connections?",
        "## Where does the tail latency come from?",
        "## How many system calls per request, by call?",
        "## Closed-loop saturation (throughput, not cost)",
        "| select | 21.5 µs (20.0 µs–23.0 µs) n=4 | 18.0 µs n=4 ‡ | 5.00k/s |",
        "| epoll:level | 10.9 µs (10.2 µs–11.7 µs) n=4 | 9.85 µs (9.10 µs–10.6 µs) n=4 ‡ | 5.00k/s |",
        "10.0 KiB (to 1000)",
        "not run †",
        "failed †",
        "repeat 1 failed: timed out after 34 s",
        "FD_SETSIZE (1024)",
        "| peers:tokio (reference) | 1 | 3.00 | 0.50 | 1.00 | 1.00 | 0.50 |",
        "were held to 5 % of their CPU",
        "## This machine's distortions",
        "![Server CPU per request vs offered load (100 connections, open loop)](cpu_per_request_vs_rate.svg)",
    ] {
        assert!(md.contains(needle), "REPORT.md lacks {needle:?}\n{md}");
    }
    // Figures: units on the ticks, log axes declared, references marked.
    let svg = std::fs::read_to_string(dir.join("latency_spectrum.svg")).expect("svg");
    assert!(svg.contains("p99.9") && svg.contains("peers:tokio (ref.)"));
    let svg = std::fs::read_to_string(dir.join("cpu_per_request_vs_rate.svg")).expect("svg");
    assert!(svg.contains("(log scale)") && svg.contains("µs") && svg.contains("k/s"));
    // Families as panels: the readiness loops apart from the references.
    assert!(svg.contains("readiness loops") && svg.contains("references (peers)"));
    // The idle figure's x values are the idle connections held, 0 included
    // (not the 100 + 1000 connections in all).
    let svg = std::fs::read_to_string(dir.join("cpu_per_request_vs_idle.svg")).expect("svg");
    assert!(svg.contains("idle connections held (categories"), "{svg}");
    assert!(svg.contains("\n0\n</text>") && svg.contains("\n1000\n</text>"));
    assert!(!svg.contains("1100") && !svg.contains("1.1k"), "{svg}");
    // System calls stacked by call, each bar's parts written out.
    let svg = std::fs::read_to_string(dir.join("syscalls_per_request.svg")).expect("svg");
    assert!(
        svg.contains("3.0 = read 1.0 + write 1.0 + epoll_wait 0.50 + other 0.50"),
        "{svg}"
    );
    // CSV: a header and one row per cell, every row as wide as the header.
    let csv = std::fs::read_to_string(dir.join("cells.csv")).expect("csv");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), results().cells.len() + 1);
    assert!(rows[0].starts_with("model,reference,workload,"));
    let width = rows[0].split(',').count();
    for row in &rows[1..] {
        assert_eq!(row.split(',').count(), width, "{row}");
    }
    assert!(rows.iter().any(|r| r.starts_with(
        "peers:tokio,true,open loop 5000/s c=100,open_loop,100,0,5000,64,timing,4,0,"
    )));
    // The report can be rewritten from its own JSON, to the same text.
    let back = load(&dir.join("compare.json")).expect("load");
    let again = dir.join("again");
    write(&again, &back).expect("rewritten");
    let md_again = std::fs::read_to_string(again.join("REPORT.md")).expect("report");
    assert!(
        md_again == md,
        "REPORT.md differs when rewritten from compare.json"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_syscall_count_of_zero_for_served_requests_is_not_a_measurement() {
    let mut r = results();
    let c = r
        .cells
        .iter_mut()
        .find(|c| c.model == "select" && c.purpose == Purpose::Syscalls)
        .expect("select syscall cell");
    c.runs[0].server.syscalls_per_request = Some(BTreeMap::from([
        ("total".to_string(), 0.0),
        ("other".to_string(), 0.0),
    ]));
    let md = render_controlled(&r, &[]);
    assert!(
        md.contains("| select | 1 | none counted although requests were served"),
        "{md}"
    );
    assert!(!md.contains("from 0 (select)"), "{md}");
}

#[test]
fn a_rendering_commit_other_than_the_measured_one_is_stamped() {
    let mut r = results();
    r.rendered_by = Some("def456".into());
    let md = render_controlled(&r, &[]);
    assert!(
        md.contains("| report rendered by | def456 (`--report-from`) |"),
        "{md}"
    );
}

#[test]
fn a_cell_with_fewer_usable_runs_than_attempts_says_so() {
    let w = Workload::Pingpong { conns: 7 };
    let mut empty = record("select", &w, 0.0, 1.0, 1.0);
    empty.latency = None;
    let mut c = cell(
        "select",
        w,
        Purpose::Timing,
        vec![record("select", &w, 10e3, 1.0, 1.0), empty],
    );
    c.failures.push(RunFailure {
        repeat: 2,
        reason: "killed".into(),
    });
    // The empty run stays in the rate spread as 0; its missing latency and
    // the failed run shrink the p99 cell, and the count says by how much.
    assert_eq!(stats::rate(&c.runs[1]), Some(0.0));
    assert_eq!(
        table::show(Some(&c), stats::rate, stats::si),
        "5.00k (0.00–10.0k) n=2 of 3 (1 of 3 failed †)"
    );
    assert_eq!(
        table::show(Some(&c), stats::p99, stats::micros),
        "90.0 µs n=1 of 3 (1 of 3 failed †)"
    );
}

#[test]
fn a_percentile_is_shown_only_where_every_run_holds_its_samples() {
    let w = Workload::OpenLoop {
        conns: 100,
        rate: 5_000,
    };
    // 3 s at 1 500/s: 4 500 samples a run, enough for p99, not for p99.9.
    let c = cell(
        "poll",
        w,
        Purpose::Timing,
        vec![record("poll", &w, 1_500.0, 1.0, 1.0); 4],
    );
    assert_eq!(table::show_pct(Some(&c), 99.0), "90.0 µs n=4");
    assert_eq!(table::show_pct(Some(&c), 99.9), "— (<10.0k samples)");
    assert_eq!(stats::p999(&c.runs[0]), None);
    assert!(stats::too_few_samples(&c, 99.9)
        .expect("too few")
        .contains("p99.9 needs 10.0k a run, fewest 4.50k"));
    // The spectrum drops p99.9 and beyond, keeps the maximum.
    let drawn: Vec<f64> = questions::spectrum(&c).iter().map(|(p, _)| *p).collect();
    assert_eq!(drawn, [50.0, 99.0, 100.0]);
}

#[test]
fn herd_section_computes_its_findings_and_estimate_from_the_runs() {
    use crate::measurement::{ExitSummary, Landed, Latency, LoopLatency, Wakeups};
    let run = |sharing: &str, skewed: bool, wasted: f64, cpu: f64, per_loop: Vec<u64>| {
        let mut m = record(
            "epoll:level",
            &Workload::Connect { conns: 4 },
            5000.0,
            cpu,
            1.0,
        );
        m.server.wakeups = Some(Wakeups {
            accepted: 1000,
            accept_eagain: 1000,
            wait_returns: 2000,
            eagain_per_conn: 1.0,
            wait_returns_per_conn: 2.0,
            replay: None,
            wasted_per_conn: Some(wasted),
            replay_na_reason: None,
        });
        m.server.exit_summary = Some(ExitSummary {
            model: "epoll:level".into(),
            connections: per_loop.iter().sum(),
            bytes: 0,
            user_s: 0.0,
            sys_s: 0.0,
            per_loop,
        });
        crate::compare::herd::HerdRun {
            sharing: sharing.into(),
            skewed,
            measurement: Some(m),
            error: None,
        }
    };
    let latency = |p99_us: f64| Latency {
        samples: 1,
        p50_us: p99_us / 4.0,
        p99_us,
        p999_us: p99_us,
        max_us: p99_us,
        mean_us: p99_us / 4.0,
        spectrum: Vec::new(),
    };
    // Under skew: the busy loop (3 s of CPU) served `busy_conns` of 1000
    // attributed connections, with p99 `busy_p99`; every new connection's
    // p99 is `all_p99`.
    let skew_run = |sharing: &str, busy_conns: u64, busy_p99: f64, all_p99: f64| {
        let mut r = run(sharing, true, 0.0, 40.0, vec![600, 400]);
        let m = r.measurement.as_mut().unwrap();
        m.server.landed = Some(Landed {
            connections: 1000,
            attributed: 1000,
            all: Some(latency(all_p99)),
            busy_na_reason: None,
            loops: vec![
                LoopLatency {
                    tid: 1,
                    busy: true,
                    cpu_s: 3.0,
                    connections: busy_conns,
                    latency: Some(latency(busy_p99)),
                },
                LoopLatency {
                    tid: 2,
                    busy: false,
                    cpu_s: 1.0,
                    connections: 1000 - busy_conns,
                    latency: Some(latency(100.0)),
                },
            ],
        });
        r
    };
    // Four rounds of shared and reuseport: paired by round, a difference.
    let results = crate::compare::herd::HerdResults {
        runs: vec![
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("exclusive", false, 0.1, 42.0, vec![150, 50]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
            skew_run("exclusive", 200, 300.0, 250.0),
            skew_run("exclusive", 250, 320.0, 260.0),
            skew_run("exclusive", 220, 310.0, 240.0),
            skew_run("exclusive", 240, 330.0, 270.0),
            skew_run("reuseport", 500, 900.0, 240.0),
            skew_run("reuseport", 480, 1000.0, 270.0),
            skew_run("reuseport", 500, 950.0, 250.0),
            skew_run("reuseport", 520, 980.0, 260.0),
        ],
    };
    let text = herd::section(&results, Some("herd_wasted_wakeups.svg"));
    assert!(
        text.contains("shared: 0.900; exclusive: 0.100; reuseport: 0.000"),
        "{text}"
    );
    assert!(text.contains("exclusive 3.00×"), "{text}");
    assert!(
        text.contains("(+25.0 %): higher (1.25× (95 % CI 1.25–1.25×), q = "),
        "{text}"
    );
    // Under skew, four repeats a side: 3 of 4 s of CPU on the busy loop; its
    // share of new connections and its p99 differ (every repeat above: the
    // rank test's smallest p, 2/70), the p99 of all of them does not.
    assert!(text.contains("| 75 % |"), "{text}");
    assert!(
        text.contains(
            "busy loop served: `reuseport` 50 % against `exclusive` 23 %: higher (2.20× (95 % CI 1.85–2.63×), q = "
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "landed on the busy loop: `reuseport` 965 µs against `exclusive` 315 µs: higher (3.04× (95 % CI 2.93–3.15×), q = "
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "p99 of all new connections: `reuseport` 255 µs against `exclusive` 255 µs: no measurable difference (1.00× (95 % CI 0.930–1.07×) within ±10 %)"
        ),
        "{text}"
    );
    assert!(!text.contains("under 90 %"), "{text}");
    // 10 µs more for 0.9 more wasted wake-ups: 11.1 µs each; on 4 cores
    // each of the 3 other loops woken 0.9 times in vain (as measured on
    // 2): 2.7 wake-ups, 30 µs; reuseport 4 × 1e6 / 40 = 100k/s, shared
    // 4e6 / (40 + 30) = 57k/s, to two digits.
    assert!(text.contains("| 4 | 2.7 | 30 µs | 100k | 57k |"), "{text}");
    assert!(
        text.contains("woken in vain 0.90 times per connection"),
        "{text}"
    );
    assert!(text.contains("an estimate"), "{text}");
    // One repeat each: no measured difference, the upper bound instead
    // (reuseport's 40 µs over at least one wake-up).
    let one_each = crate::compare::herd::HerdResults {
        runs: vec![
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
        ],
    };
    let text = herd::section(&one_each, None);
    assert!(text.contains("upper bound, 40.0 µs"), "{text}");
    // 2.7 wasted wake-ups at most 40 µs each: 108 µs; 4e6 / 148 = 27k/s.
    assert!(text.contains("| 4 | 2.7 | 110 µs | 100k | 27k |"), "{text}");
    assert!(text.contains("shared conn/s (at least)"), "{text}");
}

/// `uring:multishot+sqpoll` beside `uring:multishot`: a section of its own
/// with the io_uring threads' share read from the runs, the rank test on
/// each workload, and no section at all without a flag row.
#[test]
fn a_flag_row_is_set_beside_its_base_row() {
    let mut r = results();
    assert!(!rendered(&r)
        .iter()
        .any(|(title, _)| *title == "What does a server flag change?"));
    let base = "uring:multishot";
    let row = "uring:multishot+sqpoll";
    for m in [base, row] {
        r.models.push(ModelStatus {
            model: m.into(),
            binary: None,
            server_args: vec![],
            unavailable: None,
        });
    }
    r.cells
        .push(reps(base, &OPEN_5K, [5e3; 4], [10.0, 10.5, 11.0, 11.5]));
    let mut flagged = reps(row, &OPEN_5K, [5e3; 4], [40.0, 41.0, 42.0, 43.0]);
    for m in &mut flagged.runs {
        // 0.45 s of the 3 s window in the poller: 15 % of a CPU, of the
        // server's 20–22 % (its CPU per request times the requests).
        m.server.io_uring_threads_cpu_s = Some(0.45);
    }
    r.cells.push(flagged);
    let answers = rendered(&r);
    let (_, a) = answers
        .iter()
        .find(|(title, _)| *title == "What does a server flag change?")
        .expect("the flag section");
    assert!(
        a.body
            .contains("### `--sqpoll`: uring:multishot+sqpoll against uring:multishot"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains(
            "| 41.5 µs (40.0 µs–43.0 µs) n=4 | 5 % (5 %–6 %) n=4 | 21 % (20 %–22 %) n=4 | 15 % n=4 |"
        ),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("open loop 5000/s c=100: uring:multishot+sqpoll: 3.86× (95 % CI "),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("the server CPU per request of uring:multishot (medians 41.5 µs vs 10.8 µs; 4 rounds paired"),
        "{}",
        a.body
    );
    let summary = a.summary.as_deref().expect("a summary line");
    assert!(
        summary.contains("`--sqpoll` (uring:multishot+sqpoll) at 5.00k/s: 41.5 µs CPU per request against 10.8 µs without, 15 % of a CPU in its io_uring threads"),
        "{summary}"
    );
}

#[test]
fn a_short_cell_names_the_side_that_ran_out_and_claims_no_capacity_for_the_load_generators_limit() {
    let with = |server_s: f64, client_s: f64| {
        let mut r = results();
        for c in r
            .cells
            .iter_mut()
            .filter(|c| c.model == "select" && c.workload == OPEN_10K)
        {
            for m in &mut c.runs {
                // 3 s windows: shares of a CPU of server_s/3 and client_s/3.
                m.server.cpu_s = Some(server_s);
                m.client.user_s = client_s;
                m.client.sys_s = 0.0;
            }
        }
        findings_of(&r).join("\n")
    };
    let f = with(2.9, 0.3);
    assert!(
        f.contains("- select: sustained 5.00k/s; at 10.0k/s it answered 7.15k/s with the server at 97 % and the load generator at 10 % of a CPU (medians): the server ran out: its capacity here is between 5.00k/s and 10.0k/s."),
        "{f}"
    );
    let f = with(0.3, 2.9);
    assert!(
        f.contains("the load generator ran out, so this run measures no capacity for the model (only that it is at least 5.00k/s)"),
        "{f}"
    );
    let f = with(0.3, 0.3);
    assert!(f.contains("neither side used 90 % of a CPU"), "{f}");
    // The sweep table marks the cell with the side.
    let mut r = results();
    for m in r
        .cells
        .iter_mut()
        .filter(|c| c.model == "select" && c.workload == OPEN_10K)
        .flat_map(|c| c.runs.iter_mut())
    {
        m.server.cpu_s = Some(2.9);
    }
    let a = rendered(&r);
    let body = &a
        .iter()
        .find(|(t, _)| *t == "What does a request cost at a given load?")
        .expect("section")
        .1
        .body;
    assert!(body.contains(" ‡S |"), "{body}");
}

#[test]
fn a_run_whose_cross_check_disagrees_is_excluded_and_listed() {
    let mut r = results();
    let c = r
        .cells
        .iter_mut()
        .find(|c| c.model == "select" && c.workload == OPEN_5K)
        .expect("cell");
    c.runs[1].server.summary_agreement = Some(Agreement {
        harness_cpu_s: 0.01,
        summary_cpu_s: 1.0,
        ratio: 0.01,
        tolerance_s: 0.05,
        agrees: false,
        tolerance_ticks: 5.0,
        tolerance_share: 0.05,
        judged_by_ticks: false,
        reaped_cpu_s: None,
    });
    c.runs[1].server.cpu_per_request_us = Some(0.04);
    // As `harness compare --report-from` reads a record.
    c.exclude_doubted();
    assert_eq!(c.runs.len(), 3);
    assert_eq!(c.rounds, [0, 2, 3], "the other runs keep their rounds");
    assert!(
        c.failures[0].reason.starts_with(EXCLUDED),
        "{:?}",
        c.failures
    );
    assert!(!c
        .runs
        .iter()
        .any(|m| m.server.cpu_per_request_us == Some(0.04)));
    let md = render_controlled(&r, &[]);
    assert!(md.contains("1 disagreed and were excluded"), "{md}");
    assert!(
        md.contains("| select | open loop 5000/s c=100 | repeat 2 failed: excluded: the accounting cross-check disagreed: the harness read 0.0100 s of server CPU, the server's exit summary 1.0000 s"),
        "{md}"
    );
}

#[test]
fn the_aa_control_finds_no_difference_between_identical_rows_and_states_its_resolution() {
    let mut r = results();
    r.models.push(ModelStatus {
        model: "epoll:level#aa".into(),
        binary: None,
        server_args: vec![],
        unavailable: None,
    });
    // The twin: the original's values, each round 1 % off either way.
    let twins: Vec<Cell> = r
        .cells
        .iter()
        .filter(|c| c.model == "epoll:level" && c.purpose == Purpose::Timing)
        .map(|c| {
            let mut t = c.clone();
            t.model = "epoll:level#aa".into();
            for (i, m) in t.runs.iter_mut().enumerate() {
                let k = if i % 2 == 0 { 1.01 } else { 0.99 };
                m.server.cpu_per_request_us = m.server.cpu_per_request_us.map(|v| v * k);
            }
            t
        })
        .collect();
    r.cells.extend(twins);
    let md = render_controlled(&r, &[]);
    assert!(
        md.contains("**A/A control** (epoll:level measured twice, as epoll:level#aa): 0 of "),
        "{md}"
    );
    assert!(
        md.contains("| open loop 5000/s c=100 | server CPU per request | 1.000× (95 % CI 0.982–1.02×) | 4 % | no measurable difference |"),
        "{md}"
    );
    assert!(!md.contains("(epoll:level#aa) of resident memory"), "{md}");
    // The twin is not ranked among the models.
    assert!(!md.contains("- epoll:level#aa: "), "{md}");
}

#[test]
fn each_ladder_rung_is_set_against_the_rung_below_it() {
    let mut r = results();
    let rungs = [
        ("uring:multishot", [12.0, 12.5, 13.0, 13.5]),
        ("uring:multishot+defer-taskrun", [9.0, 9.4, 9.8, 10.1]),
        (
            "uring:multishot+defer-taskrun+skip-send-cqe",
            [9.1, 9.3, 9.9, 10.0],
        ),
        ("uring:multishot+sqpoll", [40.0, 41.0, 42.0, 43.0]),
    ];
    for (m, cpus) in rungs {
        r.models.push(ModelStatus {
            model: m.into(),
            binary: None,
            server_args: vec![],
            unavailable: None,
        });
        r.cells.push(reps(m, &OPEN_5K, [5e3; 4], cpus));
    }
    let a = rendered(&r);
    let body = &a
        .iter()
        .find(|(t, _)| *t == "io_uring at its best: the ablation ladder")
        .expect("the ladder")
        .1
        .body;
    // defer-taskrun against the base: about 0.75×, a difference.
    assert!(
        body.contains("- open loop 5000/s c=100, uring:multishot+defer-taskrun: 0.75"),
        "{body}"
    );
    assert!(
        body.contains("the server CPU per request of uring:multishot (medians"),
        "{body}"
    );
    // skip-send-cqe against defer-taskrun (the rung below), not the base.
    assert!(
        body.contains("- open loop 5000/s c=100, uring:multishot+defer-taskrun+skip-send-cqe: no measurable difference in server CPU per request from uring:multishot+defer-taskrun"),
        "{body}"
    );
    // SQPOLL is the flag section's, not a rung.
    assert!(!body.contains("| uring:multishot+sqpoll |"), "{body}");
    assert!(a
        .iter()
        .any(|(t, a)| *t == "What does a server flag change?" && a.body.contains("--sqpoll")));
    assert!(
        body.contains("The best combination (uring:multishot+defer-taskrun+skip-send-cqe+fixed-files+incremental-buffers) was not measured in this run."),
        "{body}"
    );
}

/// A traced run's profile: 10 000 requests, `user` and `outside` µs per
/// request, and (name, calls per request, µs per request) per call.
fn profile(user: f64, outside: f64, calls: &[(&str, f64, f64)]) -> crate::measurement::CpuProfile {
    let n = 10_000.0;
    let syscalls: Vec<crate::measurement::SyscallTime> = calls
        .iter()
        .map(|(name, per, us)| crate::measurement::SyscallTime {
            name: name.to_string(),
            calls: (per * n) as u64,
            on_cpu_s: us * n / 1e6,
            off_cpu_s: 0.0,
        })
        .collect();
    let inside: f64 = calls.iter().map(|c| c.2).sum();
    crate::measurement::CpuProfile {
        window_s: 2.0,
        requests: n,
        cpu_s: (user + inside + outside) * n / 1e6,
        user_s: user * n / 1e6,
        sys_s: (inside + outside) * n / 1e6,
        tick_hz: 100,
        traced_cpu_s: (user + inside + outside) * n / 1e6,
        syscalls,
        io_uring_threads_cpu_s: None,
        threads: 1,
        switch_ins_inferred: 0,
        inferred_s: 0.0,
        clock_excess_s: 0.0,
        runs: 0,
    }
}

/// The ladder's base and its best combination, measured at 5k/s.
fn with_ladder_rows(r: &mut CompareResults) {
    for m in ["uring:multishot", crate::spec::URING_BEST] {
        r.models.push(ModelStatus {
            model: m.into(),
            binary: None,
            server_args: vec![],
            unavailable: None,
        });
        r.cells
            .push(reps(m, &OPEN_5K, [5e3; 4], [10.0, 10.5, 11.0, 11.5]));
    }
}

#[test]
fn the_ladder_says_where_each_rows_time_goes_from_its_profile_run() {
    let mut r = results();
    let high = Workload::OpenLoop {
        conns: 1_000,
        rate: 40_000,
    };
    with_ladder_rows(&mut r);
    let traced = |m: &str, p| {
        let mut run = record(m, &high, 40e3, 9.0, 1.0);
        run.server.profile = Some(p);
        cell(m, high, Purpose::Profile, vec![run])
    };
    r.cells.push(traced(
        "epoll:level",
        profile(
            1.0,
            1.0,
            &[
                ("sendto", 1.0, 5.0),
                ("recvfrom", 1.0, 1.5),
                ("epoll_wait", 0.1, 0.5),
            ],
        ),
    ));
    r.cells.push(traced(
        crate::spec::URING_BEST,
        profile(1.2, 2.5, &[("io_uring_enter", 0.5, 4.0)]),
    ));
    let mut failed = cell("uring:multishot", high, Purpose::Profile, vec![]);
    failed.failures.push(RunFailure {
        repeat: 0,
        reason: "harness run failed: tracefs not mounted".into(),
    });
    r.cells.push(failed);
    let a = rendered(&r);
    let body = &a
        .iter()
        .find(|(t, _)| *t == "io_uring at its best: the ablation ladder")
        .expect("the ladder")
        .1
        .body;
    assert!(
        body.contains("**Where the server's time goes** (open loop 40000/s c=1000"),
        "{body}"
    );
    assert!(body.contains("shares, measured once"), "{body}");
    // Each part per request, a call's with its calls and time per call.
    assert!(
        body.contains("| kernel, in sendto | 5.00 (1.00 calls/req × 5.00 µs on a CPU) | — | — |"),
        "{body}"
    );
    assert!(
        body.contains(
            "| kernel, in io_uring_enter | — | — | 4.00 (0.50 calls/req × 8.00 µs on a CPU) |"
        ),
        "{body}"
    );
    assert!(
        body.contains("| kernel, outside system calls | 1.00 | — | 2.50 |"),
        "{body}"
    );
    // A row whose profile run failed says why.
    assert!(
        body.contains(
            "| total (CPU clock) | 9.00 | — (failed: harness run failed: tracefs not mounted) | 7.70 |"
        ),
        "{body}"
    );
    // The sentence is computed: the largest of the coarse differences.
    assert!(
        body.contains("the biggest difference between them is kernel, inside system calls: 4.00 against 7.00 µs per request (-3.00 µs)"),
        "{body}"
    );
    assert!(
        body.contains(
            "epoll:level's kernel time goes most to sendto (5.00 µs/req in 1.00 calls/req)"
        ),
        "{body}"
    );
    assert!(
        body.contains("- epoll:level, repeat with `harness run epoll:level --workload pingpong --conns 1000 --rate 40000 --size 64 --warmup 1 --duration 3 --profile`"),
        "{body}"
    );
}

#[test]
fn which_model_when_answers_each_pair_from_its_cells() {
    let r = results();
    let a = rendered(&r);
    let (title, answer) = &a[0];
    assert_eq!(*title, "Which model, when?", "the first section");
    // epoll:level against tokio: 2 % more at 5k/s (inside the margin);
    // at 10k/s epoll fell short, so that cell is not compared.
    assert!(
        answer.body.contains("- epoll:level against peers:tokio (reference), over the 1 cells both sustained: no measurable difference (within ±10 %) at 5.00k/s c=100. No difference resolved: in every cell the true ratio lies, with 95 % confidence, within 1.02–1.02×."),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("| 5.00k/s | 1.02× (1.02–1.02) same |"),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("| 10.0k/s | — |"), "{}", answer.body);
    assert!(answer
        .summary
        .as_deref()
        .expect("a summary line")
        .starts_with("**Which model, when?** epoll:level against peers:tokio"));
    // A pair with a row not measured is left out, not answered with nothing.
    assert!(!answer.body.contains("coroutine:async"), "{}", answer.body);
}

#[test]
fn every_workload_has_the_command_that_repeats_its_cells() {
    let md = render_controlled(&results(), &[]);
    assert!(md.contains("## Repeating a cell"), "{md}");
    assert!(
        md.contains("| open loop 5000/s c=100 | `harness run MODEL --workload pingpong --conns 100 --rate 5000 --size 64 --warmup 1 --duration 3` |"),
        "{md}"
    );
    assert!(
        md.contains("(syscalls) | `harness run MODEL --workload pingpong --conns 100 --rate 5000 --size 64 --warmup 1 --duration 3 --syscalls` |"),
        "{md}"
    );
    // A row whose runs had a window of their own gets its own command.
    let mut r = results();
    let c = r
        .cells
        .iter_mut()
        .find(|c| c.model == "select" && c.workload == OPEN_5K && c.purpose == Purpose::Timing)
        .expect("select at 5k/s");
    for m in &mut c.runs {
        m.workload.duration_s = 4.5;
    }
    let md = render_controlled(&r, &[]);
    assert!(
        md.contains("| open loop 5000/s c=100 | `harness run MODEL --workload pingpong --conns 100 --rate 5000 --size 64 --warmup 1 --duration 3`; for select: `harness run MODEL --workload pingpong --conns 100 --rate 5000 --size 64 --warmup 1 --duration 4.5` |"),
        "{md}"
    );
}

/// Every outcome the crossover map draws, over 10, 100 and 1 000
/// connections at 5k/s and 20k/s: uring:multishot against epoll:level the
/// same at c=10 5k/s, not resolved at c=100 5k/s, cheaper at c=1000 (0.6×
/// at 5k/s, 0.8× at 20k/s), costlier at c=10 20k/s (1.5×), not compared
/// at c=100 20k/s (uring fell short); coroutine:async a third of a
/// thread's CPU over 1 000 connections at 5k/s; coroutine:stackful
/// measured but short everywhere, so its pair has no compared cell.
fn crossover_results() -> CompareResults {
    let mut r = results();
    let at = |conns, rate| Workload::OpenLoop { conns, rate };
    let epoll = [10.0, 10.4, 9.8, 10.2];
    let times = |k: [f64; 4]| -> [f64; 4] { std::array::from_fn(|i| epoll[i] * k[i]) };
    let cases: [(usize, u64, [f64; 4], bool); 6] = [
        (10, 5_000, [1.02, 1.01, 1.03, 1.02], true),
        (100, 5_000, [0.7, 1.3, 0.8, 1.25], true),
        (1000, 5_000, [0.6; 4], true),
        (10, 20_000, [1.5; 4], true),
        (100, 20_000, [0.9; 4], false),
        (1000, 20_000, [0.79, 0.8, 0.81, 0.8], true),
    ];
    r.workloads.clear();
    for (conns, rate, k, sustained) in cases {
        let w = at(conns, rate);
        r.workloads.push(w);
        let offered = [rate as f64; 4];
        let short = [rate as f64 * 0.7; 4];
        r.cells
            .retain(|c| !(c.model == "epoll:level" && c.workload == w));
        r.cells.push(reps("epoll:level", &w, offered, epoll));
        r.cells.push(reps(
            "uring:multishot",
            &w,
            if sustained { offered } else { short },
            times(k),
        ));
        r.cells
            .push(reps("blocking:thread", &w, offered, [30.0; 4]));
        r.cells
            .push(reps("coroutine:stackful", &w, short, [12.0; 4]));
        let coroutine = if (conns, rate) == (1000, 5_000) {
            [10.0; 4]
        } else {
            [31.0, 30.0, 32.0, 29.0]
        };
        r.cells
            .push(reps("coroutine:async", &w, offered, coroutine));
    }
    r.workloads.extend([OPEN_10K, PP100, CONNECT, IDLE_1000]);
    for m in [
        "uring:multishot",
        "blocking:thread",
        "coroutine:async",
        "coroutine:stackful",
    ] {
        r.models.push(ModelStatus {
            model: m.into(),
            binary: None,
            server_args: vec![],
            unavailable: None,
        });
    }
    r
}

#[test]
fn the_crossover_map_draws_each_cell_as_the_section_judges_it() {
    use plots::Mark;
    let r = crossover_results();
    let family = controlled(&r);
    let (panels, empty) = crossover_panels(&r, &family);
    assert_eq!(empty, ["coroutine:stackful over blocking:thread"]);
    let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    // The best io_uring was not measured; stackful coroutines never
    // sustained the offer: no panel for either.
    assert_eq!(
        titles,
        [
            "uring:multishot over epoll:level",
            "coroutine:async over blocking:thread",
            "epoll:level over peers:tokio (reference)",
        ]
    );
    let (conns, rates) = when::grid(&r);
    assert_eq!(
        (conns, rates),
        (vec![10, 100, 1000], vec![5_000, 10_000, 20_000])
    );
    let uring = &panels[0].cells;
    let resolved = |m: &Mark| match m {
        Mark::Resolved { ratio, .. } => Some(*ratio),
        _ => None,
    };
    assert!(
        matches!(uring[0][0], Mark::Same { lo, hi } if lo > 1.0 && hi < 1.05),
        "1.02× in every round: within ±10 %: {:?}",
        uring[0][0]
    );
    assert!(
        matches!(uring[0][1], Mark::Unresolved { lo, hi } if lo < 0.8 && hi > 1.2),
        "0.7× to 1.3×: too wide: {:?}",
        uring[0][1]
    );
    assert!((resolved(&uring[0][2]).expect("0.6×") - 0.6).abs() < 1e-9);
    assert!((resolved(&uring[2][0]).expect("1.5×") - 1.5).abs() < 1e-9);
    assert_eq!(uring[2][1], Mark::NotCompared, "uring fell short");
    assert!((resolved(&uring[2][2]).expect("0.8×") - 0.8).abs() < 0.01);
    assert!(
        uring[1].iter().all(|m| *m == Mark::NotCompared),
        "no cell at 10k/s"
    );
    // The same verdicts as the section's table, cell by cell.
    for (ri, rate) in [5_000, 10_000, 20_000].into_iter().enumerate() {
        for (ci, conns) in [10, 100, 1000].into_iter().enumerate() {
            let w = Workload::OpenLoop { conns, rate };
            let o = when::outcome(&family, &r, "uring:multishot", "epoll:level", &w);
            assert_eq!(mark(&o), uring[ri][ci], "{w:?}");
        }
    }
    // An unresolved cell is not coloured, whatever its point estimate.
    let p = crate::stats::Paired {
        ratio: 0.5,
        lo: 0.2,
        hi: 1.3,
        p: 0.2,
        pairs: 4,
    };
    assert_eq!(
        mark(&when::Outcome::Unresolved(p)),
        Mark::Unresolved { lo: 0.2, hi: 1.3 }
    );
    assert_eq!(
        mark(&when::Outcome::Same(p)),
        Mark::Same { lo: 0.2, hi: 1.3 }
    );
    assert!(matches!(
        mark(&when::Outcome::Lower(p)),
        Mark::Resolved { ratio, .. } if ratio == 0.5
    ));
    // The map keeps the rates and counts some panel compared: 10k/s has
    // no compared cell in any panel (epoll fell short of it; the others
    // did not run it), so it is left out of every panel.
    let mut kept = panels.clone();
    let (conns, rates) = compared_only(&[10, 100, 1000], &[5_000, 10_000, 20_000], &mut kept);
    assert_eq!((conns, rates), (vec![10, 100, 1000], vec![5_000, 20_000]));
    assert_eq!(kept[0].cells, vec![uring[0].clone(), uring[2].clone()]);
    assert!(kept
        .iter()
        .all(|p| p.cells.len() == 2 && p.cells[0].len() == 3));
}

#[test]
fn the_figures_are_drawn_from_the_family_the_text_is_judged_by() {
    let r = crossover_results();
    let dir = std::env::temp_dir().join(format!("lab-crossover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The figures and the final text ask no comparison the first pass did
    // not: the family keeps its keys (and so every q) through both.
    let family = controlled(&r);
    let asked = family.size();
    assert!(asked > 10, "{asked}");
    let figs = figures(&dir, &r, &family).expect("drawn");
    assert_eq!(
        family.size(),
        asked,
        "a figure asked a comparison of its own"
    );
    let md = markdown::render(&Ctx {
        r: &r,
        figures: &figs,
        family: &family,
    });
    assert_eq!(
        family.size(),
        asked,
        "the second pass asked a new comparison"
    );
    assert!(
        md.contains("![Which model, when? CPU per request, row over its rival](crossover.svg)"),
        "{md}"
    );
    // What the map shows is what the section says: 0.600× at c=1000 5k/s.
    assert!(md.contains("| **0.600× (0.600–0.600)** less |"), "{md}");
    let svg = std::fs::read_to_string(dir.join("crossover.svg")).expect("svg");
    for needle in [
        "uring:multishot over epoll:level",
        "coroutine:async over blocking:thread",
        "0.600×",
        "1.50×",
        ">\n?\n<",
        ">\n=\n<",
        ">\n—\n<",
        "1000",
        "20k/s",
        "row costlier",
    ] {
        assert!(svg.contains(needle), "crossover.svg lacks {needle:?}");
    }
    // A pair without data has no panel (titles are centred), only its
    // name in the note (left-aligned).
    let stackful: Vec<&str> = svg
        .split("<text")
        .filter(|e| e.contains("coroutine:stackful"))
        .collect();
    assert!(!stackful.is_empty(), "the note names the pair left out");
    assert!(
        stackful.iter().all(|e| e.contains("text-anchor=\"start\"")),
        "a pair without data has a panel: {stackful:?}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_floor_summary_states_the_machines_wake_up_lateness() {
    let mut r = results();
    r.models.push(ModelStatus {
        model: "reflector".into(),
        binary: None,
        server_args: vec![],
        unavailable: None,
    });
    r.cells.push(reps(
        "reflector",
        &OPEN_5K,
        [5e3; 4],
        [40.0, 41.0, 42.0, 43.0],
    ));
    r.wakeups = vec![crate::measurement::TimerWakeups {
        cpu: 1,
        period_us: 200.0,
        timer_slack_ns: 1,
        samples: 10_000,
        skipped: 0,
        p50_us: 30.0,
        p99_us: 1_050.0,
        p999_us: 2_800.0,
        max_us: 5_000.0,
        mean_us: 80.0,
    }];
    let md = render_controlled(&r, &[]);
    assert!(
        md.contains(
            "A sleeping thread on this machine wakes late by CPU 1: p99 1.05 ms, p99.9 2.80 ms."
        ),
        "{md}"
    );
    assert!(
        md.contains("| 1 | 10000 | 30.0 µs | 1.05 ms | 2.80 ms | 5.00 ms | 1 ns |"),
        "{md}"
    );
}

#[test]
fn which_model_when_names_the_connection_count_where_a_pair_turns() {
    let r = crossover_results();
    let family = controlled(&r);
    let x = Ctx {
        r: &r,
        figures: &[],
        family: &family,
    };
    let body = when::which_when(&x).expect("the section").body;
    // uring against epoll at 5k/s: the same at 10, not resolved at 100,
    // 0.6× at 1 000; at 20k/s 1.5× at 10, not compared at 100, 0.8× at
    // 1 000.
    assert!(
        body.contains(
            "at 5.00k/s it spends less CPU per request from 1000 active connections; below \
             that no resolved difference"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "at 20.0k/s it spends less CPU per request from 1000 active connections; below \
             that the cells disagree"
        ),
        "{body}"
    );
    // The connection question: the rate with the most counts (5k/s and
    // 20k/s have three each: the lower wins), ascending.
    let axis = axes::connection_axis(&r);
    let conns: Vec<(usize, Option<u64>)> = axis
        .iter()
        .map(|w| (w.concurrent_conns(), w.offered_rate()))
        .collect();
    assert_eq!(
        conns,
        [(10, Some(5_000)), (100, Some(5_000)), (1000, Some(5_000))]
    );
    let section = axes::connections(&x).expect("the section").body;
    assert!(
        section.contains("spread over 10 to 1000 active connections"),
        "{section}"
    );
    assert!(
        section.contains("| model | 10 conns | 100 conns | 1000 conns |"),
        "{section}"
    );
    // No size workload, no switch measured: neither table nor line.
    assert!(axes::sizes(&x).is_none());
    assert!(!body.contains("Over message size"), "{body}");
    assert!(!body.contains("A switch"), "{body}");
}

#[test]
fn the_size_axis_is_paired_within_a_row_and_drawn_under_the_map() {
    use plots::Mark;
    let mut r = crossover_results();
    let sizes = [64, 1_024, 16_384, 65_536];
    let epoll = [20.0, 21.0, 19.0, 20.5];
    for (i, size) in sizes.into_iter().enumerate() {
        let w = Workload::Message {
            size,
            conns: 100,
            rate: 5_000,
        };
        r.workloads.push(w);
        // uring: the same up to 16 KiB, 0.7× at 64 KiB; epoll's CPU grows
        // with the size, 3× from 64 B to 64 KiB.
        let grow = [1.0, 1.2, 2.0, 3.0][i];
        let k = if size == 65_536 { 0.7 } else { 1.0 };
        r.cells
            .push(reps("epoll:level", &w, [5e3; 4], epoll.map(|v| v * grow)));
        r.cells.push(reps(
            "uring:multishot",
            &w,
            [5e3; 4],
            epoll.map(|v| v * grow * k),
        ));
    }
    r.switching = (0..4)
        .map(|i| crate::results::Switching {
            thread_handoff_ns: 2_000.0 + 10.0 * i as f64,
            switches_per_round_trip: 1.0,
            call_ns: 1.0,
            coroutine_switch_ns: 3.0 + 0.1 * i as f64,
        })
        .collect();
    let family = controlled(&r);
    let x = Ctx {
        r: &r,
        figures: &[],
        family: &family,
    };
    let when = when::which_when(&x).expect("the section").body;
    assert!(when.contains("Over message size:"), "{when}");
    assert!(
        when.contains("| size | 64 B | 1 KiB | 16 KiB | 64 KiB |"),
        "{when}"
    );
    assert!(when.contains("**0.700× (0.700–0.700)** less"), "{when}");
    assert!(
        when.contains("5.00k/s c=100 64 KiB (-30 %, CI -30 to -30 %)"),
        "{when}"
    );
    // The switch, once per coroutine pair, from the rounds measured.
    assert!(
        when.contains("a coroutine's resume or suspend takes 3.15 ns, a hand-off between two threads on that CPU 2020 ns"),
        "{when}"
    );
    let sizes_section = axes::sizes(&x).expect("the size section").body;
    assert!(
        sizes_section.contains("**Bytes echoed per second**"),
        "{sizes_section}"
    );
    // 64 KiB × 5000/s.
    assert!(sizes_section.contains("328M"), "{sizes_section}");
    // Within a row, 64 KiB against 64 B: 3× for both rows (uring 2.1×).
    assert!(
        sizes_section.contains("epoll:level at 64 KiB: 3.00×"),
        "{sizes_section}"
    );
    let (panels, _) = crossover_panels(&r, &family);
    let uring = &panels[0];
    assert_eq!(uring.sizes.len(), 4);
    assert!(
        matches!(uring.sizes[0], Mark::Same { .. }),
        "{:?}",
        uring.sizes
    );
    assert!(
        matches!(uring.sizes[3], Mark::Resolved { ratio, .. } if (ratio - 0.7).abs() < 1e-9),
        "{:?}",
        uring.sizes
    );
}

#[test]
fn the_ladder_reads_its_syscall_goal_on_the_sweeps_first_rate() {
    let mut r = results();
    let many = Workload::OpenLoop {
        conns: 10_000,
        rate: 5_000,
    };
    with_ladder_rows(&mut r);
    // Counted over 10 000 connections first (the crossover's counting block
    // runs before the standard one), then at the sweep's first rate.
    let counted = |m: &str, w: &Workload, total: f64| {
        let mut run = record(m, w, 5e3, 9.0, 1.0);
        run.server.syscalls_per_request = Some(BTreeMap::from([
            ("total".to_string(), total),
            ("io_uring_enter".to_string(), total),
        ]));
        cell(m, *w, Purpose::Syscalls, vec![run])
    };
    for (m, at_many) in [
        ("uring:multishot", 1.6),
        (crate::spec::URING_BEST, 2.0),
        ("epoll:level", 3.1),
    ] {
        r.cells.insert(0, counted(m, &many, at_many));
    }
    for (m, at_sweep) in [
        ("uring:multishot", 1.9),
        (crate::spec::URING_BEST, 0.99),
        ("epoll:level", 2.9),
    ] {
        r.cells
            .retain(|c| !(c.model == m && c.workload == OPEN_5K && c.purpose == Purpose::Syscalls));
        r.cells.push(counted(m, &OPEN_5K, at_sweep));
    }
    let a = rendered(&r);
    let body = &a
        .iter()
        .find(|(t, _)| *t == "io_uring at its best: the ablation ladder")
        .expect("the ladder")
        .1;
    assert!(
        body.body.contains("Goal, at most 1.05 system calls per request (open loop 5000/s c=100): uring:multishot+defer-taskrun+skip-send-cqe+fixed-files+incremental-buffers made 0.990 — met."),
        "{}",
        body.body
    );
    assert!(
        body.body
            .contains("**System calls per request** (open loop 5000/s c=100,"),
        "{}",
        body.body
    );
    let summary = body.summary.as_deref().expect("a summary line");
    assert!(
        summary.contains("at open loop 5000/s c=100, uring:multishot+defer-taskrun+skip-send-cqe+fixed-files+incremental-buffers makes 0.990 system calls per request where uring:multishot makes 1.90 and epoll:level 2.90"),
        "{summary}"
    );
}
