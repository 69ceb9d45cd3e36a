//! A process per connection is counted: with two thousand forked children
//! held open, the harness' reading of the server's CPU and context switches
//! in the window reaches every child, and agrees with the server's own exit
//! summary. (A tree read that began too late once left most children
//! unread: the server seemed to cost next to nothing per request.)

use std::time::Duration;

use harness::measurement::WorkloadKind;
use harness::run::{measure, MeasureSpec, ServerChoice};

#[test]
fn fork_servers_children_are_counted_in_the_window_and_the_cross_check_agrees() {
    let mut spec = MeasureSpec::quick(
        ServerChoice::binary(env!("CARGO_BIN_EXE_blocking"), Some("fork")),
        WorkloadKind::Idle,
    );
    spec.idle = 2_000;
    spec.conns = 20;
    spec.rate = Some(2_000.0);
    spec.count_syscalls = false;
    spec.warmup = Duration::from_millis(500);
    // Long enough that reading 2 000 processes twice fits in the window
    // even on a loaded machine (a read longer than half of it is refused).
    spec.duration = Duration::from_secs(4);
    let m = measure(&spec).expect("measure");
    let s = &m.server;
    assert!(m.requests > 1_000, "{} requests", m.requests);
    // Each request is a child's read and write: its CPU and its wake-ups
    // are the children's, so none seen means the children were not read.
    let cpu = s.cpu_per_request_us.expect("server CPU per request");
    assert!(
        cpu > 1.0,
        "{cpu} µs of server CPU per request: children not counted"
    );
    let switches = s
        .ctx_voluntary_per_request
        .expect("voluntary switches per request");
    assert!(switches > 0.1, "{switches} voluntary switches per request");
    let agreement = s.summary_agreement.as_ref().expect("a cross-check");
    assert!(agreement.agrees, "{agreement:?}");
}
