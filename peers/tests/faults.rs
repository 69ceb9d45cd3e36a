//! The lab's fault suite (`harness check --faults`) against the peers: the
//! `accept4` errors and EINTR on every read, write and wait call that tokio
//! (`current_thread`) and the polling loop make. And the one fault tokio's
//! multi-thread runtime does not survive, by design: EINTR on the eventfd
//! `write` that wakes its I/O driver, which tokio `expect`s ("failed to wake
//! I/O driver"). (`current_thread` panics there too, but inside the task
//! that made the write: tokio catches it and drops that connection, and
//! the suite's four cases passed.) `expect::FAULT_TABLE` holds calls a
//! model cannot make, not faults it dies of, so that limit is asserted
//! here: if tokio ever survives it, this test fails and the header of
//! `tokio_tasks.rs` must change. Without strace or ptrace every test
//! prints SKIP.

use harness::check::faults::{assert_survives_faults, run_one, Family, Fault, Outcome};
use harness::check::Target;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_peers"))
}

/// `current_thread` writes its driver's eventfd only under some schedules
/// (once or twice in a whole run): the suite reports that `write` N/A as
/// incidental (`faults::INCIDENTAL_BELOW`) rather than inject a fault that
/// a schedule may never meet.
#[test]
fn peers_tokio_survives_faults() {
    assert_survives_faults(bin(), Some("tokio"), &[]);
}

#[test]
fn peers_polling_survives_faults() {
    assert_survives_faults(bin(), Some("polling"), &[]);
}

#[test]
fn tokio_multi_thread_runtime_dies_of_eintr_on_its_driver_wakeup() {
    let workers = ["--workers".to_string(), "2".to_string()];
    let Target::Model(managed) = Target::model("peers", bin(), Some("tokio"), &workers) else {
        unreachable!("Target::model makes a Target::Model")
    };
    // Past start-up the first `write` is `listening on`; from the second on,
    // every other one fails. The first cross-thread wake-up is soon among them.
    let fault = Fault {
        syscall: "write",
        family: Family::Write,
        errno: "EINTR",
        first: 2,
        step: 2,
    };
    let line = run_one(&managed, &fault);
    println!("{line}");
    if line.outcome == Outcome::Skip {
        return;
    }
    assert_eq!(line.outcome, Outcome::Fail, "tokio survived it now: {line}");
    assert!(
        line.detail.contains("died") || line.detail.contains("no longer answers"),
        "{line}"
    );
    if let Some(trace) = &line.trace_kept {
        // The kept trace holds the injected calls, in order.
        let text = std::fs::read_to_string(trace).expect("read the kept trace");
        // The driver's wake-up: an 8-byte write of the counter value 1 to
        // its eventfd. The first fault hit one; every other injected write
        // is another wake-up or the panic's report on stderr.
        let wakeup = |l: &str| l.contains(r#", "\1\0\0\0\0\0\0\0", 8)"#);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            wakeup(first),
            "the first fault was not the driver's wake-up: {first}"
        );
        let other = text
            .lines()
            .find(|&l| !wakeup(l) && !l.contains(" write(2, "));
        assert!(
            other.is_none(),
            "it went on working after the wake-up failed: {other:?}"
        );
        std::fs::remove_file(trace).expect("remove the kept trace");
    }
}
