//! `harness compare`: every model:mode on the standard workloads, repeated
//! in alternating order, then `results/REPORT.md`, its figures and the raw
//! runs (see `crate::report`).
//!
//! Each run is one `harness run ... --json` child process in its own process
//! group, so that a run that hangs (a model that stops answering) is killed
//! with everything it started after a timeout and shows up in the report as
//! a failure with its reason, instead of stopping the whole comparison.
//! Cells a model cannot serve by design (`iterative` and more than one
//! connection, `select` beyond `FD_SETSIZE`, a pool smaller than the
//! connections) are not run, and the report says why.

pub mod herd;

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::account;
use crate::check::expect;
use crate::compare::herd::HerdResults;
use crate::measurement::{wall_clock, Measurement};
use crate::phases::lanes::{self, Lane};
use crate::results::{
    Cell, CompareResults, ModelStatus, Purpose, RunFailure, RunKey, Workload, SATURATED,
};
use crate::server::{self, Server, ServerConfig};
use crate::spec::{
    base_row, row, twin_of, AA_ROW, FLOOR_ROW, OFFERED_SHARE, STANDARD_MODELS, URING_BEST,
};
use crate::stats::samples_needed;

/// The rows of the open-loop sweep past its lowest rate, and of the idle
/// question: the loops that multiplex (the question is where each one
/// saturates, and what an idle connection costs it), a thread per
/// connection as the classic alternative, the references, the A/A twin and
/// the floor. The other rows are measured at the lowest rate and on every
/// other workload; `--full` runs every row everywhere.
pub const SWEEP_ROWS: &[&str] = &[
    "select",
    "poll",
    "epoll:level",
    AA_ROW,
    "epoll:edge",
    "sigio:rt",
    "uring:single",
    "uring:multishot",
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
    "peers:polling",
    FLOOR_ROW,
];

/// io_uring's ablation ladder: `uring:multishot` (a row of the standard
/// matrix), one row per kernel feature, each alone on the base, and the
/// best combination (`report::ladder` sets each against the base, and the
/// combination against the base too).
pub const LADDER_ROWS: &[&str] = &[
    "uring:multishot+defer-taskrun",
    "uring:multishot+skip-send-cqe",
    "uring:multishot+fixed-files",
    "uring:multishot+incremental-buffers",
    URING_BEST,
];

/// The ladder's rungs `--full` adds: a batch wait, and SQPOLL with a CPU of
/// its own (on two CPUs, the load generator's: the limiter column says what
/// that costs).
pub const LADDER_FULL_ROWS: &[&str] = &[
    "uring:multishot+min-wait=50",
    "uring:multishot+sqpoll+sqpoll-cpu=0",
];

/// The rows measured beside the ladder where only the ladder runs: its
/// base and the readiness loop it is weighed against.
pub const LADDER_BESIDE: &[&str] = &["uring:multishot", "epoll:level"];

