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

use crate::measurement::{wall_clock, Measurement};
use crate::report::{
    self, Cell, CompareResults, Environment, ModelStatus, Purpose, RunFailure, Workload,
};
use crate::server::{self, ModelSpec, Server, ServerConfig};

/// The model:modes of the standard matrix, in report order.
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
    "coroutine:stackful",
    "coroutine:async",
    "peers:tokio",
    "peers:polling",
];

/// Workers given to `blocking:pool` and `blocking:prefork`: each worker
/// serves one connection at a time, so this is how many they serve at once.
pub const POOL_WORKERS: usize = 128;

/// `select` never hands FD_SET a descriptor >= FD_SETSIZE.
const FD_SETSIZE: usize = 1024;
/// Descriptors a server holds besides connections (stdio, listener,
/// signalfd, the spare for EMFILE), with margin.
const FD_RESERVE: usize = 16;

/// Active ping-pong connections beside the idle ones.
const IDLE_ACTIVE: usize = 50;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// A reduced matrix (two ping-pong sizes, connect, two idle counts, one
    /// open-loop rate; one repeat of short windows), in about two minutes.
    #[arg(long)]
    pub quick: bool,
    /// Only these model:modes (comma-separated), e.g. `select,epoll:level`.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Repeats of every cell (default 3; --quick 1).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Timed window of each run, seconds (default 3; --quick 0.3).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before each window, seconds (default 1; --quick 0.1).
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
    /// Workloads measured once more with syscall counting on.
    pub syscall_workloads: Vec<Workload>,
    pub repeats: usize,
    pub size: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
}

impl Matrix {
    /// The standard matrix of issue 5, or its `--quick` reduction.
    pub fn standard(quick: bool) -> Matrix {
        let idle = |idle| Workload::Idle {
            idle,
            active: IDLE_ACTIVE,
        };
        let (workloads, syscall_workloads) = if quick {
            (
                vec![
                    Workload::Pingpong { conns: 1 },
                    Workload::Pingpong { conns: 100 },
                    Workload::Connect { conns: 4 },
                    idle(0),
                    idle(500),
                    Workload::OpenLoop {
                        conns: 10,
                        rate: 2_000,
                    },
                ],
                vec![Workload::Pingpong { conns: 100 }],
            )
        } else {
            (
                vec![
                    Workload::Pingpong { conns: 1 },
                    Workload::Pingpong { conns: 10 },
                    Workload::Pingpong { conns: 100 },
                    Workload::Pingpong { conns: 1000 },
                    Workload::Connect { conns: 4 },
                    // 500: the largest count below select's FD_SETSIZE, so
                    // that its linear cost shows on the same axis.
                    idle(0),
                    idle(500),
                    idle(1000),
                    idle(10_000),
                    Workload::OpenLoop {
                        conns: 50,
                        rate: 1_000,
                    },
                    Workload::OpenLoop {
                        conns: 50,
                        rate: 10_000,
                    },
                    Workload::OpenLoop {
                        conns: 50,
                        rate: 30_000,
                    },
                ],
                vec![
                    Workload::Pingpong { conns: 1 },
                    Workload::Pingpong { conns: 100 },
                ],
            )
        };
        Matrix {
            models: STANDARD_MODELS.iter().map(|s| s.to_string()).collect(),
            workloads,
            syscall_workloads,
            repeats: if quick { 1 } else { 3 },
            size: 64,
            warmup_s: if quick { 0.1 } else { 1.0 },
            duration_s: if quick { 0.3 } else { 3.0 },
        }
    }

    /// Seconds a run of `w` may take before it is killed: the window, plus
    /// time to start and stop the server and to open the connections (a
    /// fork-per-connection server forks once for each).
    pub fn run_timeout_s(&self, w: &Workload) -> f64 {
        self.warmup_s + self.duration_s + 30.0 + w.concurrent_conns() as f64 / 500.0
    }
}

