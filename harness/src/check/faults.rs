//! `harness check --faults MODEL[:MODE]`: the kernel's rarer answers,
//! injected (issue 9). The server runs under
//! `strace -f --seccomp-bpf -e trace=CALL -e inject=CALL:error=ERRNO:when=FIRST+STEP`:
//! at CALL's FIRST invocation and every STEP-th after it, the kernel does
//! not execute CALL and ERRNO is returned in its place, exactly as if the
//! kernel had failed it. Under each fault the echo, random-8MiB,
//! concurrent-200 and half-close cases (the suite's own, in `cases`) must
//! pass byte for byte, and the server must stay alive and answering.
//!
//! Which calls a model makes is not listed by hand. A discovery run traces
//! every candidate of each [`Family`] without injecting anything, runs the
//! same cases, and counts each thread's calls before the `listening on` line
//! (start-up) and after it. Every call made past start-up gets its faults:
//! - `accept4` (or `accept`): `ENOBUFS`, `ENOMEM`, `EPROTO`, `EPERM`,
//!   `ECONNABORTED`, `EINTR`. Required: a model that makes no accept call
//!   needs an entry in [`super::expect::FAULT_TABLE`] saying why.
//! - every read, write and wait call: `EINTR`.
//! - `clone`, `clone3`, `fork`, `vfork`: `EAGAIN`. The connection that gets
//!   no thread or process must be closed before any reply byte (EOF or a
//!   reset, never a wrong byte), at most one per injection, and every other
//!   connection served.
//!
//! A family the model never calls past start-up is N/A, and the line says
//! so; so is a read, write or wait call seen fewer than
//! [`INCIDENTAL_BELOW`] times, with its count (not the request path). strace counts invocations per thread, so FIRST is one past the
//! busiest thread's start-up calls, and STEP spreads about [`FIRES`]
//! injections over the busiest thread's calls during the cases. strace
//! marks each injection `(INJECTED)` in its trace; the report gives the
//! count, and a fault that never fired is a FAIL, not a pass. Without
//! strace, or without the right to ptrace, every fault is SKIP with the
//! reason.

use super::expect;
use super::{cases, machine_lock, raise_nofile, Case, Ctx, Managed, Target, SUITE};
use crate::server::{describe_status, Server};
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The cases every fault run repeats.
pub const CASES: [Case; 4] = [
    Case::Echo,
    Case::Random8M,
    Case::Concurrent,
    Case::HalfClose,
];

/// About how many times each fault fires in its run: enough to hit several
/// connections, few enough that `ENOBUFS`'s 100 ms back-off stays cheap.
pub const FIRES: u64 = 6;

/// A read, write or wait call the discovery run saw fewer times than this
/// past start-up is not on the request path (the four cases make hundreds
/// of requests): a runtime's occasional wake-up `write` to its eventfd, or
/// glibc reading `/proc/sys/vm/overcommit_memory` when it trims a thread's
/// heap. Whether, and how often, such a call comes depends on scheduling,
/// so a fault run's `when=FIRST+STEP` may never meet it, and "never fired"
/// would then blame the model for the schedule. Such a call is reported
/// N/A with its count, never silently passed. Accept calls are never
/// excused this way.
pub const INCIDENTAL_BELOW: u64 = 8;

/// How long the discovery run leaves the server alone after it listens:
/// what it does meanwhile is start-up.
const SETTLE: Duration = Duration::from_millis(300);

/// The tracer, found on PATH.
const STRACE: &str = "strace";

/// strace's largest `when=` number.
const WHEN_MAX: u64 = 65535;

/// Times a single-connection case is tried under a creation fault: the
/// refused connection proves the fault; the case still has to be served.
const CREATION_ATTEMPTS: usize = 3;

