//! The lab's fault suite (`harness check --faults`) against both modes of
//! `nonblocking`: the `accept4` errors and EINTR on every read and write
//! call it makes. Without strace or ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nonblocking"))
}

#[test]
fn nonblocking_spin_survives_faults() {
    assert_survives_faults(bin(), Some("spin"), &[]);
}

#[test]
fn nonblocking_sleep_survives_faults() {
    assert_survives_faults(bin(), Some("sleep"), &[]);
}
