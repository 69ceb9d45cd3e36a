//! `harness claims`: the course notes' eighteen claims (C1–C18), each with a
//! verdict measured on this machine, written to `CLAIMS.md`.
//!
//! Each claim has three parts here, side by side: what it measures (a
//! `harness run`, `harness phases` or one of `probe`'s measurements, each
//! with the command that reproduces it), the figures it keeps, and its
//! verdict rule, a pure function of those figures (tested on fixed inputs
//! in both directions). A claim whose model is not in this workspace (its
//! binary cannot be built) is "not yet measured", with the reason; a
//! comparison whose two sides lie within the noise of repeated runs is "no
//! measurable difference", not a verdict.

mod probe;

use crate::env::Environment;
use crate::measurement::{Measurement, WorkloadKind};
use crate::phases::{self, Traced};
use crate::run::{self, MeasureSpec, ServerChoice};
use crate::server::{unavailable, ModelSpec};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub use probe::{Creation, IdleUse, Switching, Zombie};

#[derive(clap::Args, Debug)]
pub struct ClaimsArgs {
    /// Where the table goes.
    #[arg(long, default_value = "CLAIMS.md")]
    pub out: PathBuf,
    /// Only these claims (comma-separated), e.g. `C4,C7`; the file then
    /// holds only their rows.
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Run `cargo bench -p coroutine --bench switch` first (a few minutes
    /// with its build); without it, C12 and C13 read what an earlier run
    /// left in target/criterion, if anything.
    #[arg(long)]
    pub bench: bool,
}

/// A claim's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Holds,
    /// Holds, with what it leaves out.
    HoldsWithCaveat(String),
    DoesNotHold(String),
    /// Not something this machine can decide, and why.
    NotApplicable(String),
    /// The two sides differ by less than the noise of repeated runs.
    NoMeasurableDifference,
    /// Its model or instrument is not here yet, and why.
    NotYetMeasured(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Holds => f.write_str("**holds**"),
            Verdict::HoldsWithCaveat(c) => write!(f, "**holds with a caveat**: {c}"),
            Verdict::DoesNotHold(why) => write!(f, "**does not hold**: {why}"),
            Verdict::NotApplicable(why) => write!(f, "**not applicable here**: {why}"),
            Verdict::NoMeasurableDifference => f.write_str("**no measurable difference**"),
            Verdict::NotYetMeasured(why) => write!(f, "**not yet measured**: {why}"),
        }
    }
}

/// One row of `CLAIMS.md`.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: &'static str,
    pub claim: &'static str,
    pub verdict: Verdict,
    pub figures: String,
    pub commands: Vec<String>,
}

/// Two runs of the same thing on this shared machine differ by up to this
/// share; a difference smaller than it (or than the spread of the repeats)
/// is noise.
pub const NOISE_SHARE: f64 = 0.10;
/// Repeats of each side of a comparison.
const REPEATS: usize = 2;

/// How the runs `a` compare with the runs `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Less,
    More,
    /// Within noise: the ranges overlap or the medians differ by at most
    /// [`NOISE_SHARE`].
    Same,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

pub fn compare(a: &[f64], b: &[f64]) -> Cmp {
    let (ma, mb) = (median(a), median(b));
    let (alo, ahi) = range(a);
    let (blo, bhi) = range(b);
    let overlap = alo <= bhi && blo <= ahi;
    if overlap || (ma - mb).abs() <= NOISE_SHARE * ma.abs().max(mb.abs()) {
        Cmp::Same
    } else if ma < mb {
        Cmp::Less
    } else {
        Cmp::More
    }
}

fn show(v: &[f64], digits: usize) -> String {
    let each: Vec<String> = v.iter().map(|x| format!("{x:.digits$}")).collect();
    each.join(", ")
}

// ---- The verdict rules, one per claim ----

/// C1 holds if one read-family call both waited (lasted at least
/// `phases::BLOCKED`) and returned the bytes: blocked in both phases.
pub fn c1_verdict(t: &phases::Totals, main_wait: Option<&str>) -> Verdict {
    let read = main_wait.is_some_and(|w| ["read", "recvfrom", "recvmsg", "readv"].contains(&w));
    if t.wait_then_copy >= 1 && read {
        Verdict::Holds
    } else {
        Verdict::DoesNotHold(format!(
            "no call both waited and copied (main wait: {})",
            main_wait.unwrap_or("none")
        ))
    }
}

/// C2 holds if `blocking:thread` answers a client within a second while
/// another sends nothing; `blocking:iterative` must fail the same probe,
/// or the probe proves nothing.
pub fn c2_verdict(thread_ms: Option<f64>, iterative_ms: Option<f64>) -> Verdict {
    match (thread_ms, iterative_ms) {
        (Some(_), None) => Verdict::Holds,
        (None, _) => Verdict::DoesNotHold(
            "thread-per-connection left the second client unanswered for 1 s".into(),
        ),
        (Some(_), Some(_)) => Verdict::NotApplicable(
            "the iterative server answered too, so the probe did not hold a connection busy".into(),
        ),
    }
}

/// Figures of C3.
#[derive(Clone, Debug, PartialEq)]
pub struct C3 {
    pub idle: usize,
    pub rate_few: Vec<f64>,
    pub rate_many: Vec<f64>,
    pub errors_many: u64,
    pub rss_few_kib: u64,
    pub rss_many_kib: u64,
    /// `blocking:pool` (bounded workers) with the same idle connections.
    pub pool_workers: usize,
    pub pool_rate_many: f64,
    /// Idle clients of the pool's run never answered before the window.
    pub pool_unserved: usize,
}