/// The families of system calls the faults aim at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Accept,
    Read,
    Write,
    Wait,
    Create,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Accept,
        Family::Read,
        Family::Write,
        Family::Wait,
        Family::Create,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Accept => "accept",
            Family::Read => "read",
            Family::Write => "write",
            Family::Wait => "wait",
            Family::Create => "create",
        }
    }

    /// The candidates the discovery run traces.
    pub fn syscalls(self) -> &'static [&'static str] {
        match self {
            Family::Accept => &["accept4", "accept"],
            Family::Read => &["read", "readv", "recvfrom", "recvmsg"],
            Family::Write => &["write", "writev", "sendto", "sendmsg"],
            Family::Wait => &[
                "epoll_wait",
                "epoll_pwait",
                "epoll_pwait2",
                "poll",
                "ppoll",
                "select",
                "pselect6",
                "rt_sigtimedwait",
                "io_uring_enter",
                // A model that sleeps between sweeps (`nonblocking:sleep`)
                // waits there; glibc's nanosleep is clock_nanosleep.
                "clock_nanosleep",
                "nanosleep",
            ],
            Family::Create => &["clone", "clone3", "fork", "vfork"],
        }
    }

    /// What is injected into each call of the family.
    pub fn errnos(self) -> &'static [&'static str] {
        match self {
            // accept(2): ENOBUFS/ENOMEM under memory pressure, EPROTO and
            // ECONNABORTED for one bad connection, EPERM from a firewall
            // rule, EINTR from a signal.
            Family::Accept => &[
                "ENOBUFS",
                "ENOMEM",
                "EPROTO",
                "EPERM",
                "ECONNABORTED",
                "EINTR",
            ],
            Family::Read | Family::Write | Family::Wait => &["EINTR"],
            // clone(2): EAGAIN when RLIMIT_NPROC or the kernel's thread
            // limit is reached.
            Family::Create => &["EAGAIN"],
        }
    }

    fn of(syscall: &str) -> Option<(Family, &'static str)> {
        Family::ALL.into_iter().find_map(|family| {
            family
                .syscalls()
                .iter()
                .find(|&&s| s == syscall)
                .map(|&s| (family, s))
        })
    }
}

/// One system call as the discovery run saw it.
#[derive(Debug, Clone)]
pub struct Calls {
    pub syscall: &'static str,
    pub family: Family,
    /// Calls before the `listening on` line, in the thread that made most.
    pub at_start: u64,
    /// Calls after it, all threads together.
    pub during: u64,
    /// Calls after it, in the thread that made most.
    pub busiest: u64,
}

/// Every candidate the model called, from one traced run of the cases.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub calls: Vec<Calls>,
}

impl Calls {
    /// Too rare to be the request path (see [`INCIDENTAL_BELOW`]); an
    /// accept call never is.
    fn is_incidental(&self) -> bool {
        self.family != Family::Accept && self.during < INCIDENTAL_BELOW
    }
}

impl Discovery {
    /// The calls of `family` made past start-up.
    fn made(&self, family: Family) -> impl Iterator<Item = &Calls> {
        self.calls
            .iter()
            .filter(move |c| c.family == family && c.during > 0)
    }

    /// `accept4 ×212, read ×1543 (+3 at start-up), ...`.
    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .calls
            .iter()
            .map(|c| {
                let start = if c.at_start > 0 {
                    format!(" (+{} at start-up)", c.at_start)
                } else {
                    String::new()
                };
                format!("{} ×{}{start}", c.syscall, c.during)
            })
            .collect();
        parts.join(", ")
    }
}

/// Counts the candidates' invocations in a `strace -f -o` trace, per
/// thread: those in the first `start_up` bytes (the trace as it was once
/// the server had settled, before the first client) are start-up. An
/// invocation is a line `PID NAME(`; `PID <... NAME resumed>` ends one
/// already counted.
fn discover(trace: &str, start_up: usize) -> Discovery {
    type PerThread = HashMap<(u32, &'static str), u64>;
    let (mut start, mut during) = (PerThread::new(), PerThread::new());
    // A last line without its newline is still being written.
    let complete = &trace[..trace.rfind('\n').map_or(0, |i| i + 1)];
    let mut offset = 0;
    for line in complete.split_inclusive('\n') {
        offset += line.len();
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let Some((name, _)) = rest.trim_start().split_once('(') else {
            continue;
        };
        let Some((_, syscall)) = Family::of(name) else {
            continue;
        };
        let table = if offset <= start_up {
            &mut start
        } else {
            &mut during
        };
        *table.entry((pid, syscall)).or_default() += 1;
    }
    let mut calls: Vec<Calls> = Vec::new();
    for family in Family::ALL {
        for &syscall in family.syscalls() {
            let busiest_of = |table: &PerThread| {
                table
                    .iter()
                    .filter(|((_, s), _)| *s == syscall)
                    .map(|(_, &n)| n)
                    .max()
                    .unwrap_or(0)
            };
            let at_start = busiest_of(&start);
            let busiest = busiest_of(&during);
            let during: u64 = during
                .iter()
                .filter(|((_, s), _)| *s == syscall)
                .map(|(_, &n)| n)
                .sum();
            if at_start > 0 || during > 0 {
                calls.push(Calls {
                    syscall,
                    family,
                    at_start,
                    during,
                    busiest,
                });
            }
        }
    }
    Discovery { calls }
}

/// One fault: `inject=SYSCALL:error=ERRNO:when=FIRST+STEP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub syscall: &'static str,
    pub family: Family,
    pub errno: &'static str,
    pub first: u64,
    pub step: u64,
}

