//! `harness check`: the conformance suite, written once and run against any
//! model:mode (`harness check epoll:edge -- --workers 2`) or any echo server
//! already running (`harness check --target 127.0.0.1:7000`).
//!
//! Each case prints one line: PASS, FAIL (with what went wrong: the first
//! mismatching offset, the stalled connection, the leaked descriptors),
//! EXPECTED-LIMIT (the model's limit by design, from the one table in
//! [`expect`]), or SKIP (with why). A server death, a lost or wrong byte and
//! a leaked descriptor are FAIL whatever the table says. Exit status 0 iff no
//! case FAILed. `--faults` runs a few of the cases again under injected
//! kernel errors instead (see [`faults`]).
//!
//! Cases that measure a single server's timing (slowloris, never-reader,
//! idle CPU) never run beside another case that loads the same server; the
//! cases that start their own server (EMFILE, `--max-conns`, SIGTERM,
//! SIGINT) run beside the idle measurement, whose server has no client, unless
//! that model is expected to burn CPU when idle.

mod cases;
pub mod client;
pub mod expect;
pub mod faults;

use crate::server::{find_binary, ModelSpec, Server, ServerConfig};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The model to start and check, MODEL[:MODE] (e.g. epoll:edge, blocking).
    #[arg(value_name = "MODEL[:MODE]", required_unless_present = "target")]
    pub spec: Option<String>,

    /// Check an echo server already running at HOST:PORT (ours or not);
    /// cases that must start, limit, signal or measure the server are skipped.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["spec", "binary"])]
    pub target: Option<SocketAddr>,

    /// Use this binary for MODEL instead of looking next to the harness.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// Run only these cases (comma-separated names, as printed).
    #[arg(long, value_delimiter = ',', value_name = "CASE,...")]
    pub only: Vec<String>,

    /// Run the fault-injection suite instead (strace injects ENOBUFS,
    /// EINTR, EAGAIN, ... into the server's own system calls; see
    /// `check::faults`).
    #[arg(long, conflicts_with_all = ["target", "only"])]
    pub faults: bool,

    /// Extra server arguments, after `--` (e.g. `-- --workers 2 --share exclusive`).
    #[arg(last = true, value_name = "SERVER_ARGS")]
    pub server_args: Vec<String>,
}

