//! Stopping: SIGTERM or SIGINT ends every mode within 2 s, with idle
//! clients connected and with clients that never read, exit status 0, the
//! summary line, and (fork, prefork) no child left behind, zombie or orphan.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Asserts that none of `pids` exists any more (reaped, not reparented).
fn assert_all_gone(pids: &[i32], mode: &str) {
    let left: Vec<Proc> = pids.iter().filter_map(|&p| proc_stat(p)).collect();
    assert!(
        left.is_empty(),
        "mode {mode}: children left behind: {left:?}"
    );
}

#[test]
fn sigterm_and_sigint_with_idle_clients_stop_every_mode_within_two_seconds() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        for mode in MODES {
            let mut server = Server::start(&["--mode", mode]);
            // Four clients (pool's default worker count) served once, then
            // idle: their threads or processes block in read. (iterative:
            // the first one blocks the server in read, the others wait in
            // the backlog.)
            let mut idle: Vec<_> = (0..4).map(|_| connect(server.addr)).collect();
            if mode == "iterative" {
                ping(&mut idle[0], b"hello");
            } else {
                for c in &mut idle {
                    ping(c, b"hello");
                }
            }
            let children: Vec<i32> = server.children().iter().map(|p| p.pid).collect();
            if mode == "fork" {
                assert_eq!(children.len(), 4, "a process per connection");
            }
            if mode == "prefork" {
                assert_eq!(children.len(), 4, "default --workers 4");
            }
            server.signal(sig);
            let (status, took) = server.wait(STOP_LIMIT).unwrap_or_else(|| {
                panic!("mode {mode}: running {STOP_LIMIT:?} after signal {sig}")
            });
            assert!(status.success(), "mode {mode}: {status}");
            let stderr = server.stderr_after_exit();
            let (conns, bytes) = summary_counts(&stderr, &format!("blocking:{mode}"));
            let served = if mode == "iterative" { 1 } else { 4 };
            // prefork's idle children may have accepted a waiting client too.
            assert!(conns >= served, "mode {mode}: {stderr}");
            assert_eq!(bytes, 5 * served, "mode {mode}: {stderr}");
            assert_all_gone(&children, mode);
            eprintln!("{mode}: stopped by signal {sig} in {took:?}");
        }
    }
}

#[test]
fn a_client_that_never_reads_does_not_delay_the_stop() {
    for mode in MODES {
        let mut server = Server::start(&["--mode", mode]);
        let mut hog = connect(server.addr);
        hog.set_nonblocking(true).expect("nonblocking");
        // Fill both directions: the server blocks in send, we in nothing.
        let chunk = vec![b'z'; 64 << 10];
        let start = Instant::now();
        let mut stalled = 0;
        while stalled < 20 && start.elapsed() < Duration::from_secs(10) {
            match hog.write(&chunk) {
                Ok(_) => stalled = 0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    stalled += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("mode {mode}: write: {e}"),
            }
        }
        assert!(
            stalled >= 20,
            "mode {mode}: our writes never blocked, so the server never blocked in send"
        );
        let children: Vec<i32> = server.children().iter().map(|p| p.pid).collect();
        server.stop();
        assert_all_gone(&children, mode);
    }
}

#[test]
fn fork_reaps_each_child_as_its_client_leaves() {
    let mut server = Server::start(&["--mode", "fork"]);
    for _ in 0..20 {
        let mut c = connect(server.addr);
        ping(&mut c, b"bye");
    }
    // Zombies would stay listed (state Z) until reaped.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = server.children();
    while !left.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        left = server.children();
    }
    assert!(left.is_empty(), "children not reaped: {left:?}");
    let stderr = server.stop();
    assert_eq!(summary_counts(&stderr, "blocking:fork"), (20, 60));
}

#[test]
fn prefork_replaces_a_killed_worker_and_keeps_serving() {
    let mut server = Server::start(&["--mode", "prefork", "--workers", "3"]);
    // The listening line comes before the workers are forked.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.children().len() < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let before: Vec<i32> = server.children().iter().map(|p| p.pid).collect();
    assert_eq!(before.len(), 3);
    // SAFETY: kill takes no pointers; the pid is one of the server's children.
    assert_eq!(unsafe { libc::kill(before[0], libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut now = server.children();
    while !(now.len() == 3 && now.iter().all(|p| p.pid != before[0])) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        now = server.children();
    }
    assert_eq!(now.len(), 3, "pool size kept: {now:?}");
    assert!(now.iter().all(|p| p.state != 'Z'), "{now:?}");
    let mut c = connect(server.addr);
    ping(&mut c, b"still serving");
    drop(c);
    let all: Vec<i32> = now.iter().map(|p| p.pid).collect();
    let stderr = server.stop();
    assert!(
        stderr.contains(&format!("worker {} killed by SIGKILL", before[0])),
        "{stderr}"
    );
    assert_all_gone(&all, "prefork");
}

#[test]
fn children_die_with_a_parent_killed_by_sigkill() {
    for mode in ["fork", "prefork"] {
        let mut server = Server::start(&["--mode", mode]);
        let mut idle: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
        for c in &mut idle {
            ping(c, b"x");
        }
        let children: Vec<i32> = server.children().iter().map(|p| p.pid).collect();
        assert!(children.len() >= 3, "mode {mode}: {children:?}");
        server.signal(libc::SIGKILL);
        server.wait(STOP_LIMIT).expect("SIGKILL ends it");
        // PR_SET_PDEATHSIG: each child gets SIGTERM when the parent dies.
        let deadline = Instant::now() + STOP_LIMIT;
        let mut left: Vec<Proc> = children.iter().filter_map(|&p| proc_stat(p)).collect();
        while left.iter().any(|p| p.state != 'Z') && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            left = children.iter().filter_map(|&p| proc_stat(p)).collect();
        }
        // Orphans are reparented and reaped by their new parent; a zombie
        // awaiting that reaper is dead already.
        assert!(
            left.iter().all(|p| p.state == 'Z'),
            "mode {mode}: orphans alive: {left:?}"
        );
        for c in &mut idle {
            assert!(closed_without_answer(c, ANSWER_LIMIT), "mode {mode}");
        }
    }
}
