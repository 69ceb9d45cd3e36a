//! What the coroutine model promises beyond the conformance suite, asserted
//! through the kernel's own accounting in /proc: one hub thread serves every
//! connection; a coroutine parked on a silent client, or on a full send
//! buffer, leaves the hub asleep in `epoll_wait` and the others served; a
//! client whose socket never drains cannot keep the hub (checked: with the
//! turn cap `READS_PER_TURN` removed, both flood tests fail); a hub makes far fewer voluntary context switches than a thread per
//! connection; and a coroutine that overflows its stack kills the process
//! with SIGSEGV, as a panic does under `RUST_BACKTRACE=1` on the default
//! 16 KiB stack (a plain panic is caught).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use harness::account::{asleep_in_epoll_wait, threads_named};
use harness::check::client::ping_on;
use harness::server::{find_binary, Server, ServerConfig};

const ANSWER_LIMIT: Duration = Duration::from_secs(1);

fn start(binary: &Path, mode: &str) -> Server {
    let config = ServerConfig::new(binary).mode(Some(mode.to_string()));
    Server::start(&config).unwrap_or_else(|e| panic!("start {mode}: {e}"))
}

fn coroutine(mode: &str) -> Server {
    start(Path::new(env!("CARGO_BIN_EXE_coroutine")), mode)
}

/// The one hub thread of a `--workers 1` coroutine server.
fn hub_thread(pid: i32) -> i32 {
    let hubs = threads_named(pid, "coroutine-hub");
    assert_eq!(
        hubs.len(),
        1,
        "one hub thread: {:?}",
        threads_named(pid, "")
    );
    hubs[0].0
}

/// Voluntary context switches of every thread of `pid` alive now: each is
/// a sleep in the kernel (a blocking call that had to wait).
fn voluntary_switches(pid: i32) -> u64 {
    threads_named(pid, "")
        .iter()
        .filter_map(|&(tid, _)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
            status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

fn pings_are_answered(server: &Server, clients: usize, rounds: usize) {
    let mut streams: Vec<TcpStream> = (0..clients)
        .map(|_| TcpStream::connect(server.addr()).expect("connect"))
        .collect();
    for round in 0..rounds {
        for (i, stream) in streams.iter_mut().enumerate() {
            let payload = format!("ping {round} from client {i}");
            if let Err(e) = ping_on(stream, payload.as_bytes(), Instant::now() + ANSWER_LIMIT) {
                panic!("client {i}, round {round}: {e:?}");
            }
        }
    }
}

fn silent_client_parks_only_its_own_coroutine(mode: &str) {
    let mut server = coroutine(mode);
    let pid = server.pid();
    let mut silent = TcpStream::connect(server.addr()).expect("connect the silent client");
    thread::sleep(Duration::from_millis(200));
    // Its coroutine is parked in `read`; the hub thread sleeps in the one
    // `epoll_wait`, not in that `read`.
    let hub = hub_thread(pid);
    assert!(
        asleep_in_epoll_wait(pid, hub),
        "{mode}: the hub must wait in epoll_wait, for every socket at once"
    );
    pings_are_answered(&server, 5, 20);
    assert_eq!(
        threads_named(pid, "").len(),
        2,
        "{mode}: main and one hub thread served six connections"
    );
    // The silent client's coroutine was only parked, and is served now.
    ping_on(&mut silent, b"at last", Instant::now() + ANSWER_LIMIT)
        .unwrap_or_else(|e| panic!("{mode}: the parked connection: {e:?}"));
    assert!(server.is_alive());
}

#[test]
fn stackful_coroutine_parked_on_a_silent_client_lets_the_others_run() {
    silent_client_parks_only_its_own_coroutine("stackful");
}

#[test]
fn async_task_parked_on_a_silent_client_lets_the_others_run() {
    silent_client_parks_only_its_own_coroutine("async");
}

/// More than every buffer on the way can hold (the server's receive and
/// send buffers autotune to several MiB each), so that `write_all` must
/// park and the client's writes stall while it reads nothing.
const TOTAL: usize = 64 << 20;

fn parked_writer_resumes_when_the_client_reads(mode: &str) {
    let mut server = coroutine(mode);
    let pid = server.pid();
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    let mut writer = stream.try_clone().expect("dup");
    let sent: Vec<u8> = (0..TOTAL).map(|i| b'a' + (i * 7 % 26) as u8).collect();
    let to_send = sent.clone();
    let writing = thread::spawn(move || {
        writer
            .write_all(&to_send)
            .expect("write the request stream");
        writer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    });
    thread::sleep(Duration::from_secs(1));
    assert!(
        !writing.is_finished(),
        "{mode}: the client wrote all {TOTAL} bytes though it read nothing: no back-pressure"
    );
    // The coroutine is parked in `write_all` on the full socket: the hub
    // sleeps and answers others.
    assert!(
        asleep_in_epoll_wait(pid, hub_thread(pid)),
        "{mode}: the hub must sleep while the coroutine is parked on a full send buffer"
    );
    pings_are_answered(&server, 2, 5);

    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    let mut got = Vec::with_capacity(TOTAL);
    // On an error (the read timeout), `got` keeps what arrived before it.
    if let Err(e) = stream.read_to_end(&mut got) {
        panic!(
            "{mode}: stalled after {} of {TOTAL} bytes ({e}): the parked coroutine never resumed",
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
}

#[test]
fn stackful_coroutine_parked_on_a_full_send_buffer_resumes_when_the_client_reads() {
    parked_writer_resumes_when_the_client_reads("stackful");
}

#[test]
fn async_task_parked_on_a_full_send_buffer_resumes_when_the_client_reads() {
    parked_writer_resumes_when_the_client_reads("async");
}

/// A client that sends and reads as fast as it can: its socket never runs
/// dry, so its handler's `read` never says `EAGAIN` and never parks.
fn flood_does_not_starve_the_others(mode: &str) {
    let mut server = coroutine(mode);
    let stream = TcpStream::connect(server.addr()).expect("connect the flood");
    let mut writer = stream.try_clone().expect("dup");
    let mut reader = stream;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        thread::spawn(move || {
            let chunk = vec![b'f'; 64 << 10];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(Shutdown::Write);
        })
    };
    let reading = thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0usize;
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            total += n;
        }
        total
    });
    thread::sleep(Duration::from_millis(300));
    pings_are_answered(&server, 3, 10);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.join().expect("flood writer");
    let echoed = reading.join().expect("flood reader");
    assert!(echoed > 0, "{mode}: the flood itself was served");
    assert!(server.is_alive());
}