impl Fault {
    /// The faults for a call the discovery run saw: past the busiest
    /// thread's start-up calls, about [`FIRES`] times over the cases.
    fn for_calls(calls: &Calls) -> Vec<Fault> {
        let first = (calls.at_start + 1).min(WHEN_MAX);
        let step = (calls.busiest / FIRES).clamp(2, WHEN_MAX);
        calls
            .family
            .errnos()
            .iter()
            .map(|&errno| Fault {
                syscall: calls.syscall,
                family: calls.family,
                errno,
                first,
                step,
            })
            .collect()
    }

    fn inject(&self) -> String {
        format!(
            "inject={}:error={}:when={}+{}",
            self.syscall, self.errno, self.first, self.step
        )
    }
}

/// strace's options for a run that injects `fault` (only `fault.syscall` is
/// traced, and only its failed calls printed: `-Z`), writing to `trace`.
fn strace_injecting(fault: &Fault, trace: &Path) -> Vec<String> {
    let mut args = strace_common(trace);
    args.extend([
        "-Z".to_owned(),
        "-e".to_owned(),
        format!("trace={}", fault.syscall),
        "-e".to_owned(),
        fault.inject(),
        "--".to_owned(),
    ]);
    args
}

/// strace's options for the discovery run: every candidate traced (`?`: a
/// name this strace or this architecture does not know is left out).
fn strace_discovering(trace: &Path) -> Vec<String> {
    let names: Vec<String> = Family::ALL
        .iter()
        .flat_map(|f| f.syscalls())
        .map(|s| format!("?{s}"))
        .collect();
    let mut args = strace_common(trace);
    args.extend([
        "-e".to_owned(),
        format!("trace={}", names.join(",")),
        "--".to_owned(),
    ]);
    args
}

/// `-f`: every thread and child; `--seccomp-bpf`: only the traced calls
/// stop the tracee, the others run at full speed; `-qq`, `signal=none`: no
/// attach, exit or signal lines in the trace.
fn strace_common(trace: &Path) -> Vec<String> {
    vec![
        STRACE.to_owned(),
        "-f".to_owned(),
        "-qq".to_owned(),
        "--seccomp-bpf".to_owned(),
        "-e".to_owned(),
        "signal=none".to_owned(),
        "-o".to_owned(),
        trace.display().to_string(),
    ]
}

/// `Ok` if `strace` (a program on PATH, or a path) runs here and may trace
/// `binary --version` the way the fault runs do; the reason otherwise.
fn strace_usable(strace: &str, binary: &Path) -> Result<(), String> {
    let output = Command::new(strace)
        .args([
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=write",
            "-o",
            "/dev/null",
            "--",
        ])
        .arg(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match output {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "{strace} not found (Debian: apt-get install strace)"
        )),
        Err(e) => Err(format!("spawn {strace}: {e}")),
        Ok(out) if !out.status.success() => Err(format!(
            "strace cannot trace here ({}): {}",
            out.status,
            cases::tail(&String::from_utf8_lossy(&out.stderr), 300)
        )),
        Ok(_) => Ok(()),
    }
}

/// A trace file of this process's, removed when dropped unless kept.
struct TraceFile {
    path: PathBuf,
    keep: bool,
}

