//! The skewed connect load on the real server (`harness run --workload
//! connect --conns 1 --busy 1 --idle M -- --workers 2 --share reuseport`):
//! the harness finds the loop serving the busy connection and attributes
//! the new connections to the loops that accepted them
//! (`harness::account::landed`). Asserted on counts, never on timings.

use harness::measurement::WorkloadKind;
use harness::run::{measure, MeasureSpec, ServerChoice};

#[test]
fn skewed_load_marks_the_busy_loop_and_attributes_new_connections() {
    let server = ServerChoice::binary(env!("CARGO_BIN_EXE_epoll"), Some("level"));
    let mut spec = MeasureSpec::quick(server, WorkloadKind::Connect);
    spec.conns = 1;
    spec.busy = 1;
    spec.idle = 20;
    spec.server_args = ["--workers", "2", "--share", "reuseport"]
        .map(String::from)
        .to_vec();
    let m = measure(&spec).expect("measurement runs");
    let Some(landed) = &m.server.landed else {
        let reason = m
            .server
            .wakeups
            .as_ref()
            .and_then(|w| w.replay_na_reason.clone());
        eprintln!("SKIP: no wake-up trace: {reason:?}");
        return;
    };
    eprintln!("{landed:?}");
    assert_eq!(landed.busy_na_reason, None, "{landed:?}");
    assert_eq!(landed.loops.len(), 2, "two loops: {landed:?}");
    // The one busy connection is held by exactly one loop.
    assert_eq!(
        landed.loops.iter().filter(|l| l.busy).count(),
        1,
        "{landed:?}"
    );
    // One connection in flight: spans do not overlap, so every one whose
    // accept the trace saw is attributed (those before it attached are not:
    // a loaded machine may attach late in this short window, hence half).
    assert!(landed.connections > 0, "{landed:?}");
    assert!(
        landed.attributed * 2 >= landed.connections,
        "{} of {} attributed",
        landed.attributed,
        landed.connections
    );
    let per_loop: u64 = landed.loops.iter().map(|l| l.connections).sum();
    assert_eq!(per_loop, landed.attributed, "{landed:?}");
}
