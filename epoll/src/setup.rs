//! What both loops (`level.rs`, `edge.rs`) are given and register the same
//! way: each loop's set-up, the tokens, and the listener's flags for the way
//! `--workers N` loops share the port.

use std::os::fd::RawFd;

use lab::epoll::EPOLLEXCLUSIVE;
use lab::net::Listener;
use lab::signals::SignalFd;
use lab::workers::Share;
use lab::Stats;

/// What one loop is given; the same for all loops but `index` and, with
/// `--share reuseport`, `listener`.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// This loop's place among `--workers N` (0-based), for `per_loop=`.
    pub index: usize,
    pub listener: &'a Listener,
    pub signals: &'a SignalFd,
    pub stats: &'a Stats,
    pub share: Share,
    pub max_conns: Option<u64>,
}

/// Tokens in `epoll_event.u64`. A connection's token is its descriptor in
/// the low 32 bits, and `conns` is indexed by it (Redis' `events[fd]`), with
/// the slot's generation in the high 32 bits: an event queued for a
/// connection that closed meanwhile (earlier in the same batch, or owed from
/// an earlier round) does not match a new connection that got the same
/// descriptor. Descriptors are below 2^31, so these two are never a
/// connection's.
pub const LISTENER: u64 = u64::MAX;
pub const SIGNALS: u64 = u64::MAX - 1;

/// Events taken per `epoll_wait`; more ready ones stay queued in the kernel
/// for the next call, none is lost.
pub const MAX_EVENTS: usize = 1024;

/// A connection's token: its generation above its descriptor.
pub fn token(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

/// The descriptor and generation a connection's token holds.
pub fn split(token: u64) -> (RawFd, u32) {
    (token as u32 as RawFd, (token >> 32) as u32)
}

/// The listener's flags: the mode's own (`events`), and how the loops share
/// it. The thundering herd: a listener in several loops' epoll, registered
/// plainly, wakes every loop waiting on it for each new connection; one
/// accepts, the others find `EAGAIN` and sleep again: N wake-ups for one
/// connection. Kept on purpose (`--share shared`) so that it can be
/// measured (`harness run epoll:level --workload connect -- --workers 2
/// --share shared`). Two remedies: `EPOLLEXCLUSIVE` (Linux 4.5) wakes one or
/// more waiters, not all, and a loop busy serving is not waiting, so an idle
/// one takes the connection; `SO_REUSEPORT` (Linux 3.9, `--share
/// reuseport`) gives each loop its own listener on the same port, and the
/// kernel hashes each connection's 4-tuple to one listener's queue: no herd
/// and no shared queue, but no balancing either: a connection hashed to a
/// busy loop waits for that loop, and an idle loop does not take it.
pub fn listen_events(events: u32, share: Share) -> u32 {
    match share {
        // Wake one (or a few) of the loops waiting on this listener, not all.
        Share::Exclusive => events | EPOLLEXCLUSIVE,
        // Every loop waiting on the shared listener wakes: the herd.
        Share::Shared => events,
        // This loop's own listener: nobody else waits on it.
        Share::ReusePort => events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_descriptor_and_generation_and_is_never_a_fixed_one() {
        let t = token(7, 41);
        assert_eq!(split(t), (7, 41));
        assert_eq!((t as u32 as RawFd, (t >> 32) as u32), (7, 41));
        assert_ne!(
            token(7, 41),
            token(7, 42),
            "a reused descriptor gets a new token"
        );
        let highest = token(i32::MAX, u32::MAX);
        assert!(highest != LISTENER && highest != SIGNALS);
    }
}
