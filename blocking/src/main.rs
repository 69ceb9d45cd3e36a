//! blocking — echo servers built on blocking calls only: every `accept`,
//! `read` and `send` waits until it can complete, and concurrency comes
//! from running the same loop in more threads or processes.
//!
//! Modes (each file's header says which phase blocks where):
//! `iterative` one client at a time; `thread` a thread per connection;
//! `pool` `--workers` threads sharing the listener; `fork` a process per
//! connection; `prefork` `--workers` processes sharing the listener.
//!
//! Stopping is the hard part of a blocking server: a thread blocked in
//! `read` on an idle client wakes for nothing but that socket. SIGINT and
//! SIGTERM are blocked before any thread or child exists and read from a
//! signalfd by one thread, which then shuts the listener and every open
//! connection down (`accept` returns EINVAL, `read` returns 0, `send`
//! EPIPE); children are sent SIGTERM instead.
//! Run: `cargo run --release -p blocking -- --mode thread`

mod children;
mod conn;
mod fork;
mod iterative;
mod pool;
mod prefork;
mod thread;

use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use lab::cli::Common;
use lab::net::{IoMode, Listener};
use lab::signals::SignalFd;
use lab::Stats;
use nix::sys::signal::Signal;

use crate::conn::Registry;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Blocking echo servers: iterative, thread, pool, fork, prefork"
)]
struct Cli {
    #[command(flatten)]
    common: Common,

    /// Which blocking design serves the connections.
    #[arg(long, value_enum, default_value_t = Mode::Thread)]
    mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One client at a time.
    Iterative,
    /// A thread per connection.
    Thread,
    /// A fixed pool of `--workers` threads (default 4).
    Pool,
    /// A process per connection.
    Fork,
    /// A fixed pool of `--workers` processes (default 4).
    Prefork,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Iterative => "iterative",
            Mode::Thread => "thread",
            Mode::Pool => "pool",
            Mode::Fork => "fork",
            Mode::Prefork => "prefork",
        }
    }

    fn uses_workers(self) -> bool {
        matches!(self, Mode::Pool | Mode::Prefork)
    }
}

const DEFAULT_WORKERS: u32 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Returning from main ends the process, with any thread still
            // blocked (the stop thread in read(signalfd)).
            lab::log!("blocking: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<()> {
    // Before any thread or child exists: each inherits the blocked mask,
    // so SIGINT/SIGTERM/SIGCHLD reach us only through this descriptor.
    let sigfd = SignalFd::install(&[Signal::SIGCHLD])?;
    let listener = Listener::bind(cli.common.addr, IoMode::Blocking)?;
    if cli.common.workers.is_some() && !cli.mode.uses_workers() {
        lab::log!(
            "blocking: --workers is ignored by --mode {}",
            cli.mode.name()
        );
    }
    let workers = cli.common.workers_or(DEFAULT_WORKERS);
    // `pool` and `prefork` count what each worker accepted (`per_loop=`).
    let loops = if cli.mode.uses_workers() { workers } else { 1 };
    let stats = Arc::new(Stats::with_loops(loops)?);
    let max_conns = cli.common.max_conns;
    listener.announce()?;
    match cli.mode {
        Mode::Fork => fork::serve(&listener, stats.clone(), sigfd, max_conns)?,
        Mode::Prefork => prefork::serve(&listener, &stats, &sigfd, max_conns, workers)?,
        Mode::Iterative | Mode::Thread | Mode::Pool => {
            let registry = Arc::new(Registry::new(listener.as_raw_fd()));
            let stopper = {
                let registry = registry.clone();
                std::thread::Builder::new()
                    .name("stop".into())
                    .spawn(move || {
                        let stop = sigfd.wait_for_stop();
                        registry.stop();
                        stop
                    })
                    .map_err(|e| lab::sys::named(e, "pthread_create(stop)".into()))?
            };
            match cli.mode {
                Mode::Iterative => {
                    iterative::serve(0, &listener, &stats, &registry, max_conns, None)?
                }
                Mode::Thread => thread::serve(&listener, &stats, &registry, max_conns)?,
                _ => pool::serve(&listener, &stats, &registry, max_conns, workers)?,
            }
            // The listener was shut down, so the stop thread has returned.
            stopper
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the stop thread panicked")))?;
        }
    }
    stats.print_summary(&format!("blocking:{}", cli.mode.name()))
}
