//! sigio — signal-driven I/O (Stevens' fourth model): the kernel sends a
//! signal when a socket changes, and one thread takes the signals with
//! `sigtimedwait(2)` and does the I/O they announce.
//!
//! Phase 1 (wait for data) blocks in `sigtimedwait`, on a set of *blocked*
//! signals: the sockets' signal, and SIGINT/SIGTERM, so that the same call
//! hears the stop. No handler ever runs: a blocked signal stays pending until
//! taken, so the asynchronous notification becomes a queue read synchronously,
//! free of a handler's async-signal-safety rules.
//! Phase 2 (copy data) is `recv`/`send` on a socket a signal named (or a
//! sweep found); it never blocks, because every socket is `O_NONBLOCK`.
//!
//! Every socket, the listener included, is armed with `F_SETOWN` (signal
//! this process), in rt mode `F_SETSIG`, then `O_ASYNC`: three `fcntl` per
//! connection. The kernel raises the signal when a socket *changes* (a
//! segment or a FIN arrives, a connection is queued, send space frees after a
//! `send` found none), not while it stays ready: data left unread announces
//! nothing again, as with edge-triggered epoll.
//!
//! Plain mode (`--mode plain`): the signal is SIGIO, a standard signal. It
//! is pending at most once however many sockets changed, and it carries no
//! descriptor (`si_code` is `SI_KERNEL`, `si_fd` is 0: `tests/semantics.rs`).
//! So every wake-up sweeps every socket: accept until `EAGAIN`, read each
//! connection until `EAGAIN` (a FIN or data that was already there raised the
//! one signal we just took: the others merged into it), send what is owed.
//! O(connections) system calls per wake-up, most of them `EAGAIN`: what the
//! course notes mean by signal-driven I/O, and why they call it rarely used.
//!
//! Rt mode (`--mode rt`, the default): `F_SETSIG` names a real-time signal,
//! and real-time signals queue, one per event, each with `si_fd` (which
//! socket) and `si_band` (`POLLIN`, `POLLOUT`, `POLLHUP`...): O(ready), like
//! epoll, and Linux 2.4's answer to C10K before epoll (2.6) existed. Since
//! every later arrival queues a signal of its own, a read shorter than asked
//! is proof enough that a socket is drained. The queue is bounded by
//! `RLIMIT_SIGPENDING` (per user, all processes together); when it is full
//! the kernel drops the event and raises plain SIGIO instead, and then
//! nothing says what was lost. As fcntl(2) asks, we drain the queue and find
//! the readiness another way: one `poll` over every socket. The number of
//! overflows is printed at exit (`tests/semantics.rs` forces some).
//!
//! The course notes call this model rarely used; the lab measures why
//! (README, "Signal-driven I/O", 2-vCPU VM under load). At 100 busy
//! connections rt mode makes 3.0 system calls per request (one
//! `rt_sigtimedwait`, one `recv`, one `send`) against epoll's 2.03, for
//! about the same server CPU per request here (7.8 against 7.4 µs closed
//! loop; 9.2-9.5 against 8.3-10.1 µs at 10 000 requests/s, within the
//! noise). Plain mode is cheap only while every socket is busy: with 1000
//! idle connections beside 50 active ones it makes 24 `recv` per request and
//! spends 22-28 µs on each, against 8-9 µs for rt; with 10 000 idle, 186 µs
//! against 6.3. With `RLIMIT_SIGPENDING`
//! lowered to 4 the queue overflowed about once per 50 requests; each
//! overflow cost one `poll`, and no byte was lost.
//!
//! Cannot: take more than one event per system call (`sigtimedwait` returns
//! one siginfo; a `signalfd` read can take many, which is most of the way to
//! epoll); run several threads (a process-directed signal goes to any thread
//! that does not block it; `F_SETOWN_EX` would be needed); share SIGIO with
//! a library that also uses it (a signal's disposition is process-wide);
//! choose the events it hears (every socket signals every change, wanted or
//! not); watch regular files (`O_ASYNC` works on sockets, pipes, FIFOs and
//! terminals).
//!
//! Run: `cargo run --release -p sigio -- --mode rt`, then `nc 127.0.0.1 PORT`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::owed::Owed;
use lab::policy::{
    AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, MAX_READS_PER_WAKEUP, READ_CHUNK,
};
use lab::signals::{ignore_sigpipe, STOP_SIGNALS};
use lab::{syscall, Stats};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Plain SIGIO: "something changed"; every wake-up sweeps every socket.
    Plain,
    /// A queued real-time signal per event, naming the socket (F_SETSIG).
    Rt,
}

