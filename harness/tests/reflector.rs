//! The reflector keeps the lab's contract, and a server's whole-run CPU
//! comes back to the harness when it reaps it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::account::cpu_agreement_reaped;
use harness::server::{Server, ServerConfig};
use nix::sys::signal::Signal;

#[test]
fn reflector_echoes_uppercase_and_its_reaped_cpu_brackets_its_summary() {
    let config = ServerConfig::new(env!("CARGO_BIN_EXE_reflector"));
    let mut server = Server::start(&config).expect("start reflector");
    let mut conn = TcpStream::connect(server.addr()).expect("connect");
    conn.write_all(b"hello, World \xff").expect("send");
    let mut reply = [0u8; 14];
    conn.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"HELLO, WORLD \xff");
    // Half-close: what is owed is sent, then EOF.
    conn.write_all(b"bye").expect("send");
    conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).expect("read to EOF");
    assert_eq!(rest, b"BYE");
    // Busy polling: a quarter second of wall time is that much CPU on an
    // idle machine, and some of it on a busy one.
    std::thread::sleep(Duration::from_millis(250));
    let stopped = server
        .stop(Signal::SIGTERM, Duration::from_secs(2))
        .expect("stop");
    assert!(stopped.status.success(), "{:?}", stopped.status);
    let summary = stopped.summary.expect("parsable").expect("a summary line");
    assert_eq!(summary.connections, 1);
    assert_eq!(summary.bytes, 17);
    let reaped = stopped.reaped_cpu_s.expect("reaped here");
    assert!(reaped >= 0.01, "busy poll used only {reaped} s");
    let summary_cpu = summary.user_s + summary.sys_s;
    // The summary is written before the exit: never more than was reaped
    // (beyond its 1 ms rounding).
    assert!(summary_cpu <= reaped + 0.002, "{summary_cpu} > {reaped}");
    assert!(cpu_agreement_reaped(summary_cpu, Some(reaped), summary.user_s, summary.sys_s).agrees);
}
