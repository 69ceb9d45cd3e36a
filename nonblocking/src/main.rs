//! nonblocking — no readiness mechanism at all: every socket is `O_NONBLOCK`
//! and one thread simply tries them all, over and over.
//!
//! Phase 1 (wait for data) is never a wait: it is a question asked of every
//! socket on every sweep. `recv` on a socket with nothing to read returns
//! `EAGAIN` at once, and so do `accept` with nothing pending and `send` into
//! a full socket buffer: `EAGAIN` is the answer "not ready". Phase 2 (copy
//! data) is the `recv`/`send` that did not say `EAGAIN`. A sweep costs one
//! system call per connection, ready or not, most of them answering "no":
//! that is what `select`, `poll` and `epoll` exist to avoid.
//!
//! `--mode spin`: sweep again at once, forever. It never sleeps, so it burns
//! a whole core even with no client at all — that is the point of it: the
//! CPU a readiness mechanism saves. In exchange, a request is seen within
//! one sweep.
//!
//! `--mode sleep` (the default, as in the course notes): after a sweep that
//! found nothing to do, sleep `--sleep-us` (default 10 000 µs = 10 ms). The
//! trade: a request that arrives during a nap waits for it, up to sleep-us
//! of extra latency; idle CPU falls to one sweep per nap, proportional to
//! 1/sleep-us (and to the number of connections, each tried every sweep).
//! While there is work, it does not sleep and behaves like spin.
//!
//! SIGINT/SIGTERM: the signalfd is `O_NONBLOCK` too and read once per sweep
//! (`EAGAIN`: no signal), so a stop is seen within one sweep, or one nap.
//!
//! Cannot: wait without either burning a core (spin) or adding latency
//! (sleep); use more than one core; stay cheap as connections grow.
//!
//! Run: `cargo run --release -p nonblocking -- --mode spin`, then
//! `nc 127.0.0.1 PORT` (and watch `top`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, ValueEnum};
use lab::conn::{drop_on, Conn, Next};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{AcceptError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::{syscall, Stats};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Busy-poll: sweep again at once, never sleep (burns a whole core).
    Spin,
    /// Sleep --sleep-us after a sweep that found nothing to do.
    Sleep,
}

#[derive(Parser)]
#[command(
    name = "nonblocking",
    version,
    about = "Echo server: one thread trying every non-blocking socket in turn"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Sleep)]
    mode: Mode,
    /// Microseconds to sleep after a sweep that found nothing to do
    /// (`--mode sleep` only; default 10000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    sleep_us: Option<u64>,
}

/// The course notes' back-off: 10 ms.
const DEFAULT_SLEEP_US: u64 = 10_000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.mode == Mode::Spin && cli.sleep_us.is_some() {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--sleep-us applies to --mode sleep only",
            )
            .exit();
    }
    let nap = Duration::from_micros(cli.sleep_us.unwrap_or(DEFAULT_SLEEP_US));
    match run(&cli.common, cli.mode, nap) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("nonblocking: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &lab::cli::Common, mode: Mode, nap: Duration) -> io::Result<()> {
    let signals = SignalFd::install(&[])?;
    // Without a readiness mechanism the signalfd is asked like a socket:
    // `read` must answer EAGAIN, not block the sweep.
    lab::net::set_nonblocking(signals.as_raw_fd())?;
    let listener = Listener::bind(cli.addr, IoMode::NonBlocking)?;
    listener.announce()?;
    let stats = Stats::new()?;
    serve(&listener, &signals, &stats, cli.max_conns, mode, nap)?;
    let name = match mode {
        Mode::Spin => "nonblocking:spin",
        Mode::Sleep => "nonblocking:sleep",
    };
    stats.print_summary(name)
}

