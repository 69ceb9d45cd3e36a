//! The loop of both modes: one sweep asks every descriptor, whether or not
//! anything happened to it; `spin` and `sleep` differ only in what follows
//! a sweep that found nothing to do (`Loop::serve`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{Accept, AcceptError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::{syscall, Stats};

/// The model's name, in every message this file logs.
const MODEL: &str = "nonblocking";

/// What follows a sweep that found nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Ask again at once.
    Spin,
    /// Sleep this long.
    Sleep(Duration),
}

/// What the loop keeps between sweeps.
pub struct Loop<'a> {
    listener: &'a Listener,
    signals: &'a SignalFd,
    stats: &'a Stats,
    max_conns: Option<u64>,
    idle: Idle,
    /// No interest set at all: every connection is asked on every sweep.
    conns: Vec<Conn>,
    spare: Spare,
    scratch: Vec<u8>,
    /// Whether any call of this sweep did something (not EAGAIN).
    busy: bool,
    /// Set while the descriptor table is full: the listener is not asked
    /// until then.
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    pub fn new(
        listener: &'a Listener,
        signals: &'a SignalFd,
        stats: &'a Stats,
        max_conns: Option<u64>,
        idle: Idle,
    ) -> io::Result<Loop<'a>> {
        Ok(Loop {
            listener,
            signals,
            stats,
            max_conns,
            idle,
            conns: Vec::new(),
            spare: Spare::new()?,
            scratch: vec![0u8; READ_CHUNK],
            busy: false,
            accept_paused_until: None,
        })
    }

    /// Serves until SIGINT or SIGTERM; the caller summarises.
    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            // One sweep: every descriptor is asked, whether or not anything
            // happened to it. The signalfd is `O_NONBLOCK` too and read once
            // per sweep (`EAGAIN`: no signal), so a stop is seen within one
            // sweep, or one nap.
            match self.signals.read() {
                // SIGINT or SIGTERM is pending: stop serving.
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.busy = false;
            if self
                .accept_paused_until
                .is_none_or(|until| Instant::now() >= until)
            {
                self.accept_paused_until = None;
                if self.accept_all()? == Accept::Paused {
                    // Connections stay queued and not one descriptor is to be
                    // had (the spare was lost earlier, or the system's table is
                    // full), or kernel memory is short. Every sweep would meet
                    // them again, at once, forever. Leave the listener alone
                    // for a while, as nginx does; closing connections free
                    // descriptors.
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                }
            }
            // Backwards, so that `close_conn` moving the last connection into the
            // hole never moves one we have not visited yet.
            for i in (0..self.conns.len()).rev() {
                self.on_ready(i);
            }
            if !self.busy {
                match self.idle {
                    // Ask again at once: a core stays busy, a request waits at
                    // most one sweep.
                    Idle::Spin => {}
                    // Give the CPU back; whatever arrives now waits for the nap.
                    Idle::Sleep(nap) => thread::sleep(nap),
                }
            }
        }
    }

    /// Accepts what is pending (up to the fairness cap); the sweep was busy
    /// if there was anything (EAGAIN at once: nothing was).
    fn accept_all(&mut self) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // At most MAX_ACCEPTS_PER_WAKEUP per sweep: the next sweep tries the
        // listener again anyway.
        for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
            let fd = match accept(listener, IoMode::NonBlocking) {
                Ok(fd) => fd,
                Err(e) => match AcceptError::classify(&e).warned(MODEL, &e) {
                    AcceptError::Drained => return Ok(Accept::Drained),
                    AcceptError::Retry => continue,
                    // That one connection failed while queued: take the next.
                    AcceptError::Skip => continue,
                    // The connection stays queued and the listener stays
                    // readable, so every sweep would meet it again; refuse it
                    // with the spare.
                    AcceptError::Exhausted => {
                        match self.spare.refuse_one(listener, IoMode::NonBlocking) {
                            Refusal::Refused => {
                                self.busy = true;
                                continue;
                            }
                            Refusal::NothingPending => return Ok(Accept::Drained),
                            Refusal::TableFull => return Ok(Accept::Paused),
                        }
                    }
                    AcceptError::BackOff => return Ok(Accept::Paused),
                    AcceptError::Fatal => return Err(e),
                },
            };
            self.busy = true;
            if !self.stats.admit(self.max_conns) {
                // --max-conns reached: connection N+1 is closed at once.
                continue;
            }
            self.conns.push(Conn::new(fd));
        }
        Ok(Accept::Capped)
    }

    /// Asks `conns[i]`, ready or not: try to read, then try to send.
    fn on_ready(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let mut next = Next::Keep;
        if conn.wants_read() {
            next = on_readable(conn, &mut self.scratch, self.stats, &mut self.busy);
        }
        if next == Next::Keep && conn.wants_write() {
            let owed = conn.out.len();
            next = on_writable(conn, self.stats);
            // Busy if the kernel took any of it (or the connection failed).
            self.busy |= next == Next::Close || conn.out.len() != owed;
        }
        if next == Next::Close || conn.is_finished() {
            self.close_conn(i);
        }
    }

    /// Closes `conns[i]` in O(1): the last connection moves into the hole.
    fn close_conn(&mut self, i: usize) {
        self.conns.swap_remove(i);
        self.stats.release();
    }
}

/// Try to read: the peer may have sent something (or closed). Read what fits
/// in the output buffer, transform it, send it back, and keep what the
/// socket did not take. Sets `busy` unless the answer was EAGAIN.
fn on_readable(conn: &mut Conn, scratch: &mut [u8], stats: &Stats, busy: &mut bool) -> Next {
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
            *busy = true;
            conn.peer_closed = true;
            Next::Keep
        }
        Ok(n) => {
            *busy = true;
            let reply = &mut scratch[..n as usize];
            lab::echo::transform_in_place(reply);
            reply_or_queue(conn, reply, stats)
        }
        // EAGAIN: not ready. This is the readiness test of this model.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Keep,
        Err(e) => {
            *busy = true;
            drop_on(MODEL, e)
        }
    }
}

// copy-phase: begin reply
/// Sends a fresh `reply` now if nothing is queued before it, and queues
/// what the socket did not take.
fn reply_or_queue(conn: &mut Conn, reply: &[u8], stats: &Stats) -> Next {
    if conn.out.is_empty() {
        // Usually the whole reply fits in the socket buffer: send it now
        // instead of waiting a round for the next sweep.
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
/// a non-blocking socket: the rest waits for the next sweep). `MSG_NOSIGNAL`: a
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
