//! `harness phases MODEL[:MODE]`: the two phases of one request, traced.
//!
//! Every text on I/O models draws Stevens' figure: a request is first
//! *waited for* (until data is there) and then *copied* (from the kernel's
//! socket buffer into the process). Which call blocks in which phase is what
//! tells the five models apart. This command measures it: it starts the
//! model, attaches `strace -f -ttt -T` to every thread of its tree (the
//! kernel here has no syscall tracepoints for perf to sample; strace is
//! what every Linux box has), then sends a handful of small requests on one
//! connection, pausing between them so that the server has to wait for
//! each, with a few idle connections beside it for the models that
//! multiplex. For one representative request it prints the server's calls
//! in order, each with its duration, its result and its phase (see
//! [`classify`]), and a summary: time waiting, time copying, calls.
//!
//! strace stops the server at every system call, so absolute durations are
//! inflated (by some µs per call); the order of the calls, which call
//! blocks, and the share of the time each phase takes are what it shows.
//! For `uring`, which makes no copy call, a second run without strace reads
//! the kernel's io_uring tracepoints to say where each RECV's copy ran
//! ([`uring`]).

pub mod uring;

pub mod lanes;

use crate::account::procfs::{thread_ids, tree_pids};
use crate::server::{ModelSpec, Server, ServerConfig};
use nix::sys::signal::Signal;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where strace is looked for when it is not on `PATH`.
const STRACE: &str = "/usr/bin/strace";
/// Requests sent on the traced connection.
pub const REQUESTS: usize = 5;
/// The one shown: the middle one, away from connection set-up and teardown.
pub const REPRESENTATIVE: usize = 2;
/// Pause before each request: the server has nothing to do meanwhile, so
/// whatever it does in that time is its way of waiting.
pub const GAP: Duration = Duration::from_millis(20);
/// A read that returned data after at least this long was blocked waiting
/// for it (a read that does not wait takes microseconds, even under strace).
/// Well below [`GAP`], well above a copy of a few bytes.
pub const BLOCKED: f64 = 2e-3;
/// Idle connections opened beside the traced one, for models that serve
/// many connections from one thread (they are in the wait set but never
/// ready).
const IDLE_CONNS: usize = 3;
/// How long strace may take to attach to every thread.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct PhasesArgs {
    /// MODEL[:MODE], e.g. `epoll:level`.
    pub model: String,
    /// Keep the raw strace output here.
    #[arg(long)]
    pub raw: Option<PathBuf>,
    /// Extra arguments for the server, after `--`.
    #[arg(last = true)]
    pub server_args: Vec<String>,
}

/// What one call returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A non-negative return value.
    Value(i64),
    /// `-1 ERRNO`: the errno's name.
    Error(String),
    /// `?` (the call did not return, e.g. `exit_group`).
    Unknown,
}

/// One system call of the server, as strace reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub tid: i32,
    /// Entry time, seconds since the epoch (CLOCK_REALTIME).
    pub start: f64,
    /// Time spent inside the call, seconds (strace `-T`).
    pub duration: f64,
    pub name: String,
    /// The argument text, as strace printed it.
    pub args: String,
    pub outcome: Outcome,
}

impl Call {
    pub fn end(&self) -> f64 {
        self.start + self.duration
    }
}

/// Stevens' two phases, plus everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// Blocked (or asking again and again) until data is there.
    Wait,
    /// Moving the bytes between the socket buffer and the process.
    Copy,
    /// One blocking call that waited for the data and then copied it
    /// (`read` on a blocking socket): both phases, blocked in both.
    WaitThenCopy,
    Other,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Wait => "wait",
            Phase::Copy => "copy",
            Phase::WaitThenCopy => "wait+copy",
            Phase::Other => "other",
        }
    }
}

/// Calls whose only job is to wait for readiness or completion.
const WAIT_CALLS: &[&str] = &[
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "pause",
    // nonblocking:sleep's back-off between sweeps that found nothing.
    "nanosleep",
    "clock_nanosleep",
];
/// Calls that move bytes from a socket into the process.
const RECV_CALLS: &[&str] = &["read", "readv", "recvfrom", "recvmsg", "recv"];
/// Calls that move bytes from the process into a socket.
const SEND_CALLS: &[&str] = &["write", "writev", "sendto", "sendmsg", "send"];