impl TraceFile {
    fn new(what: &str) -> TraceFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("lab-faults-{}-{n}-{what}.trace", std::process::id());
        TraceFile {
            path: std::env::temp_dir().join(name),
            keep: false,
        }
    }

    fn read(&self) -> io::Result<String> {
        fs::read_to_string(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", self.path.display())))
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// The model makes no such call past start-up (the discovery run says
    /// so), or cannot by design (the expectations table says why).
    NotApplicable,
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "N/A",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One line of the report: one fault, or a family that got none.
#[derive(Debug, Clone)]
pub struct FaultLine {
    pub outcome: Outcome,
    /// `accept4 ENOBUFS`, or the family's name.
    pub what: String,
    /// `when=FIRST+STEP`, if injected.
    pub when: Option<String>,
    /// `(INJECTED)` lines in the trace, if it was read.
    pub fired: Option<u64>,
    pub detail: String,
    pub elapsed: Duration,
    /// The strace output of a FAILed run, left for a reader.
    pub trace_kept: Option<PathBuf>,
}

impl fmt::Display for FaultLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fired = self.fired.map_or_else(|| "-".to_owned(), |n| n.to_string());
        write!(
            f,
            "{:<5} {:<22} {:<14} fired {:>5} {:>6.2}s  {}",
            self.outcome.as_str(),
            self.what,
            self.when.as_deref().unwrap_or("-"),
            fired,
            self.elapsed.as_secs_f64(),
            self.detail
        )
    }
}

/// The whole fault run of one model:mode.
#[derive(Debug, Clone)]
pub struct FaultsReport {
    pub label: String,
    /// What the discovery run saw, one line.
    pub discovery: String,
    pub lines: Vec<FaultLine>,
    pub elapsed: Duration,
}

impl FaultsReport {
    pub fn failures(&self) -> Vec<&FaultLine> {
        self.lines
            .iter()
            .filter(|l| l.outcome == Outcome::Fail)
            .collect()
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.lines.iter().filter(|l| l.outcome == outcome).count()
    }

    /// `epoll:edge faults: 9 PASS, 2 N/A, 0 FAIL, 0 SKIP in 31.0 s`.
    pub fn tally(&self) -> String {
        format!(
            "{} faults: {} PASS, {} N/A, {} FAIL, {} SKIP in {:.1} s",
            self.label,
            self.count(Outcome::Pass),
            self.count(Outcome::NotApplicable),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip),
            self.elapsed.as_secs_f64()
        )
    }
}

impl fmt::Display for FaultsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "faults of {}", self.label)?;
        writeln!(f, "discovery: {}", self.discovery)?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        write!(f, "{}", self.tally())
    }
}

