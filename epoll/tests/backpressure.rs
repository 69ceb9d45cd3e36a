//! Back-pressure and its release, in both trigger modes.
//!
//! A client that stops reading makes the server fill its 1 MiB output buffer
//! and stop reading that connection, with the client's next bytes still
//! waiting in the server's receive queue. In edge mode nothing will ever
//! report those bytes again: no new data arrives (the client is blocked
//! writing), so there is no new EPOLLIN edge. When the client reads again
//! and the buffer drains, the server must resume reading on its own. If it
//! does not, this transfer stalls forever; here it fails after a timeout
//! (checked: with the resumption removed, edge mode stalls at 4 MiB).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use harness::server::{Server, ServerConfig};
use nix::sys::socket::{
    connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};

/// More than every buffer on the way can hold (the server's receive and send
/// buffers autotune to several MiB each, plus its 1 MiB output buffer), so
/// the client is still writing when it starts to read: the request stream
/// cannot all arrive, FIN included, during the pause.
const TOTAL: usize = 48 << 20;
/// A tiny receive buffer: the client's side holds almost nothing, so the
/// server's output buffer really fills.
const CLIENT_RCVBUF: usize = 4096;
const STALL: Duration = Duration::from_secs(5);

fn payload() -> Vec<u8> {
    // Mostly lowercase, so a byte echoed without the transform shows.
    (0..TOTAL).map(|i| b'a' + (i * 7 % 26) as u8).collect()
}

/// A blocking TCP connection whose receive buffer is set before `connect`
/// (afterwards the window is already advertised).
fn connect_with_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    setsockopt(&fd, sockopt::RcvBuf, &CLIENT_RCVBUF).expect("setsockopt(SO_RCVBUF)");
    connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).expect("connect");
    TcpStream::from(fd)
}

fn resumes_after_back_pressure(mode: &str) {
    let config = ServerConfig::new(env!("CARGO_BIN_EXE_epoll")).mode(Some(mode.to_string()));
    let mut server = Server::start(&config).expect("start epoll");
    let mut stream = connect_with_small_rcvbuf(server.addr());
    let mut writer = stream.try_clone().expect("dup");
    let sent = payload();
    let to_send = sent.clone();
    let writing = thread::spawn(move || {
        writer
            .write_all(&to_send)
            .expect("write the request stream");
        writer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    });

    // Read nothing for a while: the server's output buffer fills, it stops
    // reading, and the writer blocks with its bytes in the server's queue.
    thread::sleep(Duration::from_secs(1));

    stream.set_read_timeout(Some(STALL)).expect("SO_RCVTIMEO");
    let mut got = Vec::with_capacity(TOTAL);
    let start = Instant::now();
    // On an error (the read timeout), `got` keeps what arrived before it.
    if let Err(e) = stream.read_to_end(&mut got) {
        panic!(
            "{mode}: stalled after {} of {TOTAL} bytes ({e}): the server never resumed reading",
            got.len()
        );
    }
    writing.join().expect("writer thread");
    assert_eq!(got.len(), TOTAL, "{mode}: reply length");
    let expected: Vec<u8> = sent.iter().map(u8::to_ascii_uppercase).collect();
    if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!("{mode}: first wrong byte at offset {at}");
    }
    assert!(server.is_alive());
    eprintln!(
        "{mode}: {TOTAL} bytes through back-pressure in {:?}",
        start.elapsed()
    );
}

#[test]
fn edge_mode_resumes_reading_after_back_pressure() {
    resumes_after_back_pressure("edge");
}

#[test]
fn level_mode_resumes_reading_after_back_pressure() {
    resumes_after_back_pressure("level");
}
