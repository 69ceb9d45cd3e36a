//! Formatting checks on hand-made records. The numbers here are invented to
//! exercise the writer; they are written only to a temporary directory.

use super::*;
use crate::account::Agreement;
use crate::measurement::{
    ClientCpu, CloseMode, Errors, IdleOutcome, Latency, Measurement, RateUnit, ServerSide,
    WorkloadKind, WorkloadParams,
};
use std::collections::{BTreeMap, BTreeSet};

fn env() -> Environment {
    Environment {
        kernel: "Linux 6.1 #1".into(),
        cpu_model: "Test CPU".into(),
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
    }
}

/// A record with the given rate, server and client CPU per request.
fn record(model: &str, w: &Workload, rate: f64, server_us: f64, client_us: f64) -> Measurement {
    let (kind, conns, idle) = match *w {
        Workload::Pingpong { conns } | Workload::OpenLoop { conns, .. } => {
            (WorkloadKind::Pingpong, conns, 0)
        }
        Workload::Connect { conns } => (WorkloadKind::Connect, conns, 0),
        Workload::Idle { idle, active } => (WorkloadKind::Idle, active, idle),
    };
    Measurement {
        schema: 1,
        model: model.into(),
        target: "127.0.0.1:1".into(),
        workload: WorkloadParams {
            kind,
            conns,
            size: 64,
            rate: None,
            idle,
            busy: 0,
            warmup_s: 1.0,
            duration_s: 3.0,
            timeout_s: 5.0,
            close: CloseMode::Rst,
            load_cpus: vec![0],
            server_cpus: vec![1],
            server_args: vec![],
        },
        started_at: "2026-01-01T00:00:00.000Z".into(),
        started_unix_ms: 0,
        window_s: 3.0,
        requests: (rate * 3.0) as u64,
        rate,
        rate_unit: RateUnit::RequestsPerSec,
        latency: Some(Latency {
            samples: 10,
            p50_us: 50.0,
            p99_us: 90.0,
            p999_us: 120.0,
            max_us: 200.0,
            mean_us: 55.0,
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
            user_s: Some(0.3),
            sys_s: Some(0.7),
            summary_agreement: Some(Agreement {
                harness_cpu_s: 1.0,
                summary_cpu_s: 1.01,
                ratio: 1.0 / 1.01,
                tolerance_s: 0.05,
                agrees: true,
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
        runs,
        failures: vec![],
        not_run: None,
    }
}

fn results() -> CompareResults {
    let pp100 = Workload::Pingpong { conns: 100 };
    let idle0 = Workload::Idle {
        idle: 0,
        active: 50,
    };
    let idle500 = Workload::Idle {
        idle: 500,
        active: 50,
    };
    let connect = Workload::Connect { conns: 4 };
    let status = |m: &str, unavailable: Option<&str>| ModelStatus {
        model: m.into(),
        binary: None,
        server_args: vec![],
        unavailable: unavailable.map(String::from),
    };
    let reps = |model: &str, w: &Workload, rates: [f64; 3], cpus: [f64; 3], client: f64| {
        (0..3)
            .map(|i| record(model, w, rates[i], cpus[i], client))
            .collect::<Vec<_>>()
    };
    let mut cells = vec![
        cell(
            "select",
            pp100,
            Purpose::Timing,
            reps(
                "select",
                &pp100,
                [40e3, 41e3, 42e3],
                [20.0, 21.0, 22.0],
                9.0,
            ),
        ),
        cell(
            "epoll:level",
            pp100,
            Purpose::Timing,
            reps(
                "epoll:level",
                &pp100,
                [50e3, 51e3, 52e3],
                [15.0, 16.0, 17.0],
                8.0,
            ),
        ),
        // select grows from idle 0 to 500 with disjoint ranges...
        cell(
            "select",
            idle0,
            Purpose::Timing,
            reps("select", &idle0, [30e3; 3], [10.0, 11.0, 12.0], 5.0),
        ),
        cell(
            "select",
            idle500,
            Purpose::Timing,
            reps("select", &idle500, [20e3; 3], [70.0, 73.0, 75.0], 5.0),
        ),
        // ...epoll does not (overlapping ranges).
        cell(
            "epoll:level",
            idle0,
            Purpose::Timing,
            reps("epoll:level", &idle0, [30e3; 3], [10.0, 11.0, 12.0], 5.0),
        ),
        cell(
            "epoll:level",
            idle500,
            Purpose::Timing,
            reps("epoll:level", &idle500, [30e3; 3], [11.0, 11.5, 12.5], 5.0),
        ),
        cell(
            "epoll:level",
            pp100,
            Purpose::Syscalls,
            vec![record("epoll:level", &pp100, 1.0, 1.0, 1.0)],
        ),
        cell(
            "select",
            connect,
            Purpose::Timing,
            reps("select", &connect, [5e3, 5.1e3, 5.2e3], [50.0; 3], 20.0),
        ),
        cell("epoll:level", connect, Purpose::Timing, vec![]),
    ];
    cells.last_mut().expect("cells").failures.push(RunFailure {
        repeat: 0,
        reason: "timed out after 34 s and was killed".into(),
    });
    let mut not_run = cell(
        "select",
        Workload::Idle {
            idle: 1000,
            active: 50,
        },
        Purpose::Timing,
        vec![],
    );
    not_run.not_run = Some("select can only watch descriptors below FD_SETSIZE (1024)".into());
    cells.push(not_run);
    CompareResults {
        command: "harness compare".into(),
        quick: false,
        repeats: 3,
        size: 64,
        warmup_s: 1.0,
        duration_s: 3.0,
        cell_timeout_s: 34.0,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:10:00.000Z".into(),
        elapsed_s: 600.0,
        environment: env(),
        models: vec![
            status("select", None),
            status("epoll:level", None),
            status(
                "uring",
                Some("binary missing and not buildable: no such package"),
            ),
        ],
        workloads: vec![
            pp100,
            connect,
            idle0,
            idle500,
            Workload::Idle {
                idle: 1000,
                active: 50,
            },
        ],
        cells,
    }
}

#[test]
fn findings_are_made_only_where_ranges_do_not_overlap() {
    let f = findings(&results()).join("\n");
    assert!(
        f.contains("select's server CPU per request at 500 idle connections is 6.6× its cost at 0"),
        "{f}"
    );
    assert!(
        f.contains("epoll:level's server CPU per request shows no measurable change"),
        "{f}"
    );
    assert!(
        f.contains("Ping-pong at c=100: epoll:level served the most, 51.0k requests/s, clearly ahead of select"),
        "{f}"
    );
}

#[test]
fn a_single_repeat_gives_no_findings() {
    let mut r = results();
    r.repeats = 1;
    for c in &mut r.cells {
        c.runs.truncate(1);
    }
    assert_eq!(findings(&r), Vec::<String>::new());
    let md = markdown::render(&r, &[]);
    assert!(
        md.contains("None: a finding needs at least two repeats"),
        "{md}"
    );
}

#[test]
fn report_has_every_section_and_reason() {
    let dir = std::env::temp_dir().join(format!("lab-report-{}", std::process::id()));
    let written = write(&dir, &results()).expect("written");
    let names: BTreeSet<String> = written
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for name in [
        "REPORT.md",
        "compare.json",
        "pingpong.json",
        "connect.json",
        "idle.json",
        "rate_vs_connections.svg",
        "cpu_per_request_vs_idle.svg",
        "connections_per_second.svg",
        "latency_percentiles.svg",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(
        !names.contains("openloop.json"),
        "no open-loop cell, no file"
    );
    let md = std::fs::read_to_string(dir.join("REPORT.md")).expect("report");
    for needle in [
        "Produced by `harness compare`",
        "| kernel | Linux 6.1 #1 |",
        "`spectre_v2`: Mitigation: x",
        "uring | NOT RUN: binary missing",
        "| select | 41.0k (40.0k–42.0k) |",
        "not run †",
        "failed †",
        "repeat 1 failed: timed out after 34 s",
        "FD_SETSIZE (1024)",
        "## Syscalls per request",
        "| epoll:level | 3.00 | 0.50 | 1.00 | 1.00 | 0.50 |",
        "the load generator used 8.00 µs of CPU per request, the server 16.0 µs (15.0 µs–17.0 µs)",
        "Target (client ≤ server): met",
        "agreed within 5 %",
        "## This machine's distortions",
        "![Ping-pong: requests per second vs connections](rate_vs_connections.svg)",
    ] {
        assert!(md.contains(needle), "REPORT.md lacks {needle:?}\n{md}");
    }
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
fn open_loop_cells_short_of_the_offered_rate_are_marked() {
    let mut r = results();
    let ol = Workload::OpenLoop {
        conns: 50,
        rate: 400_000,
    };
    let run = |achieved: f64| {
        let mut m = record("epoll:level", &ol, achieved, 5.0, 5.0);
        m.workload.rate = Some(400_000.0);
        m
    };
    r.workloads.push(ol);
    r.cells.push(cell(
        "epoll:level",
        ol,
        Purpose::Timing,
        vec![run(175e3), run(390e3), run(180e3)],
    ));
    let md = markdown::render(&r, &[]);
    assert!(md.contains("of 400k/s ‡ (2/3 short)"), "{md}");
    assert!(
        md.contains("‡ achieved less than 95 % of the offered rate"),
        "{md}"
    );
    // All at the rate: no mark.
    let mut ok = results();
    ok.workloads.push(ol);
    ok.cells.push(cell(
        "epoll:level",
        ol,
        Purpose::Timing,
        vec![run(399e3), run(400e3), run(398e3)],
    ));
    let md = markdown::render(&ok, &[]);
    assert!(md.contains("## Open loop"), "{md}");
    assert!(!md.contains('‡'), "{md}");
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
    let mut r = results();
    r.workloads.push(w);
    r.cells.push(c);
    let md = markdown::render(&r, &[]);
    assert!(
        md.contains("5.00k (0.00–10.0k) [2/3] (1 of 3 failed †)"),
        "{md}"
    );
    assert!(md.contains("90.0 µs [1/3] (1 of 3 failed †)"), "{md}");
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
        herd::HerdRun {
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
    let results = herd::HerdResults {
        runs: vec![
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("exclusive", false, 0.1, 42.0, vec![150, 50]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
            skew_run("exclusive", 200, 300.0, 250.0),
            skew_run("exclusive", 250, 320.0, 260.0),
            skew_run("reuseport", 500, 900.0, 240.0),
            skew_run("reuseport", 480, 1000.0, 270.0),
        ],
    };
    let text = herd::section(&results, Some("herd_wasted_wakeups.svg"));
    assert!(
        text.contains("shared: 0.900; exclusive: 0.100; reuseport: 0.000"),
        "{text}"
    );
    assert!(text.contains("exclusive 3.00×"), "{text}");
    assert!(text.contains("(+25.0 %): higher in every repeat"), "{text}");
    // Under skew: 3 of 4 s of CPU on the busy loop; its share of new
    // connections and its p99 separate, the p99 of all of them does not.
    assert!(text.contains("| 75 % |"), "{text}");
    assert!(
        text.contains(
            "busy loop served: `reuseport` 49 % against `exclusive` 22 %: higher in every repeat"
        ),
        "{text}"
    );
    assert!(
        text.contains("landed on the busy loop: `reuseport` 950 µs against `exclusive` 310 µs: higher in every repeat"),
        "{text}"
    );
    assert!(
        text.contains("p99 of all new connections: `reuseport` 255 µs against `exclusive` 255 µs: not separable"),
        "{text}"
    );
    assert!(!text.contains("under 90 %"), "{text}");
    // 10 µs more for 0.9 more wasted wake-ups: 11.1 µs each; on 4 cores
    // reuseport 4 × 1e6 / 40 = 100000/s, shared 4e6 / (40 + 3 × 11.1).
    assert!(text.contains("| 4 | 100000 | 54545 |"), "{text}");
    assert!(text.contains("an estimate"), "{text}");
    // One repeat each: no measured difference, the upper bound instead
    // (reuseport's 40 µs over at least one wake-up).
    let one_each = herd::HerdResults {
        runs: vec![
            run("shared", false, 0.9, 50.0, vec![100, 100]),
            run("reuseport", false, 0.0, 40.0, vec![110, 100]),
        ],
    };
    let text = herd::section(&one_each, None);
    assert!(text.contains("upper bound, 40.0 µs"), "{text}");
    assert!(text.contains("| 4 | 100000 | 25000 |"), "{text}");
}
