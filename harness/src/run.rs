//! `harness run MODEL[:MODE] --workload pingpong|connect|idle ...`: one
//! measurement of one server.
//!
//! The server is started pinned to its own CPU(s) (on 2 CPUs: server on CPU
//! 1, load on CPU 0), its `listening on` line awaited, perf counters
//! attached to its threads before any client connects; then the load
//! generator connects, warms up, and counts a timed window while
//! `account::Window` reads the server's CPU, context switches, RSS and
//! syscalls over the same window; then SIGTERM, and the server's own exit
//! summary is compared with what the harness saw. With `--target` no server
//! is started and the server-side fields are `n/a`.
//!
//! `measure` is the same thing as a library call, for tests and
//! `harness compare`.

use crate::account::profile::Profiler;
use crate::account::{
    self, landed, AcceptLog, CounterSet, ServerAccount, TreeCounters, WakeCounts, WakeTrace,
    Window, DRAIN_EVERY,
};
use crate::load::{self, sys, LoadReport, LoadSpec};
use crate::measurement::{
    wall_clock, CloseMode, CpuProfile, ExitSummary, Measurement, RateUnit, ServerSide, Wakeups,
    WorkloadKind, WorkloadParams, SCHEMA_VERSION,
};
use crate::server::{describe_status, ModelSpec, Server, ServerConfig};
use crate::spec::OFFERED_SHARE;
use nix::sys::signal::Signal;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum WorkloadArg {
    Pingpong,
    Connect,
    Idle,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CloseArg {
    Rst,
    Fin,
}

/// `harness run`'s arguments; boxed so that the CLI's subcommand enum
/// stays small whichever subcommand has the most options.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: Box<RunOptions>,
}

#[derive(clap::Args, Debug)]
pub struct RunOptions {
    /// MODEL[:MODE], e.g. `epoll:level` (not with --target).
    pub model: Option<String>,
    #[arg(long, value_enum, default_value = "pingpong")]
    pub workload: WorkloadArg,
    /// Ping-pong connections (default 10); connect: connections in flight
    /// at once (default 4); idle: the active ones, as --active.
    #[arg(long)]
    pub conns: Option<usize>,
    /// Request size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=64 << 20))]
    pub size: u64,
    /// Open loop: requests per second over all connections, latency counted
    /// from each request's scheduled time (pingpong and idle).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Idle connections held open (idle workload, default 1000; connect:
    /// beside the new connections and `--busy`, default 0).
    #[arg(long)]
    pub idle: Option<usize>,
    /// Connect workload: this many closed-loop ping-pong connections kept
    /// busy beside it, from before the warm-up to after the window (a
    /// skewed load, with `--idle`: new connections arrive while some loops
    /// are serving and all hold connections).
    #[arg(long)]
    pub busy: Option<usize>,
    /// Active ping-pong connections beside the idle ones (default 50).
    #[arg(long)]
    pub active: Option<usize>,
    /// Timed window, seconds (default 5; --quick 1).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before the window, seconds (default 1; --quick 0.2).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// A connect or reply taking longer counts as a timeout, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// How each connect-workload connection is closed.
    #[arg(long, value_enum, default_value = "rst")]
    pub close: CloseArg,
    /// Measure a server already running at HOST:PORT instead of starting one.
    #[arg(long)]
    pub target: Option<String>,
    /// Allow a --target outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    pub allow_remote: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Short durations (0.2 s warm-up, 1 s window) unless given.
    #[arg(long)]
    pub quick: bool,
    /// Count the server's syscalls by name (perf tracepoints: every syscall
    /// of the server takes the slow path, so its CPU figures rise a little).
    #[arg(long)]
    pub syscalls: bool,
    /// Where the server's CPU goes in the window, per request: user time,
    /// kernel time on a CPU inside each system call, kernel time outside
    /// calls, io_uring's kernel threads (`account::profile`: ftrace, needs
    /// root; the tracing slows the server, so these are shares).
    #[arg(long)]
    pub profile: bool,
    /// Connect workload: do not trace the server's wake-ups (on by default:
    /// its tracepoints put the server's syscalls on the slow path too).
    #[arg(long)]
    pub no_wakeups: bool,
    /// CPUs for the load threads, one thread each (e.g. `0` or `0,1`).
    #[arg(long, value_delimiter = ',')]
    pub load_cpus: Option<Vec<usize>>,
    /// CPUs the server is pinned to.
    #[arg(long, value_delimiter = ',')]
    pub server_cpus: Option<Vec<usize>>,
    /// Seed of the request payloads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timer slack of the load threads, ns (`PR_SET_TIMERSLACK`; the
    /// kernel's default is 50 000: timers may fire that much late).
    #[arg(long, default_value_t = load::sys::TIMER_SLACK_NS)]
    pub timer_slack_ns: u64,
    /// Extra arguments for the server, after `--`.
    #[arg(last = true)]
    pub server_args: Vec<String>,
}