pub fn main(args: CheckArgs) -> io::Result<ExitCode> {
    let only = parse_only(&args.only)?;
    let target = match (args.target, args.spec) {
        (Some(addr), _) if !addr.ip().is_loopback() => {
            return Err(io::Error::other(format!(
                "--target {addr}: the lab only talks to loopback (127.0.0.0/8, ::1)"
            )))
        }
        (Some(addr), _) => Target::Address(addr),
        (None, Some(spec)) => {
            let spec: ModelSpec = spec.parse().map_err(io::Error::other)?;
            let binary = match args.binary {
                Some(path) => path,
                None => find_binary(&spec.model)?,
            };
            Target::model(
                &spec.model,
                &binary,
                spec.mode.as_deref(),
                &args.server_args,
            )
        }
        (None, None) => return Err(io::Error::other("give MODEL[:MODE] or --target HOST:PORT")),
    };
    if args.faults {
        let passed = faults::main(&target)?;
        return Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let _one_per_machine = machine_lock();
    let report = run(&target, &only, &mut |line| println!("{line}"))?;
    println!("{}", report.tally());
    Ok(if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_only(names: &[String]) -> io::Result<Vec<Case>> {
    names
        .iter()
        .map(|name| {
            Case::ALL
                .iter()
                .copied()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
                    io::Error::other(format!(
                        "unknown case `{name}` (cases: {})",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// The cases, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    Echo,
    AllBytes,
    Random8M,
    Concurrent,
    HalfClose,
    Rst,
    Slowloris,
    NeverReader,
    Conns2000,
    Descriptors,
    Emfile,
    MaxConns,
    Sigterm,
    Sigint,
    Idle,
}

impl Case {
    pub const ALL: [Case; 15] = [
        Case::Echo,
        Case::AllBytes,
        Case::Random8M,
        Case::Concurrent,
        Case::HalfClose,
        Case::Rst,
        Case::Slowloris,
        Case::NeverReader,
        Case::Conns2000,
        Case::Descriptors,
        Case::Emfile,
        Case::MaxConns,
        Case::Sigterm,
        Case::Sigint,
        Case::Idle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::Echo => "echo",
            Case::AllBytes => "all-bytes",
            Case::Random8M => "random-8MiB",
            Case::Concurrent => "concurrent-200",
            Case::HalfClose => "half-close",
            Case::Rst => "rst-50",
            Case::Slowloris => "slowloris",
            Case::NeverReader => "never-reader",
            Case::Conns2000 => "conns-2000",
            Case::Descriptors => "descriptors",
            Case::Emfile => "emfile",
            Case::MaxConns => "max-conns",
            Case::Sigterm => "sigterm",
            Case::Sigint => "sigint",
            Case::Idle => "idle",
        }
    }

    /// The cases that start servers of their own (see the module doc); the
    /// others share the main server.
    fn has_own_server(self) -> bool {
        matches!(
            self,
            Case::Emfile | Case::MaxConns | Case::Sigterm | Case::Sigint
        )
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    ExpectedLimit,
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::ExpectedLimit => "EXPECTED-LIMIT",
            Verdict::Skip => "SKIP",
        }
    }
}

/// One case's line of the report.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub case: Case,
    pub verdict: Verdict,
    pub detail: String,
    pub elapsed: Duration,
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<14} {:<14} {:>6.2}s  {}",
            self.verdict.as_str(),
            self.case.name(),
            self.elapsed.as_secs_f64(),
            self.detail
        )
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub label: String,
    pub cases: Vec<CaseReport>,
    pub elapsed: Duration,
}

impl Report {
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .collect()
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.cases.iter().filter(|c| c.verdict == verdict).count()
    }

    /// `epoll:edge: 14 PASS, 1 EXPECTED-LIMIT, 0 FAIL, 0 SKIP in 9.8 s`.
    pub fn tally(&self) -> String {
        format!(
            "{}: {} PASS, {} EXPECTED-LIMIT, {} FAIL, {} SKIP in {:.1} s",
            self.label,
            self.count(Verdict::Pass),
            self.count(Verdict::ExpectedLimit),
            self.count(Verdict::Fail),
            self.count(Verdict::Skip),
            self.elapsed.as_secs_f64()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of {}", self.label)?;
        for case in &self.cases {
            writeln!(f, "{case}")?;
        }
        write!(f, "{}", self.tally())
    }
}

/// What the suite runs against.
pub enum Target {
    /// A model binary the suite starts (and restarts) itself.
    Model(Managed),
    /// A server already running; only what can be seen from a client is checked.
    Address(SocketAddr),
}

impl Target {
    /// `model` names the expectations table's row; `mode` may be `None` (the
    /// binary's default, read from its `--help`).
    pub fn model(model: &str, binary: &Path, mode: Option<&str>, extra: &[String]) -> Target {
        let effective_mode = mode
            .map(str::to_owned)
            .or_else(|| mode_in_args(extra))
            .or_else(|| default_mode(binary));
        Target::Model(Managed {
            config: ServerConfig::new(binary)
                .mode(mode.map(str::to_owned))
                .args(extra.iter().cloned()),
            model: model.to_owned(),
            mode: effective_mode,
            args: extra.to_vec(),
        })
    }

    fn label(&self) -> String {
        match self {
            Target::Address(addr) => format!("target {addr}"),
            Target::Model(m) => {
                let mut label = match &m.mode {
                    Some(mode) => format!("{}:{mode}", m.model),
                    None => m.model.clone(),
                };
                for arg in &m.config.args {
                    label.push(' ');
                    label.push_str(arg);
                }
                label
            }
        }
    }
}

/// A model the suite starts itself.
pub struct Managed {
    pub config: ServerConfig,
    pub model: String,
    /// The mode it runs in (given, or its default), for the expectations.
    pub mode: Option<String>,
    /// The extra server arguments it runs with, for the expectations.
    pub args: Vec<String>,
}

impl Managed {
    /// Starts an instance with `extra` arguments appended and an optional
    /// `RLIMIT_NOFILE`.
    fn start(&self, extra: &[&str], nofile: Option<u64>) -> io::Result<Server> {
        let mut config = self.config.clone().args(extra.iter().copied());
        if let Some(limit) = nofile {
            config = config.nofile(limit);
        }
        Server::start(&config)
    }

    fn expect(&self, case: Case) -> Option<&'static expect::Entry> {
        expect::lookup(&self.model, self.mode.as_deref(), &self.args, case)
    }
}

fn mode_in_args(args: &[String]) -> Option<String> {
    let at = args.iter().position(|a| a == "--mode")?;
    args.get(at + 1).cloned()
}

/// The `[default: X]` of `--mode` in the binary's `--help` (clap's format).
fn default_mode(binary: &Path) -> Option<String> {
    let output = Command::new(binary)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let help = String::from_utf8_lossy(&output.stdout);
    let start = help.find("--mode")?;
    let rest = &help[start..];
    // The entry ends where the next flag's entry begins.
    let end = rest[2..].find("\n  -").map_or(rest.len(), |i| i + 2);
    let entry = &rest[..end];
    let from = entry.find("[default: ")? + "[default: ".len();
    let to = entry[from..].find(']')? + from;
    Some(entry[from..to].trim().to_owned())
}

/// What a case found, before the expectations table is applied.
#[derive(Debug, Default)]
pub struct Findings {
    /// Always FAIL: a death, a lost or wrong byte, a leak, a broken contract.
    pub fatal: Vec<String>,
    /// Connections the server closed before sending any reply byte, one
    /// entry each: FAIL like `fatal`, except under a thread- or
    /// process-creation fault, where closing a connection that got no
    /// thread is the right answer (see [`faults`]).
    pub refused: Vec<String>,
    /// The case's specific limitation showed (a stall, a CPU figure): FAIL
    /// unless the table expects it for this model:mode.
    pub limits: Vec<String>,
    /// Measurements worth printing.
    pub notes: Vec<String>,
    pub skip: Option<String>,
}

impl Findings {
    fn skip(reason: impl Into<String>) -> Findings {
        Findings {
            skip: Some(reason.into()),
            ..Findings::default()
        }
    }

    fn fatal(&mut self, what: impl Into<String>) {
        self.fatal.push(what.into());
    }

    fn refuse(&mut self, what: impl Into<String>) {
        self.refused.push(what.into());
    }

    fn limit(&mut self, what: impl Into<String>) {
        self.limits.push(what.into());
    }

    fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }
}