/// C3: the wall is there if, with `idle` connections held, the actives'
/// rate falls below half of what it is with none (or requests fail); the
/// pool "does not solve it" if, with more clients than workers, clients are
/// left unanswered or the actives' rate falls below half.
pub fn c3_verdict(f: &C3) -> Verdict {
    let few = median(&f.rate_few);
    let wall = median(&f.rate_many) < 0.5 * few || f.errors_many > 0;
    let pool_starves = f.pool_rate_many < 0.5 * few || f.pool_unserved > 0;
    let per_conn = (f.rss_many_kib.saturating_sub(f.rss_few_kib)) as f64 / f.idle.max(1) as f64;
    match (wall, pool_starves) {
        (true, true) => Verdict::Holds,
        (false, true) => Verdict::HoldsWithCaveat(format!(
            "no wall at {} connections here: the active clients' rate goes from {few:.0} to \
             {:.0} req/s, not below half; the price is memory, {per_conn:.0} KiB more RSS per \
             connection \
             (a stack and a kernel task each). A pool bounds that, but does not solve it: \
             with more clients than its {} workers, {} of them were never answered",
            f.idle,
            median(&f.rate_many),
            f.pool_workers,
            f.pool_unserved
        )),
        (true, false) => Verdict::HoldsWithCaveat(format!(
            "the wall is there at {} connections; the pool of {} kept serving the actives",
            f.idle, f.pool_workers
        )),
        (false, false) => Verdict::DoesNotHold(format!(
            "at {} connections neither thread-per-connection nor the pool lost half its rate",
            f.idle
        )),
    }
}

/// C4 holds if `nonblocking:spin` with no client wants more than 90 % of
/// a CPU (on one, or runnable waiting for one: the machine is shared); it
/// does not if it wants less than half of one.
pub fn c4_verdict(spin_cpu: f64) -> Verdict {
    if spin_cpu > 0.9 {
        Verdict::Holds
    } else if spin_cpu < 0.5 {
        Verdict::DoesNotHold(format!(
            "the busy-poll used only {:.0} % of a CPU",
            spin_cpu * 100.0
        ))
    } else {
        Verdict::HoldsWithCaveat(format!(
            "it burns {:.0} % of a CPU, not all of one",
            spin_cpu * 100.0
        ))
    }
}

/// C5: one thread, and CPU per request of the active clients with idle
/// ones beside them compared with none: within noise, it holds; higher, it
/// holds with the caveat that the cost grows with every watched socket.
pub fn c5_verdict(threads: usize, cpu_none: &[f64], cpu_idle: &[f64], idle: usize) -> Verdict {
    if threads != 1 {
        return Verdict::DoesNotHold(format!("it ran {threads} threads"));
    }
    match compare(cpu_idle, cpu_none) {
        Cmp::Same | Cmp::Less => Verdict::Holds,
        Cmp::More => Verdict::HoldsWithCaveat(format!(
            "little CPU only while few sockets are watched: with {idle} idle ones each request \
             costs {:.1} µs instead of {:.1} µs, since every select call scans every descriptor",
            median(cpu_idle),
            median(cpu_none)
        )),
    }
}

/// C6: `select` drops connections beyond 1024 while `poll` does not; if the
/// kernel's own select takes a descriptor above 1024, the limit is the C
/// type's (glibc's `FD_SETSIZE`), not select's design, and poll lifts it
/// as well as epoll.
pub fn c6_verdict(select_lost: usize, poll_lost: usize, kernel_takes_high_fd: bool) -> Verdict {
    if select_lost == 0 {
        return Verdict::DoesNotHold("select served every connection beyond 1024".into());
    }
    if poll_lost > 0 {
        return Verdict::NotApplicable(
            "poll lost connections too: something else limits them here".into(),
        );
    }
    if kernel_takes_high_fd {
        Verdict::HoldsWithCaveat(format!(
            "select fails beyond 1024, but the 1024 is glibc's FD_SETSIZE, the size of the C \
             fd_set type: the kernel's select watched a descriptor >= {} when handed a larger bitmap. \
             And poll, not only epoll, has no such limit (epoll's answer is to the O(n) scan, \
             not to the 1024)",
            probe::HIGH_FD
        ))
    } else {
        Verdict::Holds
    }
}

/// C7 does not hold if an epoll server with many idle connections uses
/// under 1 % of a CPU and waits for a request in at most two calls (one
/// sleep, not a polling loop); it holds if it uses over half a CPU.
pub fn c7_verdict(epoll_idle_cpu: f64, wait_calls: usize) -> Verdict {
    if epoll_idle_cpu < 0.01 && wait_calls <= 2 {
        Verdict::DoesNotHold(
            "epoll sleeps: the process blocks in one epoll_wait and the kernel wakes it when a \
             packet makes a socket readable (a callback on the socket's wait queue); nothing is \
             polled while nothing happens. select and poll do scan every descriptor, but once \
             per call, not continuously"
                .into(),
        )
    } else if epoll_idle_cpu > 0.5 {
        Verdict::Holds
    } else {
        Verdict::HoldsWithCaveat(format!(
            "idle CPU {:.1} %, {wait_calls} wait calls for one request",
            epoll_idle_cpu * 100.0
        ))
    }
}

/// C8: if `select` sends right after readable (no wait for writability in
/// between) and still answers another client while one reads nothing, the
/// danger is real only for blocking sockets.
pub fn c8_verdict(sends_right_after_readable: bool, answered_beside_non_reader: bool) -> Verdict {
    match (sends_right_after_readable, answered_beside_non_reader) {
        (_, false) => Verdict::Holds,
        (true, true) => Verdict::HoldsWithCaveat(
            "only for a blocking socket. On an O_NONBLOCK socket a full send buffer answers \
             EAGAIN at once, never blocks: the lab's select sends right after readable (one \
             call fewer per request) and hands the socket to select for writability only for \
             what did not fit"
                .into(),
        ),
        (false, true) => Verdict::HoldsWithCaveat(
            "the model waits for writability before every send; that is safe, not necessary".into(),
        ),
    }
}

/// C10: if the process makes no copy call and waits in `io_uring_enter`,
/// the kernel did both phases; the caveat is that a thread with nothing
/// else to do still sleeps until the completion.
pub fn c10_verdict(t: &phases::Totals, main_wait: Option<&str>) -> Verdict {
    if t.copies > 0 {
        return Verdict::DoesNotHold(format!("the process made {} copy calls", t.copies));
    }
    if main_wait != Some("io_uring_enter") {
        return Verdict::DoesNotHold(format!(
            "it waited in {}, not for a completion",
            main_wait.unwrap_or("nothing")
        ));
    }
    Verdict::HoldsWithCaveat(
        "the process copies nothing (the kernel receives into its buffer), but with nothing \
         else to do it still sleeps in io_uring_enter until the completion: not blocked means \
         free to do other work, not never waiting"
            .into(),
    )
}

