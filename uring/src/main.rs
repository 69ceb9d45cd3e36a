//! uring — completion-based I/O on io_uring(7). The other models ask "which
//! socket is ready?" and then copy the data themselves; here the program
//! hands the kernel whole operations (ACCEPT, RECV, SEND) as submission queue
//! entries (SQEs) in memory shared with the kernel, and later reads their
//! results as completion queue entries (CQEs): `res` is what the syscall
//! would have returned, bytes or `-errno`.
//!
//! Neither phase blocks, from the process's view: phase 1 (wait for data)
//! and phase 2 (copy data) both happen inside the kernel, which copies the
//! bytes into our buffer before it posts the completion. The process waits
//! in one place, `io_uring_enter` (`serve.rs`): one call submits the queued
//! SQEs and sleeps until a CQE is posted, so a round of many requests costs
//! one syscall, not one `recv` and one `send` each.
//! `--mode single`: one-shot ACCEPT, RECV, SEND, each submitted again after
//! its completion; every connection owns a receive buffer, idle or not.
//! `--mode multishot` (default): one ACCEPT, and one RECV per connection,
//! stay armed and post a CQE per event; RECV buffers come from a ring the
//! loop shares with the kernel (`bufring.rs`), so an idle connection holds none.
//! Each other flag turns on one kernel feature (`--help`, README.md).
//!
//! Cannot: run where `io_uring_setup` fails (`ENOSYS` on kernels built
//! without it, `EPERM` with `kernel.io_uring_disabled`): it then says so and
//! exits with status 2. Move a connection to another ring once accepted.
//!
//! Run: `cargo run --release -p uring -- --mode multishot [--sqpoll]
//! [--workers 2]`, then `nc 127.0.0.1 PORT`.

mod accept;
mod bufring;
mod conn;
mod ring;
mod serve;
mod slot;

use std::io;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueEnum};
use lab::net::Spare;
use lab::signals::SignalFd;
use lab::workers::{self, Share};
use lab::Stats;
use ring::SetupError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One-shot ACCEPT, RECV and SEND, each re-submitted after its completion.
    Single,
    /// Multishot ACCEPT and RECV, buffers from a provided-buffer ring.
    Multishot,
}

#[derive(Parser)]
#[command(
    name = "uring",
    version,
    about = "Echo server: completion-based I/O on io_uring(7)"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Multishot)]
    mode: Mode,
    /// How `--workers N` rings share the port: a `SO_REUSEPORT` listener
    /// each (`reuseport`), or one listener for all (`shared`, `exclusive`:
    /// the same thing here). A shared listener should have no thundering
    /// herd: a pending ACCEPT waits on the listener through a poll that
    /// io_uring arms with `EPOLLEXCLUSIVE` itself (the ACCEPT opcode's
    /// `poll_exclusive` in the kernel's opcode table), so one connection
    /// wakes one ring's ACCEPT. (Read in the kernel source, not measured:
    /// the harness' wake-up trace reads `accept4` and `epoll_wait`
    /// returns, and a ring makes neither.)
    #[arg(long, value_enum, default_value_t = Share::ReusePort)]
    share: Share,
    /// `IORING_SETUP_SQPOLL` (Linux 5.1; without privileges since 5.11): a
    /// kernel thread (`iou-sqp-PID`) polls the submission queue, so
    /// submitting needs no syscall while it is awake. The price: it spins on
    /// a CPU for as long as there is work and `SQPOLL_IDLE_MS` after the last
    /// submission before it sleeps. It is a thread of our process, so its
    /// CPU time is counted in the server's (`getrusage`, `/proc/PID/stat`),
    /// and it may run only where the thread that set the ring up may: a
    /// server pinned to one CPU shares it with its poller. The loop still
    /// waits for completions in `io_uring_enter`.
    #[arg(long)]
    sqpoll: bool,
    /// `IORING_SETUP_SQ_AFF` (Linux 5.1; unprivileged with SQPOLL since
    /// 5.11): the SQPOLL thread runs on CPU N only, so it can have a core of
    /// its own rather than steal the loop's. N must be a CPU this process
    /// may run on (`EINVAL` otherwise).
    #[arg(long, value_name = "N", requires = "sqpoll")]
    sqpoll_cpu: Option<u32>,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1):
    /// the completion work of our sockets (the poll wake-up that retries a
    /// RECV, the copy, the CQE) is queued for this ring's thread and runs
    /// only when it enters the kernel asking for completions; the thread is
    /// never interrupted for it, and a CQE is posted only inside the wait.
    /// The ring has one issuer, the loop's thread. Not with SQPOLL.
    #[arg(long, conflicts_with = "sqpoll")]
    defer_taskrun: bool,
    /// `IOSQE_CQE_SKIP_SUCCESS` (Linux 5.17) on SENDs made `MSG_DONTWAIT |
    /// MSG_WAITALL`: the kernel tries each SEND once inside our
    /// `io_uring_enter`, and posts no CQE when it took every byte, so a
    /// reply does not wake the loop; a short or failed SEND posts its CQE
    /// and the rest goes as a plain SEND that waits for room. Not with
    /// SQPOLL, whose thread issues SENDs outside our enter.
    #[arg(long, conflicts_with = "sqpoll")]
    skip_send_cqe: bool,
    /// A registered file table (`IORING_REGISTER_FILES2`, sparse, Linux
    /// 5.19): multishot ACCEPT puts each connection straight into it as a
    /// direct descriptor, which no descriptor table of the process holds;
    /// RECV and SEND name it by index (`IOSQE_FIXED_FILE`: no file lookup
    /// and reference per operation); and the ring's own descriptor is
    /// registered (`IORING_REGISTER_RING_FDS`, 5.18) for `io_uring_enter`.
    #[arg(long)]
    fixed_files: bool,
    /// The kernel's minimum-timeout wait (`min_wait_usec` with
    /// `IORING_ENTER_EXT_ARG`, `IORING_FEAT_MIN_TIMEOUT`, Linux 6.12): a
    /// wait asks for a batch of CQEs and returns after USEC microseconds
    /// with whatever has come, if at least one has.
    #[arg(long, value_name = "USEC")]
    min_wait: Option<u32>,
    /// Incrementally consumed provided buffers (`IOU_PBUF_RING_INC`, Linux
    /// 6.12): a RECV takes from the head buffer only the bytes it brings,
    /// and the next continues there, so small messages on many connections
    /// touch a few pages instead of a whole buffer each. Multishot only.
    #[arg(long)]
    incremental_buffers: bool,
    /// Receive bundles (`IORING_RECVSEND_BUNDLE`, Linux 6.10): a multishot
    /// RECV takes as many provided buffers as the bytes queued need, in one
    /// CQE, which names the first; the bytes fill the buffers that follow
    /// it in the ring's order, each full but the last (`bufring.rs`).
    /// Multishot only; not with `--incremental-buffers` (a bundle would
    /// start inside a partly used buffer, which this loop cannot follow).
    #[arg(long, conflicts_with = "incremental_buffers")]
    bundle: bool,
}

