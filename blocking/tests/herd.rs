//! No thundering herd in blocking `accept`: with `--mode prefork` the
//! workers sleep in `accept4` on one inherited listener, and Linux queues
//! them on the listener's wait queue exclusively (wake-one), so a connection
//! wakes exactly one of them, however many are idle. Asserted on counts from
//! the harness' wake-up trace (`harness::account::WakeTrace`: every
//! `accept4` return and every switch to sleep of the server's processes,
//! replayed per thread), never on timings; `epoll/tests/herd.rs` shows the
//! same counts catching the herd of a plain shared epoll listener.

use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use harness::account::{asleep_in, WakeTrace};
use harness::server::{Server, ServerConfig};
use nix::sys::signal::Signal;

/// Connections made, one at a time, each once every worker sleeps.
const CONNECTIONS: u64 = 20;
/// Idle workers, all asleep in `accept4` when each connection arrives.
const WORKERS: usize = 3;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_blocking"))
}

/// Waits until every worker (a single-threaded process) sleeps in `accept4`.
fn wait_until_idle(workers: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_accept = |pid: i32| asleep_in(pid, pid, &[libc::SYS_accept4, libc::SYS_accept]);
    while !workers.iter().all(|&pid| in_accept(pid)) {
        assert!(
            Instant::now() < deadline,
            "workers never all slept in accept"
        );
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn one_connection_wakes_exactly_one_of_several_idle_prefork_workers() {
    let config = ServerConfig::new(bin())
        .mode(Some("prefork".into()))
        .args(["--workers", &WORKERS.to_string()]);
    let mut server = Server::start(&config).expect("start blocking --mode prefork");
    let parent = server.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let workers: Vec<i32> = server
            .tree_pids()
            .into_iter()
            .filter(|&p| p != parent)
            .collect();
        if workers.len() == WORKERS {
            break workers;
        }
        assert!(
            Instant::now() < deadline,
            "{WORKERS} workers never appeared"
        );
        thread::sleep(Duration::from_millis(2));
    };
    wait_until_idle(&workers);
    let mut trace = match WakeTrace::attach(parent) {
        Ok(trace) => trace,
        Err(reason) => {
            eprintln!("SKIP: wake-up trace unavailable: {reason}");
            server.stop(Signal::SIGTERM, Duration::from_secs(2)).ok();
            return;
        }
    };
    for _ in 0..CONNECTIONS {
        let conn = TcpStream::connect(server.addr()).expect("connect");
        drop(conn);
        // Every worker back in accept: the one that got it read EOF and closed.
        thread::sleep(Duration::from_millis(5));
        wait_until_idle(&workers);
        trace.drain();
    }
    let counts = trace.finish().expect("finish the trace");
    let stopped = server
        .stop(Signal::SIGTERM, Duration::from_secs(2))
        .expect("stop");
    assert!(!stopped.timed_out, "server ignored SIGTERM");
    eprintln!("prefork, {WORKERS} idle workers: {counts:?}");
    assert_eq!(counts.lost_records, 0, "the trace lost records");
    assert_eq!(counts.threads_untraced, 0, "a worker was not traced");
    assert_eq!(
        counts.accepted, CONNECTIONS,
        "every connection accepted once"
    );
    // Each accept4 return is a wake-up of a blocking acceptor: one per
    // connection, none without a connection, none returning EAGAIN.
    assert_eq!(counts.listener_wakes, CONNECTIONS, "{counts:?}");
    assert_eq!(counts.wasted_wakes, 0, "{counts:?}");
    assert_eq!(counts.accept_eagain, 0, "{counts:?}");
    // No worker was woken inside accept4 to find the queue drained and
    // sleep again: the others were never woken (wake-one).
    assert_eq!(counts.kernel_wasted_wakes, 0, "{counts:?}");
    let summary = stopped
        .summary
        .expect("a well-formed summary")
        .expect("a summary line");
    assert_eq!(summary.per_loop.len(), WORKERS, "{summary:?}");
    assert_eq!(summary.per_loop.iter().sum::<u64>(), CONNECTIONS);
}