#[derive(Parser)]
#[command(
    name = "sigio",
    version,
    about = "Echo server: signal-driven I/O (O_ASYNC, F_SETSIG, sigtimedwait)"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Rt)]
    mode: Mode,
}

/// `fcntl(F_SETSIG)`, Linux-specific (`<asm-generic/fcntl.h>`); the `libc`
/// crate does not define it for glibc targets.
const F_SETSIG: libc::c_int = 10;

/// How a socket owed a turn is served: as if a signal said "readable".
const OWED: libc::c_short = libc::POLLIN;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("sigio: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<()> {
    // First: the signals must be blocked before the first socket can raise
    // one, or its default action (terminate) would end the process.
    let signals = Signals::block(cli.mode)?;
    let listener = Listener::bind(cli.common.addr, IoMode::NonBlocking)?;
    signals.arm(listener.as_raw_fd())?;
    listener.announce()?;
    let stats = Stats::new()?;
    let overflows = serve(&listener, &signals, &stats, cli.mode, cli.common.max_conns)?;
    let model = match cli.mode {
        Mode::Plain => "sigio:plain",
        Mode::Rt => {
            lab::log!("sigio: real-time signal queue overflows: {overflows}");
            "sigio:rt"
        }
    };
    stats.print_summary(model)
}

fn serve(
    listener: &Listener,
    signals: &Signals,
    stats: &Stats,
    mode: Mode,
    max_conns: Option<u64>,
) -> io::Result<u64> {
    let mut lp = Loop {
        listener,
        signals,
        stats,
        max_conns,
        conns: Vec::new(),
        spare: Spare::new()?,
        scratch: vec![0u8; READ_CHUNK],
        owed: Owed::new(listener.as_raw_fd()),
        accept_paused_until: None,
    };
    let mut overflows = 0;
    loop {
        let timeout = if !lp.owed.is_empty() {
            // Work is owed: take what is pending, but do not sleep.
            Some(Duration::ZERO)
        } else {
            lp.accept_paused_until
                .map(|until| until.saturating_duration_since(Instant::now()))
        };
        let wake = match signals.wait(timeout) {
            Ok(wake) => wake,
            // EAGAIN: the timeout passed and no signal came.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Wake::Nothing,
            Err(e) => match WaitError::classify(&e).warned("sigio", &e) {
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
        if lp
            .accept_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            // Connections queued during the pause raised their signals then,
            // and nothing will raise them again: we owe the listener a turn.
            lp.accept_paused_until = None;
            lp.owed.owe_listener();
        }
        // This round's debts, served after the signal, in the order owed.
        let mut owed_now = lp.owed.take();
        match wake {
            // SIGINT or SIGTERM: stop serving; `run` summarises.
            Wake::Stop => return Ok(overflows),
            Wake::Nothing => {}
            // Only rt mode asks for a queued signal with a descriptor in it.
            Wake::Ready { fd, band } => lp.handle(fd, band, Drain::UntilShort)?,
            Wake::Somewhere => {
                // A sweep looks at every socket, the owed ones included.
                for fd in owed_now.drain(..) {
                    lp.settle(fd);
                }
                match mode {
                    // SIGIO is all plain mode ever hears: something, somewhere.
                    Mode::Plain => lp.sweep_every_socket()?,
                    // The real-time queue was full and an event was dropped:
                    // which one, nothing says (fcntl(2), F_SETSIG). Empty the
                    // queue (what it holds is stale, and would keep it full),
                    // then ask every socket at once.
                    Mode::Rt => {
                        overflows += 1;
                        if overflows == 1 {
                            lab::log!(
                                "sigio: real-time signal queue overflowed (RLIMIT_SIGPENDING): \
                                 draining it and sweeping with poll (count at exit)"
                            );
                        }
                        signals.drain_queue()?;
                        lp.sweep_with_poll()?;
                    }
                }
            }
        }
        for fd in owed_now.drain(..) {
            lp.settle(fd);
            lp.handle(fd, OWED, Drain::UntilWouldBlock)?;
        }
        lp.owed.give_back(owed_now);
    }
}

/// When a read may stop before `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// A queued signal announced this read, and every later arrival (data or
    /// FIN) queues one of its own: a short read proves the queue empty.
    UntilShort,
    /// Nothing will announce again what is already there (plain SIGIO merged
    /// it into the signal we took, or we owe the turn ourselves): read until
    /// `EAGAIN` or EOF, or lose the FIN behind the data.
    UntilWouldBlock,
}