/// C11: waiting is free if an idle server uses under 1 % of a CPU; I/O is
/// not free if a request costs CPU, most of it in the kernel.
pub fn c11_verdict(idle_cpu: f64, cpu_us: f64, sys_share: f64) -> Verdict {
    if idle_cpu >= 0.01 {
        return Verdict::DoesNotHold(format!(
            "an idle blocking server used {:.1} % of a CPU",
            idle_cpu * 100.0
        ));
    }
    if sys_share > 0.5 {
        Verdict::HoldsWithCaveat(format!(
            "waiting uses none; moving the bytes does: {cpu_us:.1} µs of CPU per request, {:.0} % \
             of it in the kernel (the network stack, the copies, the system calls)",
            sys_share * 100.0
        ))
    } else {
        Verdict::Holds
    }
}

/// What `cargo bench -p coroutine --bench switch` measured (criterion's
/// mean estimates, ns), read from `target/criterion/`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwitchBench {
    /// How long before this run criterion wrote the estimates, minutes.
    pub minutes_old: f64,
    /// A corosensei coroutine's resume and its suspend back.
    pub stackful_ns: f64,
    /// One byte to another thread through a pipe and one byte back.
    pub thread_round_trip_ns: f64,
    /// 16 KiB transformed straight through.
    pub straight_line_ns: f64,
    /// The same work as a coroutine suspending after every 64 bytes.
    pub switching_ns: f64,
}

/// C12 compares, first, a coroutine switch with a thread round trip
/// through the kernel in the micro-benchmark: it holds if the first is
/// under a tenth of the second. Then the voluntary context switches and
/// CPU per request of the coroutine model and `blocking:thread` at the same
/// offered load: unless the coroutines also save both there, the claim
/// holds with the caveat of what a server still pays. Without the
/// micro-benchmark, the server figures alone decide.
pub fn c12_verdict(
    bench: Option<&SwitchBench>,
    co_switches: &[f64],
    thread_switches: &[f64],
    co_cpu: &[f64],
    thread_cpu: &[f64],
) -> Verdict {
    let server = (
        compare(co_switches, thread_switches),
        compare(co_cpu, thread_cpu),
    );
    if let Some(b) = bench {
        if b.stackful_ns * 10.0 >= b.thread_round_trip_ns {
            return Verdict::DoesNotHold(format!(
                "a coroutine switch cost {:.0} ns, a thread round trip {:.0} ns",
                b.stackful_ns, b.thread_round_trip_ns
            ));
        }
        return match server {
            (Cmp::Less, Cmp::Less) => Verdict::Holds,
            _ => Verdict::HoldsWithCaveat(format!(
                "the switch itself is {:.0} ns against {:.0} ns for a round trip between two \
                 threads through the kernel; but in a server at this load the coroutines' one \
                 thread still sleeps in epoll_wait and is woken by the kernel (a context switch \
                 per wake-up), and the system calls dominate a request's CPU. Server, coroutines \
                 against threads: context switches per request {}, CPU per request {}",
                b.stackful_ns,
                b.thread_round_trip_ns,
                cmp_word(server.0),
                cmp_word(server.1)
            )),
        };
    }
    match server {
        (Cmp::Less, Cmp::Less) => Verdict::Holds,
        (Cmp::Less, Cmp::Same) => Verdict::HoldsWithCaveat(
            "fewer kernel context switches per request, but no measurable CPU saved at this \
             load: the system calls, not the switches, dominate a request's cost"
                .into(),
        ),
        (Cmp::Same, Cmp::Same) => Verdict::NoMeasurableDifference,
        (_, Cmp::More) => Verdict::DoesNotHold("the coroutines used more CPU per request".into()),
        (_, _) => Verdict::DoesNotHold(
            "the coroutines did not switch less in the kernel than the threads".into(),
        ),
    }
}

fn cmp_word(c: Cmp) -> &'static str {
    match c {
        Cmp::Less => "lower",
        Cmp::More => "higher",
        Cmp::Same => "no measurable difference",
    }
}

/// C13: switching with nothing to wait for only slows a program down if
/// the same work with a switch every 64 bytes takes measurably longer than
/// straight through (the micro-benchmark); without it, if a thread
/// hand-off costs more than ten plain calls. Within noise: no measurable
/// difference.
pub fn c13_verdict(s: &Switching, bench: Option<&SwitchBench>) -> Verdict {
    let slower = match bench {
        Some(b) => compare(&[b.switching_ns], &[b.straight_line_ns]) == Cmp::More,
        None => s.thread_handoff_ns > 10.0 * s.call_ns.max(1.0),
    };
    if slower {
        Verdict::Holds
    } else {
        Verdict::NoMeasurableDifference
    }
}

/// C14: one thread runs (others may exist and sleep), and it never uses
/// more than one core (at most 1.05 CPU-seconds per second under load);
/// whether processes multiply the rate needs CPUs to spare beside the load
/// generator: at least four.
pub fn c14_verdict(threads: usize, cores_used: f64, cpus: usize) -> Verdict {
    if threads != 1 {
        return Verdict::DoesNotHold(format!("the coroutine model ran {threads} threads"));
    }
    if cores_used > 1.05 {
        return Verdict::DoesNotHold(format!("one thread used {cores_used:.2} cores"));
    }
    if cpus < 4 {
        Verdict::HoldsWithCaveat(format!(
            "one thread, at most one core ({cores_used:.2} CPU-seconds per second under the \
             heaviest ping-pong here, {cpus} CPUs offered to it). That processes multiply the \
             rate is not measurable on {cpus} CPUs, where the load generator needs one"
        ))
    } else {
        Verdict::Holds
    }
}

/// C15: the number is the machine's, not the topology's. It holds (with
/// that caveat) if this machine reaches 50 000 requests/s; it does not if
/// the server's CPU per request caps it below that on the CPUs it has; and
/// if the server could but the load generator cannot offer that much, this
/// machine cannot decide.
pub fn c15_verdict(rate: f64, cpu_us: f64, server_cpus: usize) -> Verdict {
    let bound = server_cpus as f64 * 1e6 / cpu_us;
    if rate >= 50_000.0 {
        Verdict::HoldsWithCaveat(format!(
            "this machine reaches {rate:.0}/s with one epoll loop: a rate is a machine's, not a \
             topology's"
        ))
    } else if bound < 50_000.0 {
        Verdict::DoesNotHold(format!(
            "{rate:.0} requests/s here, and {cpu_us:.1} µs of server CPU per request caps \
             {server_cpus} server CPU(s) at {bound:.0}/s: processes × threads × coroutines \
             change how requests are spread over CPUs, not what each one costs"
        ))
    } else {
        Verdict::NotApplicable(format!(
            "the server's {cpu_us:.1} µs of CPU per request would allow {bound:.0}/s on \
             {server_cpus} CPU(s), but the load generator here offered only {rate:.0}/s: the \
             number depends on the machine (and its load generator), not on the topology"
        ))
    }
}

