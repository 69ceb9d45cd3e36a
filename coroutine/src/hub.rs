//! The hub: what both flavours share, because it is the same thing in both.
//! One epoll instance per hub thread, the one place a hub waits
//! (`epoll_wait`), the dispatch by token, and the accept loop. What a
//! readiness event *does* is the flavour's business ([`Tasks`]): `stackful`
//! resumes the coroutine parked on that socket, `stackless` wakes the
//! future's `Waker`, which puts the task on the run queue.
//!
//! Every connection is registered once, edge-triggered, for both
//! directions (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`), and never modified: a
//! handler always tries its `read` or `send` first and parks only after
//! `EAGAIN`, so an edge it was not waiting for is never needed later (the
//! call it makes then finds the data or the room), and any change after the
//! `EAGAIN` is a new edge. No `epoll_ctl` per request, as in `epoll --mode edge`.
//!
//! What the straight-line text costs: the handler learns that a socket is
//! empty only from the `read` that says `EAGAIN`, and that is where it
//! parks. So a ping-pong request takes three calls (`read` with data, `read`
//! with `EAGAIN`, `send`) plus a share of `epoll_wait`, where `epoll`'s
//! event loop makes two (it reads once per report); `blocking` makes two
//! as well, and pays a sleep in the kernel per request instead. A handler
//! reads nothing more while `write_all` is parked (back-pressure: one
//! `BUF_LEN` buffer per connection at most, as in `blocking`).
//!
//! `--workers N` runs N hubs on N threads (`lab::workers`), sharing the port
//! as `epoll --workers N` does: `--share reuseport`, a listener per hub;
//! `exclusive`, one listener with `EPOLLEXCLUSIVE`; `shared`, one listener
//! that wakes every idle hub, the herd. Coroutines are combined with threads
//! or processes to use several cores; a blocking call (a file read, a DNS
//! lookup, a lock) stops the whole hub, which is why gevent patches the
//! standard library.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use lab::epoll::{
    Epoll, EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP,
};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{Accept, AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP};
use lab::signals::SignalFd;
use lab::workers::Share;
use lab::Stats;

/// Tokens in `epoll_event.u64`. A connection's token is its task's slot
/// in the flavour's [`Slab`], far below these two.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// Events taken per `epoll_wait`; more ready ones stay queued in the kernel
/// for the next call, none is lost.
const MAX_EVENTS: usize = 1024;

/// What a parked handler waits for: the `read` or the `send` that said `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

impl Interest {
    /// Whether an event with `flags` is worth retrying the call for.
    /// EPOLLHUP/EPOLLERR end any wait: the retried call returns the EOF or
    /// the error, which ends the connection.
    pub fn woken_by(self, flags: u32) -> bool {
        let wanted = match self {
            Interest::Read => EPOLLIN | EPOLLRDHUP,
            Interest::Write => EPOLLOUT,
        };
        flags & (wanted | EPOLLHUP | EPOLLERR) != 0
    }
}

/// Where the two flavours differ: what a task is, how it starts, and what a
/// readiness event does to it.
pub trait Tasks {
    /// The token the next [`Tasks::spawn`] will give its task.
    fn vacant(&self) -> usize;
    /// Makes a task of the handler for `conn`, under token `vacant()`, runnable.
    fn spawn(&mut self, conn: Conn);
    /// The kernel reported `flags` for the socket of task `token`.
    fn ready(&mut self, token: usize, flags: u32);
    /// Runs every task that is runnable now (new, woken, or that gave up
    /// its turn) until each parks or ends. A task that becomes runnable
    /// meanwhile runs on the next call, after the next look at the kernel.
    fn run(&mut self);
    /// Whether [`Tasks::run`] has work, so the next wait must not sleep.
    fn has_runnable(&self) -> bool;
}

/// One admitted connection: not `lab::conn::Conn`, which keeps an event
/// loop's output buffer and half-close state; a handler here keeps its own
/// buffer and writes each reply whole before it reads again. Dropping it (its handler returned, failed,
/// panicked, or was unwound at the stop) gives its `--max-conns` slot back,
/// then closes the socket, which also takes it out of the epoll set: once
/// the peer sees our FIN, its slot is free again.
pub struct Conn {
    fd: OwnedFd,
    stats: Arc<Stats>,
}