/// The messages in order, each once, with `(×N)` when it came N > 1 times
/// (fifty clients failing alike make one line, not fifty).
fn joined(messages: &[String]) -> String {
    let mut unique: Vec<(&str, usize)> = Vec::new();
    for m in messages {
        match unique.iter_mut().find(|(u, _)| *u == m.as_str()) {
            Some((_, n)) => *n += 1,
            None => unique.push((m, 1)),
        }
    }
    let parts: Vec<String> = unique
        .into_iter()
        .map(|(m, n)| {
            if n > 1 {
                format!("{m} (×{n})")
            } else {
                m.to_owned()
            }
        })
        .collect();
    parts.join("; ")
}

/// Applies the expectations to a case's findings.
fn judge(findings: Findings, expected: Option<&expect::Entry>) -> (Verdict, String) {
    let notes = joined(&findings.notes);
    let with_notes = |text: String| {
        if notes.is_empty() {
            text
        } else if text.is_empty() {
            notes.clone()
        } else {
            format!("{text}; {notes}")
        }
    };
    if let Some(reason) = findings.skip {
        return (Verdict::Skip, reason);
    }
    if !findings.fatal.is_empty() || !findings.refused.is_empty() {
        let all: Vec<String> = findings.fatal.into_iter().chain(findings.refused).collect();
        let mut text = joined(&all);
        if !findings.limits.is_empty() {
            text.push_str(&format!(" (and: {})", joined(&findings.limits)));
        }
        return (Verdict::Fail, with_notes(text));
    }
    if !findings.limits.is_empty() {
        let seen = joined(&findings.limits);
        return match expected {
            Some(entry) => (
                Verdict::ExpectedLimit,
                with_notes(format!("{} — seen: {seen}", entry.reason)),
            ),
            None => (Verdict::Fail, with_notes(seen)),
        };
    }
    match expected {
        Some(entry) => (
            Verdict::Pass,
            with_notes(format!("(declared limit did not show: {})", entry.reason)),
        ),
        None => (Verdict::Pass, with_notes(String::new())),
    }
}

/// The state shared by the cases that use the main server.
pub(crate) struct Ctx<'a> {
    pub managed: Option<&'a Managed>,
    pub server: Option<Server>,
    pub addr: SocketAddr,
    /// Descriptors of the main server's tree right after it started.
    pub start_fds: Option<usize>,
}

impl Ctx<'_> {
    fn expect(&self, case: Case) -> Option<&'static expect::Entry> {
        self.managed.and_then(|m| m.expect(case))
    }

    fn restart(&mut self) -> io::Result<()> {
        let Some(managed) = self.managed else {
            return Ok(());
        };
        self.server = None;
        let server = managed.start(&[], None)?;
        self.addr = server.addr();
        self.start_fds = Some(cases::settled_fds(&server));
        self.server = Some(server);
        Ok(())
    }
}

