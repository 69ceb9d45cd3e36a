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

/// The flags change which calls the ring makes around its one wait (ring
/// registration at start-up, min-timeout waits) but not that wait: the same
/// faults apply, each flag alone and the best combination.
const FLAGGED: &[&[&str]] = &[
    &["--defer-taskrun"],
    &["--skip-send-cqe"],
    &["--fixed-files"],
    &["--sqpoll", "--sqpoll-cpu", "0"],
    &["--min-wait", "50"],
    &["--incremental-buffers"],
    &[
        "--defer-taskrun",
        "--skip-send-cqe",
        "--fixed-files",
        "--incremental-buffers",
    ],
    &["--bundle"],
    &[
        "--defer-taskrun",
        "--skip-send-cqe",
        "--fixed-files",
        "--bundle",
    ],
];

#[test]
fn uring_multishot_defer_taskrun_survives_faults() {
    skip_without_flags!(FLAGGED[0]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[0]);
}

#[test]
fn uring_multishot_skip_send_cqe_survives_faults() {
    skip_without_flags!(FLAGGED[1]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[1]);
}

#[test]
fn uring_multishot_fixed_files_survives_faults() {
    skip_without_flags!(FLAGGED[2]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[2]);
}

#[test]
fn uring_multishot_sqpoll_cpu_survives_faults() {
    skip_without_flags!(FLAGGED[3]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[3]);
}

#[test]
fn uring_multishot_min_wait_survives_faults() {
    skip_without_flags!(FLAGGED[4]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[4]);
}

#[test]
fn uring_multishot_incremental_buffers_survives_faults() {
    skip_without_flags!(FLAGGED[5]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[5]);
}

#[test]
fn uring_multishot_best_survives_faults() {
    skip_without_flags!(FLAGGED[6]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[6]);
}

#[test]
fn uring_multishot_bundle_survives_faults() {
    skip_without_flags!(FLAGGED[7]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[7]);
}

#[test]
fn uring_multishot_best_with_bundle_survives_faults() {
    skip_without_flags!(FLAGGED[8]);
    assert_survives_faults(bin(), Some("multishot"), FLAGGED[8]);
}
