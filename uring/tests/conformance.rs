//! The lab's conformance suite (`harness check`) against `uring`: one-shot
//! and multishot, one ring and two (`--workers 2`, a `SO_REUSEPORT`
//! listener each, or one listener shared by both rings), and `--sqpoll`.
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