/// Beside the ladder over 1 000 connections in the default matrix: the
/// other pairs of "Which model, when?", so that each is answered at two
/// connection counts.
pub const MANY_ROWS: &[&str] = &[
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// The ladder's second connection count, and the rate near the event
/// loops' saturation it is measured at besides the sweep's first.
pub const LADDER_CONNS: usize = 1_000;
pub const LADDER_HIGH: u64 = 40_000;

/// The active-connection counts of `--full`'s crossover map beyond the
/// sweep's and the ladder's (each connection sending, open loop; over
/// 1 000 the ladder's blocks hold these rows too), and the rows it holds:
/// the pairs of the report's "Which model, when?" and the references.
pub const CROSSOVER_CONNS: &[usize] = &[1, 10, 10_000];
pub const CROSSOVER_ROWS: &[&str] = &[
    "epoll:level",
    "epoll:edge",
    "poll",
    "uring:single",
    "uring:multishot",
    URING_BEST,
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
    "peers:polling",
];

/// Workers given to `blocking:pool` and `blocking:prefork`: each worker
/// serves one connection at a time, so this is how many they serve at once.
pub const POOL_WORKERS: usize = 128;

/// Connections of the open-loop sweep and of the idle workloads' active
/// side: enough that a model must multiplex, few enough for every model.
pub const SWEEP_CONNS: usize = 100;

/// The rows of the idle question in the default matrix: the loops whose
/// cost per idle connection is the question (the A/A twin among them, so
/// that the idle-0 against idle-1000 ratio has its control), a thread per
/// connection and the reference.
pub const IDLE_ROWS: &[&str] = &[
    "epoll:level",
    AA_ROW,
    "uring:multishot",
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// The rows whose memory at 10 000 idle connections the default matrix
/// measures (once each: a figure, not a comparison): the idle question's
/// rows and io_uring's ladder rungs that change its buffers.
pub const MEMORY_ROWS: &[&str] = &[
    "epoll:level",
    "uring:multishot",
    "uring:multishot+incremental-buffers",
    URING_BEST,
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// The fixed load under which the idle workloads measure what idle
/// connections cost: the sweep's lowest rate.
pub const IDLE_RATE: u64 = 10_000;

/// The open-loop sweep's first rate; each next one doubles it, up to
/// `SWEEP_TOP`, and a model is asked for a rate only while it sustained
/// the one below (`saturated_below`).
pub const SWEEP_FROM: u64 = 10_000;
pub const SWEEP_TOP: u64 = 160_000;

/// What `harness compare` promises to finish within on the lab's 2-CPU
/// machine, seconds.
pub const BUDGET_DEFAULT_S: f64 = 600.0;
pub const BUDGET_QUICK_S: f64 = 120.0;

/// What one run costs beyond its warm-up and window, seconds: the child
/// `harness run`, server start and SIGTERM stop, and the drain of a run
/// past saturation (measured in a `--quick` compare of the 11 lab
/// model:modes on the shared lab machine: 0.18 s for a ping-pong run, 0.7 s
/// on average for an open-loop run, up to 2.9 s past saturation).
const RUN_OVERHEAD_S: f64 = 0.3;
/// What opening one held connection adds to a run, seconds (measured: 1000
/// idle connections added 0.75 s on average over the 11 lab model:modes in
/// the same run; earlier, 10 000 added 0.5 s to an event loop's run and
/// 3.7 s to thread's and fork's).
const CONNECT_COST_S: f64 = 0.0005;
/// The phases figure traced after the matrix (`phases::lanes`; measured:
/// about 2.5 s, rounded up).
const PHASES_S: f64 = 5.0;
/// The wake-up floor before the matrix: 2 s, every CPU at once.
const FLOOR_S: f64 = 2.0;
/// Starting and stopping each model once before the matrix (`probe`;
/// measured: 1.7 s for the 11 lab model:modes).
const PROBE_S: f64 = 0.2;

/// Which matrix to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// One round of a few cells: does the pipeline work (≤ 2 minutes).
    Quick,
    /// Every question, in paired rounds, windows long enough for the
    /// percentiles shown (≤ 10 minutes): `SWEEP_ROWS` past the lowest rate.
    Default,
    /// Every row on every question, more rounds, longer windows.
    Full,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// A reduced matrix (one round of short windows), in about a minute:
    /// shows the pipeline works, supports no finding.
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// The complete matrix (every row on every question, 6 rounds, longer
    /// windows, more connection and idle counts): most of an hour.
    #[arg(long)]
    pub full: bool,
    /// Only these rows (comma-separated), e.g. `select,epoll:level`;
    /// `MODEL:MODE+FLAG` adds `--FLAG` to its server
    /// (`uring:multishot+sqpoll`, `uring:multishot+min-wait=50`), and
    /// `MODEL:MODE#TAG` measures the same server again under another label
    /// (the A/A control, `epoll:level#aa`).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Rounds of every repeated question (default 4; --quick 1; --full 6).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Every timed window, seconds, instead of the one each workload's rate
    /// needs for its percentiles (`Matrix::window_s`).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before each window, seconds (default 0.1; --full 1).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// The seed of the rounds' random order (default: from the clock; the
    /// seed used is recorded in compare.json and the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the separate syscall-counting runs.
    #[arg(long)]
    pub no_syscalls: bool,
    /// Where REPORT.md, the figures and the JSON go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Do not measure: rewrite the report from an earlier compare.json.
    #[arg(long, value_name = "COMPARE_JSON")]
    pub report_from: Option<PathBuf>,
}

/// Which rows a block measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Rows {
    /// Every row of the matrix.
    All,
    /// Only those of the matrix in one of these lists.
    Only(&'static [&'static [&'static str]]),
}

/// One question's runs: its workloads, measured in `rounds` rounds. In each
/// round every (row, workload) of the block runs once, in a random order,
/// so that everything compared within the block (two rows, or a row at two
/// workloads: idle 0 against idle 1000) is paired by round.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub workloads: Vec<Workload>,
    pub rows: Rows,
    pub rounds: usize,
    pub purpose: Purpose,
}

/// What a compare run will measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub models: Vec<String>,
    /// In the order they run. The open-loop rates are blocks of their own,
    /// ascending: a model that cannot sustain one is not asked for the next
    /// (`saturated_below`).
    pub blocks: Vec<Block>,
    pub size: usize,
    pub warmup_s: f64,
    /// Every window this long, instead of `window_s`'s rule.
    pub duration_s: Option<f64>,
    /// The shortest and longest window `window_s` chooses.
    pub min_window_s: f64,
    pub max_window_s: f64,
}

impl Matrix {
    /// The standard matrix at `scale`.
    pub fn standard(scale: Scale) -> Matrix {
        let open = |rate| Workload::OpenLoop {
            conns: SWEEP_CONNS,
            rate,
        };
        let idle = |idle| Workload::Idle {
            idle,
            active: SWEEP_CONNS,
            rate: Some(IDLE_RATE),
        };
        let pp = |conns| Workload::Pingpong { conns };
        let connect = Workload::Connect { conns: 4 };
        let block = |workloads: Vec<Workload>, rows: Rows, rounds: usize| Block {
            workloads,
            rows,
            rounds,
            purpose: Purpose::Timing,
        };
        let sweep: Vec<u64> = std::iter::successors(Some(SWEEP_FROM), |r| Some(r * 2))
            .take_while(|r| *r <= SWEEP_TOP)
            .collect();
        let (rounds, warmup_s, min_window_s, max_window_s) = match scale {
            Scale::Quick => (1, 0.1, 0.2, 0.2),
            Scale::Default => (4, 0.1, 0.25, 0.4),
            Scale::Full => (6, 1.0, 1.0, 3.0),
        };
        // Past the first rate the sweep's rows; the ladder's rungs at
        // LADDER_HIGH and the rate above it (near the base's saturation).
        let past_first = |rate: u64| match scale {
            Scale::Full => Rows::All,
            _ if rate == LADDER_HIGH || rate == 2 * LADDER_HIGH => {
                Rows::Only(&[SWEEP_ROWS, LADDER_ROWS])
            }
            _ => Rows::Only(&[SWEEP_ROWS]),
        };
        let mut blocks = Vec::new();
        match scale {
            Scale::Quick => {
                blocks.push(block(vec![open(SWEEP_FROM)], Rows::All, 1));
                blocks.push(block(vec![open(2 * SWEEP_FROM)], Rows::All, 1));
                blocks.push(block(vec![pp(100)], Rows::All, 1));
                blocks.push(block(vec![connect], Rows::All, 1));
                blocks.push(block(
                    vec![idle(0), idle(1_000)],
                    Rows::Only(&[IDLE_ROWS]),
                    1,
                ));
            }
            Scale::Default | Scale::Full => {
                for (i, rate) in sweep.iter().enumerate() {
                    let rows = if i == 0 { Rows::All } else { past_first(*rate) };
                    blocks.push(block(vec![open(*rate)], rows, rounds));
                }
                let pingpong: &[usize] = match scale {
                    Scale::Full => &[1, 10, 100, 1000],
                    _ => &[100],
                };
                // io_uring's ladder over 1 000 connections, at the sweep's
                // first rate and at LADDER_HIGH (where it is in the sweep
                // over 100 connections too).
                for rate in [SWEEP_FROM, LADDER_HIGH] {
                    let many = Workload::OpenLoop {
                        conns: LADDER_CONNS,
                        rate,
                    };
                    let rows = match scale {
                        Scale::Full => Rows::Only(&[
                            LADDER_ROWS,
                            LADDER_FULL_ROWS,
                            LADDER_BESIDE,
                            CROSSOVER_ROWS,
                        ]),
                        _ => Rows::Only(&[LADDER_ROWS, LADDER_BESIDE, MANY_ROWS]),
                    };
                    blocks.push(block(vec![many], rows, rounds));
                }
                // Closed loops and accepting are throughput questions: the
                // sweep's rows, and for accepting every model (a process or
                // a thread per connection is what it is about) and the twin.
                if scale == Scale::Full {
                    // The crossover map (issue 22): active connections from
                    // 1 to 10 000 at the sweep's first rate and LADDER_HIGH,
                    // for the pairs a reader weighs.
                    for conns in CROSSOVER_CONNS {
                        for rate in [SWEEP_FROM, LADDER_HIGH] {
                            let w = Workload::OpenLoop {
                                conns: *conns,
                                rate,
                            };
                            blocks.push(block(vec![w], Rows::Only(&[CROSSOVER_ROWS]), rounds));
                        }
                    }
                }
                let closed = match scale {
                    Scale::Full => Rows::All,
                    _ => Rows::Only(&[SWEEP_ROWS]),
                };
                for c in pingpong {
                    blocks.push(block(vec![pp(*c)], closed.clone(), rounds));
                }
                let accepting = match scale {
                    Scale::Full => Rows::All,
                    _ => Rows::Only(&[STANDARD_MODELS, &[AA_ROW]]),
                };
                blocks.push(block(vec![connect], accepting, rounds));
                let (idles, idle_rows): (Vec<Workload>, Rows) = match scale {
                    // 500: the largest count below select's FD_SETSIZE.
                    Scale::Full => ([0, 100, 500, 1_000, 10_000].map(idle).to_vec(), Rows::All),
                    _ => (vec![idle(0), idle(1_000)], Rows::Only(&[IDLE_ROWS])),
                };
                blocks.push(block(idles, idle_rows, rounds));
                if scale == Scale::Default {
                    // Memory at 10 000 idle connections, once per row: a
                    // figure, not a comparison.
                    blocks.push(block(vec![idle(10_000)], Rows::Only(&[MEMORY_ROWS]), 1));
                }
            }
        }
        let syscalls: Vec<Workload> = match scale {
            Scale::Quick => vec![open(SWEEP_FROM)],
            Scale::Default => vec![open(SWEEP_FROM)],
            Scale::Full => vec![open(SWEEP_FROM), pp(1), pp(100)],
        };
        blocks.push(Block {
            workloads: syscalls,
            // Every model and rung; not the A/A twin (its counts would say
            // nothing its original's do not) nor the floor (it busy-polls).
            rows: Rows::Only(&[STANDARD_MODELS, LADDER_ROWS]),
            rounds: 1,
            purpose: Purpose::Syscalls,
        });
        let mut models: Vec<String> = STANDARD_MODELS.iter().map(|s| s.to_string()).collect();
        models.extend(LADDER_ROWS.iter().map(|s| s.to_string()));
        if scale == Scale::Full {
            models.extend(LADDER_FULL_ROWS.iter().map(|s| s.to_string()));
        }
        models.push(AA_ROW.into());
        models.push(FLOOR_ROW.into());
        Matrix {
            models,
            blocks,
            size: 64,
            warmup_s,
            duration_s: None,
            min_window_s,
            max_window_s,
        }
    }

    /// The timed window of a run of `w`: long enough that each run holds
    /// `samples_needed(99.9)` latency samples at an open-loop rate if the
    /// matrix's longest window allows, else what p99 needs, never shorter
    /// than the shortest window (closed loops, whose rate is not known in
    /// advance, get the shortest: at this size every model answers more
    /// than 4 000 requests/s, p99's need in 0.25 s).
    pub fn window_s(&self, w: &Workload) -> f64 {
        if let Some(d) = self.duration_s {
            return d;
        }
        let Some(rate) = w.offered_rate() else {
            return self.min_window_s;
        };
        let need = |p| samples_needed(p) as f64 / rate as f64;
        let s = if need(99.9) <= self.max_window_s {
            need(99.9)
        } else {
            need(99.0)
        };
        s.clamp(self.min_window_s, self.max_window_s)
    }

    /// Seconds a run of `w` may take before it is killed: the window, plus
    /// time to start and stop the server and to open the connections (a
    /// fork-per-connection server forks once for each).
    pub fn run_timeout_s(&self, w: &Workload) -> f64 {
        self.warmup_s + self.window_s(w) + 30.0 + w.concurrent_conns() as f64 / 500.0
    }

    /// The seconds one run of `w` is planned to take.
    pub fn planned_run_s(&self, w: &Workload) -> f64 {
        self.warmup_s
            + self.window_s(w)
            + RUN_OVERHEAD_S
            + w.concurrent_conns() as f64 * CONNECT_COST_S
    }

    /// The rows of the matrix `block` measures, in matrix order.
    pub fn rows<'a>(&'a self, block: &Block) -> Vec<&'a str> {
        self.models
            .iter()
            .map(String::as_str)
            .filter(|m| match &block.rows {
                Rows::All => true,
                Rows::Only(lists) => lists.iter().any(|l| l.contains(m)),
            })
            .collect()
    }

    /// Every workload a timing block measures, in the order first run.
    pub fn timing_workloads(&self) -> Vec<Workload> {
        let mut v = Vec::new();
        for b in self.blocks.iter().filter(|b| b.purpose == Purpose::Timing) {
            for w in &b.workloads {
                if !v.contains(w) {
                    v.push(*w);
                }
            }
        }
        v
    }

    /// The runs of the matrix at most (before cells a model's limit or
    /// saturation excuses), and their planned seconds, the herd section's
    /// connect runs and the phases traces after the matrix included.
    pub fn plan(&self) -> (usize, f64) {
        let mut runs = 0;
        let mut seconds = self.models.len() as f64 * PROBE_S + PHASES_S + FLOOR_S;
        for b in &self.blocks {
            let rows = self.rows(b).len();
            for w in &b.workloads {
                runs += rows * b.rounds;
                seconds += (rows * b.rounds) as f64 * self.planned_run_s(w);
            }
        }
        let rounds = self.repeated_rounds();
        let herd = rounds * herd::runs_per_round();
        runs += herd;
        seconds += herd as f64 * self.planned_run_s(&Workload::Connect { conns: 4 });
        (runs, seconds)
    }

    /// The rounds of the repeated questions (the most any block has).
    pub fn repeated_rounds(&self) -> usize {
        self.blocks.iter().map(|b| b.rounds).max().unwrap_or(1)
    }

    /// Sets every repeated block's rounds to `rounds`.
    pub fn set_rounds(&mut self, rounds: usize) {
        for b in self.blocks.iter_mut().filter(|b| b.rounds > 1) {
            b.rounds = rounds;
        }
    }
}

