//! iterative — one client at a time: accept, serve it to the end, accept the
//! next (UNP's iterative server).
//!
//! Phase 1 (waiting for data) blocks in `read` on the one open connection;
//! phase 2 (copying) blocks in `send` while that client does not read.
//! Waiting for a connection blocks in `accept`.
//! Cannot: serve a second client while the first stays connected: a client
//! that sends nothing stalls every other one (by design; the conformance
//! suite declares it an expected limit). The other modes are this loop with
//! the serving moved elsewhere: into a thread (`thread`), a process (`fork`),
//! or run N times over on one listener (`pool`, `prefork`).
//! Run: `cargo run --release -p blocking -- --mode iterative`

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};

use lab::net::{Listener, Spare};
use lab::Stats;

use crate::conn::{accept_conn, Registry};

/// Runs until the stop thread shuts the listener down. `held` is set
/// while a `--max-conns` slot is taken (a `prefork` worker's flag, read by
/// its parent if the worker is killed; `None` elsewhere). `worker` is this
/// loop's index among the `pool` or `prefork` workers (0 for `iterative`),
/// for the per-loop count in the summary.
pub fn serve(
    worker: usize,
    listener: &Listener,
    stats: &Stats,
    registry: &Registry,
    max_conns: Option<u64>,
    held: Option<&AtomicU8>,
) -> io::Result<()> {
    let mut spare = Spare::new()?;
    loop {
        let Some(fd) = accept_conn(listener.as_raw_fd(), &mut spare, registry)? else {
            return Ok(());
        };
        if !stats.admit(max_conns) {
            // Connection N+1 under `--max-conns N`: closed at once.
            drop(fd);
            continue;
        }
        stats.served_by(worker);
        if let Some(held) = held {
            held.store(1, Ordering::Release);
        }
        let Some(conn) = registry.register(fd, stats, held) else {
            return Ok(());
        };
        conn.serve();
    }
}