/// Which server to measure.
#[derive(Debug, Clone)]
pub enum ServerChoice {
    /// This binary, with `--mode MODE` if given (a test passes
    /// `env!("CARGO_BIN_EXE_epoll")`).
    Binary { path: PathBuf, mode: Option<String> },
    /// The model's binary next to the harness' own, built if missing.
    Model(ModelSpec),
    /// A server already running; nothing is started.
    Target(SocketAddr),
}

impl ServerChoice {
    pub fn binary(path: impl Into<PathBuf>, mode: Option<&str>) -> ServerChoice {
        ServerChoice::Binary {
            path: path.into(),
            mode: mode.map(str::to_owned),
        }
    }

    /// `model[:mode]` as recorded in the measurement.
    pub fn label(&self) -> String {
        match self {
            ServerChoice::Binary { path, mode } => {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                match mode {
                    Some(m) => format!("{name}:{m}"),
                    None => name,
                }
            }
            ServerChoice::Model(spec) => spec.to_string(),
            ServerChoice::Target(_) => "target".into(),
        }
    }
}

/// One measurement to take.
#[derive(Debug, Clone)]
pub struct MeasureSpec {
    pub server: ServerChoice,
    /// Extra server arguments (after `--addr` and `--mode`).
    pub server_args: Vec<String>,
    pub kind: WorkloadKind,
    pub conns: usize,
    pub size: usize,
    pub rate: Option<f64>,
    /// Idle connections: of the idle workload, or beside a connect workload.
    pub idle: usize,
    /// Busy ping-pong connections beside a connect workload (0: none).
    pub busy: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    pub close: CloseMode,
    /// `None`: the default split (see `default_cpus`).
    pub load_cpus: Option<Vec<usize>>,
    pub server_cpus: Option<Vec<usize>>,
    pub count_syscalls: bool,
    /// Split the server's CPU into its parts (`account::profile`).
    pub profile: bool,
    /// Connect workload: trace the accept path's wake-ups (`Wakeups`).
    pub count_wakeups: bool,
    pub allow_remote: bool,
    pub seed: u64,
    /// Timer slack of the load threads, ns.
    pub timer_slack_ns: u64,
}

impl MeasureSpec {
    /// A short measurement (0.2 s warm-up, 0.5 s window, 10 connections; idle:
    /// 100 idle + 10 active) for smoke tests: enough to exercise every
    /// field, too short to compare anything with.
    pub fn quick(server: ServerChoice, kind: WorkloadKind) -> MeasureSpec {
        MeasureSpec {
            server,
            server_args: Vec::new(),
            kind,
            conns: 10,
            size: 64,
            rate: None,
            idle: if kind == WorkloadKind::Idle { 100 } else { 0 },
            busy: 0,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            close: CloseMode::Rst,
            load_cpus: None,
            server_cpus: None,
            count_syscalls: true,
            profile: false,
            count_wakeups: kind == WorkloadKind::Connect,
            allow_remote: false,
            seed: 1,
            timer_slack_ns: load::sys::TIMER_SLACK_NS,
        }
    }
}

/// The default CPU split: the load gets the first half of the CPUs this
/// process may use (at least one), the server the rest. On one CPU they
/// share it (and the measurement says so).
pub fn default_cpus(allowed: &[usize]) -> (Vec<usize>, Vec<usize>) {
    if allowed.len() < 2 {
        return (allowed.to_vec(), allowed.to_vec());
    }
    let load = (allowed.len() / 2).max(1);
    (allowed[..load].to_vec(), allowed[load..].to_vec())
}

