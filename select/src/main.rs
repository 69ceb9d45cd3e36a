//! select — one thread waits on every socket at once with select(2).
//!
//! Phase 1 (wait for data) blocks in `select`, for all sockets together.
//! Phase 2 (copy data) is `recv`/`send` on a socket `select` said is ready; it
//! never blocks, because every socket is `O_NONBLOCK`.
//!
//! The interest set is two bitmaps, rebuilt every round because `select`
//! overwrites them with the ready subset: the read set holds the listener,
//! the signalfd and every connection whose output buffer has room; the write
//! set only the connections with a reply pending (the course notes' `wlist`).
//!
//! Cost: every call copies both bitmaps into the kernel, which scans every
//! bit up to `nfds` (the highest descriptor + 1), polls each descriptor that
//! is set, and copies the bitmaps back; the loop then scans them again with
//! `FD_ISSET`. O(highest descriptor), not O(ready), on every wake-up, plus
//! the rebuild. With 1000 idle connections and one active, each wake-up
//! still pays for 1000 (see the readiness benchmark, `poll` and `epoll`).
//!
//! Limit: an `fd_set` is a fixed bitmap of `FD_SETSIZE` (1024) bits, one per
//! descriptor number, so a descriptor >= 1024 cannot be watched at all. The
//! kernel would take a larger bitmap; the C type cannot hold one. A
//! connection that gets such a descriptor is closed at once, with a one-time
//! warning; every other connection keeps being served. So about 1020 clients
//! at once, whatever `ulimit -n` allows.
//!
//! Cannot: use more than one core; watch a descriptor >= 1024; stay cheap
//! with many idle connections.
//!
//! Run: `cargo run --release -p select`, then `nc 127.0.0.1 PORT`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::Once;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::{syscall, Stats};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// A single event loop.
    Loop,
}

#[derive(Parser)]
#[command(
    name = "select",
    version,
    about = "Echo server: one event loop on select(2)"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Loop)]
    mode: Mode,
}

/// Descriptors `0..FD_SETSIZE` fit in an `fd_set`; glibc and Linux fix it
/// at 1024.
const FD_SETSIZE: RawFd = libc::FD_SETSIZE as RawFd;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Mode::Loop = cli.mode;
    match run(&cli.common) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("select: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &lab::cli::Common) -> io::Result<()> {
    let signals = SignalFd::install(&[])?;
    let listener = Listener::bind(cli.addr, IoMode::NonBlocking)?;
    listener.announce()?;
    let stats = Stats::new()?;
    serve(&listener, &signals, &stats, cli.max_conns)?;
    stats.print_summary("select:loop")
}

