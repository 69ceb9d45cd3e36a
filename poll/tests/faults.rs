//! The lab's fault suite (`harness check --faults`) against `poll`: the
//! `accept4` errors and EINTR on its reads, writes and `poll`; and, with
//! `poll` as the subject, that the suite itself fails what it must. Without
//! strace or ptrace it prints SKIP.

use harness::check::faults::{assert_survives_faults, run_one, Family, Fault, FaultLine, Outcome};
use harness::check::Target;
use std::path::Path;

#[test]
fn poll_survives_faults() {
    assert_survives_faults(Path::new(env!("CARGO_BIN_EXE_poll")), None, &[]);
}

/// The suite can fail: `EBADF` from `accept4` means the listener is wrong,
/// a bug, and the model exits (lab::policy's `Fatal`); the fault run must
/// see the death.
#[test]
fn a_fatal_errno_is_a_fail_that_names_the_death() {
    let line = one_fault("accept4", Family::Accept, "EBADF", 1);
    if line.outcome == Outcome::Skip {
        return;
    }
    assert_eq!(line.outcome, Outcome::Fail, "{line}");
    assert!(line.detail.contains("died"), "{line}");
    assert_eq!(line.fired, Some(1), "{line}");
}

/// A fault that never fires is not a pass: strace's `when=` past every
/// `accept4` the cases cause.
#[test]
fn a_fault_that_never_fires_is_a_fail() {
    let line = one_fault("accept4", Family::Accept, "ENOBUFS", 60000);
    if line.outcome == Outcome::Skip {
        return;
    }
    assert_eq!(line.outcome, Outcome::Fail, "{line}");
    assert!(line.detail.contains("never fired"), "{line}");
    assert_eq!(line.fired, Some(0), "{line}");
}

fn one_fault(syscall: &'static str, family: Family, errno: &'static str, first: u64) -> FaultLine {
    let bin = Path::new(env!("CARGO_BIN_EXE_poll"));
    let Target::Model(managed) = Target::model("poll", bin, None, &[]) else {
        unreachable!("Target::model makes a Target::Model")
    };
    let fault = Fault {
        syscall,
        family,
        errno,
        first,
        step: 2,
    };
    let line = run_one(&managed, &fault);
    println!("{line}");
    if let Some(trace) = &line.trace_kept {
        std::fs::remove_file(trace).expect("remove the kept trace");
    }
    line
}