/// Restores the calling thread's CPU mask when the measurement ends, even
/// on an error path (`measure` pins the caller to the load CPUs meanwhile so
/// that it and the RSS sampler it spawns stay off the server's CPUs).
struct AffinityGuard(Vec<usize>);

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        let _ = sys::pin_current_thread(&self.0);
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Takes one measurement: each step below is one function, in this order.
pub fn measure(spec: &MeasureSpec) -> io::Result<Measurement> {
    let allowed = sys::allowed_cpus()?;
    let cpus = CpuPlan::for_spec(spec, &allowed);
    let mut notes = cpus.notes();
    // Before the server starts, so that it inherits the raised limit too.
    sys::raise_nofile_limit()?;
    let mut server = start_server(spec, &cpus.server)?;
    let target = match (&spec.server, &server) {
        (ServerChoice::Target(a), _) => *a,
        (_, Some(s)) => s.addr(),
        (_, None) => unreachable!("a server is started unless there is a target"),
    };
    load::check_target(&target, spec.allow_remote)?;

    let _restore = AffinityGuard(allowed.clone());
    sys::pin_current_thread(&cpus.load)?;
    // Attached before any client connects: threads the server creates later
    // inherit the counters.
    let counters = server
        .as_ref()
        .map(|s| TreeCounters::attach(s.pid(), &counter_set(spec)));
    // Before the load too: setting the trace up takes longer than a short
    // warm-up, and would then eat into the window.
    let profiler = server
        .as_ref()
        .filter(|_| spec.profile)
        .map(|s| Profiler::prepare(s.pid()));

    let busy = start_busy(spec, target, &cpus.load)?;
    let running = load::start(load_spec(spec, target, &cpus.load))?;
    // During the warm-up, and within half of it so that the window's
    // accounting still begins on time: which loops serve the busy connections.
    let busy_loops = match &server {
        Some(s) if spec.busy > 0 && spec.count_wakeups => {
            Some(landed::busy_loops(s.pid(), spec.busy, spec.warmup / 2))
        }
        _ => None,
    };
    let (account, wakes, profiled) = match (&server, &counters) {
        (Some(s), Some(c)) => {
            // The connect workload's wake-ups, replayed in order (see `Wakeups`).
            let trace = spec.count_wakeups;
            let (account, wakes, profiled) =
                account_window(s.pid(), c, trace, profiler, &running.timeline);
            (Some(account), wakes, profiled)
        }
        _ => (None, None, None),
    };
    let report = running.join()?;
    if !busy.is_empty() {
        let side: Vec<LoadReport> = busy
            .into_iter()
            .map(load::Running::join)
            .collect::<io::Result<_>>()?;
        notes.push(side_load_note(spec, &side));
    }

    let side = match &mut server {
        None => ServerSide {
            na_reason: Some(
                "--target: the server was not started by the harness, its process is not known"
                    .into(),
            ),
            ..ServerSide::default()
        },
        Some(s) => {
            let mut side = stop_server(s, &mut notes)?;
            match account {
                Some(Ok(acc)) => {
                    fill_server_side(&mut side, &acc, &report, spec.count_syscalls, &mut notes);
                    let (counts, log) = match wakes {
                        Some(Ok((counts, log))) => (Some(Ok(counts)), Some(log)),
                        Some(Err(e)) => (Some(Err(e)), None),
                        None => (None, None),
                    };
                    side.wakeups = acc
                        .syscall_returns
                        .as_ref()
                        .and_then(|returns| Wakeups::from_returns(returns, counts));
                    if let Some(log) = log.filter(|_| !report.spans.is_empty()) {
                        let (busy, reason) = match &busy_loops {
                            Some(Ok(tids)) => (&tids[..], None),
                            Some(Err(e)) => (&[][..], Some(e.clone())),
                            None => (&[][..], None),
                        };
                        let mut landed = landed::attribute(&report.spans, &log, busy)?;
                        landed.busy_na_reason = reason;
                        side.landed = Some(landed);
                    }
                }
                Some(Err(e)) => side.na_reason = Some(format!("server accounting failed: {e}")),
                None => side.na_reason = Some("server accounting did not run".into()),
            }
            match profiled {
                Some(Ok(mut p)) => {
                    p.requests = report.requests as f64 / report.window.as_secs_f64() * p.window_s;
                    side.profile = Some(p);
                }
                Some(Err(e)) => side.profile_na_reason = Some(format!("--profile: {e}")),
                None if spec.profile => {
                    side.profile_na_reason = Some("--profile: the window was not read".into())
                }
                None => {}
            }
            side
        }
    };
    Ok(assemble(
        spec,
        target,
        cpus.load,
        cpus.server,
        report,
        side,
        notes,
    ))
}

/// Which CPUs the load and the server run on.
struct CpuPlan {
    load: Vec<usize>,
    /// Empty with `--target`: that server is not ours to pin.
    server: Vec<usize>,
}

