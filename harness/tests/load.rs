//! The load generator against a small thread-per-connection echo server
//! living in this file, which can also misbehave on purpose: each error
//! class must be produced by the failure it names, and a correct server
//! must produce none. No timing thresholds: only counts and presence.

use harness::load::{self, LoadReport, LoadSpec};
use harness::measurement::{CloseMode, WorkloadKind};
use harness::run::{measure, MeasureSpec, ServerChoice};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy)]
enum Behave {
    /// The lab's protocol: a-z to A-Z, everything else unchanged.
    Upper,
    /// Echoes unchanged: every lowercase byte is a mismatch.
    Identity,
    /// Sends half of what it read, then closes.
    HalfThenClose,
    /// Resets the connection on the first data.
    ResetOnData,
    /// Reads and never answers.
    Silent,
    /// Answers the first read, waits, closes.
    AnswerOnceThenClose(Duration),
}

struct TestServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn serve(behave: Behave) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || handle(conn, behave));
        }
    });
    TestServer { addr, accepted }
}

fn rst(conn: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` outlives the call and its size is passed.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn handle(mut conn: TcpStream, behave: Behave) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = &mut buf[..n];
        match behave {
            Behave::Upper => data.make_ascii_uppercase(),
            Behave::Identity => {}
            Behave::HalfThenClose => {
                data.make_ascii_uppercase();
                let _ = conn.write_all(&data[..n / 2]);
                return;
            }
            Behave::ResetOnData => {
                rst(&conn);
                return;
            }
            Behave::Silent => continue,
            Behave::AnswerOnceThenClose(after) => {
                data.make_ascii_uppercase();
                if conn.write_all(data).is_ok() {
                    thread::sleep(after);
                    let _ = conn.shutdown(Shutdown::Both);
                }
                return;
            }
        }
        if conn.write_all(data).is_err() {
            return;
        }
    }
}

fn spec(target: SocketAddr, kind: WorkloadKind) -> LoadSpec {
    LoadSpec {
        target,
        kind,
        conns: 4,
        size: 64,
        rate: None,
        idle: 0,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        timeout: Duration::from_secs(5),
        close: CloseMode::Rst,
        cpus: Vec::new(),
        seed: 7,
        allow_remote: false,
        timer_slack_ns: 1,
    }
}

fn run(s: LoadSpec) -> LoadReport {
    load::run(s).expect("load run")
}

#[test]
fn pingpong_against_a_correct_server_verifies_every_byte_and_errs_never() {
    let server = serve(Behave::Upper);
    let r = run(LoadSpec {
        size: 100,
        ..spec(server.addr, WorkloadKind::Pingpong)
    });
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.requests > 0);
    assert!(r.bytes_verified >= r.requests * 100);
    assert_eq!(
        r.bytes_verified % 100,
        0,
        "only whole replies are ever sent"
    );
    let lat = r.latency.expect("latency");
    assert_eq!(lat.samples, r.requests);
    assert!(lat.p50_us <= lat.p99_us && lat.p99_us <= lat.p999_us && lat.p999_us <= lat.max_us);
    assert_eq!(r.client.threads, 1);
    assert!(r.idle.is_none() && r.connect.is_none());
}

#[test]
fn large_requests_are_written_and_read_concurrently() {
    // 512 KiB requests: more than the socket buffers hold, so the generator
    // must read replies while still writing (or deadlock against the server).
    let server = serve(Behave::Upper);
    let r = run(LoadSpec {
        conns: 2,
        size: 512 * 1024,
        ..spec(server.addr, WorkloadKind::Pingpong)
    });
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.requests > 0);
}

#[test]
fn a_wrong_transform_is_a_mismatch_with_its_offset() {
    let server = serve(Behave::Identity);
    let r = run(spec(server.addr, WorkloadKind::Pingpong));
    assert!(r.errors.mismatch > 0, "{:?}", r.errors);
    assert_eq!(r.requests, 0);
    // Every request starts with a lowercase letter: offset 0 of the stream.
    let first = r
        .errors
        .first_mismatch
        .clone()
        .expect("first mismatch kept");
    assert!(first.contains("offset 0"), "{first}");
    assert_eq!(
        r.errors.total(),
        r.errors.mismatch,
        "nothing else: {:?}",
        r.errors
    );
}

#[test]
fn eof_before_the_whole_reply_is_short() {
    let server = serve(Behave::HalfThenClose);
    let r = run(spec(server.addr, WorkloadKind::Pingpong));
    assert!(r.errors.short > 0, "{:?}", r.errors);
    assert_eq!(r.requests, 0);
    assert_eq!(r.errors.mismatch, 0, "the half that came was right");
}

#[test]
fn a_reset_connection_is_reset() {
    let server = serve(Behave::ResetOnData);
    let r = run(spec(server.addr, WorkloadKind::Pingpong));
    assert!(r.errors.reset > 0, "{:?}", r.errors);
    assert_eq!(r.requests, 0);
}

#[test]
fn an_unanswered_request_is_one_timeout_per_request() {
    let server = serve(Behave::Silent);
    let r = run(LoadSpec {
        timeout: Duration::from_millis(200),
        duration: Duration::from_millis(500),
        ..spec(server.addr, WorkloadKind::Pingpong)
    });
    // Each connection's one request is late, counted once, still awaited.
    assert_eq!(r.errors.timeout, 4, "{:?}", r.errors);
    assert_eq!(r.errors.total(), 4);
    assert_eq!(r.requests, 0);
    assert!(r.latency.is_none());
}

#[test]
fn nobody_listening_is_refused() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let r = run(spec(addr, WorkloadKind::Pingpong));
    assert!(r.errors.refused >= 4, "{:?}", r.errors);
    assert_eq!(r.errors.total(), r.errors.refused);
    assert_eq!(r.requests, 0);
}

#[test]
fn connect_workload_opens_one_connection_per_request() {
    for close in [CloseMode::Rst, CloseMode::Fin] {
        let server = serve(Behave::Upper);
        let r = run(LoadSpec {
            close,
            ..spec(server.addr, WorkloadKind::Connect)
        });
        assert_eq!(r.errors.total(), 0, "{close:?}: {:?}", r.errors);
        assert!(r.requests > 0);
        // Connections made in warm-up and window, one each: at least as
        // many accepted as counted.
        assert!(server.accepted.load(Ordering::SeqCst) as u64 >= r.requests);
        let c = r.connect.expect("connect outcome");
        assert!(c.source_addresses >= 1);
    }
}

#[test]
fn idle_connections_are_served_once_and_held() {
    let server = serve(Behave::Upper);
    let r = run(LoadSpec {
        conns: 2,
        idle: 50,
        ..spec(server.addr, WorkloadKind::Idle)
    });
    let i = r.idle.expect("idle outcome");
    assert_eq!((i.requested, i.served, i.unserved), (50, 50, 0));
    assert_eq!(i.dropped(), 0);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.requests > 0, "the active ones ping-pong");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 52);
}

#[test]
fn idle_connections_the_server_closes_are_reported_dropped() {
    let server = serve(Behave::AnswerOnceThenClose(Duration::from_millis(50)));
    let r = run(LoadSpec {
        conns: 0,
        idle: 20,
        ..spec(server.addr, WorkloadKind::Idle)
    });
    let i = r.idle.expect("idle outcome");
    assert_eq!(
        (i.served, i.dropped_eof, i.dropped_rst),
        (20, 20, 0),
        "{i:?}"
    );
    assert_eq!(
        r.errors.total(),
        0,
        "a drop is reported as a drop: {:?}",
        r.errors
    );
}

#[test]
fn open_loop_never_sends_ahead_of_its_schedule() {
    let server = serve(Behave::Upper);
    let s = LoadSpec {
        rate: Some(400.0),
        conns: 4,
        ..spec(server.addr, WorkloadKind::Pingpong)
    };
    let scheduled = 400.0 * (s.warmup + s.duration).as_secs_f64();
    let r = run(s);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.requests > 0);
    // Replies verified over the whole run can't exceed what was scheduled
    // before its end (plus one in flight per connection).
    let sent = r.bytes_verified / 64;
    assert!(
        sent as f64 <= scheduled + 4.0,
        "{sent} requests for {scheduled} scheduled"
    );
}

#[test]
fn a_remote_target_is_refused_before_any_connection() {
    let err = load::run(spec(
        "192.0.2.1:9".parse().expect("addr"),
        WorkloadKind::Pingpong,
    ))
    .expect_err("must refuse");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn measure_of_a_target_fills_the_client_fields_and_marks_the_server_ones_na() {
    let server = serve(Behave::Upper);
    let mut spec = MeasureSpec::quick(ServerChoice::Target(server.addr), WorkloadKind::Pingpong);
    spec.duration = Duration::from_millis(300);
    let m = measure(&spec).expect("measure");
    let v = serde_json::to_value(&m).expect("json");
    assert_eq!(v["model"], "target");
    assert_eq!(v["rate_unit"], "requests/s");
    assert_eq!(v["workload"]["kind"], "pingpong");
    assert!(v["requests"].as_u64().expect("requests") > 0);
    assert!(v["rate"].as_f64().expect("rate") > 0.0);
    for p in ["p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(v["latency"][p].as_f64().expect(p) > 0.0, "{p}");
    }
    assert_eq!(v["errors"]["refused"], 0);
    assert!(v["client"]["cpu_per_request_us"].is_number());
    assert!(v["server"]["cpu_per_request_us"].is_null());
    assert!(v["server"]["na_reason"]
        .as_str()
        .expect("reason")
        .contains("--target"));
    assert!(v["started_at"].as_str().expect("stamp").ends_with('Z'));
    // The table prints every line, with n/a where the server is unknown.
    let table = harness::report::run_table(&m);
    assert!(
        table.contains("server cpu per request       n/a"),
        "{table}"
    );
}

#[test]
fn load_threads_run_with_the_timer_slack_asked_for() {
    let server = serve(Behave::Upper);
    for slack in [1, 50_000] {
        let r = run(LoadSpec {
            timer_slack_ns: slack,
            ..spec(server.addr, WorkloadKind::Pingpong)
        });
        assert_eq!(r.timer_slack_ns, slack);
        assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    }
}