/// Extra server arguments compare passes to a row's model: its workers,
/// then the row's flags.
pub fn server_args(label: &str) -> Vec<String> {
    let untagged = twin_of(label).unwrap_or(label);
    let base = base_row(untagged).unwrap_or(untagged);
    let mut args = match base {
        "blocking:pool" | "blocking:prefork" => vec!["--workers".into(), POOL_WORKERS.to_string()],
        _ => Vec::new(),
    };
    args.extend(row(label).map(|(_, flags)| flags).unwrap_or_default());
    args
}

/// `--workers` compare gives `model`, if any.
fn workers(model: &str) -> Option<usize> {
    let args = server_args(model);
    let at = args.iter().position(|a| a == "--workers")?;
    args.get(at + 1)?.parse().ok()
}

/// Why `model` cannot serve `workload` by design, if it cannot: the
/// connection capacity the one expectations table declares for it
/// (`check::expect::connection_capacity`).
pub fn limit(model: &str, workload: &Workload) -> Option<String> {
    // connect: each connection is one request and a close, so a server that
    // serves one connection at a time still serves them all, in turn.
    if matches!(workload, Workload::Connect { .. }) {
        return None;
    }
    let (spec, _) = row(model).ok()?;
    let held = workload.concurrent_conns();
    let (capacity, reason) = expect::connection_capacity(
        &spec.model,
        spec.mode.as_deref(),
        workers(model).unwrap_or(1),
    )?;
    (held > capacity).then(|| {
        format!("{reason} (this workload holds {held} connections, the model serves {capacity} at once)")
    })
}

