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

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::check::expect;
use crate::measurement::{wall_clock, Measurement};
use crate::report::{
    self, Cell, CompareResults, CpuTicks, Environment, ModelStatus, Purpose, RunFailure, Workload,
};
use crate::run::OFFERED_SHARE;
use crate::server::{self, ModelSpec, Server, ServerConfig};

/// The model:modes of the standard matrix, in report order. A row
/// `MODEL:MODE+FLAG` is that model:mode run with `--FLAG` (see `row`).
pub const STANDARD_MODELS: &[&str] = &[
    "blocking:iterative",
    "blocking:thread",
    "blocking:pool",
    "blocking:fork",
    "blocking:prefork",
    "nonblocking:spin",
    "nonblocking:sleep",
    "select",
    "poll",
    "epoll:level",
    "epoll:edge",
    "sigio:plain",
    "sigio:rt",
    "uring:single",
    "uring:multishot",
    "uring:multishot+sqpoll",
    "coroutine:stackful",
    "coroutine:async",
    "peers:tokio",
    "peers:polling",
];

/// Workers given to `blocking:pool` and `blocking:prefork`: each worker
/// serves one connection at a time, so this is how many they serve at once.
pub const POOL_WORKERS: usize = 128;

/// Connections of the open-loop sweep and of the idle workloads' active
/// side: enough that a model must multiplex, few enough for every model.
pub const SWEEP_CONNS: usize = 100;

/// The fixed load under which the idle workloads measure what idle
/// connections cost: the sweep's lowest rate, so that the idle-0 point is
/// the sweep's first cell.
pub const IDLE_RATE: u64 = 5_000;

/// What `harness compare` promises to finish within on the lab's 2-CPU
/// machine with `PLANNED_MODELS` model:modes, seconds (issue 11).
pub const BUDGET_DEFAULT_S: f64 = 600.0;
pub const BUDGET_QUICK_S: f64 = 120.0;
/// The model:modes the budgets are planned for (the lab's models, the
/// peers, and room for those being added).
pub const PLANNED_MODELS: usize = 20;

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
/// The phases figure traced after the matrix (`report::phases`; measured:
/// about 2.5 s, rounded up).
const PHASES_S: f64 = 5.0;
/// Starting and stopping each model once before the matrix (`probe`;
/// measured: 1.7 s for the 11 lab model:modes).
const PROBE_S: f64 = 0.2;

/// Which matrix to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// One repeat of a few cells: does the pipeline work (≤ 2 minutes).
    Quick,
    /// The rate sweep (5k-40k/s) and every question at 4 repeats of short windows
    /// (≤ 10 minutes): enough repeats for a rank test to find a difference;
    /// 10 000 idle connections measured once, for their memory.
    Default,
    /// The complete matrix: more rates, counts and repeats, long windows.
    Full,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// A reduced matrix (one repeat of short windows), in about a minute:
    /// shows the pipeline works, supports no finding.
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// The complete matrix (more rates, connection and idle counts, 5
    /// repeats of 3 s windows): most of an hour.
    #[arg(long)]
    pub full: bool,
    /// Only these model:modes (comma-separated), e.g. `select,epoll:level`;
    /// `MODEL:MODE+FLAG` adds `--FLAG` to its server (`uring:multishot+sqpoll`).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Repeats of every cell (default 4; --quick 1; --full 5).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Timed window of each run, seconds (default 0.25; --quick 0.2; --full 3).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before each window, seconds (default 0.1; --full 1).
    #[arg(long)]
    pub warmup: Option<f64>,
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

/// What a compare run will measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub models: Vec<String>,
    pub workloads: Vec<Workload>,
    /// Timing workloads measured in one repeat only: points for figures
    /// that need no rank test (the memory an idle connection holds), where
    /// repeats would not fit the budget.
    pub once: Vec<Workload>,
    /// Workloads measured once more with syscall counting on.
    pub syscall_workloads: Vec<Workload>,
    pub repeats: usize,
    pub size: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
}