/// C16: the coroutine model's straight-line reads wait in `epoll_wait`,
/// never in a blocking read: the mechanism of gevent's monkey patching.
pub fn c16_verdict(t: &phases::Totals, main_wait: Option<&str>) -> Verdict {
    let epoll = main_wait.is_some_and(|w| w.starts_with("epoll_"));
    if t.wait_then_copy == 0 && epoll && t.copies > 0 {
        Verdict::HoldsWithCaveat(
            "measured on the lab's coroutine model, not on gevent: code written as blocking \
             read/write never blocks in read; a read that would block parks the task and the \
             one thread waits in epoll_wait for every socket. Monkey patching swaps that \
             mechanism in under unchanged code; code that calls into C blocking calls is not \
             patched"
                .into(),
        )
    } else {
        Verdict::DoesNotHold(format!(
            "the coroutine model waited in {} ({} blocking reads)",
            main_wait.unwrap_or("nothing"),
            t.wait_then_copy
        ))
    }
}

/// C17 holds with a caveat if the exited child is a zombie until waited for
/// but holds no memory and no descriptor: only its pid and exit status.
pub fn c17_verdict(z: &Zombie) -> Verdict {
    if !z.was_zombie || !z.gone_after_wait {
        return Verdict::DoesNotHold(format!(
            "the exited child was {}a zombie and {}gone after waitpid",
            if z.was_zombie { "" } else { "not " },
            if z.gone_after_wait { "" } else { "not " }
        ));
    }
    if z.rss_kib == 0 && z.fds == 0 {
        Verdict::HoldsWithCaveat(
            "a zombie holds no memory and no descriptor: only its pid and its task entry (exit \
             status, resource usage) until waitpid; the resource it uses up is the pid space"
                .into(),
        )
    } else {
        Verdict::Holds
    }
}

/// C18: a thread is cheap if creating one costs less than a fork; fork
/// does not copy the parent if what the parent's memory adds to a fork is
/// less than copying that memory takes on this machine.
pub fn c18_verdict(c: &Creation) -> Verdict {
    if compare(&[c.thread_us], &[c.fork_us]) != Cmp::Less {
        return Verdict::DoesNotHold(format!(
            "a thread took {:.0} µs, a process {:.0} µs",
            c.thread_us, c.fork_us
        ));
    }
    let added = c.fork_big_us - c.fork_us;
    if compare(&[added], &[c.copy_big_us]) == Cmp::Less {
        Verdict::HoldsWithCaveat(format!(
            "a process costs more than a thread, but fork does not copy the parent: {} MiB more \
             of touched memory added {added:.0} µs to a fork, copying them takes {:.0} µs. The \
             page tables are copied, the pages shared copy-on-write; the cost grows with the \
             parent's mapped memory all the same",
            probe::BIG_PARENT_MIB,
            c.copy_big_us
        ))
    } else {
        Verdict::Holds
    }
}

// ---- Measuring ----

/// The micro-benchmark C12 and C13 cite.
pub const SWITCH_BENCH: &str = "cargo bench -p coroutine --bench switch";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where criterion keeps benchmark `id`'s latest estimates (it names the
/// directory after the id, `/` made `_`).
fn criterion_estimates(id: &str) -> PathBuf {
    target_dir()
        .join("criterion")
        .join(id.replace('/', "_"))
        .join("new/estimates.json")
}

/// Criterion's mean estimate of benchmark `id`, ns.
fn criterion_ns(id: &str) -> Result<f64, String> {
    let path = criterion_estimates(id);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean.point_estimate", path.display()))
}

/// The benchmarks of `SWITCH_BENCH` the claims read.
const BENCH_IDS: &[&str] = &[
    "switch/stackful_resume_suspend",
    "switch/thread_pipe_round_trip",
    "no_io/straight_line_16KiB",
    "no_io/stackful_switch_per_64B_16KiB",
];

/// Runs the micro-benchmark (`run`), then reads its estimates; `Err` says
/// why there are none.
fn switch_bench(run: bool) -> Result<SwitchBench, String> {
    if run {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = std::process::Command::new(&cargo)
            .args([
                "bench",
                "-p",
                "coroutine",
                "--bench",
                "switch",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("spawn {SWITCH_BENCH}: {e}"))?;
        if !status.success() {
            return Err(format!("{SWITCH_BENCH}: {status}"));
        }
    }
    let minutes_old = fs::metadata(criterion_estimates(BENCH_IDS[0]))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(f64::NAN, |age| age.as_secs_f64() / 60.0);
    Ok(SwitchBench {
        minutes_old,
        stackful_ns: criterion_ns(BENCH_IDS[0])?,
        thread_round_trip_ns: criterion_ns(BENCH_IDS[1])?,
        straight_line_ns: criterion_ns(BENCH_IDS[2])?,
        switching_ns: criterion_ns(BENCH_IDS[3])?,
    })
}

fn bench_figures(bench: &Result<SwitchBench, String>) -> String {
    match bench {
        Ok(b) => format!(
            "{SWITCH_BENCH} (criterion means, written {:.0} min before this table): coroutine \
             resume+suspend {:.0} ns, thread round trip through a pipe {:.0} ns; 16 KiB \
             transformed straight {:.0} ns, with a switch every 64 B {:.0} ns",
            b.minutes_old,
            b.stackful_ns,
            b.thread_round_trip_ns,
            b.straight_line_ns,
            b.switching_ns
        ),
        Err(why) => format!(
            "micro-benchmark not run (`harness claims --bench` runs it, or `{SWITCH_BENCH}` \
             first): {why}"
        ),
    }
}

fn spec(text: &str) -> ModelSpec {
    match text.parse() {
        Ok(s) => s,
        Err(e) => panic!("model spec constant {text:?}: {e}"),
    }
}

/// A short `harness run`, and the command line that repeats it.
struct Run {
    model: &'static str,
    kind: WorkloadKind,
    conns: usize,
    idle: usize,
    rate: Option<f64>,
    server_args: &'static [&'static str],
    server_cpus: Option<Vec<usize>>,
    timeout_s: f64,
}

