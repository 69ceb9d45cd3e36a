//! `--workers N`: N event loops on N threads, how they share the port, and
//! how they stop together. Each loop is `serve` in `main.rs`, unchanged;
//! nothing here waits, reads or writes.

use std::io;
use std::net::SocketAddr;
use std::thread;

use lab::net::{IoMode, Listener, PortSharing, Spare};

use crate::{Epoll, Share};

/// `--share exclusive` and `--share shared`: one listener, in every loop's
/// epoll. `--share reuseport`: one per loop, on
/// one port; the first binds (port 0 becomes a real one), the others bind
/// the port it got. A single loop needs no `SO_REUSEPORT`, and without it no
/// other process can bind our port and take a share of our connections.
pub fn bind_listeners(addr: SocketAddr, workers: usize, share: Share) -> io::Result<Vec<Listener>> {
    if share != Share::ReusePort || workers == 1 {
        let listener = Listener::bind(addr, IoMode::NonBlocking, PortSharing::Exclusive)?;
        return Ok(vec![listener]);
    }
    let first = Listener::bind(addr, IoMode::NonBlocking, PortSharing::ReusePort)?;
    let port = first.local_addr();
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(Listener::bind(
            port,
            IoMode::NonBlocking,
            PortSharing::ReusePort,
        )?);
    }
    Ok(all)
}

/// Runs `serve` once per loop, each on its own thread, with loop `i`'s
/// index, epoll instance and spare and its listener (the one shared listener
/// with `--share exclusive` or `shared`), and returns once every loop has ended: the first
/// error, if any loop failed.
pub fn run_loops<F>(loops: Vec<(Epoll, Spare)>, listeners: &[Listener], serve: F) -> io::Result<()>
where
    F: Fn(usize, Epoll, Spare, &Listener) -> io::Result<()> + Sync,
{
    let serve = &serve;
    let results: Vec<io::Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = loops
            .into_iter()
            .enumerate()
            .map(|(i, (ep, spare))| {
                let listener = &listeners[i % listeners.len()];
                thread::Builder::new()
                    .name(format!("epoll-loop-{i}"))
                    .spawn_scoped(scope, move || {
                        let _stop_the_others = StopAllOnExit;
                        serve(i, ep, spare, listener)
                    })
                    .inspect_err(|_| stop_all_loops())
            })
            .collect();
        handles
            .into_iter()
            .map(|spawned| match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("an event loop panicked"))),
                Err(e) => Err(lab::sys::named(e, "pthread_create".into())),
            })
            .collect()
    });
    results.into_iter().collect()
}

/// When one loop ends, for whatever reason (SIGTERM, an error, a panic), it
/// stops the others, so that `run_loops` can join them all.
struct StopAllOnExit;

impl Drop for StopAllOnExit {
    fn drop(&mut self) {
        stop_all_loops();
    }
}

/// Raises SIGTERM at our own process: every loop's epoll watches the same
/// signalfd, level-triggered and never read, so every loop sees it and
/// stops. Standard signals do not queue: a second SIGTERM while one is
/// pending changes nothing.
fn stop_all_loops() {
    // SAFETY: kill has no memory arguments; SIGTERM is blocked in every
    // thread, so it only becomes pending for the signalfd.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}
