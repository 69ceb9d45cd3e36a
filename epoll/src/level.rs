//! `--mode level`: the kernel reports a socket for as long as it stays
//! ready, like `poll`; we read once per wake-up and are told again about the
//! rest. The interest set lives in the kernel: a socket is registered once
//! (`epoll_ctl(ADD)`), `EPOLLOUT` added only while a reply is pending and
//! `EPOLLIN` dropped while the output buffer is full, so `epoll_ctl(MOD)`
//! runs on those transitions only, never once per request.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use lab::conn::{drop_on, Conn, Next};
use lab::epoll::{Epoll, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{Accept, AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::{syscall, Stats};

use crate::setup::{self, Setup, LISTENER, MAX_EVENTS, SIGNALS};

/// The model's name, in every message this file logs.
const MODEL: &str = "epoll";

/// One connection of this loop, at `conns[fd]`.
struct Slot {
    conn: Conn,
    /// Part of this connection's token (see `setup::LISTENER`).
    generation: u32,
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
    /// Set while the descriptor table is full: the listener is out of the
    /// interest set until then.
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    pub fn new(ep: Epoll, spare: Spare, setup: Setup<'a>) -> io::Result<Loop<'a>> {
        // Level-triggered, and nobody reads it: every loop's epoll holds the same
        // signalfd and keeps reporting the pending SIGTERM, so all of them stop.
        ep.add(setup.signals.as_raw_fd(), SIGNALS, EPOLLIN)?;
        let listen_events = setup::listen_events(EPOLLIN, setup.share);
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
            for i in 0..ready {
                let ev = self.events[i];
                match ev.u64 {
                    // SIGINT or SIGTERM is pending: stop serving.
                    SIGNALS => return Ok(()),
                    LISTENER => {
                        if self.accept_all()? == Accept::Paused {
                            // Connections stay queued and not one descriptor is to be
                            // had: another loop took the one our spare freed, or the
                            // system's table is full, or kernel memory is short.
                            // Level-triggered epoll would report the listener at
                            // once, forever. Stop watching it for a while, as nginx
                            // does; closing connections free descriptors.
                            self.ep.delete(self.listener.as_raw_fd())?;
                            self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                        }
                    }
                    token => self.on_ready(token, ev.events),
                }
            }
        }
    }

    /// Accepts what is pending (up to the fairness cap) and watches it.
    fn accept_all(&mut self) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // At most MAX_ACCEPTS_PER_WAKEUP: level-triggered epoll reports the
        // listener again if more are pending.
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
                    // The connection stays queued and the listener stays
                    // readable, so epoll would report it again at once;
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
            self.stats.served_by(self.index);
            let raw = fd.as_raw_fd();
            self.generation = self.generation.wrapping_add(1);
            // Data that arrived before this call is not lost: ADD checks the
            // socket's readiness at once and queues an event if it is ready.
            let token = setup::token(raw, self.generation);
            if let Err(e) = self.ep.add(raw, token, EPOLLIN) {
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
            });
        }
        Ok(Accept::Capped)
    }

    /// The kernel reported `flags` for `token`: read, write, then ask for
    /// what the connection's state needs next.
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
        let was = interest(conn);
        // EPOLLHUP/EPOLLERR arrive whatever we asked for, and stay set:
        // ignoring them would spin. The next `recv` or `send` returns the
        // EOF or the error, which ends the connection.
        let hangup = flags & (EPOLLHUP | EPOLLERR) != 0;
        let mut next = Next::Keep;
        if (flags & EPOLLIN != 0 || hangup) && conn.wants_read() {
            next = on_readable(conn, &mut self.scratch, self.stats);
        }
        if next == Next::Keep && (flags & EPOLLOUT != 0 || hangup) {
            next = on_writable(conn, self.stats);
        }
        if next == Next::Close || conn.is_finished() {
            self.close_conn(fd);
            return;
        }
        // The kernel's interest follows the buffer: EPOLLOUT while a reply
        // is pending, EPOLLIN while there is room. In ping-pong neither
        // changes, so no epoll_ctl per request.
        let now = interest(conn);
        if now != was {
            if let Err(e) = self.ep.modify(fd, token, now) {
                drop_on(MODEL, e);
                self.close_conn(fd);
            }
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

/// What to ask epoll for, from the connection's state.
fn interest(conn: &Conn) -> u32 {
    let mut events = 0;
    if conn.wants_read() {
        events |= EPOLLIN;
    }
    if conn.wants_write() {
        events |= EPOLLOUT;
    }
    events
}