const WARMUP_S: f64 = 0.3;
const DURATION_S: f64 = 1.5;

impl Run {
    fn pingpong(model: &'static str, conns: usize) -> Run {
        Run {
            model,
            kind: WorkloadKind::Pingpong,
            conns,
            idle: 0,
            rate: None,
            server_args: &[],
            server_cpus: None,
            timeout_s: 5.0,
        }
    }

    fn idle(model: &'static str, idle: usize, active: usize) -> Run {
        Run {
            kind: WorkloadKind::Idle,
            idle,
            ..Run::pingpong(model, active)
        }
    }

    fn command(&self) -> String {
        let mut c = format!("harness run {}", self.model);
        match self.kind {
            WorkloadKind::Idle => {
                let _ = write!(
                    c,
                    " --workload idle --idle {} --active {}",
                    self.idle, self.conns
                );
            }
            _ => {
                let _ = write!(c, " --conns {}", self.conns);
            }
        }
        if let Some(r) = self.rate {
            let _ = write!(c, " --rate {r}");
        }
        let _ = write!(c, " --warmup {WARMUP_S} --duration {DURATION_S}");
        if self.timeout_s != 5.0 {
            let _ = write!(c, " --timeout {}", self.timeout_s);
        }
        if let Some(cpus) = &self.server_cpus {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            let _ = write!(c, " --server-cpus {}", list.join(","));
        }
        if !self.server_args.is_empty() {
            let _ = write!(c, " -- {}", self.server_args.join(" "));
        }
        c
    }

    fn measure(&self) -> io::Result<Measurement> {
        let mut m = MeasureSpec::quick(ServerChoice::Model(spec(self.model)), self.kind);
        m.conns = self.conns;
        m.idle = self.idle;
        m.rate = self.rate;
        m.server_args = self.server_args.iter().map(|s| s.to_string()).collect();
        m.warmup = Duration::from_secs_f64(WARMUP_S);
        m.duration = Duration::from_secs_f64(DURATION_S);
        m.timeout = Duration::from_secs_f64(self.timeout_s);
        m.count_syscalls = false;
        m.server_cpus = self.server_cpus.clone();
        run::measure(&m)
    }
}

fn cpu_us(m: &Measurement) -> f64 {
    m.server.cpu_per_request_us.unwrap_or(f64::NAN)
}

/// Everything measured so far, so that a run or trace two claims need is
/// taken once.
#[derive(Default)]
struct Lab {
    traces: BTreeMap<String, Result<Traced, String>>,
    missing: BTreeMap<String, Option<String>>,
    run_bench: bool,
    bench: Option<Result<SwitchBench, String>>,
}

impl Lab {
    fn missing(&mut self, model: &str) -> Option<String> {
        let name = model.split(':').next().unwrap_or(model).to_owned();
        self.missing
            .entry(name.clone())
            .or_insert_with(|| unavailable(&name))
            .clone()
    }

    fn bench(&mut self) -> Result<SwitchBench, String> {
        let run = self.run_bench;
        self.bench.get_or_insert_with(|| switch_bench(run)).clone()
    }

    fn phases(&mut self, model: &str) -> Result<Traced, String> {
        if let Some(why) = self.missing(model) {
            return Err(why);
        }
        self.traces
            .entry(model.to_owned())
            .or_insert_with(|| {
                phases::trace(&spec(model), &[]).map_err(|e| format!("harness phases {model}: {e}"))
            })
            .clone()
    }
}

fn phase_figures(t: &Traced) -> String {
    format!(
        "`{}` request {}: wait {:.2} ms in {}, copy {:.3} ms, {} calls, {} moving bytes, {} \
         blocked in both phases",
        t.spec,
        phases::REPRESENTATIVE + 1,
        t.totals.wait_s * 1e3,
        phases::main_wait(&t.calls).unwrap_or_else(|| "nothing".into()),
        t.totals.copy_s * 1e3,
        t.totals.calls,
        t.totals.copies,
        t.totals.wait_then_copy
    )
}

fn failed(e: impl fmt::Display) -> (Verdict, String) {
    (
        Verdict::NotYetMeasured(format!("the measurement failed: {e}")),
        String::new(),
    )
}

type Measured = Result<(Verdict, String), String>;

fn c1(lab: &mut Lab) -> Measured {
    let t = lab.phases("blocking:iterative")?;
    let main = phases::main_wait(&t.calls);
    Ok((c1_verdict(&t.totals, main.as_deref()), phase_figures(&t)))
}

fn c2() -> Measured {
    let thread = probe::answered_beside(&spec("blocking:thread"), probe::Hog::Silent)
        .map_err(|e| e.to_string())?;
    let iterative = probe::answered_beside(&spec("blocking:iterative"), probe::Hog::Silent)
        .map_err(|e| e.to_string())?;
    let ms = |v: Option<f64>| v.map_or("no reply within 1 s".into(), |ms| format!("{ms:.2} ms"));
    Ok((
        c2_verdict(thread, iterative),
        format!(
            "second client beside a silent one: blocking:thread {}; blocking:iterative {}",
            ms(thread),
            ms(iterative)
        ),
    ))
}

const C3_IDLE: usize = 2000;
const C3_ACTIVE: usize = 10;
const C3_POOL: usize = 128;

fn c3(commands: &mut Vec<String>) -> Measured {
    let few = Run::idle("blocking:thread", 0, C3_ACTIVE);
    let many = Run::idle("blocking:thread", C3_IDLE, C3_ACTIVE);
    let pool = Run {
        server_args: &["--workers", "128"],
        timeout_s: 2.0,
        ..Run::idle("blocking:pool", C3_IDLE, C3_ACTIVE)
    };
    commands.extend([few.command(), many.command(), pool.command()]);
    let e = |e: io::Error| e.to_string();
    let few_m: Vec<Measurement> = (0..REPEATS)
        .map(|_| few.measure())
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let many_m: Vec<Measurement> = (0..REPEATS)
        .map(|_| many.measure())
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let pool_m = pool.measure().map_err(e)?;
    let f = C3 {
        idle: C3_IDLE,
        rate_few: few_m.iter().map(|m| m.rate).collect(),
        rate_many: many_m.iter().map(|m| m.rate).collect(),
        errors_many: many_m.iter().map(|m| m.errors.total()).sum(),
        rss_few_kib: few_m[0].server.peak_rss_kib.unwrap_or(0),
        rss_many_kib: many_m[0].server.peak_rss_kib.unwrap_or(0),
        pool_workers: C3_POOL,
        pool_rate_many: pool_m.rate,
        pool_unserved: pool_m.idle.as_ref().map_or(0, |i| i.unserved),
    };
    let figures = format!(
        "blocking:thread, {C3_ACTIVE} active clients: {} req/s alone, {} req/s beside {C3_IDLE} \
         idle ({} errors); peak RSS {} KiB → {} KiB. blocking:pool --workers {C3_POOL} with \
         {C3_IDLE} idle clients: {} of them never answered (2 s timeout), {:.0} req/s for the \
         active ones once the unanswered gave up",
        show(&f.rate_few, 0),
        show(&f.rate_many, 0),
        f.errors_many,
        f.rss_few_kib,
        f.rss_many_kib,
        f.pool_unserved,
        f.pool_rate_many
    );
    Ok((c3_verdict(&f), figures))
}

