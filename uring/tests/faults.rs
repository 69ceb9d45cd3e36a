//! The lab's fault suite (`harness check --faults`) against `uring`:
//! single and multishot, one ring each. EINTR on every
//! `io_uring_enter` it makes, its one wait; it makes no `read`, `write`
//! or `accept4` of its own while serving (the operations are opcodes, their
//! errnos come back in completions), which the suite reports N/A, the
//! `accept4` faults with the reason in `expect::FAULT_TABLE`. Without
//! strace or ptrace it prints SKIP, and so where the kernel has no io_uring.
//!
//! With `--workers 2` a second ring's thread gets a glibc malloc arena of
//! its own, and trimming that arena reads `/proc/sys/vm/overcommit_memory`
//! once, at a moment that depends on the heap: the suite reports that
//! `read` N/A as incidental (`faults::INCIDENTAL_BELOW`), not the ring's.

mod support;

use harness::check::faults::assert_survives_faults;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_uring"))
}

#[test]
fn uring_single_survives_faults() {
    skip_without_io_uring!();
    assert_survives_faults(bin(), Some("single"), &[]);
}

#[test]
fn uring_multishot_survives_faults() {
    skip_without_io_uring!();
    assert_survives_faults(bin(), Some("multishot"), &[]);
}

#[test]
fn uring_multishot_workers2_survives_faults() {
    skip_without_io_uring!();
    assert_survives_faults(bin(), Some("multishot"), &["--workers", "2"]);
}

#[test]
fn uring_single_workers2_shared_survives_faults() {
    skip_without_io_uring!();
    assert_survives_faults(
        bin(),
        Some("single"),
        &["--workers", "2", "--share", "shared"],
    );
}

/// With `--sqpoll` the kernel thread takes the submissions, but the ring
/// still waits in `io_uring_enter` (GETEVENTS), so the same fault applies.
#[test]
fn uring_multishot_sqpoll_survives_faults() {
    skip_without_io_uring!();
    assert_survives_faults(bin(), Some("multishot"), &["--sqpoll"]);
}
