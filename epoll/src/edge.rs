//! `--mode edge`: the kernel reports a change (new data, new buffer space, a
//! new connection) once. A socket is registered once for everything
//! (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`) and never modified; the price is
//! that data already in the socket is never reported again, so we read
//! until it is drained. For fairness that is capped per wake-up; a socket
//! that hit the cap, or whose reading back-pressure paused and a drained
//! output buffer resumes, goes on a list of work we owe (`lab::owed`),
//! served before the next sleep. `accept` is drained the same way: a
//! listener that hit the accept cap is owed too. A `send` cut short by
//! EINTR is retried at once (in `send`): no new edge comes for room the
//! socket already has.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use lab::conn::{drop_on, Conn, Next};
use lab::epoll::{Epoll, EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::owed::{Left, Owed};
use lab::policy::{
    Accept, AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, MAX_READS_PER_WAKEUP, READ_CHUNK,
};
use lab::{syscall, Stats};

use crate::setup::{self, Setup, LISTENER, MAX_EVENTS, SIGNALS};

/// The model's name, in every message this file logs.
const MODEL: &str = "epoll";

/// Once, for everything: never an epoll_ctl again for this socket.
const CONN_EVENTS: u32 = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

/// The listener reports a new connection once; what is queued behind it
/// gets no new edge (see `lab::owed::Owed::owe_listener`).
const LISTENER_EVENTS: u32 = EPOLLIN | EPOLLET;

/// How a token on the owed list is served: as if the kernel had reported it
/// readable again. `EPOLLRDHUP` because we no longer know whether the peer's
/// FIN was already queued: read on to `EAGAIN` (see `on_readable`).
const OWED: u32 = EPOLLIN | EPOLLRDHUP;

/// One connection of this loop, at `conns[fd]`.
struct Slot {
    conn: Conn,
    /// Part of this connection's token (see `setup::LISTENER`).
    generation: u32,
    /// The token is on the owed list (see `lab::owed`).
    owed: bool,
}

/// What the loop keeps between wake-ups.
pub struct Loop<'a> {
    index: usize,
    listener: &'a Listener,
    stats: &'a Stats,
    max_conns: Option<u64>,
    /// The interest set, kept by the kernel.
    ep: Epoll,
    listen_events: u32,
    events: Vec<libc::epoll_event>,
    conns: Vec<Option<Slot>>,
    generation: u32,
    spare: Spare,
    scratch: Vec<u8>,
    /// What the kernel will not report again, in the order it was owed.
    owed: Owed<u64>,
    /// Set while the descriptor table is full: the listener is out of the
    /// interest set until then.
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    pub fn new(ep: Epoll, spare: Spare, setup: Setup<'a>) -> io::Result<Loop<'a>> {
        // Level-triggered, and nobody reads it: every loop's epoll holds the same
        // signalfd and keeps reporting the pending SIGTERM, so all of them stop.
        ep.add(setup.signals.as_raw_fd(), SIGNALS, EPOLLIN)?;
        let listen_events = setup::listen_events(LISTENER_EVENTS, setup.share);
        ep.add(setup.listener.as_raw_fd(), LISTENER, listen_events)?;
        Ok(Loop {
            index: setup.index,
            listener: setup.listener,
            stats: setup.stats,
            max_conns: setup.max_conns,
            ep,
            listen_events,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
            conns: Vec::new(),
            generation: 0,
            spare,
            scratch: vec![0u8; READ_CHUNK],
            owed: Owed::new(LISTENER),
            accept_paused_until: None,
        })
    }

    /// Serves until SIGINT or SIGTERM; the caller summarises.
    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            let timeout = if !self.owed.is_empty() {
                // Work is owed: look for new events, but do not sleep.
                0
            } else if let Some(until) = self.accept_paused_until {
                let left = until.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
            } else {
                -1
            };
            let ready = match self.ep.wait(&mut self.events, timeout) {
                Ok(n) => n,
                Err(e) => match WaitError::classify(&e).warned(MODEL, &e) {
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
                self.ep.add(listener, LISTENER, self.listen_events)?;
                self.accept_paused_until = None;
            }
            // What we owed from the last round, served after what the kernel
            // reported, in the order it was owed; what is owed meanwhile
            // waits for the next round.
            let mut owed_now = self.owed.take();
            for i in 0..ready {
                let ev = self.events[i];
                match ev.u64 {
                    // SIGINT or SIGTERM is pending: stop serving.
                    SIGNALS => return Ok(()),
                    LISTENER => self.on_listener()?,
                    token => self.on_ready(token, ev.events),
                }
            }
            for token in owed_now.drain(..) {
                match token {
                    LISTENER => self.on_listener()?,
                    token => self.on_owed(token),
                }
            }
            self.owed.give_back(owed_now);
        }
    }

    /// The listener reported (or owed) a new connection: accept, and owe it
    /// another turn if the cap left some queued.
    fn on_listener(&mut self) -> io::Result<()> {
        if self.accept_paused_until.is_some() {
            // An owed entry from before the pause began.
            return Ok(());
        }
        match self.accept_all()? {
            Accept::Drained => {}
            // No new edge comes for connections already queued.
            Accept::Capped => self.owed.owe_listener(),
            // Connections stay queued and not one descriptor is to be had:
            // another loop took the one our spare freed, or the system's
            // table is full, or kernel memory is short. Stop watching the
            // listener for a while, as nginx does; closing connections free
            // descriptors.
            Accept::Paused => {
                self.ep.delete(self.listener.as_raw_fd())?;
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
        Ok(())
    }

    /// Accepts what is pending (up to the fairness cap) and watches it.
    fn accept_all(&mut self) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // At most MAX_ACCEPTS_PER_WAKEUP: the caller owes the listener a turn
        // if more may be pending (`lab::owed`).
        for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
            let fd = match accept(listener, IoMode::NonBlocking) {
                Ok(fd) => fd,
                Err(e) => match AcceptError::classify(&e).warned(MODEL, &e) {
                    // With a shared listener, also what every loop but the
                    // first finds after the herd's wake-up.
                    AcceptError::Drained => return Ok(Accept::Drained),
                    AcceptError::Retry => continue,
                    // That one connection failed while queued: take the next.
                    AcceptError::Skip => continue,
                    // The connection stays queued, and no new edge comes for
                    // it; refuse it with the spare.
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
            let raw = fd.as_raw_fd();
            self.generation = self.generation.wrapping_add(1);
            // Data that arrived before this call is not lost: ADD checks the
            // socket's readiness at once and queues an event if it is ready.
            let token = setup::token(raw, self.generation);
            if let Err(e) = self.ep.add(raw, token, CONN_EVENTS) {
                // ENOMEM, or ENOSPC (the user's fs.epoll.max_user_watches is
                // reached): this connection cannot be watched; close it only.
                lab::log!("{MODEL}: {e}");
                self.stats.release();
                continue;
            }
            let slot = raw as usize;
            if self.conns.len() <= slot {
                self.conns.resize_with(slot + 1, || None);
            }
            self.conns[slot] = Some(Slot {
                conn: Conn::new(fd),
                generation: self.generation,
                owed: false,
            });
        }
        Ok(Accept::Capped)
    }

    /// `token`'s owed turn: it may be owed again, and is served as if the
    /// kernel had reported it readable.
    fn on_owed(&mut self, token: u64) {
        let (fd, generation) = setup::split(token);
        if let Some(slot) = self.conns[fd as usize]
            .as_mut()
            .filter(|s| s.generation == generation)
        {
            slot.owed = false;
        }
        self.on_ready(token, OWED);
    }

    /// The kernel reported `flags` for `token` (or we owed it a read): read
    /// until drained, write, then owe the socket a turn if work is left.
    fn on_ready(&mut self, token: u64, flags: u32) {
        let (fd, generation) = setup::split(token);
        // Not this connection's: it closed since the event was queued (its
        // descriptor may even belong to a new connection, with a new generation).
        let Some(slot) = self.conns[fd as usize]
            .as_mut()
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        let conn = &mut slot.conn;
        let was_reading = conn.wants_read();
        // EPOLLHUP/EPOLLERR arrive whatever we asked for, and stay set:
        // ignoring them would spin. The next `recv` or `send` returns the
        // EOF or the error, which ends the connection.
        let hangup = flags & (EPOLLHUP | EPOLLERR) != 0;
        let mut next = Next::Keep;
        let mut left = Left::Nothing;
        if (flags & EPOLLIN != 0 || hangup) && conn.wants_read() {
            // No new edge comes for data already there: read until drained.
            (next, left) = on_readable(conn, &mut self.scratch, self.stats, flags);
        }
        if next == Next::Keep && (flags & EPOLLOUT != 0 || hangup) {
            // One `send` of everything pending either takes it all or stops
            // short because the socket buffer is full, which is what a
            // further `send` would say with EAGAIN: the next EPOLLOUT edge
            // comes when the peer has read.
            next = on_writable(conn, self.stats);
        }
        if next == Next::Close || conn.is_finished() {
            self.close_conn(fd);
            return;
        }
        // Unread data gets no new edge: data left at the cap, or data left
        // in the socket while back-pressure paused reading, which the
        // EPOLLOUT edge that drained the buffer has just resumed.
        if conn.wants_read() && (left == Left::Maybe || !was_reading) {
            self.owed.owe(token, &mut slot.owed);
        }
    }

    /// Closes the connection on `fd`. Closing the descriptor also removes it
    /// from the epoll set (no `EPOLL_CTL_DEL`): it is this file's only
    /// descriptor, never `dup`ed nor inherited by a child.
    fn close_conn(&mut self, fd: RawFd) {
        self.conns[fd as usize] = None;
        self.stats.release();
    }
}

/// Read until drained, at most `MAX_READS_PER_WAKEUP` times: level mode's
/// `on_readable` in a loop, with the two ways to stop early that edge
/// triggering allows.
fn on_readable(conn: &mut Conn, scratch: &mut [u8], stats: &Stats, flags: u32) -> (Next, Left) {
    let fd = conn.raw();
    let fin_queued = flags & (EPOLLRDHUP | EPOLLHUP) != 0;
    for _ in 0..MAX_READS_PER_WAKEUP {
        let want = conn.out.room().min(scratch.len());
        if want == 0 {
            // Back-pressure: the peer must read its replies first.
            return (Next::Keep, Left::Maybe);
        }
        // SAFETY: `scratch` is valid for writes of `want <= scratch.len()` bytes.
        let got = syscall!(
            unsafe { libc::recv(fd, scratch.as_mut_ptr().cast(), want, 0) },
            "recv(fd {fd})"
        );
        match got {
            Ok(0) => {
                // EOF: the peer shut down its write side. Send what is still
                // owed, then close (half-close).
                conn.peer_closed = true;
                return (Next::Keep, Left::Nothing);
            }
            Ok(n) => {
                let n = n as usize;
                let reply = &mut scratch[..n];
                lab::echo::transform_in_place(reply);
                if reply_or_queue(conn, reply, stats) == Next::Close {
                    return (Next::Close, Left::Nothing);
                }
                // A short read emptied the receive queue; whatever arrives
                // later is a new edge. This saves the `recv` that would say
                // EAGAIN (tokio does the same). Not if the FIN was already
                // queued at the edge: it takes one more `recv`, returning 0,
                // and no new edge announces it.
                if n < want && !fin_queued {
                    return (Next::Keep, Left::Nothing);
                }
            }
            // Drained (or the readiness was stale): the kernel reports new data.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (Next::Keep, Left::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (drop_on(MODEL, e), Left::Nothing),
        }
    }
    (Next::Keep, Left::Maybe)
}

// copy-phase: begin reply
/// Sends a fresh `reply` now if nothing is queued before it, and queues
/// what the socket did not take.
fn reply_or_queue(conn: &mut Conn, reply: &[u8], stats: &Stats) -> Next {
    if conn.out.is_empty() {
        // Usually the whole reply fits in the socket buffer: send it now
        // instead of waiting a round for EPOLLOUT.
        match send(conn.raw(), reply, stats) {
            Ok(sent) => conn.out.push(&reply[sent..]),
            Err(e) => return drop_on(MODEL, e),
        }
    } else {
        // Bytes already queued go first, or the stream reorders.
        conn.out.push(reply);
    }
    Next::Keep
}

/// Sends what is owed: the socket may have buffer space again.
fn on_writable(conn: &mut Conn, stats: &Stats) -> Next {
    if conn.out.is_empty() {
        return Next::Keep;
    }
    match send(conn.raw(), conn.out.pending(), stats) {
        Ok(sent) => {
            conn.out.consume(sent);
            Next::Keep
        }
        Err(e) => drop_on(MODEL, e),
    }
}

/// One `send`; returns how much the kernel took (a short write is normal on
/// a non-blocking socket: the rest waits for EPOLLOUT). `MSG_NOSIGNAL`: a
/// peer that closed gives EPIPE here, not a SIGPIPE that kills the server.
fn send(fd: RawFd, bytes: &[u8], stats: &Stats) -> io::Result<usize> {
    loop {
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes.
        let sent = syscall!(
            unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) },
            "send(fd {fd})"
        );
        return match sent {
            Ok(n) => {
                stats.echoed(n as usize);
                Ok(n as usize)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            // EINTR: the signal came before any byte was sent, and the
            // socket may still have room: try again now.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}
// copy-phase: end