/// Runs the fault suite against `managed`, handing each line to `out` as
/// soon as it is known.
pub fn run(managed: &Managed, label: &str, out: &mut dyn FnMut(String)) -> FaultsReport {
    let started = Instant::now();
    let nofile = raise_nofile();
    out(format!("faults of {label}"));
    let mut report = FaultsReport {
        label: label.to_owned(),
        discovery: String::new(),
        lines: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let push = |report: &mut FaultsReport, out: &mut dyn FnMut(String), line: FaultLine| {
        out(line.to_string());
        report.lines.push(line);
    };
    let family_line = |outcome, family: Family, detail: String| FaultLine {
        outcome,
        what: family.name().to_owned(),
        when: None,
        fired: None,
        detail,
        elapsed: Duration::ZERO,
        trace_kept: None,
    };
    if let Err(reason) = strace_usable(STRACE, &managed.config.binary) {
        report.discovery = "not run".into();
        for family in Family::ALL {
            push(
                &mut report,
                out,
                family_line(Outcome::Skip, family, reason.clone()),
            );
        }
        report.elapsed = started.elapsed();
        return report;
    }
    let t = Instant::now();
    let discovery = match discovery_run(managed, nofile) {
        Ok(discovery) => discovery,
        Err(e) => {
            report.discovery = "FAILED".into();
            let mut line = family_line(Outcome::Fail, Family::Accept, e);
            line.what = "discovery".into();
            line.elapsed = t.elapsed();
            push(&mut report, out, line);
            report.elapsed = started.elapsed();
            return report;
        }
    };
    report.discovery = format!(
        "{} ({:.2}s)",
        discovery.summary(),
        t.elapsed().as_secs_f64()
    );
    out(format!("discovery: {}", report.discovery));
    for family in Family::ALL {
        let made: Vec<&Calls> = discovery.made(family).collect();
        if made.is_empty() {
            let line = match not_made(managed, family, &discovery) {
                Ok(reason) => family_line(Outcome::NotApplicable, family, reason),
                Err(why) => family_line(Outcome::Fail, family, why),
            };
            push(&mut report, out, line);
            continue;
        }
        for calls in made {
            if calls.is_incidental() {
                let mut line = family_line(
                    Outcome::NotApplicable,
                    family,
                    format!(
                        "{} ×{} past start-up, fewer than {INCIDENTAL_BELOW}: incidental, \
                         not the request path; not injected",
                        calls.syscall, calls.during
                    ),
                );
                line.what = calls.syscall.to_owned();
                push(&mut report, out, line);
                continue;
            }
            for fault in Fault::for_calls(calls) {
                let line = fault_run(managed, &fault, nofile);
                push(&mut report, out, line);
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// Why a family with no call past start-up is N/A, or why that is a FAIL
/// (an accept call is required unless the table says why not).
fn not_made(managed: &Managed, family: Family, discovery: &Discovery) -> Result<String, String> {
    let names = family.syscalls().join(", ");
    let at_start: Vec<String> = discovery
        .calls
        .iter()
        .filter(|c| c.family == family)
        .map(|c| format!("{} ×{}", c.syscall, c.at_start))
        .collect();
    let seen = if at_start.is_empty() {
        String::new()
    } else {
        format!(" (at start-up only: {})", at_start.join(", "))
    };
    if family != Family::Accept {
        return Ok(format!("no {names} past start-up{seen}"));
    }
    let declared = family
        .syscalls()
        .iter()
        .find_map(|s| expect::fault_lookup(&managed.model, managed.mode.as_deref(), s));
    match declared {
        Some(entry) => Ok(format!("{} (no {names} past start-up)", entry.reason)),
        None => Err(format!(
            "no {names} past start-up{seen}, and expect::FAULT_TABLE gives no reason"
        )),
    }
}

/// The server under strace, answering; the 4 cases run cleanly (no fault
/// injected yet: a model that fails them here fails the suite proper too).
fn discovery_run(managed: &Managed, nofile: libc::rlim_t) -> Result<Discovery, String> {
    let trace = TraceFile::new("discovery");
    let config = managed
        .config
        .clone()
        .wrapped_in(strace_discovering(&trace.path));
    let server = Server::start(&config).map_err(|e| format!("start under strace: {e}"))?;
    // What a server does once it listens but before its first client (a
    // thread that waits for signals, a pool) is start-up too.
    std::thread::sleep(SETTLE);
    let settled = trace.read().map_err(|e| e.to_string())?;
    let start_up = settled.rfind('\n').map_or(0, |i| i + 1);
    let mut ctx = Ctx {
        managed: None,
        addr: server.addr(),
        server: Some(server),
        start_fds: None,
    };
    for case in CASES {
        let findings = cases::run_main(case, &mut ctx, nofile);
        let problems: Vec<String> = findings
            .fatal
            .iter()
            .chain(&findings.refused)
            .chain(&findings.limits)
            .cloned()
            .collect();
        if !problems.is_empty() {
            return Err(format!(
                "{case} failed with no fault injected: {}",
                super::joined(&problems)
            ));
        }
    }
    let text = trace.read().map_err(|e| e.to_string())?;
    Ok(discover(&text, start_up))
}

/// Runs the cases under one given fault (`harness check --faults` chooses
/// its own from the discovery run) and judges them: what a test of the
/// suite itself uses to show that a fatal errno or a fault that never fires
/// is a FAIL.
pub fn run_one(managed: &Managed, fault: &Fault) -> FaultLine {
    let _one_at_a_time = SUITE.lock().unwrap_or_else(|p| p.into_inner());
    let _one_per_machine = machine_lock();
    match strace_usable(STRACE, &managed.config.binary) {
        Ok(()) => fault_run(managed, fault, raise_nofile()),
        Err(reason) => FaultLine {
            outcome: Outcome::Skip,
            what: format!("{} {}", fault.syscall, fault.errno),
            when: None,
            fired: None,
            detail: reason,
            elapsed: Duration::ZERO,
            trace_kept: None,
        },
    }
}

/// Runs the cases under one fault and judges them.
fn fault_run(managed: &Managed, fault: &Fault, nofile: libc::rlim_t) -> FaultLine {
    let started = Instant::now();
    let mut trace = TraceFile::new(fault.syscall);
    let config = managed
        .config
        .clone()
        .wrapped_in(strace_injecting(fault, &trace.path));
    let creation = fault.family == Family::Create;
    let mut problems: Vec<String> = Vec::new();
    let mut refused = 0usize;
    match Server::start(&config) {
        Err(e) => problems.push(format!("start under strace: {e}")),
        Ok(server) => {
            let mut ctx = Ctx {
                managed: None,
                addr: server.addr(),
                server: Some(server),
                start_fds: None,
            };
            run_cases(&mut ctx, creation, nofile, &mut problems, &mut refused);
        }
    }
    let fired = trace
        .read()
        .map(|text| text.matches("(INJECTED)").count() as u64);
    let fired = match fired {
        Ok(n) => Some(n),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    match fired {
        Some(0) => problems.push(format!("never fired ({})", fault.inject())),
        Some(n) if creation && refused as u64 > n => problems.push(format!(
            "{refused} connections refused but only {n} creations failed"
        )),
        _ => {}
    }
    let outcome = if problems.is_empty() {
        Outcome::Pass
    } else {
        trace.keep = true;
        problems.push(format!("trace kept: {}", trace.path.display()));
        Outcome::Fail
    };
    let detail = if problems.is_empty() {
        let mut text = format!("{} byte for byte, server alive", case_names());
        if refused > 0 {
            text.push_str(&format!(
                "; {refused} connections that got no thread/process closed before any reply byte"
            ));
        }
        text
    } else {
        super::joined(&problems)
    };
    FaultLine {
        outcome,
        what: format!("{} {}", fault.syscall, fault.errno),
        when: Some(format!("when={}+{}", fault.first, fault.step)),
        fired,
        detail,
        elapsed: started.elapsed(),
        trace_kept: trace.keep.then(|| trace.path.clone()),
    }
}

fn case_names() -> String {
    let names: Vec<&str> = CASES.iter().map(|c| c.name()).collect();
    names.join(", ")
}

/// The cases, one after another, each followed by a check that the server
/// lives; `problems` gets what failed. Under a creation fault a connection
/// closed before any reply byte is the expected refusal (counted in
/// `refused`), and a single-connection case that was refused is tried again.
fn run_cases(
    ctx: &mut Ctx,
    creation: bool,
    nofile: libc::rlim_t,
    problems: &mut Vec<String>,
    refused: &mut usize,
) {
    for case in CASES {
        let attempts = if creation && case != Case::Concurrent {
            CREATION_ATTEMPTS
        } else {
            1
        };
        for attempt in 1..=attempts {
            let findings = cases::run_main(case, ctx, nofile);
            let mut wrong: Vec<String> = findings
                .fatal
                .iter()
                .chain(&findings.limits)
                .cloned()
                .collect();
            if creation {
                *refused += findings.refused.len();
            } else {
                wrong.extend(findings.refused.iter().cloned());
            }
            let served =
                wrong.is_empty() && (case == Case::Concurrent || findings.refused.is_empty());
            if !wrong.is_empty() {
                problems.push(format!("{case}: {}", super::joined(&wrong)));
            } else if !served && attempt == attempts {
                problems.push(format!(
                    "{case}: refused {attempts} times in a row: {}",
                    super::joined(&findings.refused)
                ));
            }
            if served || !wrong.is_empty() {
                break;
            }
        }
        if let Some(server) = ctx.server.as_mut() {
            if let Some(status) = server.exit_status() {
                problems.push(format!(
                    "the server died during {case} ({}); stderr: {}",
                    describe_status(&status),
                    cases::tail(&server.stderr_so_far(), 600)
                ));
                return;
            }
        }
    }
    if let Err(e) = cases::answers_again(ctx.addr, Duration::from_secs(3)) {
        problems.push(format!("the server no longer answers: {e}"));
    }
}

/// `harness check --faults MODEL[:MODE]`: prints the report; `Ok(true)` iff
/// no fault FAILed.
pub fn main(target: &Target) -> io::Result<bool> {
    let Target::Model(managed) = target else {
        return Err(io::Error::other(
            "--faults starts the server under strace itself: give MODEL[:MODE], not --target",
        ));
    };
    let _one_per_machine = machine_lock();
    let report = run(managed, &target.label(), &mut |line| println!("{line}"));
    println!("{}", report.tally());
    Ok(report.failures().is_empty())
}

/// Runs the fault suite against `binary` (named like its model crate) in
/// `mode` with `extra_args`, prints the report, and panics listing every
/// FAIL. For the model crates' `tests/faults.rs`. Without strace or ptrace
/// the report's lines are SKIP with the reason, written to stderr past the
/// test harness's capture, and nothing fails.
pub fn assert_survives_faults(binary: &Path, mode: Option<&str>, extra_args: &[&str]) {
    let _one_at_a_time = SUITE.lock().unwrap_or_else(|p| p.into_inner());
    let _one_per_machine = machine_lock();
    let model = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
    let target = Target::model(&model, binary, mode, &extra);
    let Target::Model(managed) = &target else {
        unreachable!("Target::model makes a Target::Model")
    };
    let report = run(managed, &target.label(), &mut |_| {});
    println!("{report}");
    if let Some(skipped) = report.lines.iter().find(|l| l.outcome == Outcome::Skip) {
        // Straight to the descriptor: `cargo test` captures `println!` and
        // `eprintln!` of a passing test, and a SKIP must not read as a pass.
        let _ = writeln!(
            io::stderr(),
            "{}: fault suite SKIPPED: {}",
            report.label,
            skipped.detail
        );
    }
    let failures = report.failures();
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        panic!(
            "{} of {} faults FAILED for {}:\n{}",
            failures.len(),
            report.lines.len(),
            report.label,
            list.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "\
100 read(4, \"\", 16) = 0
100 write(1, \"listening on 127.0.0.1:4000\\n\", 28) = 28
100 clone3({flags=CLONE_VM}, 88) = 101
";

    const CASES_TRACE: &str = "\
100 accept4(3, <unfinished ...>
101 read(5, \"abc\", 65536)             = 3
101 write(5, \"ABC\", 3)                = 3
100 <... accept4 resumed>{sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 6
100 accept4(3, {sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 7
102 read(7, \"x\", 65536)               = 1
102 read(7, \"\", 65536)                = 0
102 read(7, ";

    #[test]
    fn discovery_counts_calls_per_thread_before_and_after_start_up() {
        let d = discover(&format!("{START}{CASES_TRACE}"), START.len());
        let get = |name: &str| d.calls.iter().find(|c| c.syscall == name).cloned();
        let accept = get("accept4").expect("accept4 seen");
        assert_eq!((accept.at_start, accept.during, accept.busiest), (0, 2, 2));
        let read = get("read").expect("read seen");
        // One at start-up in 100, then 1 in 101 and 2 in 102 (the third,
        // unfinished line is not counted).
        assert_eq!((read.at_start, read.during, read.busiest), (1, 3, 2));
        let write = get("write").expect("write seen");
        assert_eq!((write.at_start, write.during), (1, 1));
        let clone3 = get("clone3").expect("clone3 seen");
        assert_eq!((clone3.at_start, clone3.during), (1, 0));
        assert_eq!(d.made(Family::Create).count(), 0);
        assert_eq!(d.made(Family::Wait).count(), 0);
        assert!(get("epoll_wait").is_none());
    }

    #[test]
    fn faults_start_past_start_up_and_fire_about_fires_times() {
        let calls = Calls {
            syscall: "accept4",
            family: Family::Accept,
            at_start: 0,
            during: 400,
            busiest: 300,
        };
        let faults = Fault::for_calls(&calls);
        assert_eq!(faults.len(), 6);
        assert!(faults.iter().all(|f| f.first == 1 && f.step == 300 / FIRES));
        assert_eq!(faults[0].inject(), "inject=accept4:error=ENOBUFS:when=1+50");
        let few = Calls {
            busiest: 3,
            at_start: 70000,
            ..calls
        };
        let f = &Fault::for_calls(&few)[0];
        assert_eq!((f.first, f.step), (WHEN_MAX, 2));
    }

    #[test]
    fn a_rare_read_write_or_wait_is_incidental_but_a_rare_accept_is_not() {
        let calls = |family, during| Calls {
            syscall: "x",
            family,
            at_start: 0,
            during,
            busiest: during,
        };
        assert!(calls(Family::Write, 1).is_incidental());
        assert!(calls(Family::Read, INCIDENTAL_BELOW - 1).is_incidental());
        assert!(!calls(Family::Read, INCIDENTAL_BELOW).is_incidental());
        assert!(!calls(Family::Wait, 300).is_incidental());
        assert!(!calls(Family::Accept, 1).is_incidental());
    }

    #[test]
    fn a_missing_strace_is_a_reason_to_skip() {
        let reason = strace_usable("/nonexistent/strace", Path::new("/bin/true"))
            .expect_err("no such program");
        assert!(reason.contains("not found"), "{reason}");
    }

    #[test]
    fn every_candidate_belongs_to_one_family() {
        for family in Family::ALL {
            for s in family.syscalls() {
                assert_eq!(Family::of(s).map(|(f, _)| f), Some(family), "{s}");
            }
        }
    }
}
