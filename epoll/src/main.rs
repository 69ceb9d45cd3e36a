//! epoll — one thread waits on every socket at once with epoll(7); with
//! `--workers N`, N threads each run such a loop.
//!
//! Phase 1 (wait for data) blocks in `epoll_wait`, for all sockets together.
//! Phase 2 (copy data) is `recv`/`send` on a socket epoll said is ready; it
//! never blocks, because every socket is `O_NONBLOCK`.
//!
//! The interest set lives in the kernel: a socket is registered once
//! (`epoll_ctl(ADD)`), and closing it removes it. `epoll_wait` hands back
//! only the ready sockets, so a wake-up costs O(ready), not O(watched) as
//! with `select` and `poll` (see the readiness benchmark).
//!
//! Level mode (`--mode level`, this file): the kernel reports a socket for
//! as long as it stays ready, like `poll`; we read once per wake-up and are
//! told again about the rest. `EPOLLOUT` is registered only while a reply is
//! pending and `EPOLLIN` dropped while the output buffer is full, so
//! `epoll_ctl(MOD)` runs on those transitions only, never once per request.
//!
//! Edge mode (`--mode edge`, the machinery in `edge.rs`): the kernel reports
//! a change (new data, new buffer space) once. A socket is registered once
//! for everything and never modified; the price is that data already in the
//! socket is never reported again, so we read until it is drained, capped
//! per wake-up for fairness, and keep a list of the work we owe.
//!
//! Several loops, and the thundering herd. `--share shared` puts one
//! listener in every loop's epoll, plainly: each new connection wakes every
//! loop waiting on it; one accepts, the others find `EAGAIN` and sleep
//! again: N wake-ups for one connection. That is the herd, kept on purpose
//! so that it can be measured (`harness run epoll:level --workload connect
//! -- --workers 2 --share shared`). Two remedies:
//! `--share exclusive` registers that one listener with `EPOLLEXCLUSIVE`
//! (Linux 4.5): the kernel wakes one or more waiters, not all; a loop busy
//! serving is not waiting, so an idle one takes the connection.
//! `--share reuseport` gives each loop its own listener on the same port
//! (`SO_REUSEPORT`, Linux 3.9): the kernel hashes each connection's 4-tuple
//! to one listener's queue. No herd and no shared queue, but no balancing
//! either: a connection hashed to a busy loop waits for that loop, and an
//! idle loop does not take it.
//!
//! Cannot: move a connection to another loop once accepted; watch regular
//! files (always "ready": `epoll_ctl` refuses them with `EPERM`).
//!
//! Run: `cargo run --release -p epoll -- --mode edge --workers 2 --share
//! reuseport`, then `nc 127.0.0.1 PORT`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use lab::conn::{drop_on, Conn, Next};
use lab::epoll::{Epoll, EPOLLERR, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLOUT};
use lab::net::{accept, IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{AcceptError, WaitError, MAX_ACCEPTS_PER_WAKEUP, READ_CHUNK};
use lab::signals::SignalFd;
use lab::workers::{self, Share};
use lab::{syscall, Stats};

mod cli;
mod edge;

use cli::{Cli, Config, Trigger};
use edge::Left;

/// Tokens in `epoll_event.u64`. A connection's token is its descriptor in
/// the low 32 bits, and `conns` is indexed by it (Redis' `events[fd]`), with
/// the slot's generation in the high 32 bits: an event queued for a
/// connection that closed meanwhile (earlier in the same batch, or owed from
/// an earlier round) does not match a new connection that got the same
/// descriptor. Descriptors are below 2^31, so these two are never a
/// connection's.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// Events taken per `epoll_wait`; more ready ones stay queued in the kernel
/// for the next call, none is lost.
const MAX_EVENTS: usize = 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lab::log!("epoll: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<()> {
    // First, before any thread exists: threads inherit the signal mask, so
    // SIGINT/SIGTERM stay blocked in every loop and pending for the signalfd.
    let signals = SignalFd::install(&[])?;
    let workers = cli.common.workers_or(1);
    let (listeners, loops) = workers::bind_and_make(cli.common.addr, workers, cli.share, || {
        Ok((Epoll::new()?, Spare::new()?))
    })?;
    let stats = Stats::with_loops(workers)?;
    listeners[0].announce()?;
    let cfg = Config {
        mode: cli.mode,
        share: cli.share,
        max_conns: cli.common.max_conns,
    };
    workers::run_loops(
        "epoll-loop",
        loops,
        &listeners,
        |index, (ep, spare), listener| serve(index, ep, spare, listener, &signals, &stats, cfg),
    )?;
    let model = match cli.mode {
        Trigger::Level => "epoll:level",
        Trigger::Edge => "epoll:edge",
    };
    stats.print_summary(model)
}

/// One connection of this loop, at `conns[fd]`.
struct Slot {
    conn: Conn,
    /// Part of this connection's token (see `LISTENER`).
    generation: u32,
    /// Edge mode: the token is on the owed list (see `lab::owed`).
    owed: bool,
}

fn serve(
    index: usize,
    ep: Epoll,
    mut spare: Spare,
    listener: &Listener,
    signals: &SignalFd,
    stats: &Stats,
    cfg: Config,
) -> io::Result<()> {
    let Config {
        mode,
        share,
        max_conns,
    } = cfg;
    // Level-triggered, and nobody reads it: every loop's epoll holds the same
    // signalfd and keeps reporting the pending SIGTERM, so all of them stop.
    ep.add(signals.as_raw_fd(), SIGNALS, EPOLLIN)?;
    let mut listen_events = match mode {
        Trigger::Level => EPOLLIN,
        Trigger::Edge => edge::LISTENER_EVENTS,
    };
    match share {
        // Wake one (or a few) of the loops waiting on this listener, not all.
        Share::Exclusive => listen_events |= EPOLLEXCLUSIVE,
        // Every loop waiting on the shared listener wakes: the herd.
        Share::Shared => {}
        // This loop's own listener: nobody else waits on it.
        Share::ReusePort => {}
    }
    ep.add(listener.as_raw_fd(), LISTENER, listen_events)?;
    let mut conns: Vec<Option<Slot>> = Vec::new();
    let mut generation = 0u32;
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    // Edge mode: what the kernel will not report again. Always empty in
    // level mode, where what is left stays ready and is reported again.
    let mut owed = lab::owed::Owed::new(LISTENER);
    // Set while the descriptor table is full: the listener is out of the
    // interest set until then.
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        let timeout = if !owed.is_empty() {
            // Work is owed: look for new events, but do not sleep.
            0
        } else if let Some(until) = accept_paused_until {
            let left = until.saturating_duration_since(Instant::now());
            left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
        } else {
            -1
        };
        let ready = ep.wait(&mut events, timeout);
        let ready = match ready {
            Ok(n) => n,
            Err(e) => match WaitError::classify(&e).warned("epoll", &e) {
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
        if accept_paused_until.is_some_and(|until| Instant::now() >= until) {
            // ADD reports the listener at once if connections are queued.
            ep.add(listener.as_raw_fd(), LISTENER, listen_events)?;
            accept_paused_until = None;
        }
        // What the kernel reported, then (edge mode) what we owe from the
        // last round, in the order it was owed.
        let mut owed_now = owed.take();
        let reported = events[..ready]
            .iter()
            .map(|ev| (ev.u64, ev.events, Source::Kernel));
        let owed_tokens = owed_now
            .drain(..)
            .map(|t| (t, edge::OWED, Source::OwedList));
        for (token, flags, from) in reported.chain(owed_tokens) {
            match token {
                // SIGINT or SIGTERM is pending: stop serving; `run` summarises.
                SIGNALS => return Ok(()),
                // An owed entry from before the pause began.
                LISTENER if accept_paused_until.is_some() => {}
                LISTENER => {
                    let accepted = accept_all(
                        &ep,
                        listener,
                        &mut spare,
                        &mut conns,
                        &mut generation,
                        stats,
                        max_conns,
                        mode,
                        index,
                    )?;
                    match accepted {
                        Accept::Drained => {}
                        Accept::Capped => match mode {
                            // The listener stays readable, and is reported again.
                            Trigger::Level => {}
                            // No new edge comes for connections already queued.
                            Trigger::Edge => owed.owe_listener(),
                        },
                        // Connections stay queued and not one descriptor is to be
                        // had: another loop took the one our spare freed, or the
                        // system's table is full, or kernel memory is short.
                        // Level mode would be woken at once, forever. Stop
                        // watching the listener for a while, as nginx does;
                        // closing connections free descriptors.
                        Accept::Paused => {
                            ep.delete(listener.as_raw_fd())?;
                            accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                        }
                    }
                }
                conn => on_ready(
                    &ep,
                    &mut conns,
                    conn,
                    (flags, from),
                    &mut scratch,
                    stats,
                    mode,
                    &mut owed,
                ),
            }
        }
        owed.give_back(owed_now);
    }
}

/// Where an event in a round comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// `epoll_wait` returned it.
    Kernel,
    /// Edge mode's own list (`lab::owed`).
    OwedList,
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
#[allow(clippy::too_many_arguments)]
fn accept_all(
    ep: &Epoll,
    listener: &Listener,
    spare: &mut Spare,
    conns: &mut Vec<Option<Slot>>,
    generation: &mut u32,
    stats: &Stats,
    max_conns: Option<u64>,
    mode: Trigger,
    index: usize,
) -> io::Result<Accept> {
    let events = match mode {
        Trigger::Level => EPOLLIN,
        Trigger::Edge => edge::CONN_EVENTS,
    };
    // A spare lost to a full table is taken back as soon as a descriptor frees.
    spare.refill();
    // At most MAX_ACCEPTS_PER_WAKEUP: level-triggered epoll reports the
    // listener again if more are pending; edge mode owes it (`lab::owed`).
    for _ in 0..MAX_ACCEPTS_PER_WAKEUP {
        let fd = match accept(listener.as_raw_fd(), IoMode::NonBlocking) {
            Ok(fd) => fd,
            Err(e) => match AcceptError::classify(&e).warned("epoll", &e) {
                // With a shared listener, also what every loop but the
                // first finds after the herd's wake-up.
                AcceptError::Drained => return Ok(Accept::Drained),
                AcceptError::Retry => continue,
                // That one connection failed while queued: take the next.
                AcceptError::Skip => continue,
                // The connection stays queued and the listener stays
                // readable, so a level loop would spin; refuse it with the spare.
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
        stats.served_by(index);
        let raw = fd.as_raw_fd();
        *generation = generation.wrapping_add(1);
        // Data that arrived before this call is not lost: ADD checks the
        // socket's readiness at once and queues an event if it is ready.
        if let Err(e) = ep.add(raw, token(raw, *generation), events) {
            // ENOMEM, or ENOSPC (the user's fs.epoll.max_user_watches is
            // reached): this connection cannot be watched; close it only.
            lab::log!("epoll: {e}");
            stats.release();
            continue;
        }
        let slot = raw as usize;
        if conns.len() <= slot {
            conns.resize_with(slot + 1, || None);
        }
        conns[slot] = Some(Slot {
            conn: Conn::new(fd),
            generation: *generation,
            owed: false,
        });
    }
    Ok(Accept::Capped)
}

/// The kernel reported `token` with `flags` (or edge mode owes it a read):
/// read, write, then arrange to hear about this socket again, as each mode
/// needs.
#[allow(clippy::too_many_arguments)]
fn on_ready(
    ep: &Epoll,
    conns: &mut [Option<Slot>],
    token: u64,
    (flags, from): (u32, Source),
    scratch: &mut [u8],
    stats: &Stats,
    mode: Trigger,
    owed: &mut lab::owed::Owed<u64>,
) {
    let fd = token as u32 as RawFd;
    let generation = (token >> 32) as u32;
    // Not this connection's: it closed since the event was queued (its
    // descriptor may even belong to a new connection, with a new generation).
    let Some(slot) = conns[fd as usize]
        .as_mut()
        .filter(|s| s.generation == generation)
    else {
        return;
    };
    if from == Source::OwedList {
        slot.owed = false;
    }
    let conn = &mut slot.conn;
    let was = interest(conn);
    // EPOLLHUP/EPOLLERR arrive whatever we asked for, and stay set: ignoring
    // them would spin. The next `recv` or `send` returns the EOF or the
    // error, which ends the connection.
    let hangup = flags & (EPOLLHUP | EPOLLERR) != 0;
    let mut next = Next::Keep;
    let mut left = Left::Nothing;
    if (flags & EPOLLIN != 0 || hangup) && conn.wants_read() {
        (next, left) = match mode {
            // The kernel reports the rest: one read per wake-up, as poll.
            Trigger::Level => (on_readable(conn, scratch, stats), Left::Nothing),
            // No new edge comes for data already there: read until drained.
            Trigger::Edge => edge::on_readable(conn, scratch, stats, flags),
        };
    }
    if next == Next::Keep && (flags & EPOLLOUT != 0 || hangup) {
        next = on_writable(conn, stats);
    }
    if next == Next::Close || conn.is_finished() {
        close_conn(conns, fd, stats);
        return;
    }
    match mode {
        // The kernel's interest follows the buffer: EPOLLOUT while a reply
        // is pending, EPOLLIN while there is room. In ping-pong neither
        // changes, so no epoll_ctl per request.
        Trigger::Level => {
            let now = interest(conn);
            if now != was {
                if let Err(e) = ep.modify(fd, token, now) {
                    drop_on("epoll", e);
                    close_conn(conns, fd, stats);
                }
            }
        }
        Trigger::Edge => {
            if edge::work_left(conn, was, left) {
                owed.owe(token, &mut slot.owed);
            }
        }
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
            reply_or_queue(conn, reply, stats)
        }
        // Readiness can be stale by the time we read: nothing lost, wait again.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Keep,
        Err(e) => drop_on("epoll", e),
    }
}

/// Sends a fresh `reply` now if nothing is queued before it, and queues
/// what the socket did not take.
fn reply_or_queue(conn: &mut Conn, reply: &[u8], stats: &Stats) -> Next {
    if conn.out.is_empty() {
        // Usually the whole reply fits in the socket buffer: send it now
        // instead of waiting a round for EPOLLOUT.
        match send(conn.raw(), reply, stats) {
            Ok(sent) => conn.out.push(&reply[sent..]),
            Err(e) => return drop_on("epoll", e),
        }
    } else {
        // Bytes already queued go first, or the stream reorders.
        conn.out.push(reply);
    }
    Next::Keep
}

/// The socket has buffer space again: send what is owed. One `send` of
/// everything pending either takes it all or stops short because the socket
/// buffer is full, which is what a further `send` would say with EAGAIN: in
/// edge mode too, the next EPOLLOUT edge comes when the peer has read.
fn on_writable(conn: &mut Conn, stats: &Stats) -> Next {
    if conn.out.is_empty() {
        return Next::Keep;
    }
    match send(conn.raw(), conn.out.pending(), stats) {
        Ok(sent) => {
            conn.out.consume(sent);
            Next::Keep
        }
        Err(e) => drop_on("epoll", e),
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
            // EINTR: nothing was sent though the socket may have room (for
            // which edge-triggered epoll reports no new edge); try again now.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Closes the connection on `fd`. Closing the descriptor also removes it
/// from the epoll set (no `EPOLL_CTL_DEL`): it is this file's only
/// descriptor, never `dup`ed nor inherited by a child.
fn close_conn(conns: &mut [Option<Slot>], fd: RawFd, stats: &Stats) {
    conns[fd as usize] = None;
    stats.release();
}

/// What level mode asks epoll for, from the connection's state.
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

/// A connection's token: its generation above its descriptor.
fn token(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_descriptor_and_generation_and_is_never_a_fixed_one() {
        let t = token(7, 41);
        assert_eq!((t as u32 as RawFd, (t >> 32) as u32), (7, 41));
        assert_ne!(
            token(7, 41),
            token(7, 42),
            "a reused descriptor gets a new token"
        );
        let highest = token(i32::MAX, u32::MAX);
        assert!(highest != LISTENER && highest != SIGNALS);
    }
}
