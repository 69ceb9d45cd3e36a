//! What the kernel promises about `poll(2)` when the peer goes away,
//! asserted with raw syscalls on a TCP pair and a socketpair, not through
//! the server. The model relies on it: `POLLHUP`/`POLLERR` come whatever it
//! asked for, and the next `recv`/`send` tells EOF from error.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `revents` of one `poll` on `fd` asking for `events`.
fn poll_one(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> libc::c_short {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one live pollfd; the kernel writes its `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    pfd.revents
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

fn recv(fd: RawFd) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[test]
fn poll_reports_pollrdhup_on_peer_shutdown() {
    let (client, server) = tcp_pair();
    let fd = server.as_raw_fd();
    let asked = libc::POLLIN | libc::POLLRDHUP;
    assert_eq!(poll_one(fd, asked, 0), 0, "connected and quiet");
    client.shutdown(Shutdown::Write).expect("shutdown");
    let revents = poll_one(fd, asked, 2000);
    assert_eq!(
        revents,
        libc::POLLIN | libc::POLLRDHUP,
        "FIN: readable (EOF) and read side hung up, revents {revents:#x}"
    );
    assert_eq!(revents & libc::POLLHUP, 0, "we can still send: no POLLHUP");
    assert_eq!(recv(fd).expect("recv"), 0, "EOF");
}

#[test]
fn poll_reports_pollhup_on_peer_close_of_a_socketpair() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: two new descriptors nothing else owns.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(b);
    // POLLHUP is reported though only POLLIN was asked for: it cannot be masked.
    let revents = poll_one(a.as_raw_fd(), libc::POLLIN, 0);
    assert_ne!(revents & libc::POLLHUP, 0, "revents {revents:#x}");
    assert_ne!(revents & libc::POLLIN, 0, "EOF is readable");
}

#[test]
fn poll_reports_pollhup_when_both_directions_are_shut() {
    let (client, server) = tcp_pair();
    client.shutdown(Shutdown::Write).expect("shutdown");
    let fd = server.as_raw_fd();
    assert_ne!(poll_one(fd, libc::POLLRDHUP, 2000) & libc::POLLRDHUP, 0);
    server.shutdown(Shutdown::Write).expect("our own shutdown");
    let revents = poll_one(fd, 0, 0);
    assert_ne!(revents & libc::POLLHUP, 0, "revents {revents:#x}");
}

#[test]
fn poll_reports_pollerr_and_pollhup_on_peer_reset() {
    let (client, mut server) = tcp_pair();
    // SO_LINGER with a zero timeout: close sends RST instead of FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a live struct of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(client);
    let fd = server.as_raw_fd();
    let revents = poll_one(fd, libc::POLLIN, 2000);
    assert_ne!(revents & libc::POLLERR, 0, "revents {revents:#x}");
    assert_ne!(revents & libc::POLLHUP, 0, "revents {revents:#x}");
    let err = server.write_all(b"late").expect_err("send after RST");
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET), "{err}");
}
