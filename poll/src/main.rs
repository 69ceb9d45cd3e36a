//! poll — one thread waits on every socket at once with poll(2).
//!
//! Phase 1 (wait for data) blocks in `poll`, for all sockets together.
//! Phase 2 (copy data) is `recv`/`send` on a socket `poll` said is ready; it
//! never blocks, because every socket is `O_NONBLOCK`.
//!
//! The interest set is one `pollfd` array, kept by the loop
//! (`event_loop.rs`); unlike `select`, any descriptor number can be watched.
//!
//! Cost: every call copies the whole array into the kernel, which then polls
//! every descriptor in it and copies `revents` back: O(watched), not
//! O(ready). With 10 000 idle connections and one active, each wake-up still
//! pays for 10 000 (see the readiness benchmark, and `epoll`).
//!
//! Cannot: use more than one core; stay cheap with many idle connections.
//!
//! Run: `cargo run --release -p poll`, then `nc 127.0.0.1 PORT`.

mod event_loop;

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
    name = "poll",
    version,
    about = "Echo server: one event loop on poll(2)"
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
            lab::log!("poll: {e}");
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
    stats.print_summary("poll:loop")
}
