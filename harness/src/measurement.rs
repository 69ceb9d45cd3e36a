//! One measurement: what `harness run` prints and `harness compare` stores.
//!
//! A `Measurement` is the record of one run of one workload against one
//! server, serialised as one JSON object (`harness run --json`,
//! `results/*.json`). Every figure in it was measured during the timed
//! window; a figure that could not be measured is `None` (JSON `null`,
//! shown `n/a`) with the reason in a `*_na_reason` field — never a guess.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bumped whenever a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Measurement {
    pub schema: u32,
    /// What was asked for: `epoll:level`, `blocking` (its default mode), or
    /// `target` when an already running server was measured.
    pub model: String,
    /// The address the load was sent to.
    pub target: String,
    pub workload: WorkloadParams,
    /// Start of the timed window (after warm-up), RFC 3339, UTC.
    pub started_at: String,
    /// Start of the timed window, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Length of the timed window actually measured, seconds.
    pub window_s: f64,
    /// Requests (pingpong, idle) or connections (connect) completed and
    /// verified inside the window.
    pub requests: u64,
    /// `requests / window_s`.
    pub rate: f64,
    pub rate_unit: RateUnit,
    /// Latency of the requests completed in the window; `None` if none was.
    /// Closed loop: from send to the last reply byte. Open loop (`--rate`):
    /// from the time the request was *scheduled*, so a late server is not
    /// hidden by a client that waited for it (no coordinated omission).
    /// Connect: from `connect()` to the last reply byte.
    /// In open loop also the requests of `openloop_missed`, each at
    /// `window_end - scheduled`: a lower bound, as wrk2 counts them.
    pub latency: Option<Latency>,
    /// Open loop only: requests scheduled before the window's end but not
    /// answered by then (never sent, or still in flight). Not in `requests`.
    #[serde(default)]
    pub openloop_missed: Option<u64>,
    pub errors: Errors,
    /// Reply bytes compared with the echo transform of what was sent, over
    /// the whole run (setup and warm-up included): every one matched, or it
    /// was counted as a `mismatch`.
    pub bytes_verified: u64,
    pub client: ClientCpu,
    pub server: ServerSide,
    /// Only for the `idle` workload.
    pub idle: Option<IdleOutcome>,
    /// Only for the `connect` workload.
    pub connect: Option<ConnectOutcome>,
    /// Anything a reader must know to trust the figures (e.g. the load and
    /// the server shared a CPU).
    pub notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    #[serde(rename = "requests/s")]
    RequestsPerSec,
    #[serde(rename = "connections/s")]
    ConnectionsPerSec,
}

impl RateUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::RequestsPerSec => "requests/s",
            RateUnit::ConnectionsPerSec => "connections/s",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Pingpong,
    Connect,
    Idle,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Pingpong => "pingpong",
            WorkloadKind::Connect => "connect",
            WorkloadKind::Idle => "idle",
        }
    }
}

/// How a `connect` workload closes each connection.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CloseMode {
    /// `SO_LINGER {on, 0}` then `close`: a RST, no TIME_WAIT left behind.
    Rst,
    /// A plain `close`: FIN, and the client's port sits in TIME_WAIT.
    Fin,
}

impl CloseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseMode::Rst => "rst",
            CloseMode::Fin => "fin",
        }
    }
}

/// The workload's parameters, as run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WorkloadParams {
    pub kind: WorkloadKind,
    /// Ping-pong connections (pingpong; the active ones of idle), or
    /// connections in flight at once (connect).
    pub conns: usize,
    /// Request size in bytes; the reply has the same size.
    pub size: usize,
    /// Open loop: requests per second scheduled over all connections.
    /// `None`: closed loop, each connection sends again as soon as its reply
    /// is complete.
    pub rate: Option<f64>,
    /// Idle connections held open (idle workload; 0 otherwise).
    pub idle: usize,
    /// Busy ping-pong connections beside a connect workload (`--busy`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub busy: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// A request unanswered for this long is counted as a `timeout`.
    pub timeout_s: f64,
    pub close: CloseMode,
    /// CPUs the load generator's threads were pinned to, one thread each.
    pub load_cpus: Vec<usize>,
    /// CPUs the server was pinned to (empty: not started by the harness).
    pub server_cpus: Vec<usize>,
    /// Extra arguments given to the server after `--`.
    pub server_args: Vec<String>,
    /// Timer slack of the load threads, ns (`PR_SET_TIMERSLACK`); `None`
    /// in runs from before it was set (the kernel's default, 50 000).
    #[serde(default)]
    pub timer_slack_ns: Option<u64>,
}

