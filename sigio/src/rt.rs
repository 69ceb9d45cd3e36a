//! `--mode rt`: `F_SETSIG` names a real-time signal, and real-time signals
//! queue, one per event, each with `si_fd` (which socket) and `si_band`
//! (`POLLIN`, `POLLOUT`, `POLLHUP`...): O(ready), like epoll, and Linux 2.4's
//! answer to C10K before epoll (2.6) existed. Since every later arrival
//! queues a signal of its own, a read shorter than asked is proof enough
//! that a socket is drained. The queue is bounded by `RLIMIT_SIGPENDING`
//! (per user, all processes together); when it is full the kernel drops the
//! event and raises plain SIGIO instead, and then nothing says what was
//! lost. As fcntl(2) asks, we drain the queue and find the readiness another
//! way: one `poll` over every socket. The number of overflows is printed at
//! exit (`tests/semantics.rs` forces some). A request costs one
//! `rt_sigtimedwait`, one `recv` and one `send`: a call more than epoll, whose
//! one `epoll_wait` takes many events.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::owed::{Left, Owed};
use lab::policy::{
    Accept, AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, MAX_READS_PER_WAKEUP, READ_CHUNK,
};
use lab::{syscall, Stats};

use crate::overflow;
use crate::signal_queue::{Signals, Wake};

/// The model's name, in every message this file logs.
const MODEL: &str = "sigio";

/// How a socket owed a turn is served: as if a signal said "readable".
const OWED: libc::c_short = libc::POLLIN;

/// When a read may stop before `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// A queued signal announced this read, and every later arrival (data or
    /// FIN) queues one of its own: a short read proves the queue empty.
    UntilShort,
    /// Nothing will announce again what is already there (a sweep after an
    /// overflow, or we owe the turn ourselves): read until `EAGAIN` or EOF,
    /// or lose the FIN behind the data.
    UntilWouldBlock,
}

/// What the loop keeps for one descriptor, at `conns[fd]`.
#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    /// The descriptor is on the owed list. The flag outlives the connection,
    /// as the list names descriptors, not connections: one accepted later on
    /// the same descriptor is served by the turn still owed.
    owed: bool,
}

/// What the loop keeps between wake-ups.
pub struct Loop<'a> {
    listener: &'a Listener,
    signals: &'a Signals,
    stats: &'a Stats,
    max_conns: Option<u64>,
    /// Indexed by descriptor, which is what `si_fd` gives us.
    conns: Vec<Slot>,
    spare: Spare,
    scratch: Vec<u8>,
    /// Descriptors no signal will announce though work may be left, in the
    /// order owed, each once (`Slot::owed`).
    owed: Owed<RawFd>,
    /// Set while the descriptor table is full: listener signals are ignored
    /// until then, and its turn is owed at the end.
    accept_paused_until: Option<Instant>,
    /// How often the real-time queue overflowed, for the exit line.
    pub overflows: u64,
}