/// The per-process `RLIMIT_NOFILE` soft limit raised to the hard one: the
/// suite holds 2000 connections, and servers it starts inherit the limit.
fn raise_nofile() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == -1 {
        return 0;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to
        // the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return rl.rlim_max;
        }
    }
    rl.rlim_cur
}

/// Runs the suite (every case, or those in `only`), handing each case's line
/// to `out` as soon as it is known; returns the report in case order.
pub fn run(target: &Target, only: &[Case], out: &mut dyn FnMut(String)) -> io::Result<Report> {
    let started = Instant::now();
    let nofile = raise_nofile();
    let label = target.label();
    out(format!("conformance of {label}"));
    let selected = |case: Case| only.is_empty() || only.contains(&case);
    let managed = match target {
        Target::Model(m) => Some(m),
        Target::Address(_) => None,
    };
    let mut ctx = match target {
        Target::Address(addr) => Ctx {
            managed: None,
            server: None,
            addr: *addr,
            start_fds: None,
        },
        Target::Model(m) => {
            let server = m.start(&[], None)?;
            let start_fds = Some(cases::settled_fds(&server));
            Ctx {
                managed: Some(m),
                addr: server.addr(),
                server: Some(server),
                start_fds,
            }
        }
    };

    let mut reports: Vec<CaseReport> = Vec::new();
    // One after another on the main server, in the report's order; idle last.
    let sequential = Case::ALL
        .into_iter()
        .filter(|&c| c != Case::Idle && !c.has_own_server());
    for case in sequential.filter(|&c| selected(c)) {
        let t = Instant::now();
        let mut findings = cases::run_main(case, &mut ctx, nofile);
        after_case(&mut ctx, &mut findings);
        let report = finish(case, findings, ctx.expect(case), t.elapsed());
        out(report.to_string());
        reports.push(report);
    }

    // Idle, beside the cases with their own servers (see the module doc).
    let own: Vec<Case> = Case::ALL
        .into_iter()
        .filter(|&c| c.has_own_server() && selected(c))
        .collect();
    let run_own = |out: &mut dyn FnMut(String)| -> Vec<CaseReport> {
        own.iter()
            .map(|&case| {
                let t = Instant::now();
                let (findings, expected) = match managed {
                    Some(m) => (cases::run_own(case, m), m.expect(case)),
                    None => (
                        Findings::skip("needs to start the server itself (--target given)"),
                        None,
                    ),
                };
                let report = finish(case, findings, expected, t.elapsed());
                out(report.to_string());
                report
            })
            .collect()
    };
    let idle_burns = ctx.expect(Case::Idle).is_some();
    if selected(Case::Idle) && !idle_burns && !own.is_empty() {
        let lines = Mutex::new(Vec::new());
        let (own_reports, idle_report) = std::thread::scope(|s| {
            let handle = s.spawn(|| {
                run_own(&mut |line| lines.lock().unwrap_or_else(|p| p.into_inner()).push(line))
            });
            let t = Instant::now();
            let findings = cases::idle(&mut ctx);
            let idle = finish(Case::Idle, findings, ctx.expect(Case::Idle), t.elapsed());
            let own_reports = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (own_reports, idle)
        });
        for line in lines.into_inner().unwrap_or_else(|p| p.into_inner()) {
            out(line);
        }
        out(idle_report.to_string());
        reports.extend(own_reports);
        reports.push(idle_report);
    } else {
        reports.extend(run_own(out));
        if selected(Case::Idle) {
            let t = Instant::now();
            let findings = cases::idle(&mut ctx);
            let report = finish(Case::Idle, findings, ctx.expect(Case::Idle), t.elapsed());
            out(report.to_string());
            reports.push(report);
        }
    }
    if let Some(mut server) = ctx.server.take() {
        // The SIGTERM/SIGINT cases judge shutdown; this one only tidies up
        // (and a server that does not stop is SIGKILLed with its tree).
        let _ = server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(3));
    }
    reports.sort_by_key(|r| Case::ALL.iter().position(|&c| c == r.case));
    Ok(Report {
        label,
        cases: reports,
        elapsed: started.elapsed(),
    })
}

fn finish(
    case: Case,
    findings: Findings,
    expected: Option<&expect::Entry>,
    elapsed: Duration,
) -> CaseReport {
    let (verdict, detail) = judge(findings, expected);
    CaseReport {
        case,
        verdict,
        detail,
        elapsed,
    }
}