/// An open-loop `w` that `model` need not be asked for: an earlier, lower
/// rate of the same sweep that every repeat fell short of (below
/// `OFFERED_SHARE` of the offer). Its reason, if so.
pub fn saturated_below(cells: &[Cell], model: &str, w: &Workload) -> Option<String> {
    let Workload::OpenLoop { conns, rate } = *w else {
        return None;
    };
    cells
        .iter()
        .filter(|c| c.model == model && c.purpose == Purpose::Timing)
        .filter_map(|c| match c.workload {
            Workload::OpenLoop { conns: k, rate: r } if k == conns && r < rate => Some((r, c)),
            _ => None,
        })
        .filter(|(_, c)| {
            !c.runs.is_empty()
                && c.runs
                    .iter()
                    .all(short_of_offer)
        })
        .map(|(r, _)| r)
        .min()
        .map(|r| {
            format!(
                "{}: every repeat at {r}/s answered less than {:.0} % of the offer, so higher rates were not asked for",
                SATURATED,
                OFFERED_SHARE * 100.0
            )
        })
}

/// Whether one open-loop run answered less than `OFFERED_SHARE` of its offer.
fn short_of_offer(m: &Measurement) -> bool {
    m.workload
        .rate
        .is_some_and(|offered| m.rate < offered * OFFERED_SHARE)
}

/// The `harness run` arguments of one run.
pub fn run_args(
    m: &Matrix,
    model: &str,
    w: &Workload,
    purpose: Purpose,
    round: usize,
) -> Vec<String> {
    let spec = row(model).map_or_else(|_| model.to_string(), |(spec, _)| spec.to_string());
    let mut a: Vec<String> = vec!["run".into(), spec];
    let mut push = |k: &str, v: String| {
        a.push(k.into());
        a.push(v);
    };
    match *w {
        Workload::Pingpong { conns } => {
            push("--workload", "pingpong".into());
            push("--conns", conns.to_string());
        }
        Workload::Connect { conns } => {
            push("--workload", "connect".into());
            push("--conns", conns.to_string());
        }
        Workload::Idle { idle, active, rate } => {
            push("--workload", "idle".into());
            push("--idle", idle.to_string());
            push("--conns", active.to_string());
            if let Some(rate) = rate {
                push("--rate", rate.to_string());
            }
        }
        Workload::OpenLoop { conns, rate } => {
            push("--workload", "pingpong".into());
            push("--conns", conns.to_string());
            push("--rate", rate.to_string());
        }
    }
    push("--size", m.size.to_string());
    push("--warmup", m.warmup_s.to_string());
    push("--duration", m.window_s(w).to_string());
    push("--seed", (round + 1).to_string());
    a.push("--json".into());
    if matches!(w, Workload::Connect { .. }) {
        // The matrix compares models, not wake-ups: no trace overhead (the
        // herd runs measure wake-ups, `compare::herd`).
        a.push("--no-wakeups".into());
    }
    if purpose == Purpose::Syscalls {
        a.push("--syscalls".into());
    }
    let extra = server_args(model);
    if !extra.is_empty() {
        a.push("--".into());
        a.extend(extra);
    }
    a
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Runs `exe args` in its own process group; kills the group at `timeout`.
fn run_child(exe: &Path, args: &[String], timeout: Duration) -> Result<Measurement, String> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: one killpg reaches the server and its
        // children too, should the run have to be killed.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                // A read error leaves what was read so far.
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waitpid(harness run): {e}")),
        }
    };
    let timed_out = status.is_none();
    if timed_out {
        // The group's id is the child's pid (process_group(0)).
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if timed_out {
        return Err(format!(
            "timed out after {:.0} s and was killed; stderr: {}",
            timeout.as_secs_f64(),
            last_lines(&stderr, 3)
        ));
    }
    match status {
        Some(s) if s.success() => serde_json::from_str(&stdout).map_err(|e| {
            format!(
                "harness run printed no measurement ({e}); stderr: {}",
                last_lines(&stderr, 3)
            )
        }),
        Some(s) => Err(format!(
            "harness run failed ({s}): {}",
            last_lines(&stderr, 3)
        )),
        None => Err("no exit status".into()),
    }
}

