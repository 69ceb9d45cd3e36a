//! The loop: two bitmaps, rebuilt every round because `select` overwrites
//! them with the ready subset. The read set holds the listener, the
//! signalfd and every connection whose output buffer has room; the write
//! set only the connections with a reply pending (the course notes' `wlist`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Once;
use std::time::Instant;

use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{Accept, AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::{syscall, Stats};

use crate::fd_set::{fd_isset, fd_set_add, fd_set_new, fits_fd_set, FD_SETSIZE};

/// The model's name, in every message this file logs.
const MODEL: &str = "select";

/// What the loop keeps between wake-ups.
pub struct Loop<'a> {
    listener: &'a Listener,
    signals: &'a SignalFd,
    stats: &'a Stats,
    max_conns: Option<u64>,
    /// No interest set is kept: the sets are rebuilt from `conns` every round.
    conns: Vec<Conn>,
    spare: Spare,
    scratch: Vec<u8>,
    /// Set while the descriptor table is full: the listener is out of the
    /// read set until then.
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    pub fn new(
        listener: &'a Listener,
        signals: &'a SignalFd,
        stats: &'a Stats,
        max_conns: Option<u64>,
    ) -> io::Result<Loop<'a>> {
        Ok(Loop {
            listener,
            signals,
            stats,
            max_conns,
            conns: Vec::new(),
            spare: Spare::new()?,
            scratch: vec![0u8; READ_CHUNK],
            accept_paused_until: None,
        })
    }

    /// Serves until SIGINT or SIGTERM; the caller summarises.
    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            let watch_listener = self.accept_paused_until.is_none();
            let (mut readfds, mut writefds, nfds) = self.interest(watch_listener)?;
            // None: no timeout, wait until something is ready.
            let mut timeout = self.accept_paused_until.map(|until| {
                let left = until.saturating_duration_since(Instant::now());
                libc::timeval {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_usec: left.subsec_micros() as libc::suseconds_t,
                }
            });
            let timeout_ptr = timeout
                .as_mut()
                .map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
            // SAFETY: both sets are live fd_sets holding descriptors below
            // `nfds`; the kernel rewrites them in place. No exception set; the
            // timeout is null or a live timeval the kernel may update.
            let ready = syscall!(
                unsafe {
                    libc::select(
                        nfds,
                        &mut readfds,
                        &mut writefds,
                        std::ptr::null_mut(),
                        timeout_ptr,
                    )
                },
                "select(nfds {nfds})"
            );
            match ready {
                Ok(_) => {}
                Err(e) => match WaitError::classify(&e).warned(MODEL, &e) {
                    // EINTR: a signal we do not block (e.g. SIGSTOP/SIGCONT) cut
                    // the wait short; the sets are then unspecified, and rebuilt anyway.
                    WaitError::Retry => continue,
                    // ENOMEM: the kernel could not allocate its copy of the sets.
                    WaitError::BackOff => {
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                    // EBADF, EINVAL: our arguments are wrong.
                    WaitError::Fatal => return Err(e),
                },
            }
            if self
                .accept_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                // Level-triggered: the next select reports the listener at once
                // if connections are queued.
                self.accept_paused_until = None;
            }
            if fd_isset(&readfds, self.signals.as_raw_fd()) {
                // SIGINT or SIGTERM is pending: stop serving.
                return Ok(());
            }
            if watch_listener
                && fd_isset(&readfds, self.listener.as_raw_fd())
                && self.accept_all()? == Accept::Paused
            {
                // Connections stay queued and not one descriptor is to be
                // had (the spare was lost earlier, or the system's table is
                // full), or kernel memory is short. Level-triggered select
                // would report the listener at once, forever. Stop watching
                // it for a while, as nginx does; closing connections free
                // descriptors.
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
            // Backwards, so that `close_conn` moving the last connection into the
            // hole never moves one we have not visited yet. Connections accepted
            // just now are in neither set (their descriptors were not open when
            // the sets were built) and are skipped.
            for i in (0..self.conns.len()).rev() {
                let fd = self.conns[i].raw();
                let readable = fd_isset(&readfds, fd);
                let writable = fd_isset(&writefds, fd);
                if readable || writable {
                    self.on_ready(i, readable, writable);
                }
            }
        }
    }

    /// Accepts what is pending (up to the fairness cap) and watches it.
    fn accept_all(&mut self) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // At most MAX_ACCEPTS_PER_WAKEUP: level-triggered select reports the
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
                    // readable, so select would report it again at once;
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
            if !fits_fd_set(fd.as_raw_fd()) {
                // FD_SETSIZE reached: this descriptor can never go into an
                // `fd_set` (glibc's fortified FD_SET would abort the process,
                // Rust's `libc::FD_SET` panic: see `fd_set_add`), so the
                // connection is closed at once. Its number is free again for the
                // next accept, which meets the same answer while the table stays
                // this full.
                warn_fd_setsize(fd.as_raw_fd());
                continue;
            }
            if !self.stats.admit(self.max_conns) {
                // --max-conns reached: connection N+1 is closed at once.
                continue;
            }
            self.conns.push(Conn::new(fd));
        }
        Ok(Accept::Capped)
    }

    /// `select` put `conns[i]` in the read set, the write set or both: read,
    /// then write. The sets need no update: they are rebuilt every round.
    fn on_ready(&mut self, i: usize, readable: bool, writable: bool) {
        let conn = &mut self.conns[i];
        // A reset or an error makes the socket both readable and
        // writable: the next `recv` or `send` returns the EOF or the
        // error, which ends the connection.
        let mut next = Next::Keep;
        if readable {
            next = on_readable(conn, &mut self.scratch, self.stats);
        }
        if next == Next::Keep && writable {
            next = on_writable(conn, self.stats);
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

    /// What to ask `select` for, from every connection's state: the read set
    /// (listener, signalfd, connections with room in their output buffer), the
    /// write set (connections with a reply pending) and `nfds`.
    fn interest(&self, watch_listener: bool) -> io::Result<(libc::fd_set, libc::fd_set, RawFd)> {
        let mut readfds = fd_set_new();
        let mut writefds = fd_set_new();
        let (listener, signals) = (self.listener.as_raw_fd(), self.signals.as_raw_fd());
        // Opened before any connection, so their numbers are small.
        if watch_listener {
            fd_set_add(&mut readfds, listener)?;
        }
        fd_set_add(&mut readfds, signals)?;
        let mut nfds = listener.max(signals) + 1;
        for conn in &self.conns {
            if conn.wants_read() {
                fd_set_add(&mut readfds, conn.raw())?;
            }
            if conn.wants_write() {
                fd_set_add(&mut writefds, conn.raw())?;
            }
            nfds = nfds.max(conn.raw() + 1);
        }
        Ok((readfds, writefds, nfds))
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
        // instead of waiting a round for the write set.
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
/// a non-blocking socket: the rest waits for the write set). `MSG_NOSIGNAL`: a
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

/// Once, not per connection: a flood past the limit would fill stderr.
fn warn_fd_setsize(fd: RawFd) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        lab::log!(
            "select: closed a connection on fd {fd}: select(2) can only watch descriptors \
             below FD_SETSIZE ({FD_SETSIZE}); every such connection is closed at once \
             (this warning is printed once)"
        );
    });
}
