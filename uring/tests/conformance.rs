//! The lab's conformance suite (`harness check`) against `uring`: one-shot
//! and multishot, one ring and two (`--workers 2`, a `SO_REUSEPORT`
//! listener each, or one listener shared by both rings), and `--sqpoll`.
//! And each kernel-feature flag alone, and the best combination of them
//! (`BEST`, and with `--bundle` in place of `--incremental-buffers`), where
//! the kernel has the feature (SKIP with its name if not).
//! No declared limit but `--sqpoll`'s (`check::expect`: its kernel thread
//! spins for a second after the last submission, which the idle and EMFILE
//! cases' CPU windows may catch): every other case must pass. Where the
//! kernel has no io_uring, each test says SKIP with the reason.

mod support;

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_uring"))
}

#[test]
fn uring_single_conforms() {
    skip_without_io_uring!();
    assert_conforms(bin(), Some("single"), &[]);
}

#[test]
fn uring_multishot_conforms() {
    skip_without_io_uring!();
    assert_conforms(bin(), Some("multishot"), &[]);
}

#[test]
fn uring_multishot_sqpoll_conforms() {
    skip_without_io_uring!();
    assert_conforms(bin(), Some("multishot"), &["--sqpoll"]);
}

#[test]
fn uring_multishot_workers2_conforms() {
    skip_without_io_uring!();
    assert_conforms(bin(), Some("multishot"), &["--workers", "2"]);
}

#[test]
fn uring_multishot_workers2_shared_conforms() {
    skip_without_io_uring!();
    assert_conforms(
        bin(),
        Some("multishot"),
        &["--workers", "2", "--share", "shared"],
    );
}

/// The best combination of the flags (the ladder's named row).
pub const BEST: &[&str] = &[
    "--defer-taskrun",
    "--skip-send-cqe",
    "--fixed-files",
    "--incremental-buffers",
];

#[test]
fn uring_multishot_defer_taskrun_conforms() {
    skip_without_flags!(&["--defer-taskrun"]);
    assert_conforms(bin(), Some("multishot"), &["--defer-taskrun"]);
}

#[test]
fn uring_multishot_skip_send_cqe_conforms() {
    skip_without_flags!(&["--skip-send-cqe"]);
    assert_conforms(bin(), Some("multishot"), &["--skip-send-cqe"]);
}

#[test]
fn uring_multishot_fixed_files_conforms() {
    skip_without_flags!(&["--fixed-files"]);
    assert_conforms(bin(), Some("multishot"), &["--fixed-files"]);
}

#[test]
fn uring_multishot_sqpoll_cpu_conforms() {
    skip_without_flags!(&["--sqpoll", "--sqpoll-cpu", "0"]);
    assert_conforms(bin(), Some("multishot"), &["--sqpoll", "--sqpoll-cpu", "0"]);
}

#[test]
fn uring_multishot_min_wait_conforms() {
    skip_without_flags!(&["--min-wait", "50"]);
    assert_conforms(bin(), Some("multishot"), &["--min-wait", "50"]);
}

#[test]
fn uring_multishot_incremental_buffers_conforms() {
    skip_without_flags!(&["--incremental-buffers"]);
    assert_conforms(bin(), Some("multishot"), &["--incremental-buffers"]);
}

#[test]
fn uring_single_skip_send_cqe_fixed_files_conforms() {
    let args = ["--mode", "single", "--skip-send-cqe", "--fixed-files"];
    skip_without_flags!(&args);
    assert_conforms(bin(), Some("single"), &args[2..]);
}

#[test]
fn uring_multishot_best_conforms() {
    skip_without_flags!(BEST);
    assert_conforms(bin(), Some("multishot"), BEST);
}

#[test]
fn uring_multishot_bundle_conforms() {
    skip_without_flags!(&["--bundle"]);
    assert_conforms(bin(), Some("multishot"), &["--bundle"]);
}

/// Bundles beside the best combination's other flags (bundles do not go
/// with `--incremental-buffers`).
#[test]
fn uring_multishot_best_with_bundle_conforms() {
    let args = [
        "--defer-taskrun",
        "--skip-send-cqe",
        "--fixed-files",
        "--bundle",
    ];
    skip_without_flags!(&args);
    assert_conforms(bin(), Some("multishot"), &args);
}