/// Latency percentiles, microseconds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// The percentile spectrum from the same histogram: (percentile, µs)
    /// at `SPECTRUM_PERCENTILES`, for the report's latency figure.
    #[serde(default)]
    pub spectrum: Vec<(f64, f64)>,
}

/// The percentiles of `Latency::spectrum`: p50 to p99.99, spaced as
/// HdrHistogram's own percentile output spaces them (halving the rest).
pub const SPECTRUM_PERCENTILES: [f64; 10] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// Errors by class, over the whole run (setup and warm-up included: an error
/// is never dropped because of when it happened).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    /// `ECONNREFUSED` on connect (nobody listening, or the backlog refused).
    pub refused: u64,
    /// `ECONNRESET`/`EPIPE`: the server reset the connection.
    pub reset: u64,
    /// No complete reply (or no connection) within `timeout_s`.
    pub timeout: u64,
    /// A reply byte differed from the echo transform of the byte sent.
    pub mismatch: u64,
    /// The server closed (EOF) before the whole reply arrived.
    pub short: u64,
    /// Anything else (the first such error is in `first_other`).
    pub other: u64,
    pub first_other: Option<String>,
    /// The first mismatch seen: connection, offset in its reply stream,
    /// expected and received byte.
    pub first_mismatch: Option<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.mismatch + self.short + self.other
    }

    pub fn merge(&mut self, other: &Errors) {
        self.refused += other.refused;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.mismatch += other.mismatch;
        self.short += other.short;
        self.other += other.other;
        if self.first_other.is_none() {
            self.first_other.clone_from(&other.first_other);
        }
        if self.first_mismatch.is_none() {
            self.first_mismatch.clone_from(&other.first_mismatch);
        }
    }
}

/// The load generator's own CPU over the window (`getrusage(RUSAGE_THREAD)`
/// summed over its threads).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClientCpu {
    pub threads: usize,
    pub user_s: f64,
    pub sys_s: f64,
    /// `(user + sys) / requests`, microseconds; `None` with no request.
    pub cpu_per_request_us: Option<f64>,
}

/// The server's side over the window. Every field is `None` when the server
/// was not started by the harness (`--target`) or could not be measured;
/// `na_reason` says why.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct ServerSide {
    pub pid: Option<u32>,
    /// User and system CPU of the whole tree from `/proc` (clock ticks).
    pub user_s: Option<f64>,
    pub sys_s: Option<f64>,
    /// The server's CPU in the window, from the most precise source
    /// available (`cpu_source`): perf `task-clock` or `/proc` ticks.
    #[serde(default)]
    pub cpu_s: Option<f64>,
    #[serde(default)]
    pub cpu_source: Option<String>,
    /// Of `cpu_s`, what io_uring's kernel threads used (`iou-sqp-PID`, the
    /// SQPOLL poller; `iou-wrk-PID`, io-wq workers); `None`: the server had
    /// no such thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring_threads_cpu_s: Option<f64>,
    /// `cpu_s / requests`, microseconds.
    pub cpu_per_request_us: Option<f64>,
    pub ctx_voluntary: Option<u64>,
    pub ctx_involuntary: Option<u64>,
    pub ctx_voluntary_per_request: Option<f64>,
    pub ctx_involuntary_per_request: Option<f64>,
    /// Peak resident set, summed over the server's process tree, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Syscalls per request, by syscall name.
    pub syscalls_per_request: Option<BTreeMap<String, f64>>,
    pub na_reason: Option<String>,
    pub syscalls_na_reason: Option<String>,
    /// The server's own exit summary (whole run, not just the window).
    pub exit_summary: Option<ExitSummary>,
    /// The harness' `/proc` view of the server's CPU over its whole run
    /// (read just before SIGTERM) against the summary's `user + sys`.
    #[serde(default)]
    pub summary_agreement: Option<Agreement>,
    /// The accept path's wake-ups in the window (connect workload only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wakeups: Option<Wakeups>,
    /// Which loop served each new connection, and their latencies per loop
    /// (connect workload with the wake-up trace; `account::landed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landed: Option<Landed>,
    /// Where the server's CPU went in the window, by part (`--profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<CpuProfile>,
    /// Why `profile` is missing although asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_na_reason: Option<String>,
}