/// Whether a pass may have left work in a descriptor: data unread, or
/// connections not accepted. The kernel signalled that change once and will
/// not signal it again, so the loop must remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    Nothing,
    Maybe,
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
struct Loop<'a> {
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
}

impl Loop<'_> {
    /// Serves `fd` for the events in `band` (`POLL*` bits, as `si_band` and
    /// `revents` carry them), and owes it a turn if work may be left.
    fn handle(&mut self, fd: RawFd, band: libc::c_short, drain: Drain) -> io::Result<()> {
        let left = if fd == self.listener.as_raw_fd() {
            self.on_listener()?
        } else {
            on_ready(
                &mut self.conns,
                fd,
                band,
                drain,
                &mut self.scratch,
                self.stats,
            )
        };
        if left == Left::Maybe {
            if fd == self.listener.as_raw_fd() {
                self.owed.owe_listener();
            } else {
                self.owed.owe(fd, &mut self.conns[fd as usize].owed);
            }
        }
        Ok(())
    }

    /// `fd`'s owed turn is being served, or a sweep serves it anyway: it
    /// may be owed again. (The listener's flag is cleared by `Owed::take`.)
    fn settle(&mut self, fd: RawFd) {
        if let Some(slot) = self.conns.get_mut(fd as usize) {
            slot.owed = false;
        }
    }

    fn on_listener(&mut self) -> io::Result<Left> {
        if self.accept_paused_until.is_some() {
            // A connection queued during the pause: the pause's end owes it.
            return Ok(Left::Nothing);
        }
        Ok(
            match accept_all(
                self.listener,
                &mut self.spare,
                &mut self.conns,
                &mut self.owed,
                self.signals,
                self.stats,
                self.max_conns,
            )? {
                Accept::Drained => Left::Nothing,
                Accept::Capped => Left::Maybe,
                // Connections stay queued and not one descriptor is to be
                // had, or kernel memory is short. Each new connection would
                // signal a retry that fails again: leave the listener alone
                // for a while, as nginx does; closing connections free
                // descriptors.
                Accept::Paused => {
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    Left::Nothing
                }
            },
        )
    }

    /// Plain SIGIO names no socket: ask every one. Each is read until
    /// `EAGAIN`, since what was already there will not be signalled again.
    fn sweep_every_socket(&mut self) -> io::Result<()> {
        self.handle(self.listener.as_raw_fd(), OWED, Drain::UntilWouldBlock)?;
        for fd in 0..self.conns.len() {
            if self.conns[fd].conn.is_some() {
                let everything = libc::POLLIN | libc::POLLOUT;
                self.handle(fd as RawFd, everything, Drain::UntilWouldBlock)?;
            }
        }
        Ok(())
    }

    /// After an overflow: one `poll`, without waiting, over every socket
    /// for what it is interested in, then serve what it reports.
    fn sweep_with_poll(&mut self) -> io::Result<()> {
        let mut pollfds = Vec::with_capacity(self.conns.len() + 1);
        if self.accept_paused_until.is_none() {
            pollfds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
        }
        for conn in self.conns.iter().filter_map(|slot| slot.conn.as_ref()) {
            pollfds.push(pollfd(conn.raw(), interest(conn)));
        }
        let watched = pollfds.len();
        loop {
            // SAFETY: `pollfds` is a live array of `watched` pollfd structs;
            // the kernel writes only their `revents`.
            let ready = syscall!(
                unsafe { libc::poll(pollfds.as_mut_ptr(), watched as libc::nfds_t, 0) },
                "poll({watched} fds)"
            );
            match ready {
                Ok(_) => break,
                Err(e) => match WaitError::classify(&e).warned("sigio", &e) {
                    WaitError::Retry => continue,
                    // ENOMEM: the kernel could not copy the array in; ask
                    // every socket itself instead, as plain mode does.
                    WaitError::BackOff => return self.sweep_every_socket(),
                    WaitError::Fatal => return Err(e),
                },
            }
        }
        // Listener first: a descriptor closed below cannot be accepted anew
        // and then served for the old connection's `revents`.
        for p in &pollfds {
            if p.revents != 0 {
                self.handle(p.fd, p.revents, Drain::UntilWouldBlock)?;
            }
        }
        Ok(())
    }
}