impl CpuPlan {
    /// The spec's CPUs, or the default split of those `allowed`.
    fn for_spec(spec: &MeasureSpec, allowed: &[usize]) -> CpuPlan {
        let (def_load, def_server) = default_cpus(allowed);
        let load = spec.load_cpus.clone().unwrap_or(def_load);
        let server = match spec.server {
            ServerChoice::Target(_) => Vec::new(),
            _ => spec.server_cpus.clone().unwrap_or(def_server),
        };
        CpuPlan { load, server }
    }

    /// What the measurement must say about this plan.
    fn notes(&self) -> Vec<String> {
        let (load, server) = (&self.load, &self.server);
        if load.iter().any(|c| server.contains(c)) {
            vec![format!(
                "load (CPUs {load:?}) and server (CPUs {server:?}) share a CPU: \
                 each one's time includes waiting for the other"
            )]
        } else {
            Vec::new()
        }
    }
}

/// Starts the server the spec names, pinned to `cpus`, and waits for its
/// `listening on` line; `None` with `--target`.
fn start_server(spec: &MeasureSpec, cpus: &[usize]) -> io::Result<Option<Server>> {
    let config = match &spec.server {
        ServerChoice::Target(_) => return Ok(None),
        ServerChoice::Binary { path, mode } => ServerConfig::new(path.clone())
            .mode(mode.clone())
            .args(spec.server_args.iter().cloned()),
        ServerChoice::Model(m) => ServerConfig::for_spec(m, &spec.server_args)?,
    };
    Server::start(&config.pin(cpus.to_vec())).map(Some)
}

/// What the perf counters count: syscalls by name only if asked (their
/// tracepoints slow every syscall of the server). Counting wake-ups adds
/// the accept path's syscall returns (`Wakeups`): filtered tracepoints,
/// which put the server's syscalls on the same slow path, so its CPU
/// figures rise a little there too.
fn counter_set(spec: &MeasureSpec) -> CounterSet {
    let set = if spec.count_syscalls {
        CounterSet::standard()
    } else {
        CounterSet::cpu_only()
    };
    if spec.count_wakeups {
        set.with_herd_returns()
    } else {
        set
    }
}

/// The load generator's part of the spec.
fn load_spec(spec: &MeasureSpec, target: SocketAddr, cpus: &[usize]) -> LoadSpec {
    LoadSpec {
        target,
        kind: spec.kind,
        conns: spec.conns,
        size: spec.size,
        rate: spec.rate,
        // A connect workload's idle connections belong to the side load.
        idle: if spec.kind == WorkloadKind::Connect {
            0
        } else {
            spec.idle
        },
        warmup: spec.warmup,
        duration: spec.duration,
        timeout: spec.timeout,
        close: spec.close,
        cpus: cpus.to_vec(),
        seed: spec.seed,
        allow_remote: spec.allow_remote,
        timer_slack_ns: spec.timer_slack_ns,
    }
}

/// `--busy N --idle M` beside a connect workload, made before the main
/// load and kept until after its window, on the same CPUs: first N
/// closed-loop ping-pong connections (`load::start` returns once they are
/// connected, so the server accepts them before any other and they hold
/// its lowest connection descriptors: `landed::busy_loops` relies on it),
/// then M idle ones (answered once, then held open).
fn start_busy(
    spec: &MeasureSpec,
    target: SocketAddr,
    cpus: &[usize],
) -> io::Result<Vec<load::Running>> {
    let mut side = Vec::new();
    if spec.kind != WorkloadKind::Connect {
        return Ok(side);
    }
    let base = LoadSpec {
        rate: None,
        warmup: Duration::ZERO,
        // Past the main window's end, whatever the main load's start-up took.
        duration: spec.warmup + spec.duration + Duration::from_secs(1),
        ..load_spec(spec, target, cpus)
    };
    if spec.busy > 0 {
        side.push(load::start(LoadSpec {
            kind: WorkloadKind::Pingpong,
            conns: spec.busy,
            idle: 0,
            ..base.clone()
        })?);
    }
    if spec.idle > 0 {
        side.push(load::start(LoadSpec {
            kind: WorkloadKind::Idle,
            conns: 0,
            idle: spec.idle,
            ..base
        })?);
    }
    Ok(side)
}

