//! Edge mode's machinery: what `--mode edge` needs beyond the level loop in
//! `main.rs`.
//!
//! The kernel reports a change (new data, new buffer space, a new
//! connection) once. A socket is registered once for everything
//! (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`) and never modified; the price is
//! that data already in the socket is never reported again, so we read
//! until it is drained. For fairness that is capped per wake-up; a socket
//! that hit the cap, or whose reading back-pressure paused and a drained
//! output buffer resumes, goes on a list of work we owe (`lab::owed`),
//! served before the next sleep. `accept` is drained the same way: a
//! listener that hit the accept cap is owed too.

use std::io;

use lab::conn::{drop_on, Conn, Next};
use lab::{syscall, Stats};

use lab::epoll::{EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP};

use crate::reply_or_queue;

/// Once, for everything: never an epoll_ctl again for this socket.
pub const CONN_EVENTS: u32 = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

/// The listener reports a new connection once; what is queued behind it
/// gets no new edge (see `lab::owed::Owed::owe_listener`).
pub const LISTENER_EVENTS: u32 = EPOLLIN | EPOLLET;

/// How a token on the owed list is served: as if the kernel had reported it
/// readable again. `EPOLLRDHUP` because we no longer know whether the peer's
/// FIN was already queued: read on to `EAGAIN` (see `on_readable`).
pub const OWED: u32 = EPOLLIN | EPOLLRDHUP;

/// A connection is read until drained, but at most this many times per
/// wake-up (libuv stops at 32), so that one fast sender cannot hold the
/// loop while the others wait.
pub const MAX_READS_PER_WAKEUP: usize = 16;

/// Whether a pass may have left work in a descriptor: data unread, or
/// connections not accepted. Edge mode must remember it: the kernel reported
/// that readiness once and will not report it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    Nothing,
    Maybe,
}

/// Read until drained, at most `MAX_READS_PER_WAKEUP` times: level mode's
/// `on_readable` in a loop, with the two ways to stop early that edge
/// triggering allows.
pub fn on_readable(conn: &mut Conn, scratch: &mut [u8], stats: &Stats, flags: u32) -> (Next, Left) {
    let fd = conn.raw();
    let fin_queued = flags & (EPOLLRDHUP | EPOLLHUP) != 0;
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
                // A short read emptied the receive queue; whatever arrives
                // later is a new edge. This saves the `recv` that would say
                // EAGAIN (tokio does the same). Not if the FIN was already
                // queued at the edge: it takes one more `recv`, returning 0,
                // and no new edge announces it.
                if n < want && !fin_queued {
                    return (Next::Keep, Left::Nothing);
                }
            }
            // Drained (or the readiness was stale): the kernel reports new data.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (Next::Keep, Left::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (drop_on("epoll", e), Left::Nothing),
        }
    }
    (Next::Keep, Left::Maybe)
}

/// Whether the connection must go on the owed list after a pass (`was`: its
/// read/write interest before it). Unread data gets no new edge: data left
/// at the cap, or data left in the socket while back-pressure paused
/// reading, which the EPOLLOUT edge that drained the buffer has just
/// resumed.
pub fn work_left(conn: &Conn, was: u32, left: Left) -> bool {
    let resumed = was & EPOLLIN == 0;
    conn.wants_read() && (left == Left::Maybe || resumed)
}