/// How an accept pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    /// EAGAIN: nothing more is queued.
    Drained,
    /// The fairness cap: more may be queued.
    Capped,
    /// Leave the listener alone for `ACCEPT_PAUSE`: EMFILE/ENFILE and the
    /// spare could not refuse a connection either, or kernel memory is
    /// short (ENOBUFS/ENOMEM). Either way retrying at once would spin.
    Paused,
}

/// Accepts what is pending (up to the fairness cap) and arms it.
fn accept_all(
    listener: &Listener,
    spare: &mut Spare,
    conns: &mut Vec<Slot>,
    owed: &mut Owed<RawFd>,
    signals: &Signals,
    stats: &Stats,
    max_conns: Option<u64>,
) -> io::Result<Accept> {
    // A spare lost to a full table is taken back as soon as a descriptor frees.
    spare.refill();
    // A listener that hits the cap is owed another turn: no new signal comes
    // for the connections still queued.
    for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
        let fd = match accept(listener.as_raw_fd(), IoMode::NonBlocking) {
            Ok(fd) => fd,
            Err(e) => match AcceptError::classify(&e).warned("sigio", &e) {
                AcceptError::Drained => return Ok(Accept::Drained),
                AcceptError::Retry => continue,
                // That one connection failed while queued: take the next.
                AcceptError::Skip => continue,
                // The connection stays queued, and no new signal comes for
                // it; refuse it with the spare.
                AcceptError::Exhausted => {
                    match spare.refuse_one(listener.as_raw_fd(), IoMode::NonBlocking) {
                        Refusal::Refused => continue,
                        Refusal::NothingPending => return Ok(Accept::Drained),
                        Refusal::TableFull => return Ok(Accept::Paused),
                    }
                }
                AcceptError::BackOff => return Ok(Accept::Paused),
                AcceptError::Fatal => return Err(e),
            },
        };
        if !stats.admit(max_conns) {
            // --max-conns reached: connection N+1 is closed at once.
            continue;
        }
        let raw = fd.as_raw_fd();
        // accept4 copies neither O_ASYNC nor the owner from the listener.
        if let Err(e) = signals.arm(raw) {
            // ENOMEM (no memory for the socket's fasync entry): this
            // connection cannot be signalled; close it only.
            lab::log!("sigio: {e}");
            stats.release();
            continue;
        }
        let slot = raw as usize;
        if conns.len() <= slot {
            conns.resize_with(slot + 1, Slot::default);
        }
        let slot = &mut conns[slot];
        slot.conn = Some(Conn::new(fd));
        // Bytes that arrived between accept4 and O_ASYNC raised no signal.
        owed.owe(raw, &mut slot.owed);
    }
    Ok(Accept::Capped)
}

/// A signal (or a sweep, or a debt) says `fd` had the events in `band`:
/// read, write, and say whether work may be left that no signal announces.
fn on_ready(
    conns: &mut [Slot],
    fd: RawFd,
    band: libc::c_short,
    drain: Drain,
    scratch: &mut [u8],
    stats: &Stats,
) -> Left {
    // None: a signal queued before its connection closed (closing removes
    // the socket's fasync entry, not the signals already queued).
    let Some(conn) = conns.get_mut(fd as usize).and_then(|s| s.conn.as_mut()) else {
        return Left::Nothing;
    };
    let was_reading = conn.wants_read();
    // POLLHUP/POLLERR (the POLL_HUP and POLL_ERR signals): the next `recv`
    // or `send` returns the EOF or the error, which ends the connection.
    let hangup = band & (libc::POLLHUP | libc::POLLERR) != 0;
    let mut next = Next::Keep;
    let mut left = Left::Nothing;
    if (band & libc::POLLIN != 0 || hangup) && conn.wants_read() {
        (next, left) = on_readable(conn, scratch, stats, drain);
    }
    if next == Next::Keep && (band & libc::POLLOUT != 0 || hangup) {
        next = on_writable(conn, stats);
    }
    if next == Next::Close || conn.is_finished() {
        close_conn(conns, fd, stats);
        return Left::Nothing;
    }
    // Data left at the cap, or data that arrived while back-pressure paused
    // reading (its signals came and were ignored), which the send that
    // drained the buffer has just resumed: no signal will come for it.
    if conn.wants_read() && (left == Left::Maybe || !was_reading) {
        Left::Maybe
    } else {
        Left::Nothing
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
                if conn.out.is_empty() {
                    // Usually the whole reply fits in the socket buffer: send it
                    // now instead of waiting for a POLL_OUT signal.
                    match send(fd, reply, stats) {
                        Ok(sent) => conn.out.push(&reply[sent..]),
                        Err(e) => return (drop_on("sigio", e), Left::Nothing),
                    }
                } else {
                    // Bytes already queued go first, or the stream reorders.
                    conn.out.push(reply);
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
            Err(e) => return (drop_on("sigio", e), Left::Nothing),
        }
    }
    (Next::Keep, Left::Maybe)
}