/// What the side loads of `start_busy` did, for the notes: a busy
/// connection that failed or an idle one the server dropped changes the skew.
fn side_load_note(spec: &MeasureSpec, side: &[LoadReport]) -> String {
    let requests: u64 = side.iter().map(|r| r.requests).sum();
    let errors: u64 = side.iter().map(|r| r.errors.total()).sum();
    let window = side.first().map_or(1.0, |r| r.window.as_secs_f64());
    let idle = side.iter().find_map(|r| r.idle.clone()).unwrap_or_default();
    format!(
        "beside it, {} busy ping-pong connections ({:.0} requests/s) and {} idle ones ({} \
         answered before the window, {} dropped by the server); {errors} errors among them",
        spec.busy,
        requests as f64 / window,
        spec.idle,
        idle.served,
        idle.dropped()
    )
}

/// The wake-up trace's counts and accept log, or why it failed; `None` if
/// it did not run.
type TracedWakes = Option<Result<(WakeCounts, AcceptLog), String>>;

/// Reads the server's tree over the load's timed window: sleeps until it
/// begins, snapshots, sleeps until it ends (with `trace`, tracing the
/// wake-ups meanwhile; with a `profiler`, tracing its calls and switches),
/// snapshots again.
fn account_window(
    pid: i32,
    counters: &Result<TreeCounters, String>,
    trace: bool,
    profiler: Option<io::Result<Profiler>>,
    timeline: &load::Timeline,
) -> (
    io::Result<ServerAccount>,
    TracedWakes,
    Option<io::Result<CpuProfile>>,
) {
    sleep_until(timeline.window_start);
    let began = Instant::now();
    let window = match Window::begin(pid, counters, Duration::from_millis(50)) {
        Ok(w) => w,
        Err(e) => return (Err(e), None, None),
    };
    // Reading the tree reads each process at its own instant, one after
    // another: for thousands of processes (a fork server's idle children)
    // that takes a second or more. The second read therefore starts as long
    // before the load's window ends as the first took, so that every
    // process is read twice one server window apart, both times while the
    // load still runs; read after the load stopped, the processes read last
    // would show CPU the load never paid for, and those read first none.
    let read = began.elapsed();
    let load_window = timeline.window_end - timeline.window_start;
    if let Err(e) = tree_read_fits(read, load_window) {
        drop(window.end());
        return (Err(e), None, None);
    }
    let profiler = profiler.map(|p| p.and_then(|mut p| p.begin().map(|()| p)));
    let second_read = timeline.window_end - read;
    let wakes = trace.then(|| {
        let mut trace = WakeTrace::attach(pid)?;
        while Instant::now() < timeline.window_end {
            std::thread::sleep(DRAIN_EVERY.min(timeline.window_end - Instant::now()));
            trace.drain();
        }
        trace.finish_with_log().map_err(|e| e.to_string())
    });
    sleep_until(second_read);
    let profiler = profiler.map(|p| p.and_then(|mut p| p.stop().map(|()| p)));
    let account = window.end().map(|mut acc| {
        if read * 10 > load_window {
            acc.notes.push(format!(
                "reading the server's {} processes took {:.0} ms: its window is the load's \
                 {:.0} ms less that, read twice per process one server window apart",
                acc.processes,
                read.as_secs_f64() * 1e3,
                load_window.as_secs_f64() * 1e3
            ));
        }
        acc
    });
    let profiled = profiler.map(|p| p.and_then(Profiler::finish));
    (account, wakes, profiled)
}

/// A server window shorter than half the load's is refused: what is left
/// of it would be mostly the read's own spread.
fn tree_read_fits(read: Duration, load_window: Duration) -> io::Result<()> {
    if read * 2 > load_window {
        return Err(io::Error::other(format!(
            "reading the server's process tree took {:.0} ms, more than half of the \
             {:.0} ms window: its CPU and switches in the window cannot be told apart \
             from the read's spread (lengthen --duration)",
            read.as_secs_f64() * 1e3,
            load_window.as_secs_f64() * 1e3
        )));
    }
    Ok(())
}