fn c4() -> Measured {
    let spin = probe::idle_use(&spec("nonblocking:spin"), 0).map_err(|e| e.to_string())?;
    let epoll = probe::idle_use(&spec("epoll:level"), 0).map_err(|e| e.to_string())?;
    Ok((
        c4_verdict(spin.runnable),
        format!(
            "no client, over 1 s: nonblocking:spin on a CPU {:.1} % of the time and runnable \
             (on one or waiting for one) {:.1} %; epoll:level {:.1} % and {:.1} %",
            spin.cpu * 100.0,
            spin.runnable * 100.0,
            epoll.cpu * 100.0,
            epoll.runnable * 100.0
        ),
    ))
}

const C5_IDLE: usize = 500;

fn c5(commands: &mut Vec<String>) -> Measured {
    let none = Run::idle("select", 0, 10);
    let idle = Run::idle("select", C5_IDLE, 10);
    commands.extend([none.command(), idle.command()]);
    let e = |e: io::Error| e.to_string();
    let (_, threads) = probe::threads_serving(&spec("select"), 10).map_err(e)?;
    let cpu_none: Vec<f64> = (0..REPEATS)
        .map(|_| none.measure().map(|m| cpu_us(&m)))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let cpu_idle: Vec<f64> = (0..REPEATS)
        .map(|_| idle.measure().map(|m| cpu_us(&m)))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    Ok((
        c5_verdict(threads, &cpu_none, &cpu_idle, C5_IDLE),
        format!(
            "select serving 10 clients: {threads} thread(s) ran; server CPU per request {} µs alone, \
             {} µs beside {C5_IDLE} idle connections",
            show(&cpu_none, 1),
            show(&cpu_idle, 1)
        ),
    ))
}

const C6_IDLE: usize = 1100;

fn c6(commands: &mut Vec<String>) -> Measured {
    let select = Run::idle("select", C6_IDLE, 5);
    let poll = Run::idle("poll", C6_IDLE, 5);
    commands.extend([select.command(), poll.command()]);
    let e = |e: io::Error| e.to_string();
    let lost = |m: &Measurement| m.idle.as_ref().map_or(0, |i| i.unserved + i.dropped());
    let s = select.measure().map_err(e)?;
    let p = poll.measure().map_err(e)?;
    let kernel = probe::kernel_select_beyond_fd_setsize().map_err(e)?;
    let (sl, pl) = (lost(&s), lost(&p));
    Ok((
        c6_verdict(sl, pl, kernel),
        format!(
            "{C6_IDLE} idle connections: select lost {sl} (closed or never served), poll lost \
             {pl}; the kernel's pselect6 on a descriptor >= {} with a 2048-bit bitmap: {}",
            probe::HIGH_FD,
            if kernel {
                "reported it readable"
            } else {
                "did not"
            }
        ),
    ))
}

const C7_IDLE: usize = 1000;

fn c7(lab: &mut Lab) -> Measured {
    let idle = probe::idle_use(&spec("epoll:level"), C7_IDLE)
        .map_err(|e| e.to_string())?
        .runnable;
    let t = lab.phases("epoll:level")?;
    let waits = phases::segments(&t.calls)
        .iter()
        .filter(|s| s.phase == phases::Phase::Wait)
        .count();
    Ok((
        c7_verdict(idle, waits),
        format!(
            "epoll:level with {C7_IDLE} idle connections and no traffic: {:.2} % of a CPU over 1 s; {}",
            idle * 100.0,
            phase_figures(&t)
        ),
    ))
}

fn c8(lab: &mut Lab) -> Measured {
    let t = lab.phases("select")?;
    // After the copy in, is the next wait-family call before the copy out?
    let segs = phases::segments(&t.calls);
    let recv = segs.iter().position(|s| s.phase == phases::Phase::Copy);
    let direct = recv.is_some_and(|i| {
        segs[i + 1..]
            .iter()
            .find(|s| s.phase != phases::Phase::Other)
            .is_some_and(|s| s.phase == phases::Phase::Copy)
    });
    let answered = probe::answered_beside(&spec("select"), probe::Hog::NotReading)
        .map_err(|e| e.to_string())?;
    Ok((
        c8_verdict(direct, answered.is_some()),
        format!(
            "select: the reply is sent {} after the read; a second client beside one that sends \
             without reading: {}; {}",
            if direct {
                "directly"
            } else {
                "only after another wait"
            },
            answered.map_or("no reply within 1 s".into(), |ms| format!(
                "answered in {ms:.2} ms"
            )),
            phase_figures(&t)
        ),
    ))
}

fn c9(lab: &mut Lab) -> Measured {
    let t = lab.phases("sigio:plain")?;
    Ok((
        Verdict::NotApplicable(
            "how often a mechanism is used is not a property of this machine; what it costs is: \
             the figures show signal-driven I/O serving a request here"
                .into(),
        ),
        phase_figures(&t),
    ))
}

fn c10(lab: &mut Lab) -> Measured {
    let t = lab.phases("uring:single")?;
    let main = phases::main_wait(&t.calls);
    Ok((c10_verdict(&t.totals, main.as_deref()), phase_figures(&t)))
}