/// Extra server arguments compare passes to a model.
pub fn server_args(model: &str) -> Vec<String> {
    match model {
        "blocking:pool" | "blocking:prefork" => vec!["--workers".into(), POOL_WORKERS.to_string()],
        _ => Vec::new(),
    }
}

/// Why `model` cannot serve `workload` by design, if it cannot.
pub fn limit(model: &str, workload: &Workload) -> Option<String> {
    let held = workload.concurrent_conns();
    // connect: each connection is one request and a close, so a server that
    // serves one connection at a time still serves them all, in turn.
    let holds_connections = !matches!(workload, Workload::Connect { .. });
    match model {
        "blocking:iterative" if holds_connections && held > 1 => Some(format!(
            "iterative serves one connection at a time: {} of the {held} would wait for the first to close",
            held - 1
        )),
        "blocking:pool" | "blocking:prefork" if holds_connections && held > POOL_WORKERS => {
            Some(format!(
                "{POOL_WORKERS} workers serve {POOL_WORKERS} connections at once: {} of the {held} would wait \
                 for one of them to close",
                held - POOL_WORKERS
            ))
        }
        "select" if held + FD_RESERVE > FD_SETSIZE => Some(format!(
            "select can only watch descriptors below FD_SETSIZE ({FD_SETSIZE}): {held} connections need \
             descriptors above it"
        )),
        _ => None,
    }
}

/// The `harness run` arguments of one run.
pub fn run_args(
    m: &Matrix,
    model: &str,
    w: &Workload,
    purpose: Purpose,
    repeat: usize,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), model.into()];
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
        Workload::Idle { idle, active } => {
            push("--workload", "idle".into());
            push("--idle", idle.to_string());
            push("--conns", active.to_string());
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
    let spec: ModelSpec = match model.parse() {
        Ok(s) => s,
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
    let plan = matrix
        .workloads
        .iter()
        .map(|w| (*w, Purpose::Timing, matrix.repeats))
        .chain(
            matrix
                .syscall_workloads
                .iter()
                .map(|w| (*w, Purpose::Syscalls, 1)),
        );
    let plan: Vec<(Workload, Purpose, usize)> = plan.collect();
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
        cell_timeout_s: matrix
            .workloads
            .iter()
            .map(|w| matrix.run_timeout_s(w))
            .fold(0.0, f64::max),
        started_at,
        finished_at: "(in progress)".into(),
        elapsed_s: 0.0,
        environment,
        models: models.clone(),
        workloads: matrix.workloads.clone(),
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
        let results = report::load(path)?;
        let mut written = report::write(&args.out, &results)?;
        written.extend(report::herd::rewrite(&args.out)?);
        eprintln!(
            "harness compare: rewrote {} files in {}",
            written.len(),
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut matrix = Matrix::standard(args.quick);
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
    fn limits_name_the_models_design() {
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
        assert!(limit("blocking:prefork", &pp(1000)).is_some());
        assert_eq!(limit("select", &pp(1000)), None);
        let idle = Workload::Idle {
            idle: 1000,
            active: 50,
        };
        assert!(limit("select", &idle)
            .expect("limited")
            .contains("FD_SETSIZE (1024)"));
        assert_eq!(limit("epoll:edge", &idle), None);
    }

    #[test]
    fn run_args_spell_each_workload_for_harness_run() {
        let m = Matrix::standard(true);
        let a = run_args(
            &m,
            "blocking:pool",
            &Workload::Idle {
                idle: 500,
                active: 50,
            },
            Purpose::Syscalls,
            1,
        );
        let text = a.join(" ");
        assert!(
            text.starts_with("run blocking:pool --workload idle --idle 500 --conns 50 --size 64")
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
    fn every_workload_of_the_matrices_is_unique_and_quick_is_smaller() {
        for quick in [false, true] {
            let m = Matrix::standard(quick);
            let mut seen = m.workloads.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), m.workloads.len());
        }
        let (full, quick) = (Matrix::standard(false), Matrix::standard(true));
        assert!(quick.workloads.len() < full.workloads.len());
        assert!(quick.repeats < full.repeats && full.repeats >= 3);
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
