//! `--workers N`: N event loops on N threads, how they share the port, and
//! how they stop together. Policy, not mechanism: each loop is the model's
//! own `serve`, unchanged; nothing here waits, reads or writes.
//!
//! Every loop watches the one signalfd (installed before any thread exists,
//! so SIGINT/SIGTERM stay blocked in every thread and pending for it),
//! level-triggered and never read: a pending SIGTERM stops every loop.

use std::io;
use std::net::SocketAddr;
use std::thread;

use crate::net::{IoMode, Listener};

/// How `--workers N` loops share the port (`--share`): the lab's one name
/// for it ([`Listener::bind`] for one owner, [`Listener::bind_reuseport`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Share {
    /// A listener per loop, all on one port (`SO_REUSEPORT`).
    #[value(name = "reuseport")]
    ReusePort,
    /// One listener in every loop's epoll, with `EPOLLEXCLUSIVE` (`uring`: one
    /// listener, which io_uring's ACCEPT always waits on exclusively).
    Exclusive,
    /// One listener in every loop's epoll, plainly: the thundering herd.
    Shared,
}

/// `--share exclusive` and `--share shared`: one listener, in every loop.
/// `--share reuseport`: one per loop, on one port; the first binds (port 0
/// becomes a real one), the others bind the port it got. A single loop needs
/// no `SO_REUSEPORT`, and without it no other process can bind our port and
/// take a share of our connections.
pub fn bind_listeners(addr: SocketAddr, workers: usize, share: Share) -> io::Result<Vec<Listener>> {
    if share != Share::ReusePort || workers == 1 {
        let listener = Listener::bind(addr, IoMode::NonBlocking)?;
        return Ok(vec![listener]);
    }
    let first = Listener::bind_reuseport(addr, IoMode::NonBlocking)?;
    let port = first.local_addr();
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(Listener::bind_reuseport(port, IoMode::NonBlocking)?);
    }
    Ok(all)
}

/// The listeners for `share` (see [`bind_listeners`]) and each of the
/// `workers` loops' own state, made by `make` (its epoll instance and its
/// spare descriptor), all before the first client can connect: a connect
/// flood that fills the descriptor table must not find a loop still without
/// its epoll instance or its spare.
pub fn bind_and_make<L>(
    addr: SocketAddr,
    workers: usize,
    share: Share,
    make: impl FnMut() -> io::Result<L>,
) -> io::Result<(Vec<Listener>, Vec<L>)> {
    let listeners = bind_listeners(addr, workers, share)?;
    let loops = std::iter::repeat_with(make)
        .take(workers)
        .collect::<io::Result<Vec<L>>>()?;
    Ok((listeners, loops))
}

/// Runs `serve` once per loop, each on its own thread named `{name}-{i}`,
/// with loop `i`'s index, its own state (its epoll instance and spare,
/// made before the first client can connect) and its listener (the one
/// shared listener with `--share exclusive` or `shared`), and returns once
/// every loop has ended: the first error, if any loop failed.
pub fn run_loops<L, F>(
    name: &str,
    loops: Vec<L>,
    listeners: &[Listener],
    serve: F,
) -> io::Result<()>
where
    L: Send,
    F: Fn(usize, L, &Listener) -> io::Result<()> + Sync,
{
    let serve = &serve;
    let results: Vec<io::Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = loops
            .into_iter()
            .enumerate()
            .map(|(i, own)| {
                let listener = &listeners[i % listeners.len()];
                thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(scope, move || {
                        let _stop_the_others = StopAllOnExit;
                        serve(i, own, listener)
                    })
                    .inspect_err(|_| stop_all_loops())
            })
            .collect();
        handles
            .into_iter()
            .map(|spawned| match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other(format!("{name} panicked")))),
                Err(e) => Err(crate::sys::named(e, "pthread_create".into())),
            })
            .collect()
    });
    results.into_iter().collect()
}

/// When one loop ends, for whatever reason (SIGTERM, an error, a panic), it
/// stops the others, so that `run_loops` can join them all. Public for a
/// model that runs its loops its own way (`uring` keeps its first ring on
/// the calling thread).
pub struct StopAllOnExit;

impl Drop for StopAllOnExit {
    fn drop(&mut self) {
        stop_all_loops();
    }
}

/// Raises SIGTERM at our own process: every loop's epoll watches the same
/// signalfd, level-triggered and never read, so every loop sees it and
/// stops. Standard signals do not queue: a second SIGTERM while one is
/// pending changes nothing.
pub fn stop_all_loops() {
    // SAFETY: kill has no memory arguments; SIGTERM is blocked in every
    // thread, so it only becomes pending for the signalfd.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("addr")
    }

    #[test]
    fn reuseport_binds_one_listener_per_loop_on_one_port() {
        let all = bind_listeners(loopback(), 3, Share::ReusePort).expect("bind");
        assert_eq!(all.len(), 3);
        let port = all[0].local_addr().port();
        assert_ne!(port, 0, "port 0 became a real port");
        assert!(all.iter().all(|l| l.local_addr().port() == port));
    }

    #[test]
    fn exclusive_shared_and_a_single_loop_bind_one_listener() {
        for (workers, share) in [
            (3, Share::Exclusive),
            (3, Share::Shared),
            (1, Share::ReusePort),
        ] {
            let all = bind_listeners(loopback(), workers, share).expect("bind");
            assert_eq!(all.len(), 1, "{workers} {share:?}");
            // Without SO_REUSEPORT nobody else may bind the port.
            let again = Listener::bind_reuseport(all[0].local_addr(), IoMode::NonBlocking);
            assert!(again.is_err(), "{share:?}: the port must not be shareable");
        }
    }
}
