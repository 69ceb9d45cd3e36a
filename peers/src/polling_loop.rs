//! peers --mode polling — one event loop on the `polling` crate, the
//! portable poller under smol and async-io (epoll on Linux, kqueue on the
//! BSDs and macOS, event ports on illumos, IOCP on Windows), used as its
//! documentation shows: `Poller::add` with the default oneshot mode, and
//! `Poller::modify` to re-arm a source after each of its events.
//!
//! A reference, not a model: it is `epoll:level` with the kernel calls
//! behind a portable interface, so the difference between the two is what
//! portability costs. Phase 1 (wait for data) blocks in `Poller::wait`
//! (`epoll_wait`), for all sockets together; phase 2 (copy data) is
//! `recv`/`send` on a socket it said is ready, as in `poll` and `epoll`:
//! every socket is `O_NONBLOCK`, and the calls are in this file.
//!
//! Cost. Oneshot is the one mode every backend has (kqueue's `EV_ONESHOT`,
//! event ports dissociate on every event), so an event disarms its source,
//! and serving it costs one `epoll_ctl(MOD)` to re-arm: per request, where
//! `epoll:level` edits its interest only when a buffer fills or drains.
//! Each `Poller::wait` costs four calls besides `epoll_wait` (polling 3.11,
//! epoll backend): `timerfd_settime` and `epoll_ctl(MOD)` for its timeout
//! timer, a `read` of its wake-up eventfd and `epoll_ctl(MOD)` to re-arm
//! it. And `delete` before every close, which the kernel would do itself.
//! Measure it: `harness run peers:polling --syscalls`.
//!
//! Cannot: use more than one core; wait in fewer calls than above.
//!
//! Run: `cargo run --release -p peers -- --mode polling`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use lab::cli::Common;
use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::{syscall, Stats};
use polling::{Event, Events, Poller};

/// The summary's and the warnings' name.
const MODEL: &str = "peers:polling";

/// Keys in `Event::key`. A connection's key is its descriptor, and `conns`
/// is indexed by it; polling reserves `usize::MAX` for its own wake-up.
const LISTENER: usize = usize::MAX - 1;
const SIGNALS: usize = usize::MAX - 2;

pub fn run(common: &Common) -> io::Result<()> {
    let signals = SignalFd::install(&[])?;
    let listener = Listener::bind(common.addr, IoMode::NonBlocking)?;
    // Declared before the poller, so dropped after it: polling asks that no
    // source be dropped while registered in a live `Poller`.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let poller = Poller::new().map_err(|e| lab::sys::named(e, "Poller::new".into()))?;
    let spare = Spare::new()?;
    listener.announce()?;
    let stats = Stats::new()?;
    serve(
        &poller,
        &listener,
        &signals,
        spare,
        &mut conns,
        &stats,
        common.max_conns,
    )?;
    stats.print_summary(MODEL)
}

fn serve(
    poller: &Poller,
    listener: &Listener,
    signals: &SignalFd,
    mut spare: Spare,
    conns: &mut Vec<Option<Conn>>,
    stats: &Stats,
    max_conns: Option<u64>,
) -> io::Result<()> {
    // SAFETY: the signalfd outlives the poller (declared before it in `run`).
    unsafe { poller.add(signals, Event::readable(SIGNALS)) }
        .map_err(|e| lab::sys::named(e, format!("Poller::add(fd {})", signals.as_raw_fd())))?;
    // SAFETY: the listener outlives the poller (declared before it in `run`).
    unsafe { poller.add(listener, Event::readable(LISTENER)) }
        .map_err(|e| lab::sys::named(e, format!("Poller::add(fd {})", listener.as_raw_fd())))?;
    let mut events = Events::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    // Set while the descriptor table is full: the listener stays disarmed
    // (its last event was not re-armed) until then.
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        let timeout =
            accept_paused_until.map(|until| until.saturating_duration_since(Instant::now()));
        // The list is appended to: clear it, as polling's examples do.
        events.clear();
        match poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) => {
                let e = lab::sys::named(e, "Poller::wait".into());
                match WaitError::classify(&e).warned(MODEL, &e) {
                    // EINTR: polling retries it inside `wait`, so it does not come here.
                    WaitError::Retry => continue,
                    WaitError::BackOff => {
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                    WaitError::Fatal => return Err(e),
                }
            }
        }
        if accept_paused_until.is_some_and(|until| Instant::now() >= until) {
            // Re-armed, it is reported at once if connections are queued.
            rearm(poller, listener, Event::readable(LISTENER))?;
            accept_paused_until = None;
        }
        for ev in events.iter() {
            match ev.key {
                // SIGINT or SIGTERM is pending: stop serving; `run` summarises.
                SIGNALS => return Ok(()),
                LISTENER => {
                    match accept_all(poller, listener, &mut spare, conns, stats, max_conns)? {
                        Accept::Drained | Accept::Capped => {
                            rearm(poller, listener, Event::readable(LISTENER))?
                        }
                        // Connections stay queued and not one descriptor is to be
                        // had, or kernel memory is short: re-armed, the listener
                        // would be reported at once, forever. Leave it disarmed
                        // for a while, as nginx does; closing connections free
                        // descriptors.
                        Accept::Paused => accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE),
                    }
                }
                fd => on_ready(poller, conns, fd, ev, &mut scratch, stats),
            }
        }
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

