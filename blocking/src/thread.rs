//! thread — a thread per connection: the accepting thread blocks in
//! `accept`, and each connection gets its own thread that blocks in `read`.
//!
//! Phase 1 (waiting for data) blocks in `read`, one thread per connection,
//! so a silent client stalls only its own thread; phase 2 (copying) blocks
//! in `send` while that client does not read. The kernel's scheduler does
//! the multiplexing an event loop would do by hand.
//! Cannot: stay cheap at scale: every connection costs a thread (a stack,
//! a kernel task, a context switch per wake-up), and thread creation per
//! connection caps the connection rate. When the kernel refuses a thread
//! (`EAGAIN`: `RLIMIT_NPROC`, `threads-max`, memory), that one connection is
//! closed and the server goes on.
//! Run: `cargo run --release -p blocking -- --mode thread`

use std::io;
use std::os::fd::AsRawFd;
use std::thread;

use lab::net::{Listener, Spare};
use lab::policy::RateLimit;
use lab::Stats;

use crate::conn::{accept_conn, Registry};

/// Stack of a connection thread. Rust's default is 2 MiB; the kernel maps a
/// stack lazily, so resident memory is only the pages touched, but the
/// whole reservation counts against the address space and, under strict
/// overcommit (`vm.overcommit_memory=2`), against the commit limit: 2000
/// connections would reserve 4 GiB. A connection thread needs little: its
/// buffer is on the heap, and its deepest path is a panic's report with a
/// symbolised backtrace, which fits in 32 KiB here (16 KiB overflows). A
/// thread that overflows its stack aborts the whole process, hence twice
/// that, and the test below.
const CONN_STACK: usize = 64 << 10;

/// `pthread_create` refused (EAGAIN: `RLIMIT_NPROC`, `threads-max`,
/// memory): it fails again for every connection while the shortage lasts.
static SPAWN_REFUSED: RateLimit = RateLimit::new();

/// Runs until the stop thread shuts the listener down, then waits for every
/// connection thread (the stop thread has shut their sockets down too).
pub fn serve(
    listener: &Listener,
    stats: &Stats,
    registry: &Registry,
    max_conns: Option<u64>,
) -> io::Result<()> {
    let mut spare = Spare::new()?;
    // The scope joins every connection thread before it returns.
    thread::scope(|scope| loop {
        let fd = match accept_conn(listener.as_raw_fd(), &mut spare, registry) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Ok(()),
            Err(e) => {
                // Wake the connection threads, or the scope never ends.
                registry.stop();
                return Err(e);
            }
        };
        if !stats.admit(max_conns) {
            // Connection N+1 under `--max-conns N`: closed at once.
            drop(fd);
            continue;
        }
        let Some(conn) = registry.register(fd, stats, None) else {
            return Ok(());
        };
        let spawned = thread::Builder::new()
            .stack_size(CONN_STACK)
            .spawn_scoped(scope, move || conn.serve());
        if let Err(e) = spawned {
            // The closure was dropped unrun, and with it `conn`: that
            // connection is closed and its slot given back.
            let e = lab::sys::named(e, "pthread_create".into());
            SPAWN_REFUSED.warn("blocking", &e, "closing connections that get no thread");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_stack_holds_a_panic_with_a_symbolised_backtrace() {
        let thread = thread::Builder::new()
            .stack_size(CONN_STACK)
            .spawn(|| {
                let trace = std::backtrace::Backtrace::force_capture().to_string();
                panic!("deliberate panic after a {}-byte backtrace", trace.len());
            })
            .expect("spawn");
        // A stack overflow would abort the test binary instead of failing here.
        assert!(
            thread.join().is_err(),
            "the panic must unwind and be caught"
        );
    }
}
