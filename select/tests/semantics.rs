//! What `select` does at its limit, and where the limit comes from.
//!
//! `select_refuses_fd_at_fd_setsize` runs the `select` binary past
//! `FD_SETSIZE`; `kernel_select_takes_a_bitmap_larger_than_fd_set` shows that
//! the 1024 belongs to the C type `fd_set`, not to the kernel.
//! The refusal of `FD_SET` itself is tested next to it, in `src/fd_set.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use harness::server::{Server, ServerConfig};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::Signal;

const FD_SETSIZE: usize = 1024;

/// Connections opened past the point where the server's table reaches
/// `FD_SETSIZE`.
const BEYOND: usize = 40;

/// The server's RLIMIT_NOFILE: room past FD_SETSIZE, so that the only limit
/// in play is select's.
const NEEDED_NOFILE: u64 = 2048;

/// The descriptor numbers a process has open, from `/proc/PID/fd`.
fn open_fds(pid: i32) -> BTreeSet<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Waits (up to 10 s) until the server's descriptor numbers satisfy `ok`.
fn wait_for_fds(pid: i32, what: &str, ok: impl Fn(&BTreeSet<usize>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fds = open_fds(pid);
        if ok(&fds) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {what}; the server holds {} descriptors: {fds:?}",
            fds.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    stream
}

/// Sends a short request and expects its transformed echo.
fn assert_echoes(stream: &mut TcpStream, what: &str) {
    stream.write_all(b"ping fd_set").expect("write");
    let mut reply = [0u8; 11];
    stream
        .read_exact(&mut reply)
        .unwrap_or_else(|e| panic!("{what}: no echo: {e}"));
    assert_eq!(&reply, b"PING FD_SET", "{what}");
}

/// The server closed this connection without being sent anything: EOF (or
/// a reset).
fn assert_closed_by_server(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(_) => panic!("{what}: got data from a connection that should be closed"),
        Err(e) => panic!("{what}: expected EOF or reset, got {e}"),
    }
}

#[test]
fn select_refuses_fd_at_fd_setsize() {
    // Both sides need descriptors past FD_SETSIZE: the server to be offered
    // them, this test to hold ~1070 clients. Raise our own soft limit and
    // give the server a known one, whatever the caller's `ulimit -n` is.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if hard < 2 * NEEDED_NOFILE {
        eprintln!("skipped: hard RLIMIT_NOFILE {hard} < {}", 2 * NEEDED_NOFILE);
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, 2 * NEEDED_NOFILE, hard).expect("setrlimit");
    let mut server =
        Server::start(&ServerConfig::new(env!("CARGO_BIN_EXE_select")).nofile(NEEDED_NOFILE))
            .expect("start select");
    let pid = server.pid();

    // One served client first: the loop then runs and holds everything it
    // holds at rest (std streams, signalfd, listener, spare) plus that one.
    let mut first = connect(&server);
    assert_echoes(&mut first, "first client");
    // It may also hold descriptors inherited from whoever started it
    // (anything not close-on-exec), at any number.
    let base = open_fds(pid);

    // Accepted in order, each taking the lowest free number: the first
    // `room` get the free numbers below FD_SETSIZE, every later one would
    // need FD_SETSIZE or more.
    let room = (0..FD_SETSIZE).filter(|fd| !base.contains(fd)).count();
    let full: BTreeSet<usize> = (0..FD_SETSIZE)
        .chain(base.iter().copied().filter(|&fd| fd >= FD_SETSIZE))
        .collect();
    let mut clients: Vec<TcpStream> = (0..room + BEYOND).map(|_| connect(&server)).collect();

    // The ones past the limit are closed at once, before we send anything:
    // no descriptor >= FD_SETSIZE stays open, and the table is exactly full.
    wait_for_fds(
        pid,
        "every number below FD_SETSIZE taken, none above",
        |fds| *fds == full,
    );
    for (i, client) in clients[room..].iter_mut().enumerate() {
        assert_closed_by_server(client, &format!("connection {} past the limit", i + 1));
    }
    for (i, client) in clients[..room].iter_mut().enumerate() {
        assert_echoes(client, &format!("connection {i} below the limit"));
    }
    assert_echoes(&mut first, "first client, after the refusals");

    // The limit is on descriptor numbers, not on a count: numbers freed by
    // closed clients serve new ones.
    clients.truncate(room - 10);
    wait_for_fds(pid, "10 descriptors freed", |fds| {
        fds.len() == full.len() - 10
    });
    let mut newcomers: Vec<TcpStream> = (0..10).map(|_| connect(&server)).collect();
    for (i, client) in newcomers.iter_mut().enumerate() {
        assert_echoes(client, &format!("newcomer {i}"));
    }

    assert!(server.is_alive(), "select died past FD_SETSIZE");
    let stopped = server
        .stop(Signal::SIGTERM, Duration::from_secs(2))
        .expect("stop");
    assert_eq!(stopped.status.code(), Some(0), "stderr: {}", stopped.stderr);
    assert_eq!(
        stopped.stderr.matches("FD_SETSIZE").count(),
        1,
        "one warning naming FD_SETSIZE, not one per refused connection; stderr: {}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("FD_SETSIZE (1024)"),
        "the warning gives the value; stderr: {}",
        stopped.stderr
    );
    let summary = stopped
        .summary
        .expect("well-formed summary")
        .expect("a summary line");
    assert_eq!(
        summary.connections,
        (1 + room + 10) as u64,
        "refused connections are not counted as served"
    );
}

/// A connected pair of stream sockets, the first end moved to the lowest
/// free descriptor >= `at` (F_DUPFD: another test may own any given number).
fn socket_pair_at_or_above(at: RawFd) -> (OwnedFd, OwnedFd) {
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
    // SAFETY: F_DUPFD_CLOEXEC takes a minimum descriptor number.
    let high = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at) };
    assert!(
        high >= at,
        "F_DUPFD({at}): {} (ulimit -n too low?)",
        io::Error::last_os_error()
    );
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    (unsafe { OwnedFd::from_raw_fd(high) }, b)
}

#[test]
fn kernel_select_takes_a_bitmap_larger_than_fd_set() {
    const BITS: usize = 64;
    let (high, peer) = socket_pair_at_or_above(1500);
    let fd = high.as_raw_fd() as usize;
    // Our own bitmap, as large as needed: what `fd_set` cannot be.
    let mut bitmap = vec![0u64; fd / BITS + 1];
    bitmap[fd / BITS] |= 1 << (fd % BITS);
    // SAFETY: writing one byte from a live buffer to our own socket.
    assert_eq!(
        unsafe { libc::write(peer.as_raw_fd(), b"x".as_ptr().cast(), 1) },
        1
    );
    let mut timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: the kernel reads and writes (nfds + 7) / 8 bytes of the
    // bitmap, which holds at least nfds bits; null sets are allowed.
    let n = unsafe {
        libc::select(
            fd as i32 + 1,
            bitmap.as_mut_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut timeout,
        )
    };
    assert_eq!(
        n,
        1,
        "select(nfds {}): {}",
        fd + 1,
        io::Error::last_os_error()
    );
    assert_ne!(
        bitmap[fd / BITS] & (1 << (fd % BITS)),
        0,
        "fd {fd} reported readable"
    );
}