impl<'a> Loop<'a> {
    pub fn new(
        listener: &'a Listener,
        signals: &'a Signals,
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
            owed: Owed::new(listener.as_raw_fd()),
            accept_paused_until: None,
            overflows: 0,
        })
    }

    /// Serves until SIGINT or SIGTERM; the caller summarises.
    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            let timeout = if !self.owed.is_empty() {
                // Work is owed: take what is pending, but do not sleep.
                Some(Duration::ZERO)
            } else {
                self.accept_paused_until
                    .map(|until| until.saturating_duration_since(Instant::now()))
            };
            let wake = match self.signals.wait(timeout) {
                Ok(wake) => wake,
                // EAGAIN: the timeout passed and no signal came.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Wake::Nothing,
                Err(e) => match WaitError::classify(&e).warned(MODEL, &e) {
                    // EINTR: a signal outside the set (e.g. SIGSTOP/SIGCONT) cut the wait short.
                    WaitError::Retry => continue,
                    // sigtimedwait(2) lists no ENOMEM, but a wait that fails for
                    // lack of memory is not the loop's end.
                    WaitError::BackOff => {
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                    // EFAULT, EINVAL: our arguments are wrong.
                    WaitError::Fatal => return Err(e),
                },
            };
            if self
                .accept_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                // Connections queued during the pause raised their signals then,
                // and nothing will raise them again: we owe the listener a turn.
                self.accept_paused_until = None;
                self.owed.owe_listener();
            }
            // This round's debts, served after the signal, in the order owed.
            let mut owed_now = self.owed.take();
            match wake {
                // SIGINT or SIGTERM: stop serving.
                Wake::Stop => return Ok(()),
                Wake::Nothing => {}
                Wake::Ready { fd, band } => self.on_ready(fd, band, Drain::UntilShort)?,
                // The real-time queue was full and an event was dropped:
                // which one, nothing says (fcntl(2), F_SETSIG). Empty the
                // queue (what it holds is stale, and would keep it full),
                // then ask every socket at once; the sweep serves the owed
                // ones too.
                Wake::Somewhere => {
                    for fd in owed_now.drain(..) {
                        self.settle(fd);
                    }
                    self.overflows += 1;
                    if self.overflows == 1 {
                        lab::log!(
                            "sigio: real-time signal queue overflowed (RLIMIT_SIGPENDING): \
                             draining it and sweeping with poll (count at exit)"
                        );
                    }
                    self.signals.drain_queue()?;
                    self.sweep_with_poll()?;
                }
            }
            for fd in owed_now.drain(..) {
                self.settle(fd);
                self.on_ready(fd, OWED, Drain::UntilWouldBlock)?;
            }
            self.owed.give_back(owed_now);
        }
    }

    /// `fd`'s owed turn is being served, or a sweep serves it anyway: it
    /// may be owed again. (The listener's flag is cleared by `Owed::take`.)
    fn settle(&mut self, fd: RawFd) {
        if let Some(slot) = self.conns.get_mut(fd as usize) {
            slot.owed = false;
        }
    }

    /// After an overflow: one `poll`, without waiting, over every socket
    /// for what it is interested in, then serve what it reports.
    fn sweep_with_poll(&mut self) -> io::Result<()> {
        let listener = self
            .accept_paused_until
            .is_none()
            .then(|| self.listener.as_raw_fd());
        let conns = self.conns.iter().filter_map(|slot| slot.conn.as_ref());
        let pollfds = overflow::poll_now(listener, conns)?;
        // Listener first: a descriptor closed below cannot be accepted anew
        // and then served for the old connection's `revents`.
        for p in &pollfds {
            if p.revents != 0 {
                self.on_ready(p.fd, p.revents, Drain::UntilWouldBlock)?;
            }
        }
        Ok(())
    }

    // copy-phase: begin sigio_accept_all
    /// Accepts what is pending (up to the fairness cap) and arms it.
    fn accept_all(&mut self) -> io::Result<Accept> {
        let listener = self.listener.as_raw_fd();
        // A spare lost to a full table is taken back as soon as a descriptor frees.
        self.spare.refill();
        // A listener that hits the cap is owed another turn: no new signal comes
        // for the connections still queued.
        for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
            let fd = match accept(listener, IoMode::NonBlocking) {
                Ok(fd) => fd,
                Err(e) => match AcceptError::classify(&e).warned(MODEL, &e) {
                    AcceptError::Drained => return Ok(Accept::Drained),
                    AcceptError::Retry => continue,
                    // That one connection failed while queued: take the next.
                    AcceptError::Skip => continue,
                    // The connection stays queued, and no new signal comes for
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
            let raw = fd.as_raw_fd();
            // accept4 copies neither O_ASYNC nor the owner from the listener.
            if let Err(e) = self.signals.arm(raw) {
                // ENOMEM (no memory for the socket's fasync entry): this
                // connection cannot be signalled; close it only.
                lab::log!("{MODEL}: {e}");
                self.stats.release();
                continue;
            }
            let slot = raw as usize;
            if self.conns.len() <= slot {
                self.conns.resize_with(slot + 1, Slot::default);
            }
            let slot = &mut self.conns[slot];
            slot.conn = Some(Conn::new(fd));
            // Bytes that arrived between accept4 and O_ASYNC raised no signal.
            self.owed.owe(raw, &mut slot.owed);
        }
        Ok(Accept::Capped)
    }
    // copy-phase: end

    /// A signal (or a sweep, or a debt) says `fd` had the events in `band`
    /// (`POLL*` bits, as `si_band` and `revents` carry them): serve it, and
    /// owe it a turn if work may be left that no signal announces.
    fn on_ready(&mut self, fd: RawFd, band: libc::c_short, drain: Drain) -> io::Result<()> {
        if fd == self.listener.as_raw_fd() {
            return self.on_listener();
        }
        // None: a signal queued before its connection closed (closing removes
        // the socket's fasync entry, not the signals already queued).
        let Some(slot) = self.conns.get_mut(fd as usize) else {
            return Ok(());
        };
        let Some(conn) = slot.conn.as_mut() else {
            return Ok(());
        };
        let was_reading = conn.wants_read();
        // POLLHUP/POLLERR (the POLL_HUP and POLL_ERR signals): the next `recv`
        // or `send` returns the EOF or the error, which ends the connection.
        let hangup = band & (libc::POLLHUP | libc::POLLERR) != 0;
        let mut next = Next::Keep;
        let mut left = Left::Nothing;
        if (band & libc::POLLIN != 0 || hangup) && conn.wants_read() {
            (next, left) = on_readable(conn, &mut self.scratch, self.stats, drain);
        }
        if next == Next::Keep && (band & libc::POLLOUT != 0 || hangup) {
            // A `send` that stops short leaves the socket marked "no space",
            // and the kernel signals (`POLL_OUT`) when the peer has read. One
            // cut short by EINTR is retried at once (in `send`): no signal
            // comes for room the socket already has.
            next = on_writable(conn, self.stats);
        }
        if next == Next::Close || conn.is_finished() {
            self.close_conn(fd);
            return Ok(());
        }
        // Data left at the cap, or data that arrived while back-pressure paused
        // reading (its signals came and were ignored), which the send that
        // drained the buffer has just resumed: no signal will come for it.
        if conn.wants_read() && (left == Left::Maybe || !was_reading) {
            self.owed.owe(fd, &mut slot.owed);
        }
        Ok(())
    }

    /// The listener's signal (or its owed turn): accept, and owe it another
    /// turn if the cap left some queued.
    fn on_listener(&mut self) -> io::Result<()> {
        if self.accept_paused_until.is_some() {
            // A connection queued during the pause: the pause's end owes it.
            return Ok(());
        }
        match self.accept_all()? {
            Accept::Drained => {}
            Accept::Capped => self.owed.owe_listener(),
            // Connections stay queued and not one descriptor is to be
            // had, or kernel memory is short. Each new connection would
            // signal a retry that fails again: leave the listener alone
            // for a while, as nginx does; closing connections free
            // descriptors.
            Accept::Paused => self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE),
        }
        Ok(())
    }

    /// Closes the connection on `fd`. Closing the descriptor also ends its
    /// signals: the kernel drops the socket's fasync entry.
    fn close_conn(&mut self, fd: RawFd) {
        self.conns[fd as usize].conn = None;
        self.stats.release();
    }
}

/// The peer sent something (or closed): read what fits in the output
/// buffer, transform it, send it back, and keep what the socket did not take.
/// At most `MAX_READS_PER_WAKEUP` times, stopping once the socket is drained.
fn on_readable(conn: &mut Conn, scratch: &mut [u8], stats: &Stats, drain: Drain) -> (Next, Left) {
    let fd = conn.raw();
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
                // A short read emptied the receive queue.
                if n < want {
                    match drain {
                        // What arrives later queues its own signal: this
                        // saves the `recv` that would say EAGAIN.
                        Drain::UntilShort => return (Next::Keep, Left::Nothing),
                        // A FIN already queued takes one more `recv`,
                        // returning 0, and no signal is left to announce it.
                        Drain::UntilWouldBlock => {}
                    }
                }
            }
            // Drained (or the signal was stale): a new arrival signals again.
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
        // instead of waiting a round for a POLL_OUT signal.
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
/// a non-blocking socket: the rest waits for a POLL_OUT signal). `MSG_NOSIGNAL`: a
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