/// Where the server's CPU went over one traced window (`harness run
/// --profile`, `account::profile`): user time, kernel time inside each
/// system call (on a CPU only: the time a call slept or waited for a CPU is
/// not in it), kernel time outside system calls, and io_uring's kernel
/// threads. The tracepoints slow every system call of the server, so these
/// are shares of one traced run, not the untraced run's costs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CpuProfile {
    /// Between the trace's begin and end markers, seconds.
    pub window_s: f64,
    /// Requests served in that window (the load's rate times it).
    pub requests: f64,
    /// CPU of the server's own threads (io_uring's kernel threads apart),
    /// from each thread's `schedstat`, nanosecond-exact.
    pub cpu_s: f64,
    /// The same threads' `utime` and `stime` (`/proc/PID/task/TID/stat`):
    /// the scheduler tick's split of `cpu_s`, in 1/`tick_hz` s units.
    pub user_s: f64,
    pub sys_s: f64,
    pub tick_hz: u64,
    /// The same threads' time on a CPU as the trace saw it: the window less
    /// every interval between a switch out and the next switch in (a check
    /// on `cpu_s`, independent of it).
    pub traced_cpu_s: f64,
    /// Per system call, by name; most costly first.
    pub syscalls: Vec<SyscallTime>,
    /// CPU of io_uring's kernel threads (`iou-sqp-*`, `iou-wrk-*`) in the
    /// window, from their `schedstat`; `None`: the server had none.
    pub io_uring_threads_cpu_s: Option<f64>,
    /// Server threads the trace followed.
    pub threads: usize,
    /// Switches to a server thread the trace lacked, inferred from the
    /// thread's next system call (`account::profile::Attribution`).
    #[serde(default)]
    pub switch_ins_inferred: u64,
    /// The time between each inferred switch's earliest and latest place,
    /// summed: how much of `traced_cpu_s` may be another task's, seconds.
    #[serde(default)]
    pub inferred_s: f64,
    /// Over the threads' runs in the window, the run time the scheduler
    /// charged less their length on the trace's clock, seconds, and the
    /// runs (`account::profile::Attribution::clock_excess_s`): what the
    /// scheduler charges for wake-ups that preempt another task, less the
    /// time the hypervisor stole. Part of `cpu_s`, `user_s` and `sys_s`.
    #[serde(default)]
    pub clock_excess_s: f64,
    #[serde(default)]
    pub runs: u64,
}

/// One system call's share of a `CpuProfile`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SyscallTime {
    pub name: String,
    /// Calls that returned in the window.
    pub calls: u64,
    /// Time inside the call on a CPU (kernel mode), seconds.
    pub on_cpu_s: f64,
    /// Time inside the call off any CPU (asleep, or runnable and waiting
    /// for one), seconds: left out of the CPU figures.
    pub off_cpu_s: f64,
}

impl CpuProfile {
    /// The CPU clock's reading for the whole server, seconds: its threads
    /// and io_uring's kernel threads.
    pub fn total_s(&self) -> f64 {
        self.cpu_s + self.io_uring_threads_cpu_s.unwrap_or(0.0)
    }