/// Finds (or builds) a model's binary and checks that it starts, listens
/// and stops; the reason it cannot be run otherwise.
fn probe(model: &str) -> ModelStatus {
    let args = server_args(model);
    let mut status = ModelStatus {
        model: model.into(),
        binary: None,
        server_args: args.clone(),
        unavailable: None,
    };
    let spec = match row(model) {
        Ok((s, _)) => s,
        Err(e) => {
            status.unavailable = Some(e);
            return status;
        }
    };
    match server::find_binary(&spec.model) {
        Ok(path) => status.binary = Some(path.display().to_string()),
        Err(e) => {
            status.unavailable = Some(format!("binary missing and not buildable: {e}"));
            return status;
        }
    }
    let started = ServerConfig::for_spec(&spec, &args).and_then(|c| Server::start(&c));
    match started {
        Ok(mut s) => {
            if let Err(e) = s.stop(Signal::SIGTERM, Duration::from_secs(2)) {
                status.unavailable = Some(format!("did not stop on SIGTERM: {e}"));
            }
        }
        Err(e) => status.unavailable = Some(format!("failed to start: {e}")),
    }
    status
}

fn now() -> String {
    wall_clock(SystemTime::now()).1
}

/// The wake-ups the floor measures on each CPU, and how often: 10 000 gives
/// p99.9 its samples, at 200 µs apart in 2 s.
const WAKEUPS: u64 = 10_000;
const WAKEUP_PERIOD: Duration = Duration::from_micros(200);

/// The machine's timer wake-up lateness on every CPU this process may use
/// (the load generator's and the server's), before the matrix; a CPU that
/// cannot be measured is said on stderr and left out.
fn wakeup_floor() -> Vec<crate::measurement::TimerWakeups> {
    let cpus = match crate::load::sys::allowed_cpus() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harness compare: wake-up floor not measured: {e}");
            return Vec::new();
        }
    };
    eprintln!("harness compare: timer wake-up floor on CPUs {cpus:?} ({WAKEUPS} wake-ups each)");
    // Every CPU at once, each by a thread pinned there: 2 s in all.
    let measured: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                (
                    cpu,
                    s.spawn(move || crate::floor::timer_wakeups(cpu, WAKEUP_PERIOD, WAKEUPS)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(cpu, h)| (cpu, h.join()))
            .collect()
    });
    measured
        .into_iter()
        .filter_map(|(cpu, joined)| match joined {
            Ok(Ok(w)) => Some(w),
            Ok(Err(e)) => {
                eprintln!("harness compare: wake-up floor on CPU {cpu}: {e}");
                None
            }
            Err(_) => {
                eprintln!("harness compare: wake-up floor on CPU {cpu}: its thread panicked");
                None
            }
        })
        .collect()
}

/// The runs of one round of `block`, in a random order drawn from `rng`:
/// every (row, workload) pair once.
fn shuffled_round(
    matrix: &Matrix,
    block: &Block,
    runnable: &[&str],
    rng: &mut ChaCha8Rng,
) -> Vec<(String, Workload)> {
    let mut runs: Vec<(String, Workload)> = matrix
        .rows(block)
        .into_iter()
        .filter(|m| runnable.contains(m))
        .flat_map(|m| block.workloads.iter().map(move |w| (m.to_string(), *w)))
        .collect();
    runs.shuffle(rng);
    runs
}

/// Runs `matrix` and returns everything measured. `command` is recorded.
/// After every run, what was measured so far is written to `partial` (if
/// given), so that an interrupted comparison can still be reported with
/// `--report-from`.
pub fn run_matrix(
    matrix: &Matrix,
    exe: &Path,
    command: String,
    quick: bool,
    seed: u64,
    partial: Option<&Path>,
) -> CompareResults {
    let started_at = now();
    let t0 = Instant::now();
    let environment = account::environment();
    let ticks_at_start = account::cpu_ticks();
    let (planned_runs, planned_s) = matrix.plan();
    eprintln!(
        "harness compare: at most {planned_runs} runs, planned at {planned_s:.0} s \
         (fewer where a model's limit or saturation excuses a cell); order seed {seed}"
    );
    eprintln!("harness compare: checking {} models", matrix.models.len());
    let models: Vec<ModelStatus> = matrix.models.iter().map(|m| probe(m)).collect();
    for m in models.iter().filter(|m| m.unavailable.is_some()) {
        eprintln!(
            "harness compare: {} NOT RUN: {}",
            m.model,
            m.unavailable.as_deref().unwrap_or("")
        );
    }
    let runnable: Vec<&str> = models
        .iter()
        .filter(|m| m.unavailable.is_none())
        .map(|m| m.model.as_str())
        .collect();
    let wakeups = wakeup_floor();

    // Every cell; not-run cells get their reason.
    let mut cells: Vec<Cell> = Vec::new();
    for block in &matrix.blocks {
        for w in &block.workloads {
            for model in matrix
                .rows(block)
                .into_iter()
                .filter(|m| runnable.contains(m))
            {
                let mut cell = Cell::new(model, *w, block.purpose);
                cell.not_run = limit(model, w);
                if let (Some(why), Purpose::Timing) = (&cell.not_run, block.purpose) {
                    eprintln!("harness compare: {model} / {}: not run: {why}", w.label());
                }
                cells.push(cell);
            }
        }
    }
    let total: usize = matrix
        .blocks
        .iter()
        .flat_map(|b| b.workloads.iter().map(move |w| (b, w)))
        .map(|(b, w)| {
            b.rounds
                * cells
                    .iter()
                    .filter(|c| c.workload == *w && c.purpose == b.purpose && c.not_run.is_none())
                    .count()
        })
        .sum();
    let timing = matrix.timing_workloads();
    let mut results = CompareResults {
        command,
        quick,
        repeats: matrix.repeated_rounds(),
        size: matrix.size,
        warmup_s: matrix.warmup_s,
        duration_s: timing
            .iter()
            .map(|w| matrix.window_s(w))
            .fold(0.0, f64::max),
        min_window_s: timing
            .iter()
            .map(|w| matrix.window_s(w))
            .fold(f64::INFINITY, f64::min),
        seed: Some(seed),
        order: Vec::new(),
        wakeups,
        cell_timeout_s: matrix
            .blocks
            .iter()
            .flat_map(|b| &b.workloads)
            .map(|w| matrix.run_timeout_s(w))
            .fold(0.0, f64::max),
        started_at,
        finished_at: "(in progress)".into(),
        elapsed_s: 0.0,
        environment,
        steal_share: None,
        rendered_by: None,
        models: models.clone(),
        workloads: timing,
        cells,
    };
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} runs, ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for block in &matrix.blocks {
        for round in 0..block.rounds {
            for (model, w) in shuffled_round(matrix, block, &runnable, &mut rng) {
                // The sweep's rates are blocks in ascending order, so the
                // lower ones are complete when a higher one starts.
                let saturated = (round == 0 && block.purpose == Purpose::Timing)
                    .then(|| saturated_below(&results.cells, &model, &w))
                    .flatten();
                let Some(cell) = results
                    .cells
                    .iter_mut()
                    .find(|c| c.model == model && c.workload == w && c.purpose == block.purpose)
                else {
                    continue;
                };
                if cell.not_run.is_some() {
                    continue;
                }
                if let Some(why) = saturated {
                    eprintln!("harness compare: {model} / {}: not run: {why}", w.label());
                    cell.not_run = Some(why);
                    bar.set_length(
                        bar.length()
                            .unwrap_or(0)
                            .saturating_sub(block.rounds as u64),
                    );
                    continue;
                }
                let label = format!(
                    "{model} · {}{} · round {}/{}",
                    w.label(),
                    if block.purpose == Purpose::Syscalls {
                        " (syscalls)"
                    } else {
                        ""
                    },
                    round + 1,
                    block.rounds
                );
                // Not a terminal (a log, CI): one line per run instead of
                // the bar, which indicatif then hides.
                if bar.is_hidden() {
                    eprintln!("[{}/{total}] {label}", bar.position() + 1);
                }
                bar.set_message(label);
                let args = run_args(matrix, &model, &w, block.purpose, round);
                let timeout = Duration::from_secs_f64(matrix.run_timeout_s(&w));
                match run_child(exe, &args, timeout) {
                    Ok(m) => cell.push_run(round, m),
                    Err(reason) => {
                        let line =
                            format!("{model} / {}: round {}: {reason}", w.label(), round + 1);
                        if bar.is_hidden() {
                            eprintln!("{line}");
                        } else {
                            bar.println(line);
                        }
                        cell.failures.push(RunFailure {
                            repeat: round,
                            reason,
                        });
                    }
                }
                results.order.push(RunKey {
                    model: model.clone(),
                    workload: w,
                    purpose: block.purpose,
                    round,
                });
                bar.inc(1);
                if let Some(path) = partial {
                    results.elapsed_s = t0.elapsed().as_secs_f64();
                    if let Err(e) = save(path, &results) {
                        eprintln!("harness compare: {e}");
                    }
                }
            }
        }
    }
    bar.finish_with_message("done");
    results.steal_share = ticks_at_start
        .zip(account::cpu_ticks())
        .and_then(|(a, b)| a.steal_share_until(&b));
    results.finished_at = now();
    results.elapsed_s = t0.elapsed().as_secs_f64();
    results
}

