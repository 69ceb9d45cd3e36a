//! The load generator: event-driven, one thread per CPU it is given, each
//! pinned there, each running its own level-triggered epoll loop over its
//! share of the connections.
//!
//! Workloads:
//! - `pingpong`: C connections, S-byte requests, closed loop (send again as
//!   soon as the reply is complete) or open loop (`rate`: each request has a
//!   fixed send time and its latency counts from it, see `schedule`).
//! - `connect`: TCP_CRR — connect, one request, its reply, close (RST by
//!   default so TIME_WAIT cannot exhaust local ports; spread over
//!   127.0.0.2-254 once ports run short anyway), C such loops at once.
//! - `idle`: I connections, each answered once then held silent, beside C
//!   active ping-pong connections; reports how many idle ones the server
//!   closed or reset.
//!
//! Every reply byte is checked against the echo transform; every failure is
//! counted in one class (`errors`). Connections are made before the clock
//! starts; then a warm-up, then the timed window in which requests,
//! latencies and the generator's own CPU time are counted.

pub mod errors;
pub mod latency;
pub mod schedule;
pub mod sys;
mod worker;

use crate::measurement::{
    ClientCpu, CloseMode, ConnectOutcome, Errors, IdleOutcome, Latency, WorkloadKind,
};
use latency::Recorder;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use worker::{Plan, Worker, WorkerReport};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: SocketAddr,
    pub kind: WorkloadKind,
    /// Ping-pong connections, active ones beside the idle, or connects in
    /// flight at once.
    pub conns: usize,
    pub size: usize,
    /// Open loop, requests per second over all connections.
    pub rate: Option<f64>,
    pub idle: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    pub close: CloseMode,
    /// One load thread per CPU listed, pinned to it. Empty: one unpinned
    /// thread.
    pub cpus: Vec<usize>,
    pub seed: u64,
    /// Without it, any target outside 127.0.0.0/8 and ::1 is refused.
    pub allow_remote: bool,
    /// Timer slack of each load thread, ns (`PR_SET_TIMERSLACK`): with the
    /// default 50 µs an open-loop send may go out up to 50 µs late.
    pub timer_slack_ns: u64,
}

/// The shared clock of a run: every thread counts the same window.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub epoch: Instant,
    pub window_start: Instant,
    pub window_end: Instant,
}

/// One connection of the connect workload, from its `socket()` call to its
/// reply, on `CLOCK_MONOTONIC` (`sys::monotonic_ns`): the server's
/// `accept4` of it returned inside the span. (The workload's `latency`
/// counts from the previous connection's reply, so it includes that one's
/// close; a span does not.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectSpan {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// What the generator measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Requests (or connections) completed and verified in the window.
    pub requests: u64,
    pub window: Duration,
    /// Wall-clock time at the start of the window.
    pub window_started: SystemTime,
    pub latency: Option<Latency>,
    pub errors: Errors,
    pub bytes_verified: u64,
    pub client: ClientCpu,
    pub idle: Option<IdleOutcome>,
    pub connect: Option<ConnectOutcome>,
    /// Open loop only: requests due before the window's end but not
    /// answered by then.
    pub openloop_missed: Option<u64>,
    /// Connect workload: every connection completed in the window.
    pub spans: Vec<ConnectSpan>,
    /// The load threads' timer slack as the kernel held it, ns (the
    /// largest of the threads').
    pub timer_slack_ns: u64,
}

/// A run in progress: connections made, the window's times fixed.
pub struct Running {
    pub timeline: Timeline,
    window_started: SystemTime,
    spec: LoadSpec,
    /// Each thread's report and its timer slack in ns.
    threads: Vec<JoinHandle<io::Result<(WorkerReport, u64)>>>,
    /// Dropped by `join`: until then every worker keeps its connections
    /// open after the window, so the server's per-connection threads and
    /// processes are still there (with their counters) when the caller
    /// reads the server's side of the window.
    hold: Vec<mpsc::Sender<()>>,
}