fn c11(commands: &mut Vec<String>) -> Measured {
    let idle = probe::idle_use(&spec("blocking:thread"), 10)
        .map_err(|e| e.to_string())?
        .runnable;
    let run = Run::pingpong("epoll:level", 10);
    commands.push(run.command());
    let m = run.measure().map_err(|e| e.to_string())?;
    let (user, sys) = (
        m.server.user_s.unwrap_or(0.0),
        m.server.sys_s.unwrap_or(0.0),
    );
    let share = if user + sys > 0.0 {
        sys / (user + sys)
    } else {
        0.0
    };
    Ok((
        c11_verdict(idle, cpu_us(&m), share),
        format!(
            "blocking:thread with 10 idle connections: {:.2} % of a CPU over 1 s; epoll:level \
             ping-pong: {:.1} µs server CPU per request, {:.0} % system",
            idle * 100.0,
            cpu_us(&m),
            share * 100.0
        ),
    ))
}

/// Offered load of C12: well below what either model reaches, so both
/// serve it and their costs per request compare.
const C12_RATE: f64 = 2000.0;

fn c12(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    let runs = [
        Run {
            rate: Some(C12_RATE),
            ..Run::pingpong("coroutine:stackful", 50)
        },
        Run {
            rate: Some(C12_RATE),
            ..Run::pingpong("blocking:thread", 50)
        },
    ];
    commands.extend(runs.iter().map(Run::command));
    if let Some(why) = lab.missing("coroutine") {
        return Err(why);
    }
    let mut sw = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for _ in 0..REPEATS {
        for (i, r) in runs.iter().enumerate() {
            let m = r.measure().map_err(|e| e.to_string())?;
            sw[i].push(m.server.ctx_voluntary_per_request.unwrap_or(f64::NAN));
            cpu[i].push(cpu_us(&m));
        }
    }
    let bench = lab.bench();
    Ok((
        c12_verdict(bench.as_ref().ok(), &sw[0], &sw[1], &cpu[0], &cpu[1]),
        format!(
            "{}. Server: {}",
            bench_figures(&bench),
            format_args!(
            "at {C12_RATE:.0} req/s over 50 connections: voluntary context switches per request \
             coroutine:stackful {} vs blocking:thread {}; server CPU per request {} µs vs {} µs",
            show(&sw[0], 2),
            show(&sw[1], 2),
            show(&cpu[0], 1),
            show(&cpu[1], 1)
            )
        ),
    ))
}

fn c13(lab: &mut Lab) -> Measured {
    let s = probe::switching().map_err(|e| e.to_string())?;
    let bench = lab.bench();
    Ok((
        c13_verdict(&s, bench.as_ref().ok()),
        format!(
            "{}. Two threads on one CPU handing a value back and forth: {:.0} ns per hand-off, each \
             thread blocking (a voluntary kernel context switch) {:.2} times per round trip; the \
             same hand-off as a function call: {:.1} ns. Where a task would block, switching \
             pays: see C2",
            bench_figures(&bench),
            s.thread_handoff_ns,
            s.switches_per_round_trip,
            s.call_ns
        ),
    ))
}

fn c14(lab: &mut Lab, commands: &mut Vec<String>) -> Measured {
    let cpus = crate::load::sys::allowed_cpus().map_err(|e| e.to_string())?;
    let run = Run {
        server_cpus: Some(cpus.clone()),
        ..Run::pingpong("coroutine:stackful", 100)
    };
    commands.extend(["harness claims --only C14".to_string(), run.command()]);
    if let Some(why) = lab.missing("coroutine") {
        return Err(why);
    }
    let (all_threads, threads) =
        probe::threads_serving(&spec("coroutine:stackful"), 10).map_err(|e| e.to_string())?;
    let m = run.measure().map_err(|e| e.to_string())?;
    let cores = m.server.cpu_s.unwrap_or(f64::NAN) / m.window_s;
    Ok((
        c14_verdict(threads, cores, cpus.len()),
        format!(
            "coroutine:stackful: {threads} of its {all_threads} threads ran while serving 10 \
             connections; ping-pong over 100 connections with the \
             server allowed on {} CPUs: {:.0} req/s, {cores:.2} CPU-seconds per second",
            cpus.len(),
            m.rate
        ),
    ))
}

fn c15(commands: &mut Vec<String>) -> Measured {
    let run = Run::pingpong("epoll:level", 100);
    commands.push(run.command());
    let m = run.measure().map_err(|e| e.to_string())?;
    let server_cpus = m.workload.server_cpus.len().max(1);
    Ok((
        c15_verdict(m.rate, cpu_us(&m), server_cpus),
        format!(
            "epoll:level, 100 connections: {:.0} req/s, {:.1} µs server CPU per request, server \
             on {server_cpus} CPU(s), load generator on {}",
            m.rate,
            cpu_us(&m),
            m.workload.load_cpus.len()
        ),
    ))
}

fn c16(lab: &mut Lab) -> Measured {
    let t = lab.phases("coroutine:stackful")?;
    let main = phases::main_wait(&t.calls);
    Ok((c16_verdict(&t.totals, main.as_deref()), phase_figures(&t)))
}

fn c17() -> Measured {
    let z = probe::zombie().map_err(|e| e.to_string())?;
    Ok((
        c17_verdict(&z),
        format!(
            "a child that exited, before waitpid: state {}, VmRSS {} KiB, {} descriptors; after \
             waitpid: {}",
            if z.was_zombie { "Z" } else { "not Z" },
            z.rss_kib,
            z.fds,
            if z.gone_after_wait {
                "gone"
            } else {
                "still there"
            }
        ),
    ))
}

fn c18() -> Measured {
    let c = probe::creation().map_err(|e| e.to_string())?;
    Ok((
        c18_verdict(&c),
        format!(
            "thread spawn+join {:.1} µs; fork+exit+waitpid {:.1} µs, {:.1} µs with {} MiB more \
             touched memory in the parent",
            c.thread_us,
            c.fork_us,
            c.fork_big_us,
            probe::BIG_PARENT_MIB
        ),
    ))
}

