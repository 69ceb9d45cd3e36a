//! prefork — a fixed pool of `--workers` processes (default 4), forked at
//! start, each running the iterative loop (`accept`, serve to the end) on
//! the listener they inherited (UNP's preforked server, and Apache's
//! prefork MPM).
//!
//! Phase 1 (waiting for data) blocks in `read`, one process per connection;
//! phase 2 (copying) blocks in `send` while that client does not read. An
//! idle child blocks in `accept` on the shared listener. UNP tells of the
//! "thundering herd": kernels that woke every process sleeping in `accept`
//! for each connection, all but one going back to sleep (and, on some
//! systems, `accept` across processes needed a lock around it). Linux has
//! queued blocking `accept` waiters exclusively since 2.4 (wake-one wait
//! queues, added during 2.3), so one process wakes per connection; the
//! herd came back with `select` and `epoll` on a shared listener (see
//! `epoll --share exclusive`).
//! The counters and `--max-conns` are in a MAP_SHARED mapping: they hold
//! across the children.
//!
//! The parent serves nothing: it is single-threaded and blocks in
//! `read(signalfd)`. SIGCHLD → reap, and replace a child a signal killed;
//! SIGTERM → SIGTERM to every child, reap them all, print the summary.
//! Cannot: serve more than N clients at once (client N+1 waits in the
//! listen backlog); N silent clients stall all the others. A child killed
//! while serving leaves its `--max-conns` slot taken.
//! Run: `cargo run --release -p blocking -- --mode prefork --workers 8`

use std::io;
use std::os::fd::AsRawFd;

use lab::net::Listener;
use lab::signals::SignalFd;
use lab::Stats;
use nix::sys::signal::Signal;

use crate::children::{self, Children};
use crate::conn::Registry;
use crate::iterative;

/// Forks `workers` children, then waits for signals until SIGINT/SIGTERM.
pub fn serve(
    listener: &Listener,
    stats: &Stats,
    sigfd: &SignalFd,
    max_conns: Option<u64>,
    workers: usize,
) -> io::Result<()> {
    let mut children = Children::default();
    let served = run_pool(&mut children, listener, stats, sigfd, max_conns, workers);
    children.terminate(children::GRACE, |_, _| {})?;
    served
}

/// Starts the pool and keeps it full until a stop signal (`Ok`) or an error.
fn run_pool(
    children: &mut Children,
    listener: &Listener,
    stats: &Stats,
    sigfd: &SignalFd,
    max_conns: Option<u64>,
    workers: usize,
) -> io::Result<()> {
    for _ in 0..workers {
        children.insert(spawn_worker(listener, stats, sigfd, max_conns)?);
    }
    loop {
        let sig = match sigfd.read() {
            Ok(sig) => sig,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if sig != Signal::SIGCHLD {
            return Ok(());
        }
        let mut killed = 0;
        children.reap(|pid, status| {
            lab::log!("blocking: worker {pid} {}", children::describe(status));
            // A child that exited reported its own error, which a new
            // child would only repeat; one a signal killed is replaced.
            if libc::WIFSIGNALED(status) {
                killed += 1;
            }
        })?;
        for _ in 0..killed {
            children.insert(spawn_worker(listener, stats, sigfd, max_conns)?);
        }
        if children.is_empty() {
            return Err(io::Error::other("every worker process has ended"));
        }
    }
}

/// Forks one worker; returns its pid in the parent, never in the child.
fn spawn_worker(
    listener: &Listener,
    stats: &Stats,
    sigfd: &SignalFd,
    max_conns: Option<u64>,
) -> io::Result<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let pid = children::fork()?;
    if pid != 0 {
        return Ok(pid);
    }
    // The parent is single-threaded, so the child inherits no lock held by
    // a vanished thread: the iterative loop may use std freely.
    if let Err(e) = children::enter_child(parent) {
        children::child_log(&e.to_string());
        children::exit_child(1);
    }
    children::close_inherited(sigfd.as_raw_fd());
    // Never stopped: SIGTERM from the parent ends this process, wherever
    // it blocks. The kernel closes its connection.
    let registry = Registry::new(listener.as_raw_fd());
    match iterative::serve(listener, stats, &registry, max_conns) {
        Ok(()) => children::exit_child(0),
        Err(e) => {
            children::child_log(&e.to_string());
            children::exit_child(1)
        }
    }
}
