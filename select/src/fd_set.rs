//! `fd_set`, the bitmap `select` reads and overwrites: one bit per
//! descriptor number, `FD_SETSIZE` (1024) bits, so a descriptor >= 1024
//! cannot be watched at all. The kernel would take a larger bitmap; the C
//! type cannot hold one. Every `FD_SET` here checks the limit first.

use std::io;
use std::os::fd::RawFd;

/// Descriptors `0..FD_SETSIZE` fit in an `fd_set`; glibc and Linux fix it
/// at 1024.
pub const FD_SETSIZE: RawFd = libc::FD_SETSIZE as RawFd;

/// Whether `fd` has a bit in an `fd_set`.
pub fn fits_fd_set(fd: RawFd) -> bool {
    (0..FD_SETSIZE).contains(&fd)
}

/// `FD_SET`, refusing a descriptor the bitmap cannot hold. With
/// fd >= FD_SETSIZE, glibc's `FD_SET` compiled with `_FORTIFY_SOURCE` (as
/// distributions build) aborts the process with "*** bit out of range 0 -
/// FD_SETSIZE on fd_set ***" (glibc 2.36), and without it writes past the
/// end of the set; Rust's `libc::FD_SET` panics ("fd 1024 out of range").
/// `accept_all` closes such connections before they get here; should one
/// slip through, this is an error that names it, not a crash.
pub fn fd_set_add(set: &mut libc::fd_set, fd: RawFd) -> io::Result<()> {
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
pub fn fd_isset(set: &libc::fd_set, fd: RawFd) -> bool {
    // SAFETY: checked first: 0 <= fd < FD_SETSIZE, the bit lies inside `set`.
    fits_fd_set(fd) && unsafe { libc::FD_ISSET(fd, set) }
}

/// An empty `fd_set`.
pub fn fd_set_new() -> libc::fd_set {
    let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO writes every word of the set, so it is initialised
    // before `assume_init` reads it.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
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
