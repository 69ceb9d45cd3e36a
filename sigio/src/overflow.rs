//! Rt mode's way back after the real-time signal queue overflowed: the
//! kernel dropped an event and nothing says which, so ask every socket at
//! once with one `poll`, without waiting, as fcntl(2) asks.

use std::io;
use std::os::fd::RawFd;

use lab::conn::Conn;
use lab::policy::WaitError;
use lab::syscall;

/// One `poll` with timeout 0 over `listener` (if it is watched) and every
/// connection, for what each is interested in; the array comes back with
/// `revents` filled, listener first.
pub fn poll_now<'c>(
    listener: Option<RawFd>,
    conns: impl Iterator<Item = &'c Conn>,
) -> io::Result<Vec<libc::pollfd>> {
    let mut pollfds: Vec<libc::pollfd> = listener
        .map(|fd| pollfd(fd, libc::POLLIN))
        .into_iter()
        .collect();
    pollfds.extend(conns.map(|conn| pollfd(conn.raw(), interest(conn))));
    let watched = pollfds.len();
    loop {
        // SAFETY: `pollfds` is a live array of `watched` pollfd structs;
        // the kernel writes only their `revents`.
        let ready = syscall!(
            unsafe { libc::poll(pollfds.as_mut_ptr(), watched as libc::nfds_t, 0) },
            "poll({watched} fds)"
        );
        match ready {
            Ok(_) => return Ok(pollfds),
            Err(e) => match WaitError::classify(&e).warned("sigio", &e) {
                WaitError::Retry => continue,
                // ENOMEM: the kernel could not copy the array in. Report
                // every socket ready for everything instead: the caller then
                // asks each one itself, as plain mode does.
                WaitError::BackOff => {
                    for p in &mut pollfds {
                        p.revents = libc::POLLIN | libc::POLLOUT;
                    }
                    return Ok(pollfds);
                }
                WaitError::Fatal => return Err(e),
            },
        }
    }
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
