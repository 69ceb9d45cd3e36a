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
mod matrix;

pub use matrix::*;

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
use crate::spec::{base_row, row, twin_of, OFFERED_SHARE};

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
        Workload::OpenLoop { conns, rate } | Workload::Message { conns, rate, .. } => {
            push("--workload", "pingpong".into());
            push("--conns", conns.to_string());
            push("--rate", rate.to_string());
        }
    }
    push("--size", w.size().unwrap_or(m.size).to_string());
    push("--warmup", m.warmup_s.to_string());
    push("--duration", m.window_for(model, w, purpose).to_string());
    push("--seed", (round + 1).to_string());
    a.push("--json".into());
    if matches!(w, Workload::Connect { .. }) {
        // The matrix compares models, not wake-ups: no trace overhead (the
        // herd runs measure wake-ups, `compare::herd`).
        a.push("--no-wakeups".into());
    }
    match purpose {
        Purpose::Syscalls => a.push("--syscalls".into()),
        Purpose::Profile => a.push("--profile".into()),
        Purpose::Timing => {}
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
    crate::floor::every_cpu(&cpus, WAKEUP_PERIOD, WAKEUPS)
        .into_iter()
        .filter_map(|(cpu, measured)| {
            measured
                .map_err(|e| eprintln!("harness compare: wake-up floor on CPU {cpu}: {e}"))
                .ok()
        })
        .collect()
}

/// A coroutine switch against a thread hand-off, `rounds` times (about
/// 0.1 s each): what "Which model, when?" sets a coroutine's server costs
/// beside.
fn switch_costs(rounds: usize) -> Vec<crate::results::Switching> {
    eprintln!("harness compare: a switch's cost, {rounds} times");
    (0..rounds)
        .filter_map(|_| {
            crate::switching::switching()
                .map_err(|e| eprintln!("harness compare: switch cost not measured: {e}"))
                .ok()
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
    let switching = switch_costs(matrix.repeated_rounds());

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
        switching,
        cell_timeout_s: matrix
            .blocks
            .iter()
            .flat_map(|b| {
                matrix
                    .rows(b)
                    .into_iter()
                    .flat_map(move |row| b.workloads.iter().map(move |w| (row, w, b.purpose)))
            })
            .map(|(row, w, purpose)| matrix.run_timeout_s(row, w, purpose))
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
                    match block.purpose {
                        Purpose::Syscalls => " (syscalls)",
                        Purpose::Profile => " (profile)",
                        Purpose::Timing => "",
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
                let timeout =
                    Duration::from_secs_f64(matrix.run_timeout_s(&model, &w, block.purpose));
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
    let herd_timeout = Duration::from_secs_f64(
        matrix.run_timeout_s("epoll:level", &connect, Purpose::Timing) + 30.0,
    );
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
    use crate::spec::{AA_ROW, STANDARD_MODELS};

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
        // A profile run traces the row's own server over its longer window.
        let m = Matrix::standard(Scale::Default);
        let w = Workload::OpenLoop {
            conns: LADDER_CONNS,
            rate: LADDER_HIGH,
        };
        let text = run_args(&m, crate::spec::URING_BEST, &w, Purpose::Profile, 0).join(" ");
        assert!(
            text.starts_with("run uring:multishot --workload pingpong --conns 1000 --rate 40000"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "--duration {PROFILE_WINDOW_S} --seed 1 --json --profile -- --defer-taskrun"
            )),
            "{text}"
        );
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