/// The kernel features the flags ask for; the same for every ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    pub sqpoll: bool,
    pub sqpoll_cpu: Option<u32>,
    pub defer_taskrun: bool,
    pub skip_send_cqe: bool,
    pub fixed_files: bool,
    pub min_wait: Option<u32>,
    pub incremental: bool,
    pub bundle: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for (set, flag) in [
        (cli.incremental_buffers, "--incremental-buffers"),
        (cli.bundle, "--bundle"),
    ] {
        if cli.mode == Mode::Single && set {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} takes provided buffers: --mode multishot"),
                )
                .exit();
        }
    }
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            lab::log!("uring: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<ExitCode> {
    // First, before any thread exists: threads inherit the signal mask, so
    // SIGINT/SIGTERM stay blocked in every loop and pending for the signalfd.
    let signals = SignalFd::install(&[])?;
    let workers = cli.common.workers_or(1);
    // Every ring, before the first client can connect: a flood that fills
    // the descriptor table must not find a loop still without its ring.
    let features = Features {
        sqpoll: cli.sqpoll,
        sqpoll_cpu: cli.sqpoll_cpu,
        defer_taskrun: cli.defer_taskrun,
        skip_send_cqe: cli.skip_send_cqe,
        fixed_files: cli.fixed_files,
        min_wait: cli.min_wait,
        incremental: cli.incremental_buffers,
        bundle: cli.bundle,
    };
    let mut rings = Vec::with_capacity(workers);
    for _ in 0..workers {
        match ring::new_ring(cli.mode, &features) {
            Ok(ring) => rings.push(ring),
            Err(SetupError::Unavailable(e)) => {
                lab::log!(
                    "uring: {e}: io_uring is not available on this kernel \
                     (built without it, or disabled by kernel.io_uring_disabled)"
                );
                return Ok(ExitCode::from(2));
            }
            Err(SetupError::Unsupported {
                flag,
                feature,
                since,
                err,
            }) => {
                lab::log!(
                    "uring: {flag}: this kernel does not have {feature} (Linux {since}): {err}"
                );
                return Ok(ExitCode::from(2));
            }
            Err(SetupError::Other(e)) => return Err(e),
        }
    }
    let listeners = workers::bind_listeners(cli.common.addr, workers, cli.share)?;
    let loops = rings
        .into_iter()
        .map(|ring| Ok((ring, Spare::new()?)))
        .collect::<io::Result<Vec<_>>>()?;
    let stats = Stats::with_loops(workers)?;
    listeners[0].announce()?;
    let cfg = serve::Config {
        mode: cli.mode,
        max_conns: cli.common.max_conns,
        features,
    };
    workers::run_loops(
        "uring-loop",
        loops,
        &listeners,
        |index, (ring, spare), listener| {
            serve::serve(index, ring, listener, spare, &signals, &stats, cfg)
        },
    )?;
    let model = match cli.mode {
        Mode::Single => "uring:single",
        Mode::Multishot => "uring:multishot",
    };
    stats.print_summary(model)?;
    Ok(ExitCode::SUCCESS)
}
