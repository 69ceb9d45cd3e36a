//! What the kernel promises about epoll, asserted with raw syscalls on
//! socketpairs and TCP pairs (as the `polling` crate's tests do), not
//! through the server: the loops in `src/level.rs` and `src/edge.rs` are
//! written against exactly these behaviours.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use harness::account::asleep_in_epoll_wait;

const EPOLLIN: u32 = libc::EPOLLIN as u32;
const EPOLLOUT: u32 = libc::EPOLLOUT as u32;
const EPOLLRDHUP: u32 = libc::EPOLLRDHUP as u32;
const EPOLLET: u32 = libc::EPOLLET as u32;
const EPOLLEXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

fn epoll() -> OwnedFd {
    // SAFETY: no pointer arguments.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        fd >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn add(ep: &OwnedFd, fd: RawFd, token: u64, events: u32) {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a live epoll_event; the kernel copies it.
    let rc = unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    assert_eq!(
        rc,
        0,
        "epoll_ctl(ADD, fd {fd}): {}",
        std::io::Error::last_os_error()
    );
}

/// `(token, events)` of what one `epoll_wait` returned.
fn wait(ep: &OwnedFd, timeout_ms: i32) -> Vec<(u64, u32)> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    // SAFETY: `events` is writable for 16 entries.
    let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 16, timeout_ms) };
    assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
    events[..n as usize]
        .iter()
        .map(|ev| (ev.u64, ev.events))
        .collect()
}

/// A connected AF_UNIX stream pair, both ends non-blocking.
fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: two new descriptors nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write(fd: &OwnedFd, bytes: &[u8]) {
    // SAFETY: `bytes` is valid for reads of its length.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize, "write");
}

/// One `recv` into a buffer of `len`; -1 with errno EAGAIN becomes `None`.
fn recv(fd: RawFd, len: usize) -> Option<usize> {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is valid for writes of `len` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "recv: {err}");
        return None;
    }
    Some(n as usize)
}

#[test]
fn level_mode_reports_unread_data_again() {
    let (a, b) = socketpair();
    let ep = epoll();
    add(&ep, a.as_raw_fd(), 7, EPOLLIN);
    assert!(wait(&ep, 0).is_empty(), "nothing sent yet");
    write(&b, b"ping");
    for _ in 0..3 {
        assert_eq!(
            wait(&ep, 1000),
            vec![(7, EPOLLIN)],
            "unread data is reported on every wait"
        );
    }
    assert_eq!(recv(a.as_raw_fd(), 2), Some(2));
    assert_eq!(wait(&ep, 0), vec![(7, EPOLLIN)], "still 2 bytes unread");
    assert_eq!(recv(a.as_raw_fd(), 64), Some(2));
    assert!(wait(&ep, 0).is_empty(), "drained: no longer reported");
}

#[test]
fn edge_mode_reports_once_until_new_data() {
    let (a, b) = socketpair();
    let ep = epoll();
    add(&ep, a.as_raw_fd(), 7, EPOLLIN | EPOLLET);
    write(&b, b"ping");
    assert_eq!(wait(&ep, 1000), vec![(7, EPOLLIN)]);
    assert!(wait(&ep, 0).is_empty(), "same data, no new edge");
    // A partial read is no change either: what is left is never reported
    // again. Hence the rule: read until EAGAIN (or a short read).
    assert_eq!(recv(a.as_raw_fd(), 1), Some(1));
    assert!(wait(&ep, 0).is_empty(), "3 bytes unread, yet not reported");
    write(&b, b"pong");
    assert_eq!(wait(&ep, 1000), vec![(7, EPOLLIN)], "new data is an edge");
    assert!(wait(&ep, 0).is_empty());
    assert_eq!(recv(a.as_raw_fd(), 64), Some(7), "both writes, in one read");
    assert_eq!(recv(a.as_raw_fd(), 64), None, "EAGAIN");
}

#[test]
fn level_mode_reports_epollout_on_every_wait_while_there_is_buffer_space() {
    // Why the level loop asks for EPOLLOUT only while a reply is pending:
    // an idle socket with buffer space is always writable.
    let (a, _b) = socketpair();
    let ep = epoll();
    add(&ep, a.as_raw_fd(), 7, EPOLLIN | EPOLLOUT);
    for _ in 0..3 {
        assert_eq!(wait(&ep, 0), vec![(7, EPOLLOUT)]);
    }
}

#[test]
fn edge_mode_reports_epollout_again_once_a_full_buffer_drains() {
    // What edge mode's writes rely on: after a write that stopped at EAGAIN,
    // the kernel reports EPOLLOUT once the peer has read.
    let (a, b) = socketpair();
    let ep = epoll();
    add(&ep, a.as_raw_fd(), 7, EPOLLOUT | EPOLLET);
    assert_eq!(wait(&ep, 0), vec![(7, EPOLLOUT)], "writable at first");
    assert!(wait(&ep, 0).is_empty(), "no change, no edge");
    let chunk = [0u8; 4096];
    loop {
        // SAFETY: `chunk` is valid for reads of its length.
        let n = unsafe { libc::write(a.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "write: {err}");
            break;
        }
    }
    assert!(wait(&ep, 0).is_empty(), "full: not writable");
    while recv(b.as_raw_fd(), 1 << 16).is_some() {}
    let events = wait(&ep, 1000);
    assert_eq!(events.len(), 1, "drained by the peer: {events:?}");
    assert_ne!(events[0].1 & EPOLLOUT, 0);
}