/// The claims, as `SEED-CLAIMS.md` translates them.
pub const CLAIMS: &[(&str, &str)] = &[
    ("C1", "A blocking `recv` goes through two phases, waiting for the data and copying it from the kernel, and the process is blocked in both."),
    ("C2", "Giving every connection its own thread or process means one blocked connection does not hold up the others."),
    ("C3", "Thread-per-connection serves small numbers of clients conveniently and efficiently, but hits a wall with thousands or tens of thousands of clients; a thread pool or connection pool relieves some of that pressure but does not solve it."),
    ("C4", "Non-blocking I/O never blocks, so the process is \"very efficient\", but it busy-polls: it keeps asking the kernel and wastes CPU doing so."),
    ("C5", "A `select` event loop serves many clients from a single thread, uses few resources and little CPU."),
    ("C6", "`select` can watch at most 1024 sockets and fails beyond that; this is a design flaw of `select` itself, and epoll is the final answer to it."),
    ("C7", "Multiplexing works by `select`/`epoll` continuously polling every socket it is responsible for, and telling the process when one has data."),
    ("C8", "Replying with `send` directly after `select` says readable is wrong, because the send buffer may be full and `send` would block: the socket must first be handed to `select` for writability."),
    ("C9", "Signal-driven I/O is rarely used in practice (so the notes skip it)."),
    ("C10", "In asynchronous I/O the process is blocked in neither phase: the kernel waits for the data, copies it, and then notifies the process."),
    ("C11", "I/O does not use the CPU; computation does."),
    ("C12", "Switching between coroutines costs far less than switching between threads: it happens in the program, the operating system does not see it, and no kernel context switch is involved."),
    ("C13", "Switching between tasks when there is no I/O to wait for only slows a program down; switching pays only when a task would otherwise block on I/O."),
    ("C14", "Coroutines run in one thread and cannot use several cores; combine them with processes to use every core, for very high performance."),
    ("C15", "\"5 processes x 20 threads x 500 coroutines\" is the usual combination, and gives 50 000 requests per second."),
    ("C16", "gevent's monkey patching turns blocking calls into non-blocking ones, so code written in the blocking style gets concurrency without being rewritten."),
    ("C17", "A zombie is a child that has exited but whose parent has not yet waited for it; zombies hold system resources until the parent calls `waitpid`."),
    ("C18", "Creating a thread is cheap; creating a process means copying the parent."),
];

/// Measures claim `id`; its row.
fn row(lab: &mut Lab, id: &'static str, claim: &'static str) -> Row {
    let mut commands = Vec::new();
    let only = format!("harness claims --only {id}");
    let phases_of = |m: &str| format!("harness phases {m}");
    let measured = match id {
        "C1" => {
            commands.push(phases_of("blocking:iterative"));
            c1(lab)
        }
        "C2" => {
            commands.push(only);
            c2()
        }
        "C3" => c3(&mut commands),
        "C4" => {
            commands.push(only);
            c4()
        }
        "C5" => c5(&mut commands),
        "C6" => {
            commands.push(only);
            c6(&mut commands)
        }
        "C7" => {
            commands.extend([only, phases_of("epoll:level")]);
            c7(lab)
        }
        "C8" => {
            commands.extend([only, phases_of("select")]);
            c8(lab)
        }
        "C9" => {
            commands.push(phases_of("sigio:plain"));
            c9(lab)
        }
        "C10" => {
            commands.push(phases_of("uring:single"));
            c10(lab)
        }
        "C11" => {
            commands.push(only);
            c11(&mut commands)
        }
        "C12" => {
            commands.push(SWITCH_BENCH.into());
            c12(lab, &mut commands)
        }
        "C13" => {
            commands.extend([SWITCH_BENCH.into(), only]);
            c13(lab)
        }
        "C14" => c14(lab, &mut commands),
        "C15" => c15(&mut commands),
        "C16" => {
            commands.push(phases_of("coroutine:stackful"));
            c16(lab)
        }
        "C17" => {
            commands.push(only);
            c17()
        }
        "C18" => {
            commands.push(only);
            c18()
        }
        _ => Err(format!("no measurement for {id}")),
    };
    let (verdict, figures) = match measured {
        Ok(v) => v,
        // A model not in the workspace, or a failed measurement: never a
        // verdict.
        Err(why) if why.starts_with("no `") => (Verdict::NotYetMeasured(why), String::new()),
        Err(why) => failed(why),
    };
    Row {
        id,
        claim,
        verdict,
        figures,
        commands,
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `CLAIMS.md`.
pub fn render(rows: &[Row], env: &Environment, elapsed_s: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# The course notes' claims, measured\n");
    let _ = writeln!(
        out,
        "Written by `harness claims` (commit {}, {}) in {elapsed_s:.0} s on {}, {} CPUs \
         ({}). Re-run it on your machine (`cargo run --release -p harness -- claims`) to get \
         your own verdicts; each row's command repeats its measurement. The claims are those \
         of the course notes the lab started from (C1–C18), translated. Verdict rules are in \
         `harness/src/claims/mod.rs`, next to each claim; a comparison within the noise of \
         repeated runs (ranges overlapping, or medians within {:.0} %) is \"no measurable \
         difference\", and a claim whose model is not in the workspace is \"not yet measured\".\n",
        env.git_commit.as_deref().unwrap_or("unknown"),
        env.harness_build,
        env.kernel,
        env.cpus,
        env.cpu_model,
        NOISE_SHARE * 100.0
    );
    let _ = writeln!(out, "| id | claim | verdict | figures | command |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for r in rows {
        let commands: Vec<String> = r.commands.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.id,
            cell(r.claim),
            cell(&r.verdict.to_string()),
            cell(&r.figures),
            commands.join("<br>")
        );
    }
    out
}

pub fn main(args: ClaimsArgs) -> io::Result<ExitCode> {
    let wanted: Vec<String> = args
        .only
        .iter()
        .flatten()
        .map(|s| s.trim().to_ascii_uppercase())
        .collect();
    if let Some(bad) = wanted
        .iter()
        .find(|w| !CLAIMS.iter().any(|(id, _)| id == w))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--only {bad}: no such claim (C1–C18)"),
        ));
    }
    let started = Instant::now();
    let mut lab = Lab {
        run_bench: args.bench,
        ..Lab::default()
    };
    let mut rows = Vec::new();
    for (id, claim) in CLAIMS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == id) {
            continue;
        }
        let t0 = Instant::now();
        let r = row(&mut lab, id, claim);
        eprintln!(
            "harness claims: {id} in {:.1} s: {}",
            t0.elapsed().as_secs_f64(),
            r.verdict
        );
        rows.push(r);
    }
    let text = render(
        &rows,
        &crate::account::environment(),
        started.elapsed().as_secs_f64(),
    );
    fs::write(&args.out, text)
        .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", args.out.display())))?;
    eprintln!(
        "harness claims: {:.0} s; wrote {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
