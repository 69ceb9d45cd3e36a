//! nonblocking — no readiness mechanism at all: every socket is `O_NONBLOCK`
//! and one thread simply tries them all, over and over (`sweep.rs`).
//!
//! Phase 1 (wait for data) is never a wait: it is a question asked of every
//! socket on every sweep. `recv` on a socket with nothing to read returns
//! `EAGAIN` at once, and so do `accept` with nothing pending and `send` into
//! a full socket buffer: `EAGAIN` is the answer "not ready". Phase 2 (copy
//! data) is the `recv`/`send` that did not say `EAGAIN`. A sweep costs one
//! system call per connection, ready or not, most of them answering "no":
//! that is what `select`, `poll` and `epoll` exist to avoid.
//!
//! `--mode spin`: sweep again at once, forever. It never sleeps, so it burns
//! a whole core even with no client at all — that is the point of it: the
//! CPU a readiness mechanism saves. In exchange, a request is seen within
//! one sweep. `--mode sleep` (the default, as in the course notes): after a
//! sweep that found nothing to do, sleep `--sleep-us` (default 10 000 µs =
//! 10 ms). The trade: a request that arrives during a nap waits for it, up
//! to sleep-us of extra latency; idle CPU falls to one sweep per nap,
//! proportional to 1/sleep-us (and to the number of connections, each tried
//! every sweep). While there is work, it does not sleep and behaves like spin.
//!
//! Cannot: wait without either burning a core (spin) or adding latency
//! (sleep); use more than one core; stay cheap as connections grow.
//!
//! Run: `cargo run --release -p nonblocking -- --mode spin`, then
//! `nc 127.0.0.1 PORT` (and watch `top`).

mod sweep;

use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use lab::net::{IoMode, Listener};
use lab::signals::SignalFd;
use lab::Stats;

use sweep::{Idle, Loop};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Busy-poll: sweep again at once, never sleep (burns a whole core).
    Spin,
    /// Sleep --sleep-us after a sweep that found nothing to do.
    Sleep,
}

#[derive(Parser)]
#[command(
    name = "nonblocking",
    version,
    about = "Echo server: one thread trying every non-blocking socket in turn"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Sleep)]
    mode: Mode,
    /// Microseconds to sleep after a sweep that found nothing to do
    /// (`--mode sleep` only; default 10000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    sleep_us: Option<u64>,
}

/// The course notes' back-off: 10 ms.
const DEFAULT_SLEEP_US: u64 = 10_000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.mode == Mode::Spin && cli.sleep_us.is_some() {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--sleep-us applies to --mode sleep only",
            )
            .exit();
    }
    let nap = Duration::from_micros(cli.sleep_us.unwrap_or(DEFAULT_SLEEP_US));
    match run(&cli.common, cli.mode, nap) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("nonblocking: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &lab::cli::Common, mode: Mode, nap: Duration) -> io::Result<()> {
    let signals = SignalFd::install(&[])?;
    // Without a readiness mechanism the signalfd is asked like a socket:
    // `read` must answer EAGAIN, not block the sweep.
    lab::net::set_nonblocking(signals.as_raw_fd())?;
    let listener = Listener::bind(cli.addr, IoMode::NonBlocking)?;
    listener.announce()?;
    let stats = Stats::new()?;
    let idle = match mode {
        Mode::Spin => Idle::Spin,
        Mode::Sleep => Idle::Sleep(nap),
    };
    Loop::new(&listener, &signals, &stats, cli.max_conns, idle)?.serve()?;
    let name = match mode {
        Mode::Spin => "nonblocking:spin",
        Mode::Sleep => "nonblocking:sleep",
    };
    stats.print_summary(name)
}
