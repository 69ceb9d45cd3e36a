//! The thundering herd, on the real server: two idle loops, one connection
//! at a time. With `--share shared` the connection wakes both loops (one
//! accepts, the other wakes for nothing); `--share exclusive` and `--share
//! reuseport` wake one. Asserted on counts from the harness' wake-up trace
//! (`harness::account::WakeTrace`: every `accept4`/`epoll_wait` return and
//! every switch to sleep of the server's threads, replayed in order), never
//! on timings.

use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use harness::account::{asleep_in_epoll_wait, threads_named, WakeCounts, WakeTrace};
use harness::server::{Server, ServerConfig};
use nix::sys::signal::Signal;

/// Connections made, one at a time, each once both loops sleep.
const CONNECTIONS: u64 = 20;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epoll"))
}

fn wait_until_idle(pid: i32, loops: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !loops.iter().all(|&tid| asleep_in_epoll_wait(pid, tid)) {
        assert!(
            Instant::now() < deadline,
            "loops never all slept in epoll_wait"
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// `CONNECTIONS` connections to a 2-loop `epoll:level --share SHARE`, each
/// made once both loops sleep and closed at once; what the trace saw.
/// `None` (with the reason printed) where perf tracepoints are unavailable.
fn wakes_with(share: &str) -> Option<WakeCounts> {
    let config = ServerConfig::new(bin()).mode(Some("level".into())).args([
        "--workers",
        "2",
        "--share",
        share,
    ]);
    let mut server = Server::start(&config).expect("start epoll");
    let pid = server.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let loops = loop {
        let loops: Vec<i32> = threads_named(pid, "epoll-loop")
            .into_iter()
            .map(|(tid, _)| tid)
            .collect();
        if loops.len() == 2 {
            break loops;
        }
        assert!(Instant::now() < deadline, "2 loop threads never appeared");
        thread::sleep(Duration::from_millis(2));
    };
    wait_until_idle(pid, &loops);
    let mut trace = match WakeTrace::attach(pid) {
        Ok(trace) => trace,
        Err(reason) => {
            eprintln!("SKIP: wake-up trace unavailable: {reason}");
            server.stop(Signal::SIGTERM, Duration::from_secs(2)).ok();
            return None;
        }
    };
    for _ in 0..CONNECTIONS {
        let conn = TcpStream::connect(server.addr()).expect("connect");
        drop(conn);
        // Both loops back asleep: the accept, the EOF and the close are done.
        thread::sleep(Duration::from_millis(5));
        wait_until_idle(pid, &loops);
        trace.drain();
    }
    let counts = trace.finish().expect("finish the trace");
    let stopped = server
        .stop(Signal::SIGTERM, Duration::from_secs(2))
        .expect("stop");
    assert!(!stopped.timed_out, "server ignored SIGTERM");
    eprintln!("--share {share}: {counts:?}");
    assert_eq!(
        counts.accepted, CONNECTIONS,
        "every connection accepted once"
    );
    assert_eq!(counts.lost_records, 0, "the trace lost records");
    Some(counts)
}

fn wasted(c: &WakeCounts) -> u64 {
    c.wasted_wakes + c.kernel_wasted_wakes
}

#[test]
fn shared_listener_wakes_both_idle_loops_and_each_remedy_wakes_one() {
    let Some(shared) = wakes_with("shared") else {
        return;
    };
    // Each connection woke the loop that did not get it: it returned with
    // EAGAIN, or re-checked the listener in the kernel and slept again.
    assert!(
        wasted(&shared) >= CONNECTIONS / 2,
        "shared listener: only {} wasted wake-ups for {CONNECTIONS} connections: {shared:?}",
        wasted(&shared)
    );
    for remedy in ["exclusive", "reuseport"] {
        let Some(counts) = wakes_with(remedy) else {
            return;
        };
        assert!(
            wasted(&counts) <= CONNECTIONS / 10,
            "--share {remedy}: {} wasted wake-ups for {CONNECTIONS} connections: {counts:?}",
            wasted(&counts)
        );
    }
}
