//! coroutine — each connection is written as straight-line blocking code
//! (`read`, transform, `write_all`, until EOF: `blocking --mode thread`'s
//! handler, line for line), and one thread serves them all: where the
//! blocking call would sleep in the kernel, the connection's coroutine
//! parks on the hub's epoll and the thread runs another.
//!
//! Phase 1 (wait for data) blocks in the hub's `epoll_wait` (`hub.rs`), for
//! all the hub's connections together; to the handler it looks like a
//! blocking `read`, because its coroutine stays parked until then. Phase 2
//! (copy data) is `read`/`send` on an `O_NONBLOCK` socket: never blocks; a
//! full send buffer parks the coroutine in `write_all` instead.
//!
//! `--mode stackful` (`stackful.rs`): a coroutine with its own small stack
//! per connection, switched in user space: gevent's greenlets, in Rust.
//! `--mode async` (`stackless.rs`): the same handler as an `async fn`, polled
//! by this crate's executor: Python's `yield`/asyncio, with no runtime crate.
//!
//! Cannot: use more than one core per hub (`--workers N` runs N hubs, which
//! share the port as `epoll --workers N` does); preempt a handler that
//! computes without I/O (it gives up its turn every `READS_PER_TURN` reads,
//! because nothing would force it to); call anything that really blocks (a
//! file read, a DNS lookup, a lock): it stops the whole hub.
//!
//! Run: `cargo run --release -p coroutine -- --mode stackful --stack-kib 16`
//! (or `--mode async`, `--workers 2`), then `nc 127.0.0.1 PORT`.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use coroutine::hub::{self, Setup};
use coroutine::stackful::Greenlets;
use coroutine::stackless::{Executor, Reactor};
use lab::epoll::Epoll;
use lab::net::Spare;
use lab::signals::SignalFd;
use lab::workers::{self, Share};
use lab::Stats;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A coroutine with its own stack per connection (corosensei).
    Stackful,
    /// An `async fn` per connection, polled by this crate's executor.
    Async,
}

#[derive(Parser)]
#[command(
    name = "coroutine",
    version,
    about = "Echo server: blocking-style handlers as coroutines on an epoll hub"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Stackful)]
    mode: Mode,
    /// Stack of each coroutine in KiB, below one guard page (stackful only;
    /// default 16).
    #[arg(long, value_parser = clap::value_parser!(u32).range(4..=65536))]
    stack_kib: Option<u32>,
    /// With --workers N: how the hubs share the port.
    #[arg(long, value_enum, default_value_t = Share::ReusePort)]
    share: Share,
}

const DEFAULT_STACK_KIB: u32 = 16;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("coroutine: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<()> {
    // First, before any thread exists: threads inherit the signal mask, so
    // SIGINT/SIGTERM stay blocked in every hub and pending for the signalfd.
    let signals = SignalFd::install(&[])?;
    if cli.stack_kib.is_some() && cli.mode == Mode::Async {
        lab::log!("coroutine: --stack-kib is ignored by --mode async (a task has no stack)");
    }
    let stack_size = cli.stack_kib.unwrap_or(DEFAULT_STACK_KIB) as usize * 1024;
    let workers = cli.common.workers_or(1);
    let (listeners, hubs) = workers::bind_and_make(cli.common.addr, workers, cli.share, || {
        Ok((Epoll::new()?, Spare::new()?))
    })?;
    // With several hubs, the summary says how many connections each took.
    let stats = Arc::new(Stats::with_loops(workers)?);
    listeners[0].announce()?;
    workers::run_loops(
        "coroutine-hub",
        hubs,
        &listeners,
        |index, (hub, spare), listener| {
            let setup = Setup {
                index,
                listener,
                signals: &signals,
                stats: &stats,
                max_conns: cli.common.max_conns,
                share: cli.share,
            };
            match cli.mode {
                Mode::Stackful => {
                    hub::Loop::new(hub, spare, &setup)?.serve(&mut Greenlets::new(stack_size))
                }
                Mode::Async => {
                    // Declared first, so dropped last: a task dropped at the stop
                    // unregisters its waker from the reactor.
                    let reactor = Reactor::default();
                    let mut executor = Executor::new(&reactor);
                    hub::Loop::new(hub, spare, &setup)?.serve(&mut executor)
                }
            }
        },
    )?;
    let model = match cli.mode {
        Mode::Stackful => "coroutine:stackful",
        Mode::Async => "coroutine:async",
    };
    stats.print_summary(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_stackful_on_the_small_stack() {
        let cli = Cli::try_parse_from(["coroutine"]).expect("no flags is valid");
        assert_eq!(cli.mode, Mode::Stackful);
        assert_eq!(cli.stack_kib, None);
        assert_eq!(cli.share, Share::ReusePort);
    }

    #[test]
    fn a_stack_below_one_page_or_an_unknown_mode_is_a_usage_error() {
        for args in [
            &["coroutine", "--stack-kib", "2"][..],
            &["coroutine", "--stack-kib", "0"],
            &["coroutine", "--mode", "green"],
            &["coroutine", "--share", "herd"],
        ] {
            let err = Cli::try_parse_from(args).err().expect("must be rejected");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