/// The socket has buffer space again: send what is owed. A `send` that
/// stops short leaves the socket marked "no space", and the kernel signals
/// (`POLL_OUT`) when the peer has read.
fn on_writable(conn: &mut Conn, stats: &Stats) -> Next {
    if conn.out.is_empty() {
        return Next::Keep;
    }
    match send(conn.raw(), conn.out.pending(), stats) {
        Ok(sent) => {
            conn.out.consume(sent);
            Next::Keep
        }
        Err(e) => drop_on("sigio", e),
    }
}

/// One `send`; returns how much the kernel took (a short write is normal on
/// a non-blocking socket: the rest waits for `POLL_OUT`). `MSG_NOSIGNAL`: a
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
            // EINTR: nothing was sent though the socket may have room (for
            // which no POLL_OUT signal comes); try again now.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Closes the connection on `fd`. Closing the descriptor also ends its
/// signals: the kernel drops the socket's fasync entry.
fn close_conn(conns: &mut [Slot], fd: RawFd, stats: &Stats) {
    conns[fd as usize].conn = None;
    stats.release();
}

/// What the overflow sweep asks `poll` for, from the connection's state.
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

/// What one `sigtimedwait` brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// SIGINT or SIGTERM.
    Stop,
    /// Plain SIGIO: some socket changed, which one is not said. In rt mode
    /// it means the real-time queue overflowed.
    Somewhere,
    /// A queued real-time signal: this descriptor had these events.
    Ready { fd: RawFd, band: libc::c_short },
    /// The timeout passed, or the real-time signal was sent by a process
    /// (`kill`, `sigqueue`: `si_code` <= 0) and names no socket.
    Nothing,
}

/// The fields of `siginfo_t` that a SIGIO-class signal fills (the kernel's
/// `_sigpoll` member of its union); `libc` gives no accessor for them on
/// glibc targets. The union follows three ints, aligned to its largest
/// member (a pointer): where `repr(C)` places `band` too.
#[repr(C)]
struct SigPoll {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    band: libc::c_long,
    fd: libc::c_int,
}

const _: () = assert!(
    std::mem::size_of::<SigPoll>() <= std::mem::size_of::<libc::siginfo_t>()
        && std::mem::align_of::<SigPoll>() <= std::mem::align_of::<libc::siginfo_t>()
);

/// The signals this loop takes, all blocked and taken with `sigtimedwait`:
/// SIGINT and SIGTERM, SIGIO, and in rt mode the real-time signal that
/// every socket is told to raise.
struct Signals {
    mode: Mode,
    /// `SIGRTMIN` as glibc counts it (it keeps the first two for its threads).
    rt_signal: libc::c_int,
    /// Everything `sigtimedwait` waits for.
    all: libc::sigset_t,
    /// The real-time signal alone: what an overflow drains.
    queued: libc::sigset_t,
    /// Whom the sockets signal (`F_SETOWN`).
    owner: libc::pid_t,
}

