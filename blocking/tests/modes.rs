//! Each mode serves the echo protocol; the concurrent ones keep answering
//! while a client stays silent; the iterative one, by design, does not.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn every_mode_echoes_all_256_byte_values_and_closes_after_half_close() {
    for mode in MODES {
        let mut server = Server::start(&["--mode", mode]);
        let request: Vec<u8> = (0..=255u8).cycle().take(256 * 4).collect();
        let reply = echo_all(server.addr, request.clone());
        assert_eq!(reply, expected(&request), "mode {mode}");
        let stderr = server.stop();
        assert_eq!(
            summary_counts(&stderr, &format!("blocking:{mode}")),
            (1, request.len() as u64),
            "mode {mode}"
        );
    }
}

#[test]
fn every_mode_echoes_two_mebibytes_read_while_written() {
    for mode in MODES {
        let mut server = Server::start(&["--mode", mode]);
        // A deterministic, non-repeating-looking stream over all byte values.
        let mut x: u32 = 0x2545_f491;
        let request: Vec<u8> = (0..2 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let reply = echo_all(server.addr, request.clone());
        let want = expected(&request);
        let first_bad = reply.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first_bad, None, "mode {mode}: first mismatch");
        assert_eq!(reply.len(), want.len(), "mode {mode}");
        server.stop();
    }
}

#[test]
fn concurrent_modes_answer_within_a_second_while_one_client_is_silent() {
    for mode in ["thread", "pool", "fork", "prefork"] {
        let mut server = Server::start(&["--mode", mode, "--workers", "4"]);
        let mut silent = connect(server.addr);
        // The silent client holds a worker once the server has served it once.
        ping(&mut silent, b"x");
        let mut other = connect(server.addr);
        for _ in 0..5 {
            let took = ping(&mut other, b"still there?");
            assert!(took < ANSWER_LIMIT, "mode {mode}: answer took {took:?}");
        }
        drop(silent);
        drop(other);
        server.stop();
    }
}

#[test]
fn pool_of_n_serves_n_clients_at_once_and_queues_the_next() {
    for mode in ["pool", "prefork"] {
        let mut server = Server::start(&["--mode", mode, "--workers", "2"]);
        let mut first = connect(server.addr);
        let mut second = connect(server.addr);
        ping(&mut first, b"a");
        ping(&mut second, b"b");
        // Both workers are busy: the third waits in the listen backlog...
        let mut third = connect(server.addr);
        third.write_all(b"c").expect("write");
        third
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let err = std::io::Read::read(&mut third, &mut byte).expect_err("no worker is free");
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "mode {mode}");
        // ...until one is free.
        drop(first);
        third.set_read_timeout(Some(ANSWER_LIMIT)).expect("timeout");
        std::io::Read::read_exact(&mut third, &mut byte).expect("answered once a worker is free");
        assert_eq!(&byte, b"C", "mode {mode}");
        drop((second, third));
        server.stop();
    }
}

#[test]
fn iterative_serves_the_next_client_only_after_the_first_leaves() {
    let mut server = Server::start(&["--mode", "iterative"]);
    let mut first = connect(server.addr);
    ping(&mut first, b"first");
    let mut second = connect(server.addr);
    second.write_all(b"second").expect("write");
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut reply = [0u8; 6];
    assert!(std::io::Read::read(&mut second, &mut reply).is_err());
    drop(first);
    second
        .set_read_timeout(Some(ANSWER_LIMIT))
        .expect("timeout");
    std::io::Read::read_exact(&mut second, &mut reply).expect("answered after the first left");
    assert_eq!(&reply, b"SECOND");
    drop(second);
    server.stop();
}

#[test]
fn a_reset_client_does_not_disturb_the_others() {
    for mode in ["thread", "pool", "fork", "prefork"] {
        let mut server = Server::start(&["--mode", mode]);
        let mut steady = connect(server.addr);
        ping(&mut steady, b"before");
        for _ in 0..20 {
            let mut rude = connect(server.addr);
            // Unread replies pending, then close with RST (SO_LINGER 0).
            rude.write_all(&[b'r'; 100_000]).expect("write");
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: `linger` is a valid struct of the size passed.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&rude),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
        }
        let took = ping(&mut steady, b"after");
        assert!(took < ANSWER_LIMIT, "mode {mode}: {took:?}");
        drop(steady);
        server.stop();
    }
}

#[test]
fn unknown_mode_and_bad_flags_are_usage_errors() {
    for args in [&["--mode", "epoll"][..], &["--workers", "0"], &["--nope"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_blocking"))
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}
