//! sigio — signal-driven I/O (Stevens' fourth model): the kernel sends a
//! signal when a socket changes, and one thread takes the signals with
//! `sigtimedwait(2)` and does the I/O they announce.
//!
//! Phase 1 (wait for data) blocks in `sigtimedwait`, on a set of *blocked*
//! signals: the sockets' signal, and SIGINT/SIGTERM, so that the same call
//! hears the stop (`signal_queue.rs`: arming a socket, taking a signal).
//! Phase 2 (copy data) is `recv`/`send` on a socket a signal named (or a
//! sweep found); it never blocks, because every socket is `O_NONBLOCK`.
//!
//! `--mode plain` (`plain.rs`): SIGIO, pending once however many sockets
//! changed and naming none: every wake-up sweeps every socket.
//! `--mode rt` (`rt.rs`, the default): a queued real-time signal per event,
//! naming the socket: O(ready), like epoll; on queue overflow, one `poll`.
//!
//! Cannot: take more than one event per system call (`sigtimedwait` returns
//! one siginfo; a `signalfd` read can take many, which is most of the way to
//! epoll); run several threads (a process-directed signal goes to any thread
//! that does not block it; `F_SETOWN_EX` would be needed); share SIGIO with
//! a library that also uses it (a signal's disposition is process-wide);
//! choose the events it hears (every socket signals every change, wanted or
//! not); watch regular files (`O_ASYNC` works on sockets, pipes, FIFOs and
//! terminals).
//!
//! Run: `cargo run --release -p sigio -- --mode rt`, then `nc 127.0.0.1 PORT`.

mod overflow;
mod plain;
mod rt;
mod signal_queue;

use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use lab::net::{IoMode, Listener};
use lab::Stats;

use signal_queue::Signals;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Plain SIGIO: "something changed"; every wake-up sweeps every socket.
    Plain,
    /// A queued real-time signal per event, naming the socket (F_SETSIG).
    Rt,
}

#[derive(Parser)]
#[command(
    name = "sigio",
    version,
    about = "Echo server: signal-driven I/O (O_ASYNC, F_SETSIG, sigtimedwait)"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Rt)]
    mode: Mode,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("sigio: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<()> {
    // First: the signals must be blocked before the first socket can raise
    // one, or its default action (terminate) would end the process.
    let signals = Signals::block(cli.mode)?;
    let listener = Listener::bind(cli.common.addr, IoMode::NonBlocking)?;
    signals.arm(listener.as_raw_fd())?;
    listener.announce()?;
    let stats = Stats::new()?;
    let max_conns = cli.common.max_conns;
    let model = match cli.mode {
        Mode::Plain => {
            plain::Loop::new(&listener, &signals, &stats, max_conns)?.serve()?;
            "sigio:plain"
        }
        Mode::Rt => {
            let mut rt = rt::Loop::new(&listener, &signals, &stats, max_conns)?;
            rt.serve()?;
            lab::log!("sigio: real-time signal queue overflows: {}", rt.overflows);
            "sigio:rt"
        }
    };
    stats.print_summary(model)
}