/// The target must be loopback unless the caller said otherwise: a load
/// generator pointed at someone else's machine is an attack.
pub fn check_target(target: &SocketAddr, allow_remote: bool) -> io::Result<()> {
    if target.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to load {target}: not a loopback address (127.0.0.0/8 or ::1); \
                 pass --allow-remote to measure a server you own elsewhere"
            ),
        ))
    }
}

/// Splits `n` as evenly as possible over `parts`.
fn share(n: usize, parts: usize, i: usize) -> usize {
    n / parts + usize::from(i < n % parts)
}

fn validate(spec: &LoadSpec) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    check_target(&spec.target, spec.allow_remote)?;
    if spec.size == 0 {
        return bad("request size must be at least 1 byte".into());
    }
    if spec.conns == 0 && spec.kind != WorkloadKind::Idle {
        return bad(format!(
            "{} needs at least one connection",
            spec.kind.as_str()
        ));
    }
    if spec.duration.is_zero() {
        return bad("duration must be positive".into());
    }
    if let Some(r) = spec.rate {
        if spec.kind == WorkloadKind::Connect {
            return bad("--rate applies to pingpong and idle, not connect".into());
        }
        if !(r.is_finite() && r > 0.0) {
            return bad(format!("rate must be positive, not {r}"));
        }
        if spec.conns == 0 {
            return bad("--rate needs at least one active connection".into());
        }
    }
    Ok(())
}

/// Spawns the load threads, makes every connection, fixes the window
/// (warm-up starts now) and returns; `Running::join` waits for the end.
pub fn start(spec: LoadSpec) -> io::Result<Running> {
    validate(&spec)?;
    let needed = spec.conns + spec.idle + 64;
    let limit = sys::raise_nofile_limit()?;
    if (limit as usize) < needed {
        return Err(io::Error::other(format!(
            "RLIMIT_NOFILE is {limit}, {needed} descriptors needed; raise the hard limit"
        )));
    }
    let cpus: Vec<Option<usize>> = if spec.cpus.is_empty() {
        vec![None]
    } else {
        spec.cpus.iter().copied().map(Some).collect()
    };
    let n = cpus.len();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut go = Vec::with_capacity(n);
    let mut hold = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    let mut next_global = 0;
    for (t, cpu) in cpus.into_iter().enumerate() {
        let active = share(spec.conns, n, t);
        let plan = Plan {
            thread: t,
            cpu,
            active: (next_global..next_global + active).collect(),
            idle: share(spec.idle, n, t),
        };
        next_global += active;
        let (go_tx, go_rx) = mpsc::channel();
        go.push(go_tx);
        let (hold_tx, hold_rx) = mpsc::channel();
        hold.push(hold_tx);
        let ready = ready_tx.clone();
        let spec = spec.clone();
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                if let Some(c) = plan.cpu {
                    if let Err(e) = sys::pin_current_thread(&[c]) {
                        let _ = ready.send(plan.thread);
                        return Err(e);
                    }
                }
                if let Err(e) = sys::set_timer_slack(spec.timer_slack_ns) {
                    let _ = ready.send(plan.thread);
                    return Err(e);
                }
                // As the kernel holds it (read back, not assumed).
                let slack = match sys::timer_slack() {
                    Ok(ns) => ns,
                    Err(e) => {
                        let _ = ready.send(plan.thread);
                        return Err(e);
                    }
                };
                match Worker::new(spec, &plan) {
                    Ok(w) => w
                        .run(plan.thread, ready, go_rx, hold_rx)
                        .map(|r| (r, slack)),
                    Err(e) => {
                        let _ = ready.send(plan.thread);
                        Err(e)
                    }
                }
            })
            .map_err(|e| sys::named("spawn load thread", e))?;
        threads.push(h);
    }
    drop(ready_tx);
    // Every thread says ready (even one that failed): a panicked thread is
    // noticed by its handle instead of being waited for forever.
    let mut ready = 0;
    while ready < n {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => ready += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if threads.iter().any(|h| h.is_finished()) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let epoch = Instant::now();
    let window_started = SystemTime::now() + spec.warmup;
    let timeline = Timeline {
        epoch,
        window_start: epoch + spec.warmup,
        window_end: epoch + spec.warmup + spec.duration,
    };
    for g in &go {
        // A thread that already failed has dropped its receiver; its error
        // comes out of `join`.
        let _ = g.send(timeline);
    }
    Ok(Running {
        timeline,
        window_started,
        spec,
        threads,
        hold,
    })
}