fn serve(
    listener: &Listener,
    signals: &SignalFd,
    stats: &Stats,
    max_conns: Option<u64>,
) -> io::Result<()> {
    let mut conns: Vec<Conn> = Vec::new();
    let mut spare = Spare::new()?;
    let mut scratch = vec![0u8; READ_CHUNK];
    // Set while the descriptor table is full: the listener is out of the
    // read set until then.
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        let watch_listener = accept_paused_until.is_none();
        let (mut readfds, mut writefds, nfds) =
            interest(listener, watch_listener, signals, &conns)?;
        // None: no timeout, wait until something is ready.
        let mut timeout = accept_paused_until.map(|until| {
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
            Err(e) => match WaitError::classify(&e).warned("select", &e) {
                // EINTR: a signal we do not block (e.g. SIGSTOP/SIGCONT) cut
                // the wait short; the sets are then unspecified, and rebuilt anyway.
                WaitError::Retry => continue,
                // ENOMEM: the kernel could not allocate its copy of the sets.
                WaitError::BackOff => {
                    std::thread::sleep(ACCEPT_PAUSE);
                    continue;
                }
                WaitError::Fatal => return Err(e),
            },
        }
        if accept_paused_until.is_some_and(|until| Instant::now() >= until) {
            // Level-triggered: the next select reports the listener at once
            // if connections are queued.
            accept_paused_until = None;
        }
        if fd_isset(&readfds, signals.as_raw_fd()) {
            // SIGINT or SIGTERM is pending: stop serving; the caller summarises.
            return Ok(());
        }
        if watch_listener && fd_isset(&readfds, listener.as_raw_fd()) {
            let accepted = accept_all(listener, &mut spare, &mut conns, stats, max_conns)?;
            if accepted == Accept::Paused {
                // Connections stay queued and not one descriptor is to be
                // had (the spare was lost earlier, or the system's table is
                // full), or kernel memory is short. Level-triggered select would report the listener at
                // once, forever. Stop watching it for a while, as nginx does;
                // closing connections free descriptors.
                accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
        // Backwards, so that `close_conn` moving the last connection into the
        // hole never moves one we have not visited yet. Connections accepted
        // just now are in neither set (their descriptors were not open when
        // the sets were built) and are skipped.
        for i in (0..conns.len()).rev() {
            let conn = &mut conns[i];
            let readable = fd_isset(&readfds, conn.raw());
            let writable = fd_isset(&writefds, conn.raw());
            if !readable && !writable {
                continue;
            }
            // A reset or an error makes the socket both readable and
            // writable: the next `recv` or `send` returns the EOF or the
            // error, which ends the connection.
            let mut next = Next::Keep;
            if readable {
                next = on_readable(conn, &mut scratch, stats);
            }
            if next == Next::Keep && writable {
                next = on_writable(conn, stats);
            }
            if next == Next::Close || conn.is_finished() {
                close_conn(&mut conns, i, stats);
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
    listener: &Listener,
    spare: &mut Spare,
    conns: &mut Vec<Conn>,
    stats: &Stats,
    max_conns: Option<u64>,
) -> io::Result<Accept> {
    // A spare lost to a full table is taken back as soon as a descriptor frees.
    spare.refill();
    // At most MAX_ACCEPTS_PER_WAKEUP: level-triggered `select` reports the
    // listener again if more are pending.
    for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
        let fd = match accept(listener.as_raw_fd(), IoMode::NonBlocking) {
            Ok(fd) => fd,
            Err(e) => match AcceptError::classify(&e).warned("select", &e) {
                AcceptError::Drained => return Ok(Accept::Drained),
                AcceptError::Retry => continue,
                // That one connection failed while queued: take the next.
                AcceptError::Skip => continue,
                // The connection stays queued and the listener stays
                // readable, so select would report it again at once; refuse it with the spare.
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
        if !stats.admit(max_conns) {
            // --max-conns reached: connection N+1 is closed at once.
            continue;
        }
        conns.push(Conn::new(fd));
    }
    Ok(Accept::Capped)
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
                // now instead of waiting a round for the write set.
                match send(fd, reply, stats) {
                    Ok(sent) => conn.out.push(&reply[sent..]),
                    Err(e) => return drop_on("select", e),
                }
            } else {
                // Bytes already queued go first, or the stream reorders.
                conn.out.push(reply);
            }
            Next::Keep
        }
        // Readiness can be stale by the time we read: nothing lost, wait again.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Keep,
        Err(e) => drop_on("select", e),
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
        Err(e) => drop_on("select", e),
    }
}

/// One `send`; returns how much the kernel took (a short write is normal on
/// a non-blocking socket: the rest waits for the write set). `MSG_NOSIGNAL`:
/// a peer that closed gives EPIPE here, not a SIGPIPE that kills the server.
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
            // which edge-triggered epoll reports no new edge); try again now.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Closes `conns[i]` in O(1): the last connection moves into the hole. The
/// sets need no update: they are rebuilt every round.
fn close_conn(conns: &mut Vec<Conn>, i: usize, stats: &Stats) {
    conns.swap_remove(i);
    stats.release();
}

/// What to ask `select` for, from every connection's state: the read set
/// (listener, signalfd, connections with room in their output buffer), the
/// write set (connections with a reply pending) and `nfds`.
fn interest(
    listener: &Listener,
    watch_listener: bool,
    signals: &SignalFd,
    conns: &[Conn],
) -> io::Result<(libc::fd_set, libc::fd_set, RawFd)> {
    let mut readfds = fd_set_new();
    let mut writefds = fd_set_new();
    // Opened before any connection, so their numbers are small.
    if watch_listener {
        fd_set_add(&mut readfds, listener.as_raw_fd())?;
    }
    fd_set_add(&mut readfds, signals.as_raw_fd())?;
    let mut nfds = listener.as_raw_fd().max(signals.as_raw_fd()) + 1;
    for conn in conns {
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

/// Whether `fd` has a bit in an `fd_set`.
fn fits_fd_set(fd: RawFd) -> bool {
    (0..FD_SETSIZE).contains(&fd)
}

/// `FD_SET`, refusing a descriptor the bitmap cannot hold. With
/// fd >= FD_SETSIZE, glibc's `FD_SET` compiled with `_FORTIFY_SOURCE` (as
/// distributions build) aborts the process with "*** bit out of range 0 -
/// FD_SETSIZE on fd_set ***" (glibc 2.36), and without it writes past the
/// end of the set; Rust's `libc::FD_SET` panics ("fd 1024 out of range").
/// `accept_all` closes such connections before they get here; should one
/// slip through, this is an error that names it, not a crash.
fn fd_set_add(set: &mut libc::fd_set, fd: RawFd) -> io::Result<()> {
    if !fits_fd_set(fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("FD_SET(fd {fd}): beyond FD_SETSIZE ({FD_SETSIZE})"),
        ));
    }
    // SAFETY: 0 <= fd < FD_SETSIZE: the bit lies inside `set`.
    unsafe { libc::FD_SET(fd, set) };
    Ok(())
}

/// `FD_ISSET`; a descriptor the bitmap cannot hold is never in it.
fn fd_isset(set: &libc::fd_set, fd: RawFd) -> bool {
    // SAFETY: checked first: 0 <= fd < FD_SETSIZE, the bit lies inside `set`.
    fits_fd_set(fd) && unsafe { libc::FD_ISSET(fd, set) }
}

/// An empty `fd_set`.
fn fd_set_new() -> libc::fd_set {
    let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO writes every word of the set, so it is initialised
    // before `assume_init` reads it.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// A connected pair of stream sockets, the first end duplicated to the
    /// lowest free descriptor >= `at` (F_DUPFD, not dup2: another test
    /// thread may own any given number).
    fn socket_at_or_above(at: RawFd) -> (OwnedFd, OwnedFd) {
        let mut pair = [0; 2];
        // SAFETY: `pair` is writable for two descriptors.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: socketpair returned two new descriptors that nothing else owns.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
        // SAFETY: F_DUPFD takes a minimum descriptor number.
        let high = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at) };
        assert!(high >= at, "F_DUPFD({at}): {}", io::Error::last_os_error());
        // SAFETY: fcntl returned a new descriptor that nothing else owns.
        (unsafe { OwnedFd::from_raw_fd(high) }, b)
    }

    #[test]
    fn fd_set_add_refuses_fd_at_fd_setsize_and_above() {
        let (high, _peer) = socket_at_or_above(FD_SETSIZE);
        let mut set = fd_set_new();
        let err = fd_set_add(&mut set, high.as_raw_fd()).expect_err("beyond the bitmap");
        assert!(err.to_string().contains("FD_SETSIZE (1024)"), "{err}");
        assert!(fd_set_add(&mut set, -1).is_err());
        assert!(!fd_isset(&set, high.as_raw_fd()));
        // The refusal wrote nothing: the set is still empty.
        assert!((0..FD_SETSIZE).all(|fd| !fd_isset(&set, fd)));
    }

    #[test]
    fn fd_below_fd_setsize_is_watched_and_reported_ready() {
        let (low, peer) = socket_at_or_above(FD_SETSIZE - 100);
        assert!(
            low.as_raw_fd() < FD_SETSIZE,
            "test process has too many descriptors open"
        );
        let fd = low.as_raw_fd();
        let mut readfds = fd_set_new();
        fd_set_add(&mut readfds, fd).expect("below FD_SETSIZE");
        assert!(fd_isset(&readfds, fd));
        // SAFETY: writing one byte from a live buffer to our own socket.
        assert_eq!(
            unsafe { libc::write(peer.as_raw_fd(), b"x".as_ptr().cast(), 1) },
            1
        );
        let mut timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: a live fd_set below nfds; null sets are allowed.
        let n = unsafe {
            libc::select(
                fd + 1,
                &mut readfds,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut timeout,
            )
        };
        assert_eq!(n, 1, "select: {}", io::Error::last_os_error());
        assert!(fd_isset(&readfds, fd));
    }
}
