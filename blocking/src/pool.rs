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
use std::thread;

use lab::net::Listener;
use lab::Stats;

use crate::conn::Registry;
use crate::iterative;

/// Runs `workers` copies of the iterative loop until the stop thread shuts
/// the listener down; the first error ends them all.
pub fn serve(
    listener: &Listener,
    stats: &Stats,
    registry: &Registry,
    max_conns: Option<u64>,
    workers: usize,
) -> io::Result<()> {
    thread::scope(|scope| {
        let mut pool = Vec::with_capacity(workers);
        for i in 0..workers {
            let worker = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn_scoped(scope, move || {
                    let served = iterative::serve(i, listener, stats, registry, max_conns, None);
                    if served.is_err() {
                        // The other workers would block in accept forever.
                        registry.stop();
                    }
                    served
                });
            match worker {
                Ok(worker) => pool.push(worker),
                Err(e) => {
                    registry.stop();
                    return Err(lab::sys::named(e, format!("pthread_create(worker {i})")));
                }
            }
        }
        let mut first_err = Ok(());
        for worker in pool {
            let ended = worker.join().unwrap_or_else(|_| {
                Err(io::Error::other("a worker panicked outside a connection"))
            });
            if first_err.is_ok() {
                first_err = ended;
            }
        }
        first_err
    })
}