/// The phase a call belongs to; the one place that decides it.
///
/// - A wait call (`epoll_wait`, `poll`, `select`, `rt_sigtimedwait`, ...)
///   is *wait*, and so is `io_uring_enter` asked to wait for completions
///   (`IORING_ENTER_GETEVENTS` with `min_complete` >= 1): the process sleeps
///   there until the kernel has something for it.
/// - Any call answering `EAGAIN` is *wait*: it is the busy-poll's "not
///   ready", asked again and again instead of sleeping.
/// - A read that returned bytes is *copy*, unless it lasted at least
///   [`BLOCKED`]: then it slept until the data came and copied it, both
///   phases in one call (*wait+copy*). A send that returned bytes is *copy*.
/// - Everything else (accept, close, epoll_ctl, a read of 0 at EOF, an
///   io_uring_enter that only submits) is *other*.
pub fn classify(call: &Call) -> Phase {
    let name = call.name.as_str();
    if matches!(&call.outcome, Outcome::Error(e) if e == "EAGAIN") {
        return Phase::Wait;
    }
    if WAIT_CALLS.contains(&name) {
        return Phase::Wait;
    }
    if name == "io_uring_enter" {
        return if uring_waits(&call.args) {
            Phase::Wait
        } else {
            Phase::Other
        };
    }
    let moved = matches!(call.outcome, Outcome::Value(n) if n > 0);
    if moved && RECV_CALLS.contains(&name) {
        return if call.duration >= BLOCKED {
            Phase::WaitThenCopy
        } else {
            Phase::Copy
        };
    }
    if moved && SEND_CALLS.contains(&name) {
        return Phase::Copy;
    }
    Phase::Other
}

/// `io_uring_enter(fd, to_submit, min_complete, flags, ...)` waits when
/// flags has GETEVENTS and min_complete is at least 1.
fn uring_waits(args: &str) -> bool {
    let fields: Vec<&str> = args.split(',').map(str::trim).collect();
    let min_complete = fields.get(2).and_then(|f| f.parse::<u64>().ok());
    let getevents = fields
        .get(3)
        .is_some_and(|f| f.contains("IORING_ENTER_GETEVENTS"));
    getevents && min_complete.is_some_and(|n| n >= 1)
}

/// Parses `strace -f -ttt -T` output: `TID SECONDS NAME(ARGS) = RESULT
/// <DURATION>`, with calls that another thread interrupted split into an
/// `<unfinished ...>` line and a `<... NAME resumed>` line. Signal and exit
/// lines are skipped.
pub fn parse_strace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    // tid -> (start, name, args so far) of its call in progress.
    let mut pending: Vec<(i32, f64, String, String)> = Vec::new();
    for line in text.lines() {
        // strace pads the tid column: `5298  1796135544.155450 ...`.
        let Some((tid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let (Ok(tid), Ok(ts)) = (tid.parse::<i32>(), ts.parse::<f64>()) else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            if let Some((name, args)) = head.split_once('(') {
                pending.retain(|p| p.0 != tid);
                // strace ends the first half after the last complete
                // argument and its separator: `epoll_wait(5, `.
                let mut head = args.trim_end().to_owned();
                if head.ends_with(',') {
                    head.push(' ');
                }
                pending.push((tid, ts, name.to_owned(), head));
            }
            continue;
        }
        let (start, name, text) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some(i) = pending.iter().position(|p| p.0 == tid && p.2 == name) else {
                continue;
            };
            let (_, start, name, head) = pending.remove(i);
            (start, name, format!("{head}{tail}"))
        } else {
            let Some((name, tail)) = rest.split_once('(') else {
                continue;
            };
            (ts, name.to_owned(), tail.to_owned())
        };
        if let Some(call) = finish(tid, start, name, &text) {
            calls.push(call);
        }
    }
    calls
}

/// `ARGS) = RESULT <DURATION>` into a call.
fn finish(tid: i32, start: f64, name: String, text: &str) -> Option<Call> {
    let (args, result) = text.rsplit_once(") = ")?;
    let (result, duration) = match result.rsplit_once(" <") {
        Some((r, d)) => (r, d.strip_suffix('>')?.parse::<f64>().ok()?),
        None => (result, 0.0),
    };
    let mut words = result.split_whitespace();
    let outcome = match words.next()? {
        "?" => Outcome::Unknown,
        "-1" => Outcome::Error(words.next().unwrap_or("?").to_owned()),
        v => match v.parse::<i64>() {
            Ok(n) => Outcome::Value(n),
            // Hex results (mmap addresses) and the like.
            Err(_) => Outcome::Value(0),
        },
    };
    Some(Call {
        tid,
        start,
        duration,
        name,
        args: args.to_owned(),
        outcome,
    })
}