#[test]
fn edge_mode_fin_behind_data_takes_one_more_read_and_no_new_edge() {
    // Why the edge loop may stop at a short read only if the event did not
    // carry EPOLLRDHUP: data and FIN already queued give one edge; the
    // short read takes the data, and the EOF needs a read of its own.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    client.write_all(b"last words").expect("write");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let ep = epoll();
    let fd = server.as_raw_fd();
    // Once both have arrived, a level wait on a second epoll says so.
    let probe = epoll();
    add(&probe, fd, 1, EPOLLRDHUP);
    assert_eq!(wait(&probe, 2000).len(), 1, "FIN arrived");
    add(&ep, fd, 7, EPOLLIN | EPOLLRDHUP | EPOLLET);
    assert_eq!(wait(&ep, 1000), vec![(7, EPOLLIN | EPOLLRDHUP)]);
    assert_eq!(recv(fd, 4096), Some(10), "a short read: the data only");
    assert!(wait(&ep, 0).is_empty(), "no new edge for the EOF");
    assert_eq!(recv(fd, 4096), Some(0), "the EOF, read without an edge");
}

/// N threads, each blocked in `epoll_wait` on its own epoll that watches
/// one shared listener (with `extra` flags); one client connects. Returns
/// how many threads the listener woke.
fn waiters_woken_by_one_connection(waiters: usize, extra: u32) -> usize {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let woken = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(waiters + 1));
    // Ends every wait once counted: an eventfd in every epoll, not exclusive.
    // SAFETY: no pointer arguments.
    let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(stop >= 0, "eventfd");
    // SAFETY: a new descriptor nothing else owns.
    let stop = unsafe { OwnedFd::from_raw_fd(stop) };
    let (tids_tx, tids_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..waiters)
        .map(|_| {
            let (woken, ready, tids_tx) = (woken.clone(), ready.clone(), tids_tx.clone());
            let ep = epoll();
            add(&ep, listener.as_raw_fd(), 1, EPOLLIN | extra);
            add(&ep, stop.as_raw_fd(), 2, EPOLLIN);
            thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tids_tx.send(unsafe { libc::gettid() }).expect("send tid");
                ready.wait();
                let events = wait(&ep, 10_000);
                if events.iter().any(|&(token, _)| token == 1) {
                    woken.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let tids: Vec<i32> = (0..waiters).map(|_| tids_rx.recv().expect("tid")).collect();
    ready.wait();
    // Connect only once every thread sleeps in epoll_wait: a thread that
    // arrives late finds the event queued and counts as woken.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tids
        .iter()
        .all(|&tid| asleep_in_epoll_wait(std::process::id() as i32, tid))
    {
        assert!(
            Instant::now() < deadline,
            "threads never blocked in epoll_wait"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let _client = TcpStream::connect(addr).expect("connect");
    // The connection is never accepted: the listener stays readable, and a
    // woken thread would see it on any wait. Give the wake-ups time.
    thread::sleep(Duration::from_millis(300));
    let count = woken.load(Ordering::SeqCst);
    write(&stop, &1u64.to_ne_bytes());
    for t in threads {
        t.join().expect("waiter thread");
    }
    count
}

#[test]
fn epollexclusive_wakes_one_waiter_not_all() {
    const WAITERS: usize = 4;
    let herd = waiters_woken_by_one_connection(WAITERS, 0);
    assert_eq!(herd, WAITERS, "without EPOLLEXCLUSIVE, every waiter wakes");
    let exclusive = waiters_woken_by_one_connection(WAITERS, EPOLLEXCLUSIVE);
    // The kernel promises "one or more", not exactly one.
    assert!(
        (1..WAITERS).contains(&exclusive),
        "with EPOLLEXCLUSIVE {exclusive} of {WAITERS} woke"
    );
    eprintln!("one connection woke {herd} of {WAITERS} waiters, {exclusive} with EPOLLEXCLUSIVE");
}

#[test]
fn epollexclusive_is_refused_by_epoll_ctl_mod() {
    // EPOLLEXCLUSIVE can only be given at ADD: the shared listener's
    // registration is final (epoll_ctl(2): EINVAL).
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ep = epoll();
    add(&ep, listener.as_raw_fd(), 1, EPOLLIN | EPOLLEXCLUSIVE);
    let mut ev = libc::epoll_event {
        events: EPOLLIN | EPOLLEXCLUSIVE,
        u64: 1,
    };
    // SAFETY: `ev` is a live epoll_event.
    let rc = unsafe {
        libc::epoll_ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_MOD,
            listener.as_raw_fd(),
            &mut ev,
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL)
    );
}

#[test]
fn closing_the_only_descriptor_removes_it_from_the_epoll_set() {
    // Why `close_conn` needs no EPOLL_CTL_DEL: the registration belongs to
    // the open file, and goes when its last descriptor is closed.
    let (a, b) = socketpair();
    let ep = epoll();
    add(&ep, a.as_raw_fd(), 7, EPOLLIN);
    write(&b, b"x");
    assert_eq!(wait(&ep, 0).len(), 1);
    drop(a);
    assert!(wait(&ep, 0).is_empty(), "closed: gone from the set");
}