/// Stops the server with SIGTERM (SIGKILL after 2 s) and copies what it
/// said on the way out: its exit summary, checked against the harness' own
/// view of its CPU, and what went wrong (in `notes`).
fn stop_server(server: &mut Server, notes: &mut Vec<String>) -> io::Result<ServerSide> {
    let mut side = ServerSide {
        pid: Some(server.pid() as u32),
        ..ServerSide::default()
    };
    let alive = server.is_alive();
    // The whole-run CPU as /proc sees it, just before SIGTERM, to compare
    // with the server's own summary.
    let whole_run = account::Snapshot::take(server.pid()).map(|snap| snap.cpu_s());
    let stopped = server.stop(Signal::SIGTERM, Duration::from_secs(2))?;
    if !alive {
        notes.push(format!(
            "the server exited during the measurement ({}); stderr: {}",
            describe_status(&stopped.status),
            last_lines(&stopped.stderr, 5)
        ));
    }
    if stopped.timed_out {
        notes.push("the server did not exit within 2 s of SIGTERM and was killed".into());
    }
    if !stopped.leftovers.is_empty() {
        notes.push(format!(
            "processes left behind by the server: {:?}",
            stopped.leftovers
        ));
    }
    match &stopped.summary {
        Ok(Some(sum)) => {
            side.exit_summary = Some(ExitSummary {
                model: sum.model.clone(),
                connections: sum.connections,
                bytes: sum.bytes,
                user_s: sum.user_s,
                sys_s: sum.sys_s,
                per_loop: sum.per_loop.clone(),
            });
            if let Ok(h) = whole_run {
                side.summary_agreement = Some(account::cpu_agreement_reaped(
                    h,
                    stopped.reaped_cpu_s,
                    sum.user_s,
                    sum.sys_s,
                ));
            }
        }
        Ok(None) => notes.push("the server printed no summary line".into()),
        Err(e) => notes.push(format!("server summary: {e}")),
    }
    Ok(side)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Per-request figures. The server's window (`acc.window_s`) is read a few
/// hundred microseconds after the client's, so its counts are divided by the
/// requests the client completed per second times the server's own window,
/// not by the raw count.
fn fill_server_side(
    side: &mut ServerSide,
    acc: &ServerAccount,
    report: &LoadReport,
    counted_syscalls: bool,
    notes: &mut Vec<String>,
) {
    side.user_s = Some(acc.user_s);
    side.sys_s = Some(acc.sys_s);
    side.cpu_s = Some(acc.server_cpu_s());
    side.cpu_source = Some("process CPU-time clocks (clock_gettime)".into());
    side.io_uring_threads_cpu_s = acc.io_uring_threads_cpu_s;
    side.ctx_voluntary = Some(acc.voluntary_switches);
    side.ctx_involuntary = Some(acc.involuntary_switches);
    side.peak_rss_kib = Some(acc.peak_rss_bytes / 1024);
    let rate = report.requests as f64 / report.window.as_secs_f64();
    let served = rate * acc.window_s;
    if let Some(per) = acc.per_request(served) {
        side.cpu_per_request_us = Some(per.server_cpu_us);
        side.ctx_voluntary_per_request = Some(per.voluntary_switches);
        side.ctx_involuntary_per_request = Some(per.involuntary_switches);
        side.syscalls_per_request = per.syscalls;
    }
    side.syscalls_na_reason = if !counted_syscalls {
        Some("not counted (--syscalls: tracepoints slow every server syscall)".into())
    } else if served <= 0.0 {
        Some("no request completed".into())
    } else {
        acc.syscalls_unavailable.clone()
    };
    if let Some(p) = &acc.perf_unavailable {
        notes.push(format!(
            "perf counters unavailable ({p}): CPU from /proc clock ticks"
        ));
    }
    notes.extend(acc.notes.iter().cloned());
}

fn assemble(
    spec: &MeasureSpec,
    target: SocketAddr,
    load_cpus: Vec<usize>,
    server_cpus: Vec<usize>,
    r: LoadReport,
    server: ServerSide,
    mut notes: Vec<String>,
) -> Measurement {
    let (ms, stamp) = wall_clock(r.window_started);
    let window_s = r.window.as_secs_f64();
    let rate = r.requests as f64 / window_s;
    if let Some(note) = spec
        .rate
        .and_then(|offered| shortfall_note(offered, rate, r.openloop_missed))
    {
        notes.push(note);
    }
    Measurement {
        schema: SCHEMA_VERSION,
        model: spec.server.label(),
        target: target.to_string(),
        workload: WorkloadParams {
            kind: spec.kind,
            conns: spec.conns,
            size: spec.size,
            rate: spec.rate,
            idle: spec.idle,
            busy: spec.busy,
            warmup_s: spec.warmup.as_secs_f64(),
            duration_s: spec.duration.as_secs_f64(),
            timeout_s: spec.timeout.as_secs_f64(),
            close: spec.close,
            load_cpus,
            server_cpus,
            server_args: spec.server_args.clone(),
            timer_slack_ns: Some(r.timer_slack_ns),
        },
        started_at: stamp,
        started_unix_ms: ms,
        window_s,
        requests: r.requests,
        rate,
        rate_unit: if spec.kind == WorkloadKind::Connect {
            RateUnit::ConnectionsPerSec
        } else {
            RateUnit::RequestsPerSec
        },
        latency: r.latency,
        openloop_missed: r.openloop_missed,
        errors: r.errors,
        bytes_verified: r.bytes_verified,
        client: r.client,
        server,
        idle: r.idle,
        connect: r.connect,
        notes,
    }
}

/// The note an open-loop run carries when it did not reach the rate asked.
fn shortfall_note(offered: f64, achieved: f64, missed: Option<u64>) -> Option<String> {
    if achieved >= offered * OFFERED_SHARE {
        return None;
    }
    let missed = missed.map_or(String::new(), |m| {
        format!(" ({m} requests due by the window's end were not answered by then)")
    });
    Some(format!(
        "offered {offered:.0}/s, achieved {achieved:.0}/s: the server (or client) could not \
         keep up{missed}; latencies beyond the window are lower bounds"
    ))
}

fn secs(name: &str, v: f64) -> io::Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--{name} {v}: not a duration in seconds"),
        )
    })
}