/// When the client sent request `i` and when its whole reply had come back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestTimes {
    pub sent: f64,
    pub replied: f64,
}

/// The server's calls that served request `i`: from the end of its reply
/// to request `i - 1` (the last send that ended before request `i` was sent;
/// for a model whose sends the trace does not show, the client's reply time)
/// to the end of its reply to request `i` (the last send ending by the
/// client's reply time, with slack for the client waking first). The wait
/// for request `i` lies in between, whichever thread did it.
pub fn request_window(calls: &[Call], times: &[RequestTimes], i: usize) -> Vec<Call> {
    let slack = GAP.as_secs_f64() / 4.0;
    let is_send = |c: &Call| SEND_CALLS.contains(&c.name.as_str()) && classify(c) == Phase::Copy;
    let this = times[i];
    let floor = if i == 0 { f64::MIN } else { times[i - 1].sent };
    let from = calls
        .iter()
        .filter(|c| is_send(c) && c.end() < this.sent && c.end() > floor)
        .map(Call::end)
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))))
        .unwrap_or(if i == 0 {
            this.sent - slack
        } else {
            times[i - 1].replied
        });
    let to = calls
        .iter()
        .filter(|c| is_send(c) && c.end() > this.sent && c.end() <= this.replied + slack)
        .map(Call::end)
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))))
        .unwrap_or(this.replied);
    let mut window: Vec<Call> = calls
        .iter()
        .filter(|c| c.end() > from && c.end() <= to)
        .cloned()
        .collect();
    window.sort_by(|a, b| a.start.total_cmp(&b.start));
    window
}

fn is_eagain(c: &Call) -> bool {
    matches!(&c.outcome, Outcome::Error(e) if e == "EAGAIN")
}

/// A stretch of a request's time in one phase: one call, or a busy-poll's
/// run of consecutive `EAGAIN` answers (whatever the calls), which together
/// are one wait lasting from the first question to the last "not ready".
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub phase: Phase,
    pub calls: Vec<Call>,
}

impl Segment {
    pub fn duration(&self) -> f64 {
        self.end - self.start
    }

    pub fn is_busy_poll(&self) -> bool {
        self.calls.len() > 1
    }

    /// The name a header uses for this wait: the call, or `EAGAIN run`.
    pub fn wait_name(&self) -> String {
        if self.is_busy_poll() || self.calls.first().is_some_and(is_eagain) {
            "EAGAIN run".into()
        } else {
            self.calls
                .first()
                .map_or_else(String::new, |c| c.name.clone())
        }
    }
}

pub fn segments(calls: &[Call]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for c in calls {
        if is_eagain(c) {
            if let Some(last) = out.last_mut() {
                if last.calls.last().is_some_and(is_eagain) {
                    last.end = last.end.max(c.end());
                    last.calls.push(c.clone());
                    continue;
                }
            }
        }
        out.push(Segment {
            start: c.start,
            end: c.end(),
            phase: classify(c),
            calls: vec![c.clone()],
        });
    }
    out
}

/// Time per phase over a request's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Wait, including the whole of each wait+copy call and the whole span
    /// of each busy-poll run.
    pub wait_s: f64,
    pub copy_s: f64,
    pub other_s: f64,
    pub calls: usize,
    /// Calls that were wait+copy (blocked in both phases at once).
    pub wait_then_copy: usize,
    /// Calls that moved bytes (copy or wait+copy).
    pub copies: usize,
}

pub fn totals(calls: &[Call]) -> Totals {
    let mut t = Totals::default();
    for seg in segments(calls) {
        let d = seg.duration();
        match seg.phase {
            Phase::Wait => t.wait_s += d,
            Phase::Copy => {
                t.copy_s += d;
                t.copies += 1;
            }
            Phase::WaitThenCopy => {
                t.wait_s += d;
                t.wait_then_copy += 1;
                t.copies += 1;
            }
            Phase::Other => t.other_s += d,
        }
        t.calls += seg.calls.len();
    }
    t
}

/// The wait the request spent longest in: the name a model's header gives
/// for "phase 1 blocks in ..." (`EAGAIN run` for a busy-poll).
pub fn main_wait(calls: &[Call]) -> Option<String> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for seg in segments(calls) {
        if !matches!(seg.phase, Phase::Wait | Phase::WaitThenCopy) {
            continue;
        }
        let key = seg.wait_name();
        match by_name.iter_mut().find(|(k, _)| *k == key) {
            Some((_, d)) => *d += seg.duration(),
            None => by_name.push((key, seg.duration())),
        }
    }
    by_name
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

