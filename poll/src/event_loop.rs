//! The loop: one `pollfd` array, kept incrementally. A slot is added at
//! accept, its `events` edited in place (`POLLIN` only while the output
//! buffer has room, `POLLOUT` only while a reply is pending), and removed in
//! O(1) by moving the last slot into the hole. Unlike `select` there is no
//! `FD_SETSIZE`: any descriptor number can be watched.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{Accept, AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::{syscall, Stats};

/// The model's name, in every message this file logs.
const MODEL: &str = "poll";

/// Slot 0 of the `pollfd` array is the listener, slot 1 the signalfd, and
/// slot `FIRST_CONN + i` belongs to `conns[i]`.
const LISTENER: usize = 0;
const SIGNALS: usize = 1;
const FIRST_CONN: usize = 2;

/// What the loop keeps between wake-ups.
pub struct Loop<'a> {
    listener: &'a Listener,
    stats: &'a Stats,
    max_conns: Option<u64>,
    /// The interest set, handed to the kernel whole on every call.
    pollfds: Vec<libc::pollfd>,
    conns: Vec<Conn>,
    spare: Spare,
    scratch: Vec<u8>,
    /// Set while the descriptor table is full: the listener's slot holds -1,
    /// which poll skips, until then.
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    pub fn new(
        listener: &'a Listener,
        signals: &SignalFd,
        stats: &'a Stats,
        max_conns: Option<u64>,
    ) -> io::Result<Loop<'a>> {
        Ok(Loop {
            listener,
            stats,
            max_conns,
            pollfds: vec![
                pollfd(listener.as_raw_fd(), libc::POLLIN),
                pollfd(signals.as_raw_fd(), libc::POLLIN),
            ],
            conns: Vec::new(),
            spare: Spare::new()?,
            scratch: vec![0u8; READ_CHUNK],
            accept_paused_until: None,
        })
    }

    /// Serves until SIGINT or SIGTERM; the caller summarises.
    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            let timeout = if let Some(until) = self.accept_paused_until {
                let left = until.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
            } else {
                -1
            };
            let watched = self.pollfds.len();
            // SAFETY: `pollfds` is a live array of `watched` pollfd structs; the
            // kernel writes only their `revents`.
            let ready = syscall!(
                unsafe { libc::poll(self.pollfds.as_mut_ptr(), watched as libc::nfds_t, timeout) },
                "poll({watched} fds)"
            );
            match ready {
                Ok(_) => {}
                Err(e) => match WaitError::classify(&e).warned(MODEL, &e) {
                    // EINTR: a signal we do not block (e.g. SIGSTOP/SIGCONT) cut the wait short.
                    WaitError::Retry => continue,
                    // ENOMEM: the kernel could not copy the array in; try again later.
                    WaitError::BackOff => {
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                    // EFAULT, EINVAL: our arguments are wrong.
                    WaitError::Fatal => return Err(e),
                },
            }
            if self
                .accept_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                // Level-triggered: the next poll reports the listener at once if
                // connections are queued.
                self.pollfds[LISTENER].fd = self.listener.as_raw_fd();
                self.accept_paused_until = None;
            }
            if self.pollfds[SIGNALS].revents != 0 {
                // SIGINT or SIGTERM is pending: stop serving.
                return Ok(());
            }
            if self.pollfds[LISTENER].revents != 0 && self.accept_all()? == Accept::Paused {
                // Connections stay queued and not one descriptor is to be
                // had (the spare was lost earlier, or the system's table is
                // full), or kernel memory is short. Level-triggered poll
                // would report the listener at once, forever. Stop watching
                // it for a while, as nginx does; closing connections free
                // descriptors. poll skips a negative fd (revents 0).
                self.pollfds[LISTENER].fd = -1;
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
            // Backwards, so that `close_conn` moving the last connection into the
            // hole never moves one we have not visited yet. Connections accepted
            // just now have `revents == 0` and are skipped.
            for i in (0..self.conns.len()).rev() {
                let revents = self.pollfds[FIRST_CONN + i].revents;
                if revents != 0 {
                    self.on_ready(i, revents);
                }
            }
        }
    }

    /// Accepts what is pending (up to the fairness cap) and watches it.
    fn accept_all(&mut self) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // At most MAX_ACCEPTS_PER_WAKEUP: level-triggered poll reports the
        // listener again if more are pending.
        for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
            let fd = match accept(listener, IoMode::NonBlocking) {
                Ok(fd) => fd,
                Err(e) => match AcceptError::classify(&e).warned(MODEL, &e) {
                    AcceptError::Drained => return Ok(Accept::Drained),
                    AcceptError::Retry => continue,
                    // That one connection failed while queued: take the next.
                    AcceptError::Skip => continue,
                    // The connection stays queued and the listener stays
                    // readable, so poll would report it again at once;
                    // refuse it with the spare.
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
            self.pollfds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
            self.conns.push(Conn::new(fd));
        }
        Ok(Accept::Capped)
    }

    /// The kernel reported `revents` for `conns[i]`: read, write, then ask
    /// for what the connection's state needs next.
    fn on_ready(&mut self, i: usize, revents: libc::c_short) {
        let conn = &mut self.conns[i];
        // POLLHUP/POLLERR arrive whatever we asked for, and stay set:
        // ignoring them would spin. The next `recv` or `send` returns the
        // EOF or the error, which ends the connection.
        let hangup = revents & (libc::POLLHUP | libc::POLLERR) != 0;
        let mut next = Next::Keep;
        if (revents & libc::POLLIN != 0 || hangup) && conn.wants_read() {
            next = on_readable(conn, &mut self.scratch, self.stats);
        }
        if next == Next::Keep && (revents & libc::POLLOUT != 0 || hangup) {
            next = on_writable(conn, self.stats);
        }
        if next == Next::Close || conn.is_finished() {
            self.close_conn(i);
        } else {
            self.pollfds[FIRST_CONN + i].events = interest(conn);
        }
    }

    /// Closes `conns[i]` and removes its slot in O(1): the last slot moves
    /// into the hole, in both arrays, so they stay aligned.
    fn close_conn(&mut self, i: usize) {
        self.pollfds.swap_remove(FIRST_CONN + i);
        self.conns.swap_remove(i);
        self.stats.release();
    }
}

