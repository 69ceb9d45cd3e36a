//! The state of one connection in an event-loop model, and the decisions
//! that follow from it. No I/O happens here: each model's file makes the
//! `recv` and `send` calls itself and updates this state.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::OutBuf;

pub struct Conn {
    pub fd: OwnedFd,
    /// Reply bytes the peer has not taken yet (bounded: back-pressure).
    pub out: OutBuf,
    /// The peer shut down its write side (`recv` returned 0). We still owe
    /// it `out`; once that is sent, the connection is finished.
    pub peer_closed: bool,
}

impl Conn {
    pub fn new(fd: OwnedFd) -> Conn {
        Conn {
            fd,
            out: OutBuf::new(),
            peer_closed: false,
        }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Read interest: the peer may still send, and there is room to keep the
    /// reply. A full buffer means: stop reading until the peer reads.
    pub fn wants_read(&self) -> bool {
        !self.peer_closed && !self.out.is_full()
    }

    /// Write interest: only while a reply is pending. Asking for
    /// writability on a socket with nothing to send wakes the loop on every
    /// round, since a socket with buffer space is always writable.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// The peer closed its side and has everything it was owed.
    pub fn is_finished(&self) -> bool {
        self.peer_closed && self.out.is_empty()
    }
}

/// What a handler decided about its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    Close,
}

/// An error ends this connection only: ECONNRESET/EPIPE are the peer's
/// doing and not worth a line; anything else is reported, prefixed with the
/// model's name. Never fatal to the server.
pub fn drop_on(model: &str, err: io::Error) -> Next {
    if !is_peer_gone(&err) {
        crate::log!("{model}: {err}");
    }
    Next::Close
}

/// Errors that end one connection and say nothing about the server: the
/// peer reset it (`ECONNRESET`), or closed before taking its reply
/// (`EPIPE`), or vanished (`ETIMEDOUT`, `EHOSTUNREACH`), or the socket is
/// no longer connected (`ENOTCONN`). Logged at most as a note, never fatal.
pub fn is_peer_gone(err: &io::Error) -> bool {
    matches!(
        crate::sys::errno(err),
        Some(
            libc::ECONNRESET | libc::EPIPE | libc::ETIMEDOUT | libc::EHOSTUNREACH | libc::ENOTCONN
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn conn() -> Conn {
        // SAFETY: open of a constant path; the new descriptor is owned by the OwnedFd.
        let raw = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        Conn::new(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    #[test]
    fn interest_follows_buffer_state() {
        let mut c = conn();
        assert!(c.wants_read() && !c.wants_write() && !c.is_finished());
        c.out.push(&vec![0; crate::OUTBUF_LIMIT]);
        assert!(!c.wants_read(), "full buffer: back-pressure");
        assert!(c.wants_write());
        c.peer_closed = true;
        assert!(!c.is_finished(), "still owes the reply");
        c.out.consume(crate::OUTBUF_LIMIT);
        assert!(c.is_finished());
    }

    #[test]
    fn reset_and_broken_pipe_are_the_peers_business() {
        for errno in [libc::ECONNRESET, libc::EPIPE] {
            assert!(is_peer_gone(&crate::sys::named(
                io::Error::from_raw_os_error(errno),
                "send(fd 5)".into()
            )));
        }
        assert!(!is_peer_gone(&io::Error::from_raw_os_error(libc::EBADF)));
    }
}