/// What a model's header says about its wait, as a check on the trace:
/// the names the main wait may have, and whether the process copies the
/// bytes itself (false: the kernel does, as with io_uring).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeaderSays {
    pub waits_in: &'static [&'static str],
    pub copies_itself: bool,
    pub text: &'static str,
}

/// The headers' statements, one per model (mode where it matters).
pub fn header_says(spec: &ModelSpec) -> Option<HeaderSays> {
    let says = |waits_in, copies_itself, text| {
        Some(HeaderSays {
            waits_in,
            copies_itself,
            text,
        })
    };
    match (spec.model.as_str(), spec.mode.as_deref()) {
        ("blocking", _) => says(
            &["read", "recvfrom"],
            true,
            "phase 1 blocks in read, which then copies (both phases in one call)",
        ),
        ("nonblocking", Some("spin")) => says(
            &["EAGAIN run"],
            true,
            "phase 1 is never a wait: recv answers EAGAIN until data is there",
        ),
        ("nonblocking", _) => says(
            &["EAGAIN run", "nanosleep", "clock_nanosleep"],
            true,
            "phase 1: sweeps of EAGAIN, with naps between sweeps that found nothing",
        ),
        ("select", _) => says(&["select", "pselect6"], true, "phase 1 blocks in select"),
        ("poll", _) => says(&["poll", "ppoll"], true, "phase 1 blocks in poll"),
        ("epoll", _) | ("coroutine", _) | ("peers", _) => says(
            &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
            true,
            "phase 1 blocks in epoll_wait",
        ),
        ("sigio", _) => says(
            &["rt_sigtimedwait", "poll", "ppoll"],
            true,
            "phase 1 blocks in sigwaitinfo (rt_sigtimedwait) for the I/O signal",
        ),
        ("uring", _) => says(
            &["io_uring_enter"],
            false,
            "both phases are the kernel's: the process waits in io_uring_enter for the completion",
        ),
        _ => None,
    }
}

/// Whether the trace agrees with the header; `Err` says how not.
pub fn agrees(says: &HeaderSays, calls: &[Call]) -> Result<(), String> {
    let main = main_wait(calls).ok_or("no wait at all in the trace")?;
    if !says.waits_in.contains(&main.as_str()) {
        return Err(format!(
            "the trace waits mostly in {main}, the header says {:?}",
            says.waits_in
        ));
    }
    let t = totals(calls);
    match (says.copies_itself, t.copies) {
        (true, 0) => Err("the header says the process copies, the trace has no copy".into()),
        (false, n) if n > 0 => Err(format!(
            "the header says the kernel copies, the trace has {n} copy calls"
        )),
        _ => Ok(()),
    }
}

/// One model's traced request.
#[derive(Clone, Debug)]
pub struct Traced {
    pub spec: ModelSpec,
    pub calls: Vec<Call>,
    pub totals: Totals,
    pub server_command: String,
    /// Every call strace saw, for `--raw`.
    pub raw: String,
    /// For `uring`: where the kernel ran each RECV's copy, from a second,
    /// untraced-by-strace run read through the io_uring tracepoints (or
    /// why that could not be done).
    pub kernel: Option<Result<uring::KernelTrace, String>>,
}

impl Traced {
    /// The check against the model's header, as one line.
    pub fn header_line(&self) -> String {
        match header_says(&self.spec) {
            None => format!("header: no statement recorded for `{}`", self.spec.model),
            Some(says) => match agrees(&says, &self.calls) {
                Ok(()) => format!("header: {} — the trace agrees", says.text),
                Err(why) => format!("header: {} — the trace DISAGREES: {why}", says.text),
            },
        }
    }

    pub fn summary_line(&self) -> String {
        let t = &self.totals;
        format!(
            "summary {}: wait {:.3} ms, copy {:.3} ms, other {:.3} ms, {} calls \
             ({} moving bytes, {} blocked in both phases); main wait: {}",
            self.spec,
            t.wait_s * 1e3,
            t.copy_s * 1e3,
            t.other_s * 1e3,
            t.calls,
            t.copies,
            t.wait_then_copy,
            main_wait(&self.calls).unwrap_or_else(|| "none".into()),
        )
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn strace_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("strace"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from(STRACE))
}

/// `TracerPid` of every thread of each of `pids` is set.
fn all_traced(pids: &[i32]) -> bool {
    pids.iter().all(|pid| {
        let tids = thread_ids(*pid);
        !tids.is_empty()
            && tids.iter().all(|tid| {
                fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("TracerPid:"))
                            .map(|v| v.trim() != "0")
                    })
                    .unwrap_or(false)
            })
    })
}