// copy-phase: begin on_readable
/// The peer sent something (or closed): read what fits in the output
/// buffer, transform it, send it back, and keep what the socket did not take.
fn on_readable(conn: &mut Conn, scratch: &mut [u8], stats: &Stats) -> Next {
    let fd = conn.raw();
    let want = conn.out.room().min(scratch.len());
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
            Next::Keep
        }
        Ok(n) => {
            let reply = &mut scratch[..n as usize];
            lab::echo::transform_in_place(reply);
            reply_or_queue(conn, reply, stats)
        }
        // Readiness can be stale by the time we read: nothing lost, wait again.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Keep,
        Err(e) => drop_on(MODEL, e),
    }
}
// copy-phase: end

// copy-phase: begin reply
/// Sends a fresh `reply` now if nothing is queued before it, and queues
/// what the socket did not take.
fn reply_or_queue(conn: &mut Conn, reply: &[u8], stats: &Stats) -> Next {
    if conn.out.is_empty() {
        // Usually the whole reply fits in the socket buffer: send it now
        // instead of waiting a round for POLLOUT.
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
/// a non-blocking socket: the rest waits for POLLOUT). `MSG_NOSIGNAL`: a
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

/// What to ask `poll` for, from the connection's state.
fn interest(conn: &Conn) -> libc::c_short {
    let mut events = 0;
    if conn.wants_read() {
        events |= libc::POLLIN;
    }
    if conn.wants_write() {
        events |= libc::POLLOUT;
    }
    events
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