impl Matrix {
    /// The standard matrix at `scale`. Open-loop rates are listed in
    /// ascending order: a model that cannot sustain one is not asked for
    /// the next (`saturated_below`).
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
        type Counts = (
            &'static [u64],
            &'static [usize],
            &'static [usize],
            &'static [usize],
        );
        let (rates, pingpong, idles, idles_once): Counts = match scale {
            Scale::Quick => (&[5_000, 20_000], &[100], &[1_000], &[]),
            // Up to 40k/s: in a --quick compare of the 11 lab model:modes
            // on the lab machine no model sustained more than 20k/s, so a
            // rate beyond 40k/s would only cost budget; --full goes on.
            Scale::Default => (
                &[5_000, 10_000, 20_000, 40_000],
                &[100],
                &[1_000],
                &[10_000],
            ),
            // 500: the largest count below select's FD_SETSIZE, so that its
            // linear cost shows on the same axis.
            Scale::Full => (
                &[5_000, 10_000, 20_000, 40_000, 80_000, 160_000],
                &[1, 10, 100, 1000],
                &[100, 500, 1_000, 10_000],
                &[],
            ),
        };
        let syscalls = match scale {
            Scale::Quick => vec![open(5_000)],
            Scale::Default => vec![open(10_000)],
            Scale::Full => vec![open(10_000), pp(1), pp(100)],
        };
        let mut workloads: Vec<Workload> = rates.iter().map(|r| open(*r)).collect();
        workloads.extend(pingpong.iter().map(|c| pp(*c)));
        workloads.push(connect);
        workloads.extend(idles.iter().map(|n| idle(*n)));
        let (repeats, warmup_s, duration_s) = match scale {
            Scale::Quick => (1, 0.1, 0.2),
            Scale::Default => (4, 0.1, 0.25),
            Scale::Full => (5, 1.0, 3.0),
        };
        Matrix {
            models: STANDARD_MODELS.iter().map(|s| s.to_string()).collect(),
            workloads,
            once: idles_once.iter().map(|n| idle(*n)).collect(),
            syscall_workloads: syscalls,
            repeats,
            size: 64,
            warmup_s,
            duration_s,
        }
    }

    /// Seconds a run of `w` may take before it is killed: the window, plus
    /// time to start and stop the server and to open the connections (a
    /// fork-per-connection server forks once for each).
    pub fn run_timeout_s(&self, w: &Workload) -> f64 {
        self.warmup_s + self.duration_s + 30.0 + w.concurrent_conns() as f64 / 500.0
    }

    /// The seconds one run of `w` is planned to take.
    pub fn planned_run_s(&self, w: &Workload) -> f64 {
        self.warmup_s
            + self.duration_s
            + RUN_OVERHEAD_S
            + w.concurrent_conns() as f64 * CONNECT_COST_S
    }

    /// Every (workload, purpose, repeats) the matrix runs, in order: the
    /// timing workloads, those measured once, then the syscall counts.
    pub fn schedule(&self) -> Vec<(Workload, Purpose, usize)> {
        let timing = self
            .workloads
            .iter()
            .map(|w| (*w, Purpose::Timing, self.repeats));
        let once = self.once.iter().map(|w| (*w, Purpose::Timing, 1));
        let syscalls = self
            .syscall_workloads
            .iter()
            .map(|w| (*w, Purpose::Syscalls, 1));
        timing.chain(once).chain(syscalls).collect()
    }

    /// The runs of `models` model:modes at most (before cells a model's
    /// limit or saturation excuses), and their planned seconds, probes, the
    /// herd section's connect runs and the phases traces after the matrix
    /// included.
    pub fn plan(&self, models: usize) -> (usize, f64) {
        let schedule = self.schedule();
        let runs: usize = schedule.iter().map(|(_, _, reps)| reps).sum();
        let seconds: f64 = schedule
            .iter()
            .map(|(w, _, reps)| *reps as f64 * self.planned_run_s(w))
            .sum();
        let herd = self.repeats * report::herd::runs_per_round();
        let herd_s = herd as f64 * self.planned_run_s(&Workload::Connect { conns: 4 });
        (
            models * runs + herd,
            models as f64 * (PROBE_S + seconds) + herd_s + PHASES_S,
        )
    }
}

/// The model:mode a row of the comparison runs and the flags it adds:
/// `uring:multishot+sqpoll` is `uring:multishot` with `--sqpoll`, a row of
/// its own in every table, set beside `uring:multishot` where the report
/// asks what the flag changes.
pub fn row(label: &str) -> Result<(ModelSpec, Vec<String>), String> {
    let mut parts = label.split('+');
    let spec: ModelSpec = parts.next().unwrap_or_default().parse()?;
    let flags = parts
        .map(|flag| {
            let named =
                !flag.is_empty() && flag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if named {
                Ok(format!("--{flag}"))
            } else {
                Err(format!("`{label}`: empty or malformed FLAG after `+`"))
            }
        })
        .collect::<Result<Vec<String>, String>>()?;
    Ok((spec, flags))
}

/// The row a `+FLAG` row is compared with: the label before its first `+`.
pub fn base_row(label: &str) -> Option<&str> {
    label.split_once('+').map(|(base, _)| base)
}

