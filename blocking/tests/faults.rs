//! The lab's fault suite (`harness check --faults`) against every mode of
//! `blocking`: ENOBUFS, ENOMEM, EPROTO, EPERM, ECONNABORTED and EINTR on
//! `accept4`, EINTR on every read and write it makes, EAGAIN on the thread
//! or process creation of `thread` and `fork` (the connection that gets none
//! is closed, the others served). Without strace or ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_blocking"))
}

#[test]
fn blocking_iterative_survives_faults() {
    assert_survives_faults(bin(), Some("iterative"), &[]);
}

#[test]
fn blocking_thread_survives_faults() {
    assert_survives_faults(bin(), Some("thread"), &[]);
}

#[test]
fn blocking_pool_survives_faults() {
    assert_survives_faults(bin(), Some("pool"), &[]);
}

#[test]
fn blocking_fork_survives_faults() {
    assert_survives_faults(bin(), Some("fork"), &[]);
}

#[test]
fn blocking_prefork_survives_faults() {
    assert_survives_faults(bin(), Some("prefork"), &[]);
}
