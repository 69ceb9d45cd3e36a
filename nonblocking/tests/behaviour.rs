//! What the two modes cost while idle, and that both serve.
//!
//! `spin` never sleeps, so with no client at all it keeps a core busy;
//! `sleep` naps after every empty sweep and uses next to nothing. CPU is
//! read from `/proc/PID/stat` (utime + stime) over a window.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::server::{clock_ticks, Server, ServerConfig};
use nix::sys::signal::Signal;

fn start(mode: &str) -> Server {
    Server::start(&ServerConfig::new(env!("CARGO_BIN_EXE_nonblocking")).mode(Some(mode.into())))
        .unwrap_or_else(|e| panic!("start nonblocking --mode {mode}: {e}"))
}

/// utime + stime of `pid`, in seconds (fields 14 and 15 of proc(5)).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks() as f64
}

/// Nanoseconds `pid` spent waiting in a run queue for a CPU (the second
/// field of `/proc/PID/schedstat`): time the machine's other load took.
fn runqueue_wait_seconds(pid: i32) -> f64 {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    text.split_whitespace()
        .nth(1)
        .and_then(|ns| ns.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// CPU used over `window` with no client, as a fraction of one core, and
/// the time it spent waiting for a CPU meanwhile.
fn idle_cpu_share(server: &Server, window: Duration) -> (f64, f64, f64) {
    let pid = server.pid();
    // Let the start-up pass.
    std::thread::sleep(Duration::from_millis(200));
    let (cpu0, wait0, t0) = (cpu_seconds(pid), runqueue_wait_seconds(pid), Instant::now());
    std::thread::sleep(window);
    let (cpu1, wait1, wall) = (cpu_seconds(pid), runqueue_wait_seconds(pid), t0.elapsed());
    (cpu1 - cpu0, wait1 - wait0, wall.as_secs_f64())
}

fn assert_echoes(server: &Server) {
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    stream.write_all(b"busy-poll me\x00\xff").expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read until EOF");
    assert_eq!(reply, b"BUSY-POLL ME\x00\xff");
}

fn assert_stops(mut server: Server, model: &str) {
    let stopped = server
        .stop(Signal::SIGTERM, Duration::from_secs(2))
        .expect("stop");
    assert_eq!(stopped.status.code(), Some(0), "stderr: {}", stopped.stderr);
    let summary = stopped.summary.expect("well-formed").expect("summary line");
    assert_eq!(summary.model, model);
    assert_eq!(summary.connections, 1);
    assert_eq!(summary.bytes, 14);
}

#[test]
fn spin_burns_a_core_while_idle() {
    let server = start("spin");
    let (cpu, waited, wall) = idle_cpu_share(&server, Duration::from_secs(1));
    // Time spent waiting for a CPU that another process held is not time
    // the spinner chose not to use: it never sleeps.
    let could_run = wall - waited;
    assert!(
        cpu > 0.5 * could_run,
        "spin used {cpu:.3} s of CPU in {wall:.3} s ({waited:.3} s waiting for a CPU): \
         a busy-poll should keep a core busy"
    );
    assert_echoes(&server);
    assert_stops(server, "nonblocking:spin");
}

#[test]
fn sleep_uses_almost_no_cpu_while_idle() {
    let server = start("sleep");
    let (cpu, _, wall) = idle_cpu_share(&server, Duration::from_secs(2));
    // The contract's bound for a model with nothing to do.
    assert!(
        cpu < 0.02 * wall,
        "sleep used {cpu:.3} s of CPU in {wall:.3} s while idle"
    );
    assert_echoes(&server);
    assert_stops(server, "nonblocking:sleep");
}

#[test]
fn sleep_us_is_refused_with_spin() {
    let out = Command::new(env!("CARGO_BIN_EXE_nonblocking"))
        .args(["--mode", "spin", "--sleep-us", "100"])
        .output()
        .expect("run nonblocking");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sleep-us"));
}
