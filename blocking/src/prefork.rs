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
//! Measured (`harness run blocking:prefork --workload connect --syscalls`):
//! no `accept4` returns `EAGAIN`, one wake-up per connection, and the
//! summary's `per_loop=` shows how the kernel spread them over the workers.
//! The counters and `--max-conns` are in a MAP_SHARED mapping: they hold
//! across the children.
//!
//! The parent serves nothing: it is single-threaded and blocks in
//! `read(signalfd)`. SIGCHLD → reap, and replace a child a signal killed;
//! SIGTERM → SIGTERM to every child, reap them all, print the summary.
//! A worker killed while serving cannot give its `--max-conns` slot back:
//! each worker sets its byte of a MAP_SHARED array while it holds a slot,
//! and the parent gives back the slot of a reaped worker whose byte is set.
//! Cannot: serve more than N clients at once (client N+1 waits in the
//! listen backlog); N silent clients stall all the others. A worker killed
//! in the instant between taking a slot and setting its byte (or clearing
//! it and giving the slot back) leaks that slot.
//! Run: `cargo run --release -p blocking -- --mode prefork --workers 8`

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

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
    let held = Held::new(workers)?;
    // Worker pid -> its index in `held`; a replacement takes the index over.
    let mut index = HashMap::with_capacity(workers);
    for i in 0..workers {
        let pid = spawn_worker(i, listener, stats, sigfd, max_conns, held.get(i))?;
        children.insert(pid);
        index.insert(pid, i);
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
        let mut killed = Vec::new();
        children.reap(|pid, status| {
            lab::log!("blocking: worker {pid} {}", children::describe(status));
            let Some(i) = index.remove(&pid) else {
                return;
            };
            // The byte is set only while the worker held a slot it had not
            // given back: a killed one cannot, so we do. Checked whatever
            // the end (a clean exit leaves it clear).
            if held.get(i).swap(0, Ordering::AcqRel) == 1 {
                stats.release();
            }
            // A child that exited reported its own error, which a new
            // child would only repeat; one a signal killed is replaced.
            if libc::WIFSIGNALED(status) {
                killed.push(i);
            }
        })?;
        for i in killed {
            let pid = spawn_worker(i, listener, stats, sigfd, max_conns, held.get(i))?;
            children.insert(pid);
            index.insert(pid, i);
        }
        if children.is_empty() {
            return Err(io::Error::other("every worker process has ended"));
        }
    }
}

/// One byte per worker, in a MAP_SHARED anonymous mapping: 1 while the
/// worker holds a `--max-conns` slot. The parent reads the byte of a worker
/// it reaped; a plain variable would be the child's copy-on-write copy.
struct Held {
    bytes: NonNull<AtomicU8>,
    len: usize,
}

impl Held {
    fn new(len: usize) -> io::Result<Held> {
        // SAFETY: an anonymous mapping with no address hint; the kernel
        // returns zeroed memory, valid `AtomicU8`s (all 0) of any alignment.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(lab::sys::named(
                io::Error::last_os_error(),
                "mmap(MAP_SHARED|MAP_ANONYMOUS)".into(),
            ));
        }
        let bytes = NonNull::new(ptr.cast::<AtomicU8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Held { bytes, len })
    }

    fn get(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.len, "worker index {i} out of {}", self.len);
        // SAFETY: `i` is within the mapping, which lives as long as `self`
        // and is only accessed through atomics.
        unsafe { &*self.bytes.as_ptr().add(i) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its length; no reference
        // from `get` outlives `self`.
        unsafe { libc::munmap(self.bytes.as_ptr().cast(), self.len.max(1)) };
    }
}

/// Forks worker `i` (a replacement takes the index of the worker it
/// replaces); returns its pid in the parent, never in the child.
fn spawn_worker(
    i: usize,
    listener: &Listener,
    stats: &Stats,
    sigfd: &SignalFd,
    max_conns: Option<u64>,
    held: &AtomicU8,
) -> io::Result<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let pid = children::fork()?;
    if pid != 0 {
        return Ok(pid);
    }
    // The parent is single-threaded, so the child inherits no lock held by
    // a vanished thread: the iterative loop may use std freely.
    // A panic must not unwind out of here into the parent's code (its
    // loop, its `terminate`) running in the child: caught, then `_exit`.
    let worked = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if let Err(e) = children::enter_child(parent) {
            children::child_log(&e.to_string());
            return 1;
        }
        children::close_inherited(sigfd.as_raw_fd());
        // Never stopped: SIGTERM from the parent ends this process, wherever
        // it blocks. The kernel closes its connection.
        let registry = Registry::new(listener.as_raw_fd());
        match iterative::serve(i, listener, stats, &registry, max_conns, Some(held)) {
            Ok(()) => 0,
            Err(e) => {
                children::child_log(&e.to_string());
                1
            }
        }
    }));
    children::exit_child(worked.unwrap_or(1))
}