    /// Kernel time on a CPU inside system calls, seconds.
    pub fn in_syscalls_s(&self) -> f64 {
        self.syscalls.iter().map(|s| s.on_cpu_s).sum()
    }

    /// Kernel time outside system calls (interrupts and softirqs that hit
    /// the server's threads, page faults, task work run on the way back to
    /// user space): `stime` less the time inside calls and less its share
    /// of `clock_excess_s`; tick resolution.
    pub fn outside_syscalls_s(&self) -> f64 {
        self.sys_s - self.in_syscalls_s() - self.excess_share(self.sys_s)
    }

    /// User time, less its share of `clock_excess_s`.
    pub fn user_part_s(&self) -> f64 {
        self.user_s - self.excess_share(self.user_s)
    }

    /// The scheduler splits a thread's charged run time into `utime` and
    /// `stime` in proportion to the ticks that found it in each, so the
    /// excess is in each in that proportion.
    fn excess_share(&self, part_s: f64) -> f64 {
        let total = self.user_s + self.sys_s;
        if total > 0.0 {
            self.clock_excess_s * part_s / total
        } else {
            0.0
        }
    }

    /// `seconds` per request, microseconds.
    pub fn per_request_us(&self, seconds: f64) -> f64 {
        if self.requests > 0.0 {
            seconds * 1e6 / self.requests
        } else {
            f64::NAN
        }
    }
}

/// The connect workload's connections in the window, each matched to the
/// server thread whose `accept4` returned it: the one `accept4` return
/// (on `CLOCK_MONOTONIC`, from the wake-up trace) inside the connection's
/// span from `connect()` to its reply, if no other connection's span holds
/// that return too. With several connections in flight the spans overlap
/// and only some are attributed; with one in flight (`--conns 1`) all but
/// the window's edges are.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Landed {
    /// Connections completed in the window.
    pub connections: u64,
    /// Of them, matched to one loop.
    pub attributed: u64,
    /// The latency of all of them, measured the same way (`socket()` to
    /// reply, `load::ConnectSpan`): to compare each loop's with.
    pub all: Option<Latency>,
    /// Every traced thread that accepted or ran: those serving the busy
    /// connections first, then by CPU time.
    pub loops: Vec<LoopLatency>,
    /// Why no loop is marked busy, with `--busy` (`account::landed::busy_loops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_na_reason: Option<String>,
}

/// One loop's share of the window and the latency of the new connections
/// it served.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LoopLatency {
    pub tid: u32,
    /// It serves one of the `--busy` connections.
    #[serde(default)]
    pub busy: bool,
    /// Time on a CPU in the window (`/proc/TID/schedstat`), seconds.
    pub cpu_s: f64,
    /// Connections attributed to it.
    pub connections: u64,
    /// Their latency, connect to reply.
    pub latency: Option<Latency>,
}

/// How often the server woke for a connection it did not get (the
/// thundering herd), in the window, without changing the server. Two
/// sources (`account`):
///
/// - exact counts of syscall returns by value, from `sys_exit` tracepoints
///   with a kernel-side filter on `ret` (`account::HERD_RETURNS`): how many
///   `accept4` calls returned a connection and how many `EAGAIN`, and how
///   many `epoll_wait` calls returned events. Nothing is buffered, so
///   nothing can be lost.
/// - the same returns sampled in order per thread (`account::WakeTrace`):
///   a wake-up is an `epoll_wait` return with the calls up to the next one
///   (or, in a thread that blocks in `accept4`, one `accept4` return); it
///   is a listener wake-up if it called `accept4`, wasted if none of those
///   returned a connection. Counts alone cannot say this, since one wake-up
///   may accept several connections. `lost_records` > 0 means the ring
///   buffer overflowed and the replay is short by that many returns.
///
/// The herd's cheapest form returns nothing: a waiter woken for a listener
/// that another loop has drained re-checks it in the kernel, finds nothing
/// and sleeps again. The replay counts those too, from the thread's
/// switches to sleep inside one call (`WakeCounts::kernel_wasted_wakes`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Wakeups {
    /// `accept4` calls that returned a connection (exact).
    pub accepted: u64,
    /// `accept4` calls that returned `EAGAIN` (exact).
    pub accept_eagain: u64,
    /// `epoll_wait`/`epoll_pwait` calls that returned events (exact).
    pub wait_returns: u64,
    pub eagain_per_conn: f64,
    pub wait_returns_per_conn: f64,
    /// From the replay; `None` with the reason in `replay_na_reason`.
    pub replay: Option<WakeCounts>,
    /// `(replay.wasted_wakes + replay.kernel_wasted_wakes) / replay.accepted`:
    /// every wake-up, returned or not, that did not get a connection.
    pub wasted_per_conn: Option<f64>,
    pub replay_na_reason: Option<String>,
}