/// The processes of the tree once it has stopped growing (a pre-forking
/// server forks its workers after it says it listens): the same list three
/// times 50 ms apart, or whatever it is after two seconds.
fn settled_tree(root: i32) -> Vec<i32> {
    let mut last = tree_pids(root).unwrap_or_default();
    let mut same = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while same < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        let now = tree_pids(root).unwrap_or_default();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// strace attached to the whole tree of `root`, writing to `out`; with
/// `-f`, processes and threads created later are traced too.
fn attach_strace(root: i32, out: &Path) -> io::Result<Child> {
    let strace = strace_binary();
    let pids = settled_tree(root);
    let mut cmd = Command::new(&strace);
    cmd.args(["-f", "-ttt", "-T", "-qq", "-s", "32", "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for pid in &pids {
        cmd.args(["-p", &pid.to_string()]);
    }
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "spawn {}: {e} (harness phases needs strace: apt-get install strace)",
                strace.display()
            ),
        )
    })?;
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    while !all_traced(&pids) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(io::Error::other(format!(
                "strace exited before attaching ({status}): {}",
                err.trim()
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "strace did not attach to every thread of {pids:?} within {ATTACH_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

/// Sends [`REQUESTS`] requests on one fresh connection, [`GAP`] apart,
/// each awaited in full, and returns when each was sent and answered.
fn drive(addr: std::net::SocketAddr) -> io::Result<Vec<RequestTimes>> {
    let named = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let mut stream = TcpStream::connect(addr).map_err(|e| named("connect", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| named("setsockopt(SO_RCVTIMEO)", e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| named("setsockopt(TCP_NODELAY)", e))?;
    let mut times = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        thread::sleep(GAP);
        let request = format!("phase request {i}\n");
        let sent = now_s();
        stream
            .write_all(request.as_bytes())
            .map_err(|e| named("send", e))?;
        let mut reply = vec![0u8; request.len()];
        stream
            .read_exact(&mut reply)
            .map_err(|e| named(&format!("recv reply {i}"), e))?;
        let replied = now_s();
        if reply != request.to_ascii_uppercase().as_bytes() {
            return Err(io::Error::other(format!(
                "reply {i} is {:?}, not the request upper-cased",
                String::from_utf8_lossy(&reply)
            )));
        }
        times.push(RequestTimes { sent, replied });
    }
    thread::sleep(GAP);
    // Best effort: the server is stopped right after anyway.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(times)
}

/// Starts `spec`, traces it while [`drive`] talks to it, stops it.
pub fn trace(spec: &ModelSpec, server_args: &[String]) -> io::Result<Traced> {
    let config = ServerConfig::for_spec(spec, server_args)?;
    let server_command = config.command_line();
    let mut server = Server::start(&config)?;
    let raw_path = std::env::temp_dir().join(format!(
        "harness-phases-{}-{}.strace",
        std::process::id(),
        server.pid()
    ));
    let outcome = trace_running(spec, &server, &raw_path);
    let stopped = server.stop(Signal::SIGTERM, Duration::from_secs(2));
    let raw = fs::read_to_string(&raw_path).unwrap_or_default();
    // Best effort: a temp file left behind is not worth failing the run.
    let _ = fs::remove_file(&raw_path);
    let times = outcome?;
    stopped?;
    let all = parse_strace(&raw);
    let calls = request_window(&all, &times, REPRESENTATIVE);
    let kernel = (spec.model == "uring")
        .then(|| trace_kernel(&config).map_err(|e| format!("io_uring tracepoints: {e}")));
    Ok(Traced {
        spec: spec.clone(),
        totals: totals(&calls),
        calls,
        server_command,
        raw,
        kernel,
    })
}

/// A second run of the same server, without strace (which would stop it at
/// every call), with the io_uring tracepoints on while [`drive`] talks to
/// it: where each RECV's copy ran.
pub fn trace_kernel(config: &ServerConfig) -> io::Result<uring::KernelTrace> {
    let mut server = Server::start(config)?;
    let outcome = (|| -> io::Result<uring::KernelTrace> {
        let idle: Vec<TcpStream> = (0..IDLE_CONNS)
            .map(|_| TcpStream::connect(server.addr()))
            .collect::<io::Result<_>>()
            .map_err(|e| io::Error::new(e.kind(), format!("connect (idle): {e}")))?;
        let tids: Vec<i32> = tree_pids(server.pid())?
            .into_iter()
            .flat_map(thread_ids)
            .collect();
        let instance = uring::start(&tids)?;
        drive(server.addr())?;
        let events = instance.finish()?;
        drop(idle);
        Ok(uring::analyse(&events, &tids))
    })();
    let stopped = server.stop(Signal::SIGTERM, Duration::from_secs(2));
    let trace = outcome?;
    stopped?;
    Ok(trace)
}

fn trace_running(spec: &ModelSpec, server: &Server, raw: &Path) -> io::Result<Vec<RequestTimes>> {
    // Idle connections first, so that the traced one is served among them.
    // Not for `blocking`: there each connection has its own thread or
    // process (and `iterative` would serve the first idle one forever).
    let idle: Vec<TcpStream> = if spec.model == "blocking" {
        Vec::new()
    } else {
        (0..IDLE_CONNS)
            .map(|_| TcpStream::connect(server.addr()))
            .collect::<io::Result<_>>()
            .map_err(|e| io::Error::new(e.kind(), format!("connect (idle): {e}")))?
    };
    let mut strace = attach_strace(server.pid(), raw)?;
    let times = drive(server.addr());
    // SIGINT makes strace detach from every thread and flush its output.
    let detached = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        Signal::SIGINT,
    );
    let waited = strace.wait();
    drop(idle);
    detached.map_err(|e| io::Error::other(format!("kill(strace, SIGINT): {e}")))?;
    waited.map_err(|e| io::Error::new(e.kind(), format!("wait(strace): {e}")))?;
    times
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Value(n) => n.to_string(),
        Outcome::Error(e) => format!("-1 {e}"),
        Outcome::Unknown => "?".into(),
    }
}

/// The table `harness phases` prints.
pub fn render(t: &Traced) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "phases {}: request {} of {} ({} ms apart, idle connections beside it: {}), \
         traced with strace -f -ttt -T\nserver: {}",
        t.spec,
        REPRESENTATIVE + 1,
        REQUESTS,
        GAP.as_millis(),
        if t.spec.model == "blocking" {
            0
        } else {
            IDLE_CONNS
        },
        t.server_command
    );
    let _ = writeln!(
        out,
        "{:>10}  {:>7}  {:<56} {:>12} {:>11}  phase",
        "at ms", "tid", "call", "result", "duration"
    );
    let origin = t.calls.first().map_or(0.0, |c| c.start);
    for seg in segments(&t.calls) {
        let c = &seg.calls[0];
        let call = if seg.is_busy_poll() {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for c in &seg.calls {
                match counts.iter_mut().find(|(n, _)| *n == c.name) {
                    Some((_, k)) => *k += 1,
                    None => counts.push((&c.name, 1)),
                }
            }
            let list: Vec<String> = counts.iter().map(|(n, k)| format!("{n} ×{k}")).collect();
            format!("EAGAIN run: {}", list.join(", "))
        } else {
            format!("{}({})", c.name, c.args)
        };
        let call = if call.chars().count() > 56 {
            call.chars().take(55).collect::<String>() + "…"
        } else {
            call
        };
        let _ = writeln!(
            out,
            "{:>10.3}  {:>7}  {:<56} {:>12} {:>8.3} ms  {}",
            (seg.start - origin) * 1e3,
            c.tid,
            call,
            outcome_text(&c.outcome),
            seg.duration() * 1e3,
            seg.phase.label()
        );
    }
    let _ = writeln!(out, "{}", t.summary_line());
    let _ = writeln!(out, "{}", t.header_line());
    match &t.kernel {
        Some(Ok(k)) => {
            let _ = writeln!(out, "{}", k.summary());
        }
        Some(Err(why)) => {
            let _ = writeln!(out, "kernel trace: not taken: {why}");
        }
        None => {}
    }
    out
}

pub fn main(args: PhasesArgs) -> io::Result<ExitCode> {
    let spec: ModelSpec = args
        .model
        .parse()
        .map_err(|e: String| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let traced = trace(&spec, &args.server_args)?;
    if let Some(path) = &args.raw {
        fs::write(path, &traced.raw)
            .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))?;
    }
    print!("{}", render(&traced));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