fn resolve_target(text: &str) -> io::Result<SocketAddr> {
    text.to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("--target {text}: {e}")))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("--target {text}: no address"),
            )
        })
}

/// The `MeasureSpec` a command line asks for.
pub fn spec_from_args(a: &RunOptions) -> io::Result<MeasureSpec> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let server = match (&a.model, &a.target) {
        (Some(_), Some(_)) => return Err(bad("give MODEL[:MODE] or --target, not both".into())),
        (None, None) => {
            return Err(bad(
                "give MODEL[:MODE] (e.g. epoll:level) or --target HOST:PORT".into(),
            ))
        }
        (Some(m), None) => ServerChoice::Model(m.parse().map_err(bad)?),
        (None, Some(t)) => ServerChoice::Target(resolve_target(t)?),
    };
    let kind = match a.workload {
        WorkloadArg::Pingpong => WorkloadKind::Pingpong,
        WorkloadArg::Connect => WorkloadKind::Connect,
        WorkloadArg::Idle => WorkloadKind::Idle,
    };
    if kind != WorkloadKind::Idle && a.active.is_some() {
        return Err(bad("--active belongs to --workload idle".into()));
    }
    if kind == WorkloadKind::Pingpong && a.idle.is_some() {
        return Err(bad(
            "--idle belongs to --workload idle or connect (beside --busy)".into(),
        ));
    }
    if kind != WorkloadKind::Connect && a.busy.is_some() {
        return Err(bad("--busy belongs to --workload connect".into()));
    }
    if a.conns.is_some() && a.active.is_some() {
        return Err(bad(
            "--conns and --active mean the same for idle: give one".into()
        ));
    }
    let conns = a.conns.or(a.active).unwrap_or(match kind {
        WorkloadKind::Pingpong => 10,
        WorkloadKind::Connect => 4,
        WorkloadKind::Idle => 50,
    });
    let (warmup, duration) = if a.quick { (0.2, 1.0) } else { (1.0, 5.0) };
    Ok(MeasureSpec {
        server,
        server_args: a.server_args.clone(),
        kind,
        conns,
        size: a.size as usize,
        rate: a.rate,
        idle: match kind {
            WorkloadKind::Idle => a.idle.unwrap_or(1000),
            WorkloadKind::Connect => a.idle.unwrap_or(0),
            WorkloadKind::Pingpong => 0,
        },
        busy: a.busy.unwrap_or(0),
        warmup: secs("warmup", a.warmup.unwrap_or(warmup))?,
        duration: secs("duration", a.duration.unwrap_or(duration))?,
        timeout: secs("timeout", a.timeout)?,
        close: match a.close {
            CloseArg::Rst => CloseMode::Rst,
            CloseArg::Fin => CloseMode::Fin,
        },
        load_cpus: a.load_cpus.clone(),
        server_cpus: a.server_cpus.clone(),
        count_syscalls: a.syscalls,
        profile: a.profile,
        count_wakeups: kind == WorkloadKind::Connect && !a.no_wakeups,
        allow_remote: a.allow_remote,
        seed: a.seed,
        timer_slack_ns: a.timer_slack_ns,
    })
}