impl Wakeups {
    /// From the counts by `ReturnCount::key` and the replay (if it ran);
    /// `None` if nothing was accepted.
    pub fn from_returns(
        returns: &BTreeMap<String, u64>,
        replay: Option<Result<WakeCounts, String>>,
    ) -> Option<Wakeups> {
        let get = |key: &str| returns.get(key).copied().unwrap_or(0);
        let accepted = get("accept4=fd");
        if accepted == 0 {
            return None;
        }
        let accept_eagain = get("accept4=EAGAIN");
        let wait_returns = get("epoll_wait>0") + get("epoll_pwait>0");
        let per = |n: u64| n as f64 / accepted as f64;
        let (replay, replay_na_reason) = match replay {
            Some(Ok(r)) => (Some(r), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, Some("the wake-up trace did not run".into())),
        };
        let wasted_per_conn = replay
            .as_ref()
            .filter(|r| r.accepted > 0)
            .map(|r| (r.wasted_wakes + r.kernel_wasted_wakes) as f64 / r.accepted as f64);
        Some(Wakeups {
            accepted,
            accept_eagain,
            wait_returns,
            eagain_per_conn: per(accept_eagain),
            wait_returns_per_conn: per(wait_returns),
            replay,
            wasted_per_conn,
            replay_na_reason,
        })
    }
}

impl ExitSummary {
    /// Most and fewest connections one loop admitted, with several loops.
    pub fn spread(&self) -> Option<(u64, u64)> {
        let max = *self.per_loop.iter().max()?;
        let min = *self.per_loop.iter().min()?;
        (self.per_loop.len() > 1).then_some((max, min))
    }
}

/// The `summary:` line a model prints on SIGTERM.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExitSummary {
    pub model: String,
    pub connections: u64,
    pub bytes: u64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Connections each loop admitted (`per_loop=`), for models that run
    /// several loops; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_loop: Vec<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleOutcome {
    /// Idle connections asked for.
    pub requested: usize,
    /// Idle connections that were established and answered one request
    /// before the window (so the server really holds them).
    pub served: usize,
    /// Idle connections never answered before the window started (no
    /// connection, or no reply within the timeout).
    pub unserved: usize,
    /// Idle connections the server closed (EOF) or reset, seen during the
    /// run or by the final check.
    pub dropped_eof: usize,
    pub dropped_rst: usize,
}