impl Signals {
    /// Ignores SIGPIPE and blocks the set. Call it first thing in `main`,
    /// while this is the only thread: the process's mask is this thread's.
    fn block(mode: Mode) -> io::Result<Signals> {
        ignore_sigpipe()?;
        let rt_signal = libc::SIGRTMIN();
        let mut all = empty_set()?;
        for sig in STOP_SIGNALS {
            add(&mut all, sig as libc::c_int)?;
        }
        add(&mut all, libc::SIGIO)?;
        let mut queued = empty_set()?;
        match mode {
            Mode::Plain => {}
            Mode::Rt => {
                add(&mut all, rt_signal)?;
                add(&mut queued, rt_signal)?;
            }
        }
        // SAFETY: `all` is an initialised sigset_t; the old mask is not asked for.
        syscall!(
            unsafe { libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()) },
            "sigprocmask(SIG_BLOCK)"
        )?;
        Ok(Signals {
            mode,
            rt_signal,
            all,
            queued,
            // SAFETY: getpid has no preconditions and cannot fail.
            owner: unsafe { libc::getpid() },
        })
    }

    /// Makes `fd` signal this process on I/O: owner first, then the signal,
    /// then `O_ASYNC`, which takes effect at once.
    fn arm(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: F_SETOWN takes an int (a pid); no memory is passed.
        syscall!(
            unsafe { libc::fcntl(fd, libc::F_SETOWN, self.owner) },
            "fcntl(F_SETOWN, fd {fd})"
        )?;
        match self.mode {
            // Signal 0, the default: plain SIGIO, with no siginfo fields.
            Mode::Plain => {}
            Mode::Rt => {
                // SAFETY: F_SETSIG takes an int (a signal number).
                syscall!(
                    unsafe { libc::fcntl(fd, F_SETSIG, self.rt_signal) },
                    "fcntl(F_SETSIG, fd {fd})"
                )?;
            }
        }
        // SAFETY: F_SETFL takes an int of flags; O_NONBLOCK is kept.
        syscall!(
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC) },
            "fcntl(F_SETFL, O_ASYNC, fd {fd})"
        )?;
        Ok(())
    }

    /// Takes one pending signal of the set, waiting at most `timeout`
    /// (`None`: until one comes). `EAGAIN` (the timeout passed) and `EINTR`
    /// are returned to the caller, as for any other call.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Wake> {
        // SAFETY: all-zero is a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let limit = timeout.map(timespec);
        let limit_ptr = limit
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `all` is initialised, `info` writable, `limit_ptr` null or a live timespec.
        let signo = syscall!(
            unsafe { libc::sigtimedwait(&self.all, &mut info, limit_ptr) },
            "sigtimedwait"
        )?;
        // SAFETY: `info` is a siginfo_t the kernel filled; SigPoll is a
        // prefix of its layout (checked above) of plain integers.
        let info = unsafe { &*(&info as *const libc::siginfo_t).cast::<SigPoll>() };
        Ok(match signo {
            libc::SIGINT | libc::SIGTERM => Wake::Stop,
            libc::SIGIO => Wake::Somewhere,
            // si_code is the event (POLL_IN, POLL_OUT, ... all > 0) when the
            // kernel raised it for a socket.
            _ if signo == self.rt_signal && info.code > 0 => Wake::Ready {
                fd: info.fd,
                // POLL* bits, all below 0x8000.
                band: info.band as libc::c_short,
            },
            _ => Wake::Nothing,
        })
    }

    /// Discards every queued real-time signal, without waiting.
    fn drain_queue(&self) -> io::Result<()> {
        let now = timespec(Duration::ZERO);
        // SAFETY: all-zero is a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: `queued` is initialised, `info` writable, `now` a live timespec.
            let taken = syscall!(
                unsafe { libc::sigtimedwait(&self.queued, &mut info, &now) },
                "sigtimedwait(drain)"
            );
            match taken {
                Ok(_) => continue,
                // EAGAIN: the queue is empty.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => match WaitError::classify(&e).warned("sigio", &e) {
                    WaitError::Retry => continue,
                    // What stays queued is only stale: the sweep serves
                    // every socket anyway, and a stale signal finds nothing.
                    WaitError::BackOff => return Ok(()),
                    WaitError::Fatal => return Err(e),
                },
            }
        }
    }
}

fn empty_set() -> io::Result<libc::sigset_t> {
    // SAFETY: all-zero is a valid sigset_t, and sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable sigset_t.
    syscall!(unsafe { libc::sigemptyset(&mut set) }, "sigemptyset")?;
    Ok(set)
}

fn add(set: &mut libc::sigset_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `set` is an initialised sigset_t.
    syscall!(unsafe { libc::sigaddset(set, sig) }, "sigaddset({sig})")?;
    Ok(())
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}