fn serve(
    listener: &Listener,
    signals: &SignalFd,
    stats: &Stats,
    max_conns: Option<u64>,
    mode: Mode,
    nap: Duration,
) -> io::Result<()> {
    let mut conns: Vec<Conn> = Vec::new();
    let mut spare = Spare::new()?;
    let mut scratch = vec![0u8; READ_CHUNK];
    // Set while the descriptor table is full: the listener is not asked
    // until then.
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        // One sweep: every descriptor is asked, whether or not anything
        // happened to it. `busy` records whether any call did something.
        match signals.read() {
            // SIGINT or SIGTERM is pending: stop serving; the caller summarises.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut busy = false;
        if accept_paused_until.is_none_or(|until| Instant::now() >= until) {
            accept_paused_until = None;
            let accepted = accept_all(
                listener, &mut spare, &mut conns, stats, max_conns, &mut busy,
            )?;
            if accepted == Accept::Paused {
                // Connections stay queued and not one descriptor is to be
                // had (the spare was lost earlier, or the system's table is
                // full), or kernel memory is short. Every sweep would meet them again, at once, forever.
                // Leave the listener alone for a while, as nginx does;
                // closing connections free descriptors.
                accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
        // Backwards, so that `close_conn` moving the last connection into the
        // hole never moves one we have not visited yet.
        for i in (0..conns.len()).rev() {
            let conn = &mut conns[i];
            let mut next = Next::Keep;
            if conn.wants_read() {
                next = on_readable(conn, &mut scratch, stats, &mut busy);
            }
            if next == Next::Keep && conn.wants_write() {
                next = on_writable(conn, stats, &mut busy);
            }
            if next == Next::Close || conn.is_finished() {
                close_conn(&mut conns, i, stats);
            }
        }
        if !busy {
            match mode {
                // Ask again at once: a core stays busy, a request waits at
                // most one sweep.
                Mode::Spin => {}
                // Give the CPU back; whatever arrives now waits for the nap.
                Mode::Sleep => thread::sleep(nap),
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

/// Accepts what is pending (up to the fairness cap); sets `busy` if there
/// was anything (EAGAIN at once: nothing was).
fn accept_all(
    listener: &Listener,
    spare: &mut Spare,
    conns: &mut Vec<Conn>,
    stats: &Stats,
    max_conns: Option<u64>,
    busy: &mut bool,
) -> io::Result<Accept> {
    // A spare lost to a full table is taken back as soon as a descriptor frees.
    spare.refill();
    // At most MAX_ACCEPTS_PER_WAKEUP per sweep: the next sweep tries the
    // listener again anyway.
    for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
        let fd = match accept(listener.as_raw_fd(), IoMode::NonBlocking) {
            Ok(fd) => fd,
            Err(e) => match AcceptError::classify(&e).warned("nonblocking", &e) {
                AcceptError::Drained => return Ok(Accept::Drained),
                AcceptError::Retry => continue,
                // That one connection failed while queued: take the next.
                AcceptError::Skip => continue,
                // The connection stays queued and the listener stays
                // readable, so every sweep would meet it again; refuse it with the spare.
                AcceptError::Exhausted => {
                    match spare.refuse_one(listener.as_raw_fd(), IoMode::NonBlocking) {
                        Refusal::Refused => {
                            *busy = true;
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
        *busy = true;
        if !stats.admit(max_conns) {
            // --max-conns reached: connection N+1 is closed at once.
            continue;
        }
        conns.push(Conn::new(fd));
    }
    Ok(Accept::Capped)
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
            if conn.out.is_empty() {
                // Usually the whole reply fits in the socket buffer: send it
                // now instead of waiting a sweep.
                match send(fd, reply, stats) {
                    Ok(sent) => conn.out.push(&reply[sent..]),
                    Err(e) => return drop_on("nonblocking", e),
                }
            } else {
                // Bytes already queued go first, or the stream reorders.
                conn.out.push(reply);
            }
            Next::Keep
        }
        // EAGAIN: not ready. This is the readiness test of this model.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Keep,
        Err(e) => {
            *busy = true;
            drop_on("nonblocking", e)
        }
    }
}

/// Try to send what is owed; the socket may have buffer space again. Sets
/// `busy` if the kernel took any of it.
fn on_writable(conn: &mut Conn, stats: &Stats, busy: &mut bool) -> Next {
    if conn.out.is_empty() {
        return Next::Keep;
    }
    match send(conn.raw(), conn.out.pending(), stats) {
        Ok(sent) => {
            *busy |= sent > 0;
            conn.out.consume(sent);
            Next::Keep
        }
        Err(e) => {
            *busy = true;
            drop_on("nonblocking", e)
        }
    }
}

/// One `send`; returns how much the kernel took (a short write is normal on
/// a non-blocking socket: the rest waits for a later sweep). `MSG_NOSIGNAL`:
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

/// Closes `conns[i]` in O(1): the last connection moves into the hole.
fn close_conn(conns: &mut Vec<Conn>, i: usize, stats: &Stats) {
    conns.swap_remove(i);
    stats.release();
}