impl Conn {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stats.release();
    }
}

/// The tasks of one hub, by token: a slot is reused once its task ended.
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn vacant(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Stores `value` at [`Slab::vacant`] and returns that token.
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(token) => {
                self.slots[token] = Some(value);
                token
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    pub fn get_mut(&mut self, token: usize) -> Option<&mut T> {
        self.slots.get_mut(token).and_then(Option::as_mut)
    }

    pub fn remove(&mut self, token: usize) -> Option<T> {
        let value = self.slots.get_mut(token).and_then(Option::take);
        if value.is_some() {
            self.free.push(token);
        }
        value
    }
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab::new()
    }
}

/// What a hub is given; the same for all hubs but its index and listener.
pub struct Setup<'a> {
    /// This hub's place among `--workers N` (0-based), for `per_loop=`.
    pub index: usize,
    pub listener: &'a Listener,
    pub signals: &'a SignalFd,
    pub stats: &'a Arc<Stats>,
    pub max_conns: Option<u64>,
    /// With `--workers N`: how the hubs share the port.
    pub share: Share,
}

/// What one hub keeps between wake-ups.
pub struct Loop<'a> {
    index: usize,
    listener: &'a Listener,
    stats: &'a Arc<Stats>,
    max_conns: Option<u64>,
    /// The interest set, kept by the kernel.
    hub: Epoll,
    listen_events: u32,
    events: Vec<libc::epoll_event>,
    spare: Spare,
    /// Set while the descriptor table is full: the listener is out of the
    /// interest set until then.
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    pub fn new(hub: Epoll, spare: Spare, setup: &Setup<'a>) -> io::Result<Loop<'a>> {
        // Level-triggered, and nobody reads it: every hub's epoll holds the same
        // signalfd and keeps reporting the pending SIGTERM, so all of them stop.
        hub.add(setup.signals.as_raw_fd(), SIGNALS, EPOLLIN)?;
        let listen_events = match setup.share {
            // Wake one (or a few) of the hubs waiting on this listener, not all.
            Share::Exclusive => EPOLLIN | EPOLLEXCLUSIVE,
            // Every hub waiting on the shared listener wakes: the herd.
            Share::Shared => EPOLLIN,
            // This hub's own listener: nobody else waits on it.
            Share::ReusePort => EPOLLIN,
        };
        hub.add(setup.listener.as_raw_fd(), LISTENER, listen_events)?;
        Ok(Loop {
            index: setup.index,
            listener: setup.listener,
            stats: setup.stats,
            max_conns: setup.max_conns,
            hub,
            listen_events,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
            spare,
            accept_paused_until: None,
        })
    }

    /// Runs the hub until SIGINT/SIGTERM (or an error that is a bug of
    /// ours). The tasks still parked are the caller's to drop: that closes
    /// their connections.
    pub fn serve<T: Tasks>(&mut self, tasks: &mut T) -> io::Result<()> {
        loop {
            let timeout = if tasks.has_runnable() {
                // Tasks gave up their turn: look for new events, but do not sleep.
                0
            } else if let Some(until) = self.accept_paused_until {
                let left = until.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
            } else {
                -1
            };
            let ready = match self.hub.wait(&mut self.events, timeout) {
                Ok(n) => n,
                Err(e) => match WaitError::classify(&e).warned("coroutine", &e) {
                    // EINTR: a signal we do not block (e.g. SIGSTOP/SIGCONT) cut the wait short.
                    WaitError::Retry => continue,
                    // epoll_wait(2) lists no ENOMEM, but a wait that fails for
                    // lack of memory is not the loop's end.
                    WaitError::BackOff => {
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                    // EBADF, EFAULT, EINVAL: our arguments are wrong.
                    WaitError::Fatal => return Err(e),
                },
            };
            if self
                .accept_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                // ADD reports the listener at once if connections are queued.
                let listener = self.listener.as_raw_fd();
                self.hub.add(listener, LISTENER, self.listen_events)?;
                self.accept_paused_until = None;
            }
            for i in 0..ready {
                let ev = self.events[i];
                match ev.u64 {
                    // SIGINT or SIGTERM is pending: stop serving; `run` summarises.
                    SIGNALS => return Ok(()),
                    LISTENER => {
                        if self.accept_all(tasks)? == Accept::Paused {
                            // Connections stay queued and not one descriptor is
                            // to be had: the level-triggered listener would be
                            // reported at once, forever. Leave it alone a while.
                            self.hub.delete(self.listener.as_raw_fd())?;
                            self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                        }
                    }
                    token => tasks.ready(token as usize, ev.events),
                }
            }
            tasks.run();
        }
    }

    /// Accepts what is pending (up to the fairness cap), watches each socket
    /// and spawns its handler.
    fn accept_all<T: Tasks>(&mut self, tasks: &mut T) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // The listener is level-triggered: past the cap, the kernel reports the
        // rest on the next wait.
        for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
            let fd = match accept(listener, IoMode::NonBlocking) {
                Ok(fd) => fd,
                Err(e) => match AcceptError::classify(&e).warned("coroutine", &e) {
                    // With a shared listener, also what every hub but the
                    // first finds after the herd's wake-up.
                    AcceptError::Drained => return Ok(Accept::Drained),
                    AcceptError::Retry => continue,
                    // That one connection failed while queued: take the next.
                    AcceptError::Skip => continue,
                    // The connection stays queued and the listener stays
                    // readable, so the hub would spin; refuse it with the spare.
                    AcceptError::Exhausted => {
                        match self.spare.refuse_one(listener, IoMode::NonBlocking) {
                            Refusal::Refused => continue,
                            Refusal::NothingPending => return Ok(Accept::Drained),
                            Refusal::TableFull => return Ok(Accept::Paused),
                        }
                    }
                    AcceptError::BackOff => return Ok(Accept::Paused),
                    AcceptError::Fatal => return Err(e),
                },
            };
            if !self.stats.admit(self.max_conns) {
                // --max-conns reached: connection N+1 is closed at once.
                continue;
            }
            self.stats.served_by(self.index);
            let conn = Conn {
                fd,
                stats: self.stats.clone(),
            };
            let token = tasks.vacant();
            // Once, for everything, edge-triggered: never an epoll_ctl again for
            // this socket. Data that arrived before this call is not lost: ADD
            // checks the socket's readiness at once.
            let events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
            if let Err(e) = self.hub.add(conn.raw(), token as u64, events) {
                // ENOMEM, or ENOSPC (fs.epoll.max_user_watches): this connection
                // cannot be watched; dropping it closes it and frees its slot.
                lab::log!("coroutine: {e}");
                continue;
            }
            tasks.spawn(conn);
        }
        Ok(Accept::Capped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_wait_ends_on_data_or_hangup_but_not_on_room_to_write() {
        assert!(Interest::Read.woken_by(EPOLLIN));
        assert!(Interest::Read.woken_by(EPOLLRDHUP));
        assert!(Interest::Read.woken_by(EPOLLHUP));
        assert!(!Interest::Read.woken_by(EPOLLOUT));
        assert!(Interest::Write.woken_by(EPOLLOUT));
        assert!(Interest::Write.woken_by(EPOLLERR));
        assert!(!Interest::Write.woken_by(EPOLLIN | EPOLLRDHUP));
    }

    #[test]
    fn slab_reuses_the_slot_it_announced() {
        let mut slab = Slab::new();
        assert_eq!(slab.vacant(), 0);
        assert_eq!(slab.insert('a'), 0);
        assert_eq!(slab.insert('b'), 1);
        assert_eq!(slab.remove(0), Some('a'));
        assert_eq!(slab.remove(0), None, "removed once");
        assert_eq!(slab.vacant(), 0);
        assert_eq!(slab.insert('c'), 0);
        assert_eq!(slab.get_mut(0), Some(&mut 'c'));
        assert_eq!(slab.vacant(), 2);
    }
}