impl Running {
    /// Waits for every thread and merges what they measured.
    pub fn join(self) -> io::Result<LoadReport> {
        drop(self.hold);
        let mut latency = Recorder::new()?;
        let mut errors = Errors::default();
        let (mut requests, mut bytes) = (0u64, 0u64);
        let (mut user, mut sys_t) = (Duration::ZERO, Duration::ZERO);
        let mut idle = IdleOutcome::default();
        let mut sources = [0u64; 4];
        let mut exhausted = 0;
        let mut missed = 0;
        let mut spans = Vec::new();
        let threads = self.threads.len();
        let mut first_err = None;
        let mut timer_slack_ns = 0;
        for h in self.threads {
            let r = match h.join() {
                Ok(Ok((r, slack))) => {
                    timer_slack_ns = timer_slack_ns.max(slack);
                    r
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                    continue;
                }
                Err(_) => {
                    first_err.get_or_insert(io::Error::other("a load thread panicked"));
                    continue;
                }
            };
            latency.merge(&r.latency)?;
            errors.merge(&r.errors);
            requests += r.requests;
            bytes += r.bytes_verified;
            user += r.cpu_user;
            sys_t += r.cpu_sys;
            idle.requested += r.idle.requested;
            idle.served += r.idle.served;
            idle.unserved += r.idle.unserved;
            idle.dropped_eof += r.idle.dropped_eof;
            idle.dropped_rst += r.idle.dropped_rst;
            for (a, b) in sources.iter_mut().zip(r.sources) {
                *a |= b;
            }
            exhausted += r.ports_exhausted;
            missed += r.openloop_missed;
            spans.extend(r.spans);
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let cpu = (user + sys_t).as_secs_f64();
        let spread: usize = sources.iter().map(|w| w.count_ones() as usize).sum();
        Ok(LoadReport {
            requests,
            window: self.timeline.window_end - self.timeline.window_start,
            window_started: self.window_started,
            latency: latency.summary(),
            errors,
            bytes_verified: bytes,
            client: ClientCpu {
                threads,
                user_s: user.as_secs_f64(),
                sys_s: sys_t.as_secs_f64(),
                cpu_per_request_us: (requests > 0).then(|| cpu * 1e6 / requests as f64),
            },
            idle: (self.spec.kind == WorkloadKind::Idle).then_some(idle),
            connect: (self.spec.kind == WorkloadKind::Connect).then_some(ConnectOutcome {
                // The kernel's own choice counts as one source address.
                source_addresses: spread.max(1),
                ports_exhausted: exhausted,
            }),
            openloop_missed: self.spec.rate.map(|_| missed),
            spans,
            timer_slack_ns,
        })
    }
}

/// Runs a whole workload: `start` then `join`.
pub fn run(spec: LoadSpec) -> io::Result<LoadReport> {
    start(spec)?.join()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_splits_evenly_and_loses_nothing() {
        for n in [0, 1, 7, 100, 1001] {
            for parts in 1..5 {
                let v: Vec<usize> = (0..parts).map(|i| share(n, parts, i)).collect();
                assert_eq!(v.iter().sum::<usize>(), n);
                assert!(v.iter().max().unwrap() - v.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn remote_targets_are_refused_unless_allowed() {
        let remote: SocketAddr = "192.0.2.1:7".parse().unwrap();
        let err = check_target(&remote, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("--allow-remote"));
        assert!(check_target(&remote, true).is_ok());
        for ok in ["127.0.0.1:7", "127.9.9.9:7", "[::1]:7"] {
            assert!(check_target(&ok.parse().unwrap(), false).is_ok(), "{ok}");
        }
    }
}