impl IdleOutcome {
    pub fn dropped(&self) -> usize {
        self.dropped_eof + self.dropped_rst
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// Source addresses used (1: the kernel's default choice; more once local
    /// ports ran short and connections were spread over 127.0.0.x).
    pub source_addresses: usize,
    /// `connect` calls that failed with `EADDRNOTAVAIL` (no local port left)
    /// and were retried from another source address.
    pub ports_exhausted: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Milliseconds since the Unix epoch and the same instant in RFC 3339 (UTC,
/// millisecond precision).
pub fn wall_clock(t: SystemTime) -> (u64, String) {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (ms, rfc3339_utc(ms))
}

fn rfc3339_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days_from_civil inverse: proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// How the harness' view of a server's CPU over its whole run compares with
/// the server's own exit summary (`user=… sys=…`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub harness_cpu_s: f64,
    pub summary_cpu_s: f64,
    /// harness / summary (1.0 = identical).
    pub ratio: f64,
    /// The allowed difference: 5 % of the summary, but never less than two
    /// clock ticks plus the summary's 1 ms rounding, since `/proc` rounds
    /// the root's `cutime` and `cstime` each down to a tick.
    pub tolerance_s: f64,
    pub agrees: bool,
    /// The tolerance in clock ticks (`tolerance_s` × `CLK_TCK`).
    #[serde(default)]
    pub tolerance_ticks: f64,
    /// The tolerance relative to the summary's CPU (0.05 when judged by
    /// the 5 % rule; more when the tick floor was larger: a run of 20 ms
    /// CPU is judged within 105 %).
    #[serde(default)]
    pub tolerance_share: f64,
    /// The tick floor, not the 5 % rule, set the tolerance.
    #[serde(default)]
    pub judged_by_ticks: bool,
    /// The tree's CPU over its whole life as the kernel reported it when
    /// the harness reaped the server (`server::Stopped::reaped_cpu_s`):
    /// shutdown included, which `harness_cpu_s` (read before SIGTERM)
    /// cannot see. The summary is printed between the two readings.
    #[serde(default)]
    pub reaped_cpu_s: Option<f64>,
}

/// The relative tolerance of the cross-check (issue 5: within 5 %).
pub const AGREEMENT_TOLERANCE: f64 = 0.05;

/// What the replay of `account::wakes` found in the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WakeCounts {
    /// Wake-ups that called `accept4` (see `account::wakes`' definition).
    pub listener_wakes: u64,
    /// Those of them that got no connection.
    pub wasted_wakes: u64,
    /// Wake-ups inside one `epoll_wait` or `accept4` call that slept again
    /// without returning (see `account::wakes`' note).
    #[serde(default)]
    pub kernel_wasted_wakes: u64,
    /// `accept4` returns: a connection, `EAGAIN`.
    pub accepted: u64,
    pub accept_eagain: u64,
    /// Records the kernel dropped because a buffer was full (0: exact).
    pub lost_records: u64,
    /// Threads of the tree at the end that were not there at attach.
    pub threads_untraced: u64,
}

/// Lateness of a CPU's timer wake-ups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimerWakeups {
    pub cpu: usize,
    pub period_us: f64,
    /// Timer slack of the sleeping thread, ns (1 unless refused).
    pub timer_slack_ns: u64,
    pub samples: u64,
    /// Deadlines that had passed before the thread slept again (a wake-up
    /// later than a period): skipped, not counted as samples.
    pub skipped: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T12:34:56.789Z, a leap day in a century leap year.
        assert_eq!(rfc3339_utc(951_827_696_789), "2000-02-29T12:34:56.789Z");
        // 2024-12-31T23:59:59.999Z
        assert_eq!(rfc3339_utc(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn errors_total_and_merge_keep_every_class() {
        let mut a = Errors {
            refused: 1,
            reset: 2,
            ..Default::default()
        };
        let b = Errors {
            timeout: 3,
            mismatch: 4,
            short: 5,
            other: 6,
            first_other: Some("x".into()),
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.total(), 21);
        assert_eq!(a.first_other.as_deref(), Some("x"));
    }

    #[test]
    fn rate_unit_and_kind_serialise_as_the_contract_names_them() {
        assert_eq!(
            serde_json::to_string(&RateUnit::ConnectionsPerSec).unwrap(),
            "\"connections/s\""
        );
        assert_eq!(
            serde_json::to_string(&WorkloadKind::Pingpong).unwrap(),
            "\"pingpong\""
        );
        assert_eq!(serde_json::to_string(&CloseMode::Rst).unwrap(), "\"rst\"");
    }
}
