//! The lab's fault suite (`harness check --faults`) against `sigio`, in both
//! modes: the `accept4` errors and EINTR on every read, write and wait call
//! it makes (`rt_sigtimedwait`, and `poll` if an overflow sweep runs).
//! Without strace or ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sigio"))
}

#[test]
fn sigio_rt_survives_faults() {
    assert_survives_faults(bin(), Some("rt"), &[]);
}

#[test]
fn sigio_plain_survives_faults() {
    assert_survives_faults(bin(), Some("plain"), &[]);
}
