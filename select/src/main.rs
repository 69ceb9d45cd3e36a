//! select — one thread waits on every socket at once with select(2).
//!
//! Phase 1 (wait for data) blocks in `select`, for all sockets together.
//! Phase 2 (copy data) is `recv`/`send` on a socket `select` said is ready; it
//! never blocks, because every socket is `O_NONBLOCK`.
//!
//! The interest set is two bitmaps, rebuilt every round (`event_loop.rs`).
//! Cost: every call copies both bitmaps into the kernel, which scans every
//! bit up to `nfds` (the highest descriptor + 1), polls each descriptor that
//! is set, and copies the bitmaps back; the loop then scans them again with
//! `FD_ISSET`. O(highest descriptor), not O(ready), on every wake-up, plus
//! the rebuild: with 1000 idle connections and one active, each wake-up
//! still pays for 1000 (see the readiness benchmark, `poll` and `epoll`).
//!
//! Limit (`fd_set.rs`): a descriptor >= `FD_SETSIZE` (1024) cannot be
//! watched at all. A connection that gets one is closed at once, with a
//! one-time warning; every other connection keeps being served. So about
//! 1020 clients at once, whatever `ulimit -n` allows.
//!
//! Cannot: use more than one core; watch a descriptor >= 1024; stay cheap
//! with many idle connections.
//!
//! Run: `cargo run --release -p select`, then `nc 127.0.0.1 PORT`.

mod event_loop;
mod fd_set;

use std::io;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use lab::net::{IoMode, Listener};
use lab::signals::SignalFd;
use lab::Stats;

use event_loop::Loop;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// A single event loop.
    Loop,
}

#[derive(Parser)]
#[command(
    name = "select",
    version,
    about = "Echo server: one event loop on select(2)"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Loop)]
    mode: Mode,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Mode::Loop = cli.mode;
    match run(&cli.common) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("select: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &lab::cli::Common) -> io::Result<()> {
    let signals = SignalFd::install(&[])?;
    let listener = Listener::bind(cli.addr, IoMode::NonBlocking)?;
    listener.announce()?;
    let stats = Stats::new()?;
    Loop::new(&listener, &signals, &stats, cli.max_conns)?.serve()?;
    stats.print_summary("select:loop")
}