/// Extra server arguments compare passes to a row's model: its workers,
/// then the row's flags.
pub fn server_args(label: &str) -> Vec<String> {
    let base = base_row(label).unwrap_or(label);
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
                report::SATURATED,
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
    repeat: usize,
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
    push("--duration", m.duration_s.to_string());
    push("--seed", (repeat + 1).to_string());
    a.push("--json".into());
    if matches!(w, Workload::Connect { .. }) {
        // The matrix compares models, not wake-ups: no trace overhead (the
        // herd section measures wake-ups, `report::herd`).
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

/// Runs `matrix` and returns everything measured. `command` is recorded.
/// After every run, what was measured so far is written to `partial` (if
/// given), so that an interrupted comparison can still be reported with
/// `--report-from`.
pub fn run_matrix(
    matrix: &Matrix,
    exe: &Path,
    command: String,
    quick: bool,
    partial: Option<&Path>,
) -> CompareResults {
    let started_at = now();
    let t0 = Instant::now();
    let environment = Environment::read();
    let ticks_at_start = CpuTicks::read();
    let (planned_runs, planned_s) = matrix.plan(matrix.models.len());
    eprintln!(
        "harness compare: at most {planned_runs} runs, planned at {planned_s:.0} s \
         (fewer where a model's limit or saturation excuses a cell)"
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

    // Every cell, timing then syscall runs; not-run cells get their reason.
    let mut cells: Vec<Cell> = Vec::new();
    let plan = matrix.schedule();
    for (w, purpose, _) in &plan {
        for model in &runnable {
            let not_run = limit(model, w);
            if let Some(why) = &not_run {
                if *purpose == Purpose::Timing {
                    eprintln!("harness compare: {model} / {}: not run: {why}", w.label());
                }
            }
            cells.push(Cell {
                model: model.to_string(),
                workload: *w,
                purpose: *purpose,
                runs: Vec::new(),
                failures: Vec::new(),
                not_run,
            });
        }
    }
    let total: usize = plan
        .iter()
        .map(|(w, p, reps)| {
            reps * cells
                .iter()
                .filter(|c| c.workload == *w && c.purpose == *p && c.not_run.is_none())
                .count()
        })
        .sum();
    let mut results = CompareResults {
        command,
        quick,
        repeats: matrix.repeats,
        size: matrix.size,
        warmup_s: matrix.warmup_s,
        duration_s: matrix.duration_s,
        cell_timeout_s: plan
            .iter()
            .map(|(w, _, _)| matrix.run_timeout_s(w))
            .fold(0.0, f64::max),
        started_at,
        finished_at: "(in progress)".into(),
        elapsed_s: 0.0,
        environment,
        steal_share: None,
        rendered_by: None,
        models: models.clone(),
        workloads: matrix
            .workloads
            .iter()
            .chain(&matrix.once)
            .copied()
            .collect(),
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
    // ABAB: each repeat runs every model once before the next repeat.
    for (w, purpose, reps) in &plan {
        for repeat in 0..*reps {
            for model in &runnable {
                // The sweep runs its rates in ascending order, so the lower
                // ones are complete when a higher one starts.
                let saturated = (repeat == 0 && *purpose == Purpose::Timing)
                    .then(|| saturated_below(&results.cells, model, w))
                    .flatten();
                let Some(cell) = results
                    .cells
                    .iter_mut()
                    .find(|c| c.model == *model && c.workload == *w && c.purpose == *purpose)
                else {
                    continue;
                };
                if cell.not_run.is_some() {
                    continue;
                }
                if let Some(why) = saturated {
                    eprintln!("harness compare: {model} / {}: not run: {why}", w.label());
                    cell.not_run = Some(why);
                    bar.set_length(bar.length().unwrap_or(0).saturating_sub(*reps as u64));
                    continue;
                }
                let label = format!(
                    "{model} · {}{} · repeat {}/{reps}",
                    w.label(),
                    if *purpose == Purpose::Syscalls {
                        " (syscalls)"
                    } else {
                        ""
                    },
                    repeat + 1
                );
                // Not a terminal (a log, CI): one line per run instead of
                // the bar, which indicatif then hides.
                if bar.is_hidden() {
                    eprintln!("[{}/{total}] {label}", bar.position() + 1);
                }
                bar.set_message(label);
                let args = run_args(matrix, model, w, *purpose, repeat);
                let timeout = Duration::from_secs_f64(matrix.run_timeout_s(w));
                match run_child(exe, &args, timeout) {
                    Ok(m) => cell.runs.push(m),
                    Err(reason) => {
                        let line =
                            format!("{model} / {}: repeat {}: {reason}", w.label(), repeat + 1);
                        if bar.is_hidden() {
                            eprintln!("{line}");
                        } else {
                            bar.println(line);
                        }
                        cell.failures.push(RunFailure { repeat, reason });
                    }
                }
                bar.inc(1);
                if let Some(path) = partial {
                    results.elapsed_s = t0.elapsed().as_secs_f64();
                    if let Err(e) = report::write_json(path, &results) {
                        eprintln!("harness compare: {e}");
                    }
                }
            }
        }
    }
    bar.finish_with_message("done");
    results.steal_share = ticks_at_start
        .zip(CpuTicks::read())
        .and_then(|(a, b)| a.steal_share_until(&b));
    results.finished_at = now();
    results.elapsed_s = t0.elapsed().as_secs_f64();
    results
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

pub fn main(args: CompareArgs) -> io::Result<ExitCode> {
    if let Some(path) = &args.report_from {
        let mut results = report::load(path)?;
        // Stamp the commit that renders, when it is not the one measured.
        let now = report::git_commit();
        if now != results.environment.git_commit {
            results.rendered_by =
                Some(now.unwrap_or_else(|| "unknown (not a git checkout)".into()));
        }
        let mut written = report::write(&args.out, &results)?;
        written.extend(report::herd::rewrite(&args.out)?);
        written.extend(report::phases::write(&args.out, false)?);
        eprintln!(
            "harness compare: rewrote {} files in {}",
            written.len(),
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
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
        matrix.repeats = r.max(1);
    }
    if let Some(d) = args.duration {
        matrix.duration_s = d;
    }
    if let Some(w) = args.warmup {
        matrix.warmup_s = w;
    }
    if args.no_syscalls {
        matrix.syscall_workloads.clear();
    }
    let exe = std::env::current_exe()
        .map_err(|e| io::Error::new(e.kind(), format!("current_exe: {e}")))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", args.out.display())))?;
    let partial = args.out.join("compare.partial.json");
    let results = run_matrix(&matrix, &exe, command_line(), args.quick, Some(&partial));
    let mut written = report::write(&args.out, &results)?;
    let herd_timeout = Duration::from_secs_f64(matrix.warmup_s + matrix.duration_s + 60.0);
    let herd = report::herd::measure(matrix.repeats, matrix.warmup_s, matrix.duration_s, |a| {
        run_child(&exe, a, herd_timeout)
    });
    written.extend(report::herd::write(&args.out, &herd)?);
    written.extend(report::phases::write(&args.out, true)?);
    // Complete now: the partial record would only confuse.
    if let Err(e) = std::fs::remove_file(&partial) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("harness compare: remove {}: {e}", partial.display());
        }
    }
    eprintln!(
        "harness compare: {:.0} s; wrote {}",
        results.elapsed_s,
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
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
    fn every_workload_of_the_matrices_is_unique_and_the_sweep_ascends() {
        for scale in [Scale::Quick, Scale::Default, Scale::Full] {
            let m = Matrix::standard(scale);
            let mut seen: Vec<Workload> = m.workloads.iter().chain(&m.once).copied().collect();
            let all = seen.len();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), all);
            let rates: Vec<u64> = m
                .workloads
                .iter()
                .filter(|w| matches!(w, Workload::OpenLoop { .. }))
                .filter_map(|w| w.offered_rate())
                .collect();
            assert!(rates.windows(2).all(|p| p[0] < p[1]), "{rates:?}");
        }
        let (quick, default, full) = (
            Matrix::standard(Scale::Quick),
            Matrix::standard(Scale::Default),
            Matrix::standard(Scale::Full),
        );
        assert!(quick.workloads.len() < default.workloads.len());
        assert!(default.workloads.len() < full.workloads.len());
        // A rank test at p < 0.05 needs 4 repeats a side.
        assert!(default.repeats >= crate::report::MIN_REPEATS);
        assert!(full.repeats >= 5);
        // The idle-0 point of the idle question is the sweep's first cell.
        assert!(default.workloads.contains(&Workload::OpenLoop {
            conns: SWEEP_CONNS,
            rate: IDLE_RATE
        }));
    }

    #[test]
    fn planned_runs_fit_the_budgets() {
        for (scale, budget) in [
            (Scale::Quick, BUDGET_QUICK_S),
            (Scale::Default, BUDGET_DEFAULT_S),
        ] {
            let m = Matrix::standard(scale);
            assert!(STANDARD_MODELS.len() <= PLANNED_MODELS);
            let (runs, seconds) = m.plan(PLANNED_MODELS);
            // The plan is the sum of its runs' windows and costs.
            let windows = runs as f64 * (m.warmup_s + m.duration_s);
            assert!(seconds >= windows, "{scale:?}: {seconds} < {windows}");
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
        // The plan counts exactly the runs the schedule and the herd make.
        let (runs, _) = m.plan(1);
        assert_eq!(
            runs,
            m.workloads.len() * m.repeats
                + m.once.len()
                + m.syscall_workloads.len()
                + m.repeats * report::herd::runs_per_round()
        );
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
        let cell = |rate, runs| Cell {
            model: "poll".into(),
            workload: at(rate),
            purpose: Purpose::Timing,
            runs,
            failures: vec![],
            not_run: None,
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