/// Accepts what is pending (up to the fairness cap) and watches it.
fn accept_all(
    poller: &Poller,
    listener: &Listener,
    spare: &mut Spare,
    conns: &mut Vec<Option<Conn>>,
    stats: &Stats,
    max_conns: Option<u64>,
) -> io::Result<Accept> {
    // A spare lost to a full table is taken back as soon as a descriptor frees.
    spare.refill();
    // At most MAX_ACCEPTS_PER_WAKEUP: re-armed, the listener is reported
    // again at once if more are pending.
    for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
        let fd = match accept(listener.as_raw_fd(), IoMode::NonBlocking) {
            Ok(fd) => fd,
            Err(e) => match AcceptError::classify(&e).warned(MODEL, &e) {
                AcceptError::Drained => return Ok(Accept::Drained),
                AcceptError::Retry => continue,
                // That one connection failed while queued: take the next.
                AcceptError::Skip => continue,
                // The connection stays queued and the listener stays
                // readable, so re-arming would report it again at once;
                // refuse it with the spare.
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
        // SAFETY: `close_conn` deletes the socket from the poller before
        // dropping it, and `run` drops the poller before `conns`.
        if let Err(e) = unsafe { poller.add(&fd, Event::readable(raw as usize)) } {
            // ENOMEM, or ENOSPC (fs.epoll.max_user_watches): this connection
            // cannot be watched; close it only.
            lab::log!("{MODEL}: Poller::add(fd {raw}): {e}");
            stats.release();
            continue;
        }
        let slot = raw as usize;
        if conns.len() <= slot {
            conns.resize_with(slot + 1, || None);
        }
        conns[slot] = Some(Conn::new(fd));
    }
    Ok(Accept::Capped)
}

/// `fd`'s oneshot event fired (and disarmed it): read, write, then re-arm
/// it for what the connection now wants, or close it.
fn on_ready(
    poller: &Poller,
    conns: &mut [Option<Conn>],
    fd: usize,
    ev: Event,
    scratch: &mut [u8],
    stats: &Stats,
) {
    let Some(conn) = conns.get_mut(fd).and_then(Option::as_mut) else {
        return;
    };
    // polling reports EPOLLHUP/EPOLLERR as both readable and writable. The
    // next `recv` or `send` returns the EOF or the error, which ends the
    // connection.
    let mut next = Next::Keep;
    if ev.readable && conn.wants_read() {
        next = on_readable(conn, scratch, stats);
    }
    if next == Next::Keep && ev.writable {
        next = on_writable(conn, stats);
    }
    if next == Next::Close || conn.is_finished() {
        close_conn(poller, conns, fd, stats);
        return;
    }
    // The price of oneshot: an epoll_ctl(MOD) after every event, even when
    // the interest is what it was. Readable while there is room for the
    // reply, writable while a reply is pending.
    let interest = Event::new(fd, conn.wants_read(), conn.wants_write());
    if let Err(e) = rearm(poller, &conn.fd, interest) {
        drop_on(MODEL, e);
        close_conn(poller, conns, fd, stats);
    }
}

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
            if conn.out.is_empty() {
                // Usually the whole reply fits in the socket buffer: send it
                // now instead of waiting a round for writability.
                match send(fd, reply, stats) {
                    Ok(sent) => conn.out.push(&reply[sent..]),
                    Err(e) => return drop_on(MODEL, e),
                }
            } else {
                // Bytes already queued go first, or the stream reorders.
                conn.out.push(reply);
            }
            Next::Keep
        }
        // Readiness can be stale by the time we read: nothing lost; the
        // re-arm reports the socket again when it is readable.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Keep,
        Err(e) => drop_on(MODEL, e),
    }
}

/// The socket has buffer space again: send what is owed.
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
/// a non-blocking socket: the rest waits for writability). `MSG_NOSIGNAL`: a
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
            // EINTR: nothing was sent though the socket may have room; try
            // again now rather than wait for an event that may not come.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Re-arms a oneshot source for `interest` (`epoll_ctl(MOD)` on Linux).
/// MOD allocates nothing, so its errors (`EBADF`, `ENOENT`, `EINVAL`) are
/// bugs of ours: fatal for the listener, the end of a connection.
fn rearm(poller: &Poller, source: impl AsFd, interest: Event) -> io::Result<()> {
    let fd = source.as_fd().as_raw_fd();
    poller
        .modify(source, interest)
        .map_err(|e| lab::sys::named(e, format!("Poller::modify(fd {fd})")))
}

/// Deletes the connection from the poller, as polling requires of a source
/// before it is dropped (on epoll the `close` would do it; on other
/// backends it would not), then closes it.
fn close_conn(poller: &Poller, conns: &mut [Option<Conn>], fd: usize, stats: &Stats) {
    if let Some(conn) = conns[fd].take() {
        if let Err(e) = poller.delete(&conn.fd) {
            // ENOENT or EBADF: a bug of ours, but not worth the server.
            lab::log!("{MODEL}: Poller::delete(fd {fd}): {e}");
        }
        stats.release();
    }
}
