//! coroutine — each connection is written as straight-line blocking code
//! (`read`, transform, `write_all`, until EOF: `blocking --mode thread`'s
//! handler, line for line), and one thread serves them all: where the
//! blocking call would sleep in the kernel, the connection's coroutine
//! parks on the hub's epoll and the thread runs another.
//!
//! `--mode stackful` (`stackful.rs`): a coroutine with its own small stack
//! per connection; `read` and `send` on `EAGAIN` switch to the hub, in user
//! space, and epoll's report switches back. gevent's greenlets with a
//! monkey-patched socket module, in Rust.
//! `--mode async` (`stackless.rs`): the same handler as an `async fn`; this
//! crate's executor (a run queue, a hand-written `Waker`, the epoll hub as
//! reactor) polls it. Python's `yield`/asyncio, with no runtime crate.
//! Both share the hub (`hub.rs`: the one `epoll_wait`, the dispatch, the
//! accept loop) and differ where a readiness event meets a task: `stackful`
//! resumes the coroutine; `async` wakes the `Waker`, the executor polls.
//!
//! What the straight-line text costs: the handler learns that a socket is
//! empty only from the `read` that says `EAGAIN`, and that is where it
//! parks. So a ping-pong request takes three calls (`read` with data, `read`
//! with `EAGAIN`, `send`) plus a share of `epoll_wait`, where `epoll`'s
//! event loop makes two (it reads once per report); `blocking` makes two
//! as well, and pays a sleep in the kernel per request instead.
//!
//! Phase 1 (wait for data) blocks in the hub's `epoll_wait`, for all the
//! hub's connections together; to the handler it looks like a blocking
//! `read`, because its coroutine stays parked until then. Phase 2 (copy
//! data) is `read`/`send` on an `O_NONBLOCK` socket: never blocks; a full
//! send buffer parks the coroutine in `write_all` instead, and it reads
//! nothing more meanwhile (back-pressure: one `BUF_LEN` buffer per
//! connection at most, as in `blocking`).
//!
//! Cannot: use more than one core per hub (`--workers N` runs N hubs on N
//! threads, which share the port as `epoll --workers N` does: `--share
//! reuseport`, a listener per hub; `exclusive`, one listener with
//! `EPOLLEXCLUSIVE`; `shared`, one listener that wakes every idle hub, the
//! herd: coroutines are combined with threads or processes to use several
//! cores); preempt: a
//! handler that computes without I/O keeps the hub, and the other
//! connections wait (the handler gives up its turn every `READS_PER_TURN`
//! reads, because nothing would force it to); call anything that really blocks (a file read, a DNS
//! lookup, a lock): it stops the whole hub, which is why gevent patches the
//! standard library. Stackful: a coroutine that overflows `--stack-kib`
//! touches its guard page (`PROT_NONE`): SIGSEGV. Rust's overflow handler
//! knows only thread stacks, so it restores the default action and the
//! whole process dies of SIGSEGV, every connection with it, with no
//! "stack overflow" message (see `tests/semantics.rs`). The default 16 KiB
//! holds the handler and a caught panic's report, but not a panic under
//! `RUST_BACKTRACE=1`: the hook symbolises the backtrace on the coroutine's
//! stack and overflows it (32 KiB suffices; give `--stack-kib 64` to debug).
//! Async has no stack to overflow: a task's state has a size fixed at
//! compile time, and a panic unwinds on the hub thread's own stack.
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
                Mode::Stackful => hub::serve(hub, spare, &setup, &mut Greenlets::new(stack_size)),
                Mode::Async => {
                    // Declared first, so dropped last: a task dropped at the stop
                    // unregisters its waker from the reactor.
                    let reactor = Reactor::default();
                    let mut executor = Executor::new(&reactor);
                    hub::serve(hub, spare, &setup, &mut executor)
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
