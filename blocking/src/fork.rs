//! fork — a process per connection (UNP's concurrent server): the parent
//! blocks in `accept` and forks; the child serves that one client and exits.
//!
//! Phase 1 (waiting for data) blocks in `read`, one process per connection;
//! phase 2 (copying) blocks in `send` while that client does not read.
//! After `fork` the parent closes its copy of the connection and the child
//! closes its copy of the listener (UNP's two `close` calls): otherwise the
//! client would never see EOF when the child ends, and the parent's
//! descriptor table would fill. The connection counters and `--max-conns`
//! live in a MAP_SHARED mapping, so they hold across the processes.
//!
//! Why the parent has two threads: it must block in `accept` and yet notice
//! SIGCHLD (reap, or zombies pile up) and SIGTERM (stop within 2 s). UNP
//! does both with signal handlers that interrupt `accept` (EINTR), but a
//! SIGTERM that lands just before `accept` blocks is then lost until the
//! next client. Here a reaper thread waits on the signalfd: SIGCHLD → reap
//! with `waitpid(-1, WNOHANG)`, SIGTERM → `shutdown(listener)`, which makes
//! the blocked `accept` return. The price is forking a multithreaded
//! process: the child holds only the forking thread, so until it exits it
//! touches no lock another thread may hold (no `eprintln!`) and leaves with
//! `_exit`.
//! Cannot: scale as cheaply as threads: a `fork` per connection (page
//! tables copied, pages shared copy-on-write), a process per client.
//! Run: `cargo run --release -p blocking -- --mode fork`

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use lab::net::{Listener, Spare};
use lab::policy::RateLimit;
use lab::signals::SignalFd;
use lab::Stats;
use nix::sys::signal::Signal;

use crate::children::{self, Children};
use crate::conn::{accept_conn, serve_conn, Registry};

/// `fork` refused (EAGAIN: `RLIMIT_NPROC`, `threads-max`, `pid_max`;
/// ENOMEM): it fails again for every connection while the shortage lasts.
static FORK_REFUSED: RateLimit = RateLimit::new();

/// Runs until SIGINT/SIGTERM, then ends every child and reaps it.
pub fn serve(
    listener: &Listener,
    stats: Arc<Stats>,
    sigfd: SignalFd,
    max_conns: Option<u64>,
) -> io::Result<()> {
    // No connection is registered in the parent: its children end by
    // SIGTERM. The registry is the stopping flag and the listener's shutdown.
    let registry = Arc::new(Registry::new(listener.as_raw_fd()));
    let children = Arc::new(Mutex::new(Children::default()));
    let inherited = [listener.as_raw_fd(), sigfd.as_raw_fd()];
    let reaper = {
        let (registry, children, stats) = (registry.clone(), children.clone(), stats.clone());
        thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap_until_stop(&sigfd, &children, &stats, &registry))
            .map_err(|e| lab::sys::named(e, "pthread_create(reaper)".into()))?
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut spare = Spare::new()?;
    let accepted = loop {
        let fd = match accept_conn(listener.as_raw_fd(), &mut spare, &registry) {
            Ok(Some(fd)) => fd,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if !stats.admit(max_conns) {
            // Connection N+1 under `--max-conns N`: closed at once.
            drop(fd);
            continue;
        }
        // Held across fork and insert: the reaper cannot reap (and forget)
        // a child before it is recorded.
        let mut kids = lock(&children);
        match children::fork() {
            Ok(0) => child(fd, &inherited, &stats, parent),
            Ok(pid) => kids.insert(pid),
            Err(e) => {
                stats.release();
                FORK_REFUSED.warn("blocking", &e, "closing connections that get no process");
            }
        }
        drop(kids);
        // The child has its own copy; the connection is its alone now.
        drop(fd);
    };
    let stopped = match accepted {
        // The listener was shut down: the reaper has seen the stop signal.
        Ok(()) => reaper
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reaper thread panicked")))
            .map(drop),
        // The reaper may still read the signalfd: `terminate` below then
        // waits its full grace for a SIGCHLD the reaper took. Bounded.
        Err(e) => Err(e),
    };
    lock(&children).terminate(children::GRACE, |_, status| give_back_slot(&stats, status))?;
    stopped
}

/// The reaper thread: reaps on SIGCHLD; on SIGINT/SIGTERM shuts the
/// listener down (the parent's blocked `accept` returns) and ends.
fn reap_until_stop(
    sigfd: &SignalFd,
    children: &Mutex<Children>,
    stats: &Stats,
    registry: &Registry,
) -> io::Result<Signal> {
    loop {
        let sig = match sigfd.read() {
            Ok(sig) => sig,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Without the signalfd we could never be stopped: stop now.
                registry.stop();
                return Err(e);
            }
        };
        if sig != Signal::SIGCHLD {
            registry.stop();
            return Ok(sig);
        }
        let reaped = lock(children).reap(|pid, status| {
            if !libc::WIFEXITED(status) {
                lab::log!("blocking: child {pid} {}", children::describe(status));
            }
            give_back_slot(stats, status);
        });
        if let Err(e) = reaped {
            lab::log!("blocking: {e}");
        }
    }
}

/// A child that exits 0 gave its `--max-conns` slot back itself, before it
/// closed the connection (so a client that saw EOF finds the slot free).
/// One that ended otherwise (killed, panicked) did not: the parent does.
fn give_back_slot(stats: &Stats, status: i32) {
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        stats.release();
    }
}

/// The child: serves `conn` to its end and exits; never returns.
fn child(conn: OwnedFd, inherited: &[RawFd], stats: &Stats, parent: libc::pid_t) -> ! {
    if let Err(e) = children::enter_child(parent) {
        children::child_log(&e.to_string());
        children::exit_child(1);
    }
    for &fd in inherited {
        children::close_inherited(fd);
    }
    let fd = conn.as_raw_fd();
    let served = std::panic::catch_unwind(|| serve_conn(fd, stats));
    let code = match served {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            children::child_log(&format!("{e}; connection closed"));
            0
        }
        Err(_) => 1,
    };
    if code == 0 {
        // From here to `_exit` no signal can end us: the parent gives the
        // slot back for any end but exit 0, so a SIGTERM landing between
        // this release and `_exit` would have it released twice.
        children::block_signals();
        stats.release();
    }
    drop(conn);
    children::exit_child(code)
}

fn lock(children: &Mutex<Children>) -> MutexGuard<'_, Children> {
    // A set of pids stays consistent even if a holder panicked.
    children.lock().unwrap_or_else(|e| e.into_inner())
}
