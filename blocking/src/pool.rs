//! pool — a fixed pool of `--workers` threads (default 4), each running the
//! iterative loop (`accept`, serve to the end) on the one shared listener
//! (UNP's "prethreaded server, each thread calls accept").
//!
//! Phase 1 (waiting for data) blocks in `read`, one worker per connection;
//! phase 2 (copying) blocks in `send` while that client does not read. An
//! idle worker blocks in `accept`: the kernel queues waiters on the listener
//! exclusively and wakes one per connection, so no lock around `accept` is
//! needed (UNP's version holds a mutex around it, for systems where
//! concurrent `accept` calls were unsafe or woke every waiter).
//! Cannot: serve more than N clients at once; client N+1 waits in the
//! listen backlog until a worker is free, so N silent clients stall all the
//! others. Cheaper than `thread` per connection: no thread is created after
//! start.
//! Run: `cargo run --release -p blocking -- --mode pool --workers 8`

use std::io;

use lab::net::Listener;
use lab::{workers, Stats};

use crate::conn::Registry;
use crate::iterative;

/// Runs `workers` copies of the iterative loop, on threads `worker-0..N`
/// (`lab::workers::run_loops`), until the stop thread shuts the listener
/// down. A worker that ends for any other reason (an error, a panic outside
/// a connection) raises SIGTERM as it leaves: the stop thread reads it and
/// shuts the listener down, or the other workers would block in `accept`
/// forever. The first error is returned.
pub fn serve(
    listener: &Listener,
    stats: &Stats,
    registry: &Registry,
    max_conns: Option<u64>,
    workers: usize,
) -> io::Result<()> {
    let each_own = vec![(); workers];
    workers::run_loops(
        "worker",
        each_own,
        std::slice::from_ref(listener),
        |i, (), listener| iterative::serve(i, listener, stats, registry, max_conns, None),
    )
}