#[test]
fn stackful_flood_that_never_drains_does_not_starve_the_others() {
    flood_does_not_starve_the_others("stackful");
}

#[test]
fn async_flood_that_never_drains_does_not_starve_the_others() {
    flood_does_not_starve_the_others("async");
}

const CLIENTS: usize = 50;
const ROUNDS: usize = 40;

/// Voluntary context switches per request of `server` under `CLIENTS`
/// connections that each send one request per round, all requests of a
/// round before reading any reply.
fn switches_per_request(mut server: Server) -> f64 {
    let mut streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect(server.addr()).expect("connect"))
        .collect();
    let round = |streams: &mut [TcpStream]| {
        for stream in streams.iter_mut() {
            stream.write_all(b"ping").expect("write");
        }
        for stream in streams.iter_mut() {
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).expect("read the reply");
            assert_eq!(&reply, b"PING");
        }
    };
    // Every connection's thread or coroutine exists and has served once.
    round(&mut streams);
    let pid = server.pid();
    let before = voluntary_switches(pid);
    for _ in 0..ROUNDS {
        round(&mut streams);
    }
    let after = voluntary_switches(pid);
    assert!(server.is_alive());
    (after - before) as f64 / (CLIENTS * ROUNDS) as f64
}

#[test]
fn one_hub_switches_far_less_often_than_a_thread_per_connection() {
    let blocking = find_binary("blocking").expect("the blocking binary");
    let threads = switches_per_request(start(&blocking, "thread"));
    let hub = switches_per_request(coroutine("stackful"));
    eprintln!("voluntary context switches per request: blocking:thread {threads:.2}, coroutine:stackful {hub:.2}");
    // A connection's thread has sent its reply before the client can send
    // the next request, so it sleeps in `read` once per request (a few
    // escape when preempted between `send` and `read`).
    assert!(
        threads >= 0.8,
        "blocking:thread: {threads:.2} switches per request"
    );
    // The hub sleeps only when no socket at all is ready: a round's
    // requests mostly wake it once.
    assert!(
        hub * 4.0 <= threads,
        "coroutine:stackful {hub:.2} against blocking:thread {threads:.2} switches per request"
    );
}

/// Set in a child copy of this test binary: what it runs on a coroutine.
const CHILD: &str = "COROUTINE_TEST_CHILD";
const CHILD_TEST: &str = "child_runs_on_the_default_coroutine_stack";

/// The model's default stack (`--stack-kib 16`).
const DEFAULT_STACK: usize = 16 << 10;

/// Deep enough for any small stack: 1 KiB of frame per level.
#[inline(never)]
fn recurse(depth: usize) -> u8 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == 0 {
        return frame[0];
    }
    frame[depth % 1024].wrapping_add(recurse(depth - 1))
}

/// Does nothing unless started by [`in_child`]; then runs its job on a
/// coroutine with the default stack, resumed under `catch_unwind` as the hub
/// does.
#[test]
fn child_runs_on_the_default_coroutine_stack() {
    let Ok(job) = std::env::var(CHILD) else {
        return;
    };
    let stack = corosensei::stack::DefaultStack::new(DEFAULT_STACK).expect("mmap a stack");
    let mut co =
        corosensei::Coroutine::with_stack(stack, move |_: &corosensei::Yielder<(), ()>, ()| {
            match job.as_str() {
                "overflow" => {
                    recurse(64);
                }
                _ => panic!("deliberate panic in a handler"),
            }
        });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| co.resume(())));
    assert!(caught.is_err(), "the panic must reach the hub as an Err");
}

/// Runs `job` in a child copy of this test binary; returns how it ended.
fn in_child(job: &str, backtrace: bool) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, job);
    if backtrace {
        cmd.env("RUST_BACKTRACE", "1");
    } else {
        cmd.env_remove("RUST_BACKTRACE");
    }
    cmd.output().expect("run the child")
}

#[test]
fn a_coroutine_overflowing_its_stack_kills_the_process_with_sigsegv() {
    let out = in_child("overflow", false);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "the overflow must end the whole process with SIGSEGV: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_panic_on_the_default_stack_is_caught_unless_rust_backtrace_asks_for_a_backtrace() {
    let plain = in_child("panic", false);
    assert!(
        plain.status.success(),
        "without RUST_BACKTRACE the panic report fits in 16 KiB and the hub catches it: {:?}\n{}",
        plain.status,
        String::from_utf8_lossy(&plain.stderr)
    );
    // The panic hook symbolises the backtrace on the coroutine's own stack.
    let traced = in_child("panic", true);
    assert_eq!(
        traced.status.signal(),
        Some(libc::SIGSEGV),
        "with RUST_BACKTRACE=1 the backtrace overflows 16 KiB: {:?}",
        traced.status
    );
}