/// `harness run`: the measurement the arguments ask for (`main.rs` prints
/// it, as JSON or as `report::run_table`).
pub fn main(args: RunArgs) -> io::Result<Measurement> {
    let spec = spec_from_args(&args.opts)?;
    measure(&spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_shortfall_is_noted_below_95_percent_only() {
        assert_eq!(shortfall_note(1000.0, 960.0, Some(3)), None);
        let n = shortfall_note(400_000.0, 175_000.0, Some(550_000)).unwrap();
        assert!(n.contains("offered 400000/s, achieved 175000/s"), "{n}");
        assert!(n.contains("550000 requests due by the window"), "{n}");
        assert!(n.contains("lower bounds"), "{n}");
    }

    #[test]
    fn a_tree_read_longer_than_half_the_window_is_refused() {
        let ms = Duration::from_millis;
        assert!(tree_read_fits(ms(40), ms(250)).is_ok());
        assert!(tree_read_fits(ms(125), ms(250)).is_ok());
        let e = tree_read_fits(ms(1000), ms(250)).unwrap_err().to_string();
        assert!(e.contains("1000 ms") && e.contains("250 ms"), "{e}");
    }

    #[test]
    fn default_cpu_split_keeps_load_and_server_apart() {
        assert_eq!(default_cpus(&[0, 1]), (vec![0], vec![1]));
        assert_eq!(default_cpus(&[0, 1, 2, 3]), (vec![0, 1], vec![2, 3]));
        assert_eq!(default_cpus(&[4, 6, 9]), (vec![4], vec![6, 9]));
        assert_eq!(default_cpus(&[3]), (vec![3], vec![3]));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> io::Result<MeasureSpec> {
        use clap::Parser;
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        spec_from_args(&cli.run.opts)
    }

    #[test]
    fn command_lines_become_the_spec_they_say() {
        let s = parse(&[
            "epoll:edge",
            "--conns",
            "100",
            "--quick",
            "--",
            "--workers",
            "2",
        ])
        .unwrap();
        assert_eq!(s.server.label(), "epoll:edge");
        assert_eq!(
            (s.kind, s.conns, s.size, s.idle),
            (WorkloadKind::Pingpong, 100, 64, 0)
        );
        assert_eq!(
            (s.warmup, s.duration),
            (Duration::from_millis(200), Duration::from_secs(1))
        );
        assert_eq!(s.server_args, ["--workers", "2"]);
        assert!(!s.count_syscalls);

        let s = parse(&[
            "select",
            "--workload",
            "idle",
            "--idle",
            "1500",
            "--active",
            "10",
        ])
        .unwrap();
        assert_eq!((s.kind, s.idle, s.conns), (WorkloadKind::Idle, 1500, 10));
        let s = parse(&["poll", "--workload", "idle"]).unwrap();
        assert_eq!((s.idle, s.conns), (1000, 50));

        let s = parse(&[
            "--target",
            "127.0.0.1:7",
            "--workload",
            "connect",
            "--close",
            "fin",
        ])
        .unwrap();
        assert!(matches!(s.server, ServerChoice::Target(a) if a.port() == 7));
        assert_eq!((s.close, s.conns), (CloseMode::Fin, 4));

        let s = parse(&[
            "epoll",
            "--workload",
            "connect",
            "--busy",
            "2",
            "--idle",
            "200",
        ])
        .unwrap();
        assert_eq!(
            (s.kind, s.conns, s.busy, s.idle),
            (WorkloadKind::Connect, 4, 2, 200)
        );
    }

    #[test]
    fn contradictory_command_lines_are_refused() {
        for bad in [
            &["epoll", "--target", "127.0.0.1:7"][..],
            &[][..],
            &["epoll", "--idle", "10"][..],
            &["epoll", "--busy", "2"][..],
            &["epoll", "--workload", "connect", "--active", "2"][..],
            &[
                "epoll",
                "--workload",
                "idle",
                "--conns",
                "1",
                "--active",
                "2",
            ][..],
            &["epoll", "--duration", "-1"][..],
            &["epoll", "--size", "0"][..],
            &["epoll:", "--quick"][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels_name_model_and_mode() {
        assert_eq!(
            ServerChoice::binary("/x/target/release/epoll", Some("edge")).label(),
            "epoll:edge"
        );
        assert_eq!(
            ServerChoice::binary("/x/blocking", None).label(),
            "blocking"
        );
        assert_eq!(
            ServerChoice::Target("127.0.0.1:1".parse().unwrap()).label(),
            "target"
        );
    }
}
