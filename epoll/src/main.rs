//! epoll — one thread waits on every socket at once with epoll(7); with
//! `--workers N`, N threads each run such a loop.
//!
//! Phase 1 (wait for data) blocks in `epoll_wait`, for all sockets together.
//! Phase 2 (copy data) is `recv`/`send` on a socket epoll said is ready; it
//! never blocks, because every socket is `O_NONBLOCK`. The interest set lives
//! in the kernel and `epoll_wait` hands back only the ready sockets, so a
//! wake-up costs O(ready), not O(watched) as with `select` and `poll`.
//!
//! `--mode level` (`level.rs`): a socket is reported while it stays ready;
//! one read per wake-up, `epoll_ctl(MOD)` on the rare interest transitions.
//! `--mode edge` (`edge.rs`): reported once per change; registered once,
//! read until drained (capped), and a list of the turns we owe.
//! `--workers N --share reuseport|exclusive|shared`: how the loops share the
//! port, and the thundering herd (`setup.rs`).
//!
//! Cannot: move a connection to another loop once accepted; watch regular
//! files (always "ready": `epoll_ctl` refuses them with `EPERM`).
//!
//! Run: `cargo run --release -p epoll -- --mode edge --workers 2 --share
//! reuseport`, then `nc 127.0.0.1 PORT`.

mod cli;
mod edge;
mod level;
mod setup;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use lab::epoll::Epoll;
use lab::net::Spare;
use lab::signals::SignalFd;
use lab::workers;
use lab::Stats;

use cli::{Cli, Trigger};
use setup::Setup;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("epoll: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<()> {
    // First, before any thread exists: threads inherit the signal mask, so
    // SIGINT/SIGTERM stay blocked in every loop and pending for the signalfd.
    let signals = SignalFd::install(&[])?;
    let workers = cli.common.workers_or(1);
    let (listeners, loops) = workers::bind_and_make(cli.common.addr, workers, cli.share, || {
        Ok((Epoll::new()?, Spare::new()?))
    })?;
    let stats = Stats::with_loops(workers)?;
    listeners[0].announce()?;
    workers::run_loops(
        "epoll-loop",
        loops,
        &listeners,
        |index, (ep, spare), listener| {
            let setup = Setup {
                index,
                listener,
                signals: &signals,
                stats: &stats,
                share: cli.share,
                max_conns: cli.common.max_conns,
            };
            match cli.mode {
                Trigger::Level => level::Loop::new(ep, spare, setup)?.serve(),
                Trigger::Edge => edge::Loop::new(ep, spare, setup)?.serve(),
            }
        },
    )?;
    let model = match cli.mode {
        Trigger::Level => "epoll:level",
        Trigger::Edge => "epoll:edge",
    };
    stats.print_summary(model)
}