/// Writes the record so far as pretty JSON, as `report` writes it.
fn save(path: &Path, results: &CompareResults) -> io::Result<()> {
    let failed = |e: &dyn std::fmt::Display| io::Error::other(format!("{}: {e}", path.display()));
    let text = serde_json::to_string_pretty(results).map_err(|e| failed(&e))?;
    std::fs::write(path, text + "\n").map_err(|e| failed(&e))
}

/// The command line as typed, for the report.
fn command_line() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if let Some(first) = words.first_mut() {
        // The path to the binary says nothing a reader can reuse.
        *first = "harness".into();
    }
    words.join(" ")
}

/// What one `harness compare` measured, for `report` to write.
pub struct Compared {
    pub results: CompareResults,
    pub herd: HerdResults,
    pub lanes: Vec<Lane>,
    /// The record saved after every run in case the comparison stops:
    /// to remove once the report is written, where it would only confuse.
    pub partial: PathBuf,
}

/// Runs the matrix, the herd runs and the phases trace (`--report-from`
/// measures nothing: `report::rewrite`).
pub fn main(args: CompareArgs) -> io::Result<Compared> {
    let scale = if args.quick {
        Scale::Quick
    } else if args.full {
        Scale::Full
    } else {
        Scale::Default
    };
    let mut matrix = Matrix::standard(scale);
    if let Some(models) = &args.models {
        matrix.models = models.clone();
    }
    if let Some(r) = args.repeats {
        matrix.set_rounds(r.max(1));
    }
    if let Some(d) = args.duration {
        matrix.duration_s = Some(d);
    }
    if let Some(w) = args.warmup {
        matrix.warmup_s = w;
    }
    if args.no_syscalls {
        matrix.blocks.retain(|b| b.purpose != Purpose::Syscalls);
    }
    let seed = args.seed.unwrap_or_else(|| wall_clock(SystemTime::now()).0);
    let exe = std::env::current_exe()
        .map_err(|e| io::Error::new(e.kind(), format!("current_exe: {e}")))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", args.out.display())))?;
    let partial = args.out.join("compare.partial.json");
    let results = run_matrix(
        &matrix,
        &exe,
        command_line(),
        args.quick,
        seed,
        Some(&partial),
    );
    let connect = Workload::Connect { conns: 4 };
    let herd_timeout = Duration::from_secs_f64(matrix.run_timeout_s(&connect) + 30.0);
    let herd = herd::measure(
        matrix.repeated_rounds(),
        matrix.warmup_s,
        matrix.window_s(&connect),
        |a| run_child(&exe, a, herd_timeout),
    );
    Ok(Compared {
        results,
        herd,
        lanes: lanes::five(),
        partial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_expectations_table() {
        let pp = |conns| Workload::Pingpong { conns };
        assert_eq!(limit("blocking:iterative", &pp(1)), None);
        assert!(limit("blocking:iterative", &pp(10))
            .expect("limited")
            .contains("one connection at a time"));
        // connect workloads are served in turn even by iterative.
        assert_eq!(
            limit("blocking:iterative", &Workload::Connect { conns: 4 }),
            None
        );
        assert_eq!(limit("blocking:pool", &pp(100)), None);
        assert!(limit("blocking:prefork", &pp(1000))
            .expect("limited")
            .contains("serves 128 at once"));
        assert_eq!(limit("select", &pp(1000)), None);
        let idle = Workload::Idle {
            idle: 1000,
            active: 100,
            rate: Some(IDLE_RATE),
        };
        assert!(limit("select", &idle)
            .expect("limited")
            .contains("FD_SETSIZE (1024)"));
        assert_eq!(limit("epoll:edge", &idle), None);
        assert_eq!(limit("peers:tokio", &idle), None);
    }

    #[test]
    fn a_flag_row_runs_its_base_model_mode_with_the_flag() {
        let (spec, flags) = row("uring:multishot+sqpoll").expect("a row");
        assert_eq!(spec.to_string(), "uring:multishot");
        assert_eq!(flags, ["--sqpoll"]);
        assert_eq!(base_row("uring:multishot+sqpoll"), Some("uring:multishot"));
        assert_eq!(base_row("uring:multishot"), None);
        assert!(row("uring:multishot+").is_err());
        assert!(row("uring:multishot+sq poll").is_err());
        assert_eq!(
            server_args("blocking:pool+verbose"),
            ["--workers", "128", "--verbose"]
        );
        let (spec, args) = row("uring:multishot+min-wait=50+defer-taskrun").expect("a row");
        assert_eq!(spec.to_string(), "uring:multishot");
        assert_eq!(args, ["--min-wait", "50", "--defer-taskrun"]);
        assert!(row("uring:multishot+min-wait=").is_err());
        assert!(row("uring:multishot+min-wait=5 0").is_err());
        // The A/A twin runs its row unchanged.
        let (spec, args) = row(AA_ROW).expect("a row");
        assert_eq!((spec.to_string().as_str(), args.len()), ("epoll:level", 0));
        assert_eq!(twin_of(AA_ROW), Some("epoll:level"));
        assert_eq!(base_row(AA_ROW), None);
        assert_eq!(
            base_row("uring:multishot+sqpoll#b"),
            Some("uring:multishot")
        );
        assert!(row("epoll:level#").is_err() && row("epoll:level#a-b").is_err());
        let m = Matrix::standard(Scale::Quick);
        let a = run_args(
            &m,
            "uring:multishot+sqpoll",
            &Workload::OpenLoop {
                conns: 100,
                rate: 5000,
            },
            Purpose::Timing,
            0,
        );
        let text = a.join(" ");
        assert!(text.starts_with("run uring:multishot --workload"), "{text}");
        assert!(text.ends_with("--json -- --sqpoll"), "{text}");
        for label in STANDARD_MODELS {
            assert!(row(label).is_ok(), "{label}");
        }
    }

    #[test]
    fn run_args_spell_each_workload_for_harness_run() {
        let m = Matrix::standard(Scale::Quick);
        let a = run_args(
            &m,
            "blocking:pool",
            &Workload::Idle {
                idle: 500,
                active: 50,
                rate: Some(5000),
            },
            Purpose::Syscalls,
            1,
        );
        let text = a.join(" ");
        assert!(
            text.starts_with(
                "run blocking:pool --workload idle --idle 500 --conns 50 --rate 5000 --size 64"
            ),
            "{text}"
        );
        assert!(
            text.contains("--seed 2 --json --syscalls -- --workers 128"),
            "{text}"
        );
        let a = run_args(
            &m,
            "epoll:edge",
            &Workload::OpenLoop {
                conns: 50,
                rate: 1000,
            },
            Purpose::Timing,
            0,
        );
        let text = a.join(" ");
        assert!(
            text.contains("--workload pingpong --conns 50 --rate 1000"),
            "{text}"
        );
        assert!(
            !text.contains("--syscalls") && !text.contains(" -- "),
            "{text}"
        );
    }

    #[test]
    fn every_block_holds_unique_workloads_and_the_sweep_doubles() {
        for scale in [Scale::Quick, Scale::Default, Scale::Full] {
            let m = Matrix::standard(scale);
            for purpose in [Purpose::Timing, Purpose::Syscalls] {
                let mut seen: Vec<Workload> = m
                    .blocks
                    .iter()
                    .filter(|b| b.purpose == purpose)
                    .flat_map(|b| b.workloads.clone())
                    .collect();
                let all = seen.len();
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), all, "{scale:?}");
            }
            let rates: Vec<u64> = m
                .timing_workloads()
                .iter()
                .filter(|w| matches!(w, Workload::OpenLoop { conns, .. } if *conns == SWEEP_CONNS))
                .filter_map(|w| w.offered_rate())
                .collect();
            assert!(rates.windows(2).all(|p| p[0] < p[1]), "{rates:?}");
            assert_eq!(rates[0], SWEEP_FROM);
            if scale != Scale::Quick {
                assert!(rates.windows(2).all(|p| p[1] == 2 * p[0]), "{rates:?}");
                // One rate a block, so saturation at one stops the next.
                assert!(m
                    .blocks
                    .iter()
                    .filter(|b| b.purpose == Purpose::Timing)
                    .all(|b| b.workloads.len() == 1
                        || b.workloads
                            .iter()
                            .all(|w| !matches!(w, Workload::OpenLoop { .. }))));
            }
            // The A/A twin and the floor are rows of every matrix.
            assert!(m.models.iter().any(|r| r == AA_ROW));
            assert!(m.models.iter().any(|r| r == FLOOR_ROW));
        }
        let (quick, default, full) = (
            Matrix::standard(Scale::Quick),
            Matrix::standard(Scale::Default),
            Matrix::standard(Scale::Full),
        );
        assert!(quick.timing_workloads().len() < default.timing_workloads().len());
        assert!(default.timing_workloads().len() < full.timing_workloads().len());
        // --full maps active connections from 1 to 10 000.
        for conns in [1, 10, 100, 1_000, 10_000] {
            assert!(full.timing_workloads().contains(&Workload::OpenLoop {
                conns,
                rate: SWEEP_FROM
            }));
        }
        // Paired intervals need rounds enough for Student's t to say something.
        assert!(default.repeated_rounds() >= 4);
        assert!(full.repeated_rounds() > default.repeated_rounds());
        // The idle baseline (0 idle) is measured in the same block, so in
        // the same rounds, as what it is compared with.
        let idle_block = default
            .blocks
            .iter()
            .find(|b| {
                b.workloads
                    .iter()
                    .any(|w| matches!(w, Workload::Idle { idle: 1_000, .. }))
            })
            .expect("an idle block");
        assert!(idle_block
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::Idle { idle: 0, .. })));
        // The rows past the first rate include the twin and the floor.
        assert!(SWEEP_ROWS.contains(&AA_ROW) && SWEEP_ROWS.contains(&FLOOR_ROW));
    }

    #[test]
    fn the_ladder_runs_beside_its_base_and_epoll_at_two_connection_counts() {
        let m = Matrix::standard(Scale::Default);
        for rung in LADDER_ROWS {
            let (spec, args) = row(rung).expect("a row");
            assert_eq!(spec.to_string(), "uring:multishot");
            assert!(args.iter().all(|a| a.starts_with("--")), "{args:?}");
            assert!(m.models.iter().any(|r| r == rung));
        }
        for conns in [SWEEP_CONNS, LADDER_CONNS] {
            for rate in [SWEEP_FROM, LADDER_HIGH] {
                let w = Workload::OpenLoop { conns, rate };
                let block = m
                    .blocks
                    .iter()
                    .find(|b| b.purpose == Purpose::Timing && b.workloads.contains(&w))
                    .expect("a ladder block");
                let rows = m.rows(block);
                for r in LADDER_ROWS.iter().chain(LADDER_BESIDE) {
                    assert!(rows.contains(r), "{r} at {w:?}");
                }
            }
        }
    }

    #[test]
    fn windows_hold_the_samples_their_percentiles_need() {
        let m = Matrix::standard(Scale::Default);
        assert_eq!(samples_needed(99.9), 10_000);
        assert_eq!(samples_needed(99.0), 1_000);
        for w in m.timing_workloads() {
            let Some(rate) = w.offered_rate() else {
                continue;
            };
            let samples = rate as f64 * m.window_s(&w);
            // Every open-loop window holds p99's samples; up to the longest
            // window, p99.9's too.
            assert!(samples >= samples_needed(99.0) as f64, "{w:?}");
            if (samples_needed(99.9) as f64 / rate as f64) <= m.max_window_s {
                assert!(samples >= samples_needed(99.9) as f64, "{w:?}: {samples}");
            }
        }
        let fixed = Matrix {
            duration_s: Some(2.0),
            ..Matrix::standard(Scale::Default)
        };
        assert_eq!(fixed.window_s(&Workload::Pingpong { conns: 1 }), 2.0);
    }

    #[test]
    fn a_round_runs_every_row_once_in_a_recorded_random_order() {
        let m = Matrix::standard(Scale::Default);
        let block = m
            .blocks
            .iter()
            .find(|b| b.workloads.len() == 2)
            .expect("the idle block");
        let rows = m.rows(block);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let one = shuffled_round(&m, block, &rows, &mut rng);
        let two = shuffled_round(&m, block, &rows, &mut rng);
        assert_eq!(one.len(), rows.len() * 2);
        let mut sorted = one.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), one.len(), "each pair once");
        assert_ne!(one, two, "each round draws its own order");
        // The same seed gives the same order: the order is reproducible.
        let mut again = ChaCha8Rng::seed_from_u64(7);
        assert_eq!(shuffled_round(&m, block, &rows, &mut again), one);
    }

    #[test]
    fn planned_runs_fit_the_budgets() {
        for (scale, budget) in [
            (Scale::Quick, BUDGET_QUICK_S),
            (Scale::Default, BUDGET_DEFAULT_S),
        ] {
            let m = Matrix::standard(scale);
            let (runs, seconds) = m.plan();
            assert!(
                seconds <= budget,
                "{scale:?}: {runs} runs planned at {seconds:.0} s, over the {budget:.0} s budget"
            );
        }
        let m = Matrix::standard(Scale::Default);
        let one = Workload::Pingpong { conns: 1 };
        assert!(
            (m.planned_run_s(&one) - (0.1 + 0.25 + RUN_OVERHEAD_S + CONNECT_COST_S)).abs() < 1e-9
        );
        // The plan counts exactly the runs the blocks and the herd make.
        let (runs, _) = m.plan();
        let blocks: usize = m
            .blocks
            .iter()
            .map(|b| m.rows(b).len() * b.workloads.len() * b.rounds)
            .sum();
        assert_eq!(runs, blocks + m.repeated_rounds() * herd::runs_per_round());
    }

    #[test]
    fn a_rate_every_repeat_fell_short_of_stops_the_sweep() {
        let at = |rate| Workload::OpenLoop { conns: 100, rate };
        let run = |offered: f64, achieved: f64| {
            let mut m: Measurement =
                serde_json::from_str(include_str!("report/testdata/measurement.json"))
                    .expect("fixture");
            m.workload.rate = Some(offered);
            m.rate = achieved;
            m
        };
        let cell = |rate, runs: Vec<Measurement>| {
            let mut c = Cell::new("poll", at(rate), Purpose::Timing);
            for (round, m) in runs.into_iter().enumerate() {
                c.push_run(round, m);
            }
            c
        };
        let cells = vec![
            cell(10_000, vec![run(10e3, 9.99e3), run(10e3, 10e3)]),
            cell(20_000, vec![run(20e3, 15e3), run(20e3, 19.5e3)]),
            cell(40_000, vec![run(40e3, 30e3), run(40e3, 31e3)]),
        ];
        assert_eq!(saturated_below(&cells, "poll", &at(20_000)), None);
        // One repeat at 20k kept up: 40k is still asked for.
        assert_eq!(saturated_below(&cells, "poll", &at(40_000)), None);
        let why = saturated_below(&cells, "poll", &at(80_000)).expect("saturated");
        assert!(why.contains("every repeat at 40000/s"), "{why}");
        assert_eq!(saturated_below(&cells, "epoll:level", &at(80_000)), None);
    }

    #[test]
    fn a_hung_run_is_killed_at_its_timeout_with_its_group() {
        let start = Instant::now();
        // `sh` stands in for `harness run`: it starts a child that would
        // outlive it, and never answers.
        let err = run_child(
            Path::new("/bin/sh"),
            &["-c".into(), "sleep 30 & echo started >&2; sleep 30".into()],
            Duration::from_millis(500),
        )
        .expect_err("must time out");
        assert!(
            err.contains("timed out after") && err.contains("started"),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_failed_run_reports_its_stderr() {
        let err = run_child(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo 'harness: no such model' >&2; exit 1".into(),
            ],
            Duration::from_secs(10),
        )
        .expect_err("must fail");
        assert!(err.contains("no such model"), "{err}");
    }
}