/// After every case on the main server: it must be alive and answering. A
/// dead or stuck server is this case's FAIL, and is replaced by a fresh one so
/// that the cases after it still say something.
fn after_case(ctx: &mut Ctx, findings: &mut Findings) {
    if findings.skip.is_some() {
        return;
    }
    let mut restart = false;
    if let Some(server) = ctx.server.as_mut() {
        if let Some(status) = server.exit_status() {
            findings.fatal(format!(
                "the server died during this case ({}); stderr: {}",
                crate::server::describe_status(&status),
                cases::tail(&server.stderr_so_far(), 600)
            ));
            restart = true;
        }
    }
    if !restart {
        if let Err(e) = cases::answers_again(ctx.addr, Duration::from_secs(3)) {
            findings.fatal(format!("the server no longer answers after this case: {e}"));
            restart = true;
        }
    }
    if restart {
        if let Err(e) = ctx.restart() {
            findings.fatal(format!(
                "could not restart the server for the next cases: {e}"
            ));
        }
    }
}

/// Serialises suites within one process: two at once would distort each
/// other's timing cases on a 2-core machine.
static SUITE: Mutex<()> = Mutex::new(());

/// Serialises suites across processes too (`cargo nextest` runs test
/// binaries side by side): `flock(LOCK_EX)` on a file in the temp directory,
/// released by the kernel when the holder exits, however it exits. `None`
/// (with a warning) if the lock cannot be had: the suite then runs anyway.
fn machine_lock() -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join("lab-conformance.lock");
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) => {
            eprintln!(
                "harness check: open({}): {e}; suites not serialised across processes",
                path.display()
            );
            return None;
        }
    };
    loop {
        // SAFETY: flock on a descriptor we own, for as long as `file` lives.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Some(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            eprintln!(
                "harness check: flock({}, LOCK_EX): {e}; suites not serialised across processes",
                path.display()
            );
            return None;
        }
    }
}

/// Runs the whole suite against `binary` (named like its model crate) in
/// `mode` with `extra_args`, prints the table, and panics listing every FAIL.
/// For the model crates' `tests/conformance.rs`, with
/// `env!("CARGO_BIN_EXE_<model>")`.
pub fn assert_conforms(binary: &Path, mode: Option<&str>, extra_args: &[&str]) {
    let _one_at_a_time = SUITE.lock().unwrap_or_else(|p| p.into_inner());
    let _one_per_machine = machine_lock();
    let model = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
    let target = Target::model(&model, binary, mode, &extra);
    let report = match run(&target, &[], &mut |_| {}) {
        Ok(report) => report,
        Err(e) => panic!("conformance of {}: could not run: {e}", target.label()),
    };
    println!("{report}");
    let failures = report.failures();
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        panic!(
            "{} of {} cases FAILED for {}:\n{}",
            failures.len(),
            report.cases.len(),
            report.label,
            list.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_beats_an_expected_limit() {
        let entry = &expect::TABLE[0];
        let mut f = Findings::default();
        f.limit("stalled");
        f.fatal("byte 7 differs");
        let (verdict, detail) = judge(f, Some(entry));
        assert_eq!(verdict, Verdict::Fail);
        assert!(detail.contains("byte 7 differs") && detail.contains("stalled"));
    }

    #[test]
    fn limit_is_excused_only_by_the_table() {
        let mut f = Findings::default();
        f.limit("3 of 20 not answered within 1 s");
        assert_eq!(judge(f, None).0, Verdict::Fail);
        let mut f = Findings::default();
        f.limit("3 of 20 not answered within 1 s");
        let (verdict, detail) = judge(f, Some(&expect::TABLE[0]));
        assert_eq!(verdict, Verdict::ExpectedLimit);
        assert!(detail.contains(expect::TABLE[0].reason));
    }

    #[test]
    fn an_expected_limit_that_does_not_show_is_a_pass_with_a_note() {
        let (verdict, detail) = judge(Findings::default(), Some(&expect::TABLE[0]));
        assert_eq!(verdict, Verdict::Pass);
        assert!(detail.contains("did not show"));
    }

    #[test]
    fn repeated_messages_are_counted_not_repeated() {
        let m = |s: &str| s.to_owned();
        assert_eq!(
            joined(&[m("reset"), m("late"), m("reset"), m("reset")]),
            "reset (×3); late"
        );
    }

    #[test]
    fn only_accepts_known_case_names() {
        assert_eq!(
            parse_only(&["echo".into(), "idle".into()]).expect("known"),
            vec![Case::Echo, Case::Idle]
        );
        assert!(parse_only(&["nope".into()]).is_err());
    }
}
