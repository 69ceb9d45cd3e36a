//! peers — the servers a user would pick instead of writing a model,
//! measured beside the models as references.
//!
//! A model in this lab is written against the kernel, so that every call it
//! makes is on the page. A peer is written against a library, the way that
//! library's users write it, so that the report can answer the reader's
//! first question: what does the lab's epoll loop cost against what I would
//! use instead? Each peer keeps the whole contract the models keep (the
//! flags, `listening on`, the stop and its summary, back-pressure, EMFILE)
//! and passes the same conformance suite.
//!
//! - `--mode tokio` (`tokio_tasks.rs`): a task per connection on tokio,
//!   `read` then `write_all`; the `current_thread` runtime, or with
//!   `--workers N` the multi-thread runtime with N workers.
//! - `--mode polling` (`polling_loop.rs`): one event loop on the `polling`
//!   crate, the portable poller under smol and async-io, with its default
//!   oneshot registrations re-armed after every event.
//!
//! Run: `cargo run --release -p peers -- --mode tokio --workers 2`, then
//! `nc 127.0.0.1 PORT`.

use std::io;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueEnum};

mod polling_loop;
mod tokio_tasks;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A tokio task per connection: `read`, then `write_all`.
    Tokio,
    /// One event loop on the `polling` crate, oneshot registrations.
    Polling,
}

#[derive(Parser)]
#[command(
    name = "peers",
    version,
    about = "Echo server written as a library's users write it: tokio, or the polling crate"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    /// `--workers N` applies to `tokio` only (the multi-thread runtime).
    #[arg(long, value_enum, default_value_t = Mode::Tokio)]
    mode: Mode,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.mode == Mode::Polling && cli.common.workers.is_some() {
        // A usage error (exit status 2), not a flag silently ignored.
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--workers applies to --mode tokio only: --mode polling is one event loop",
            )
            .exit();
    }
    let result: io::Result<()> = match cli.mode {
        Mode::Tokio => tokio_tasks::run(&cli.common),
        Mode::Polling => polling_loop::run(&cli.common),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("peers: {e}");
            ExitCode::FAILURE
        }
    }
}
