//! The lab's fault suite (`harness check --faults`) against `epoll`: level,
//! edge, two loops (`--workers 2`, the default sharing), and two loops on one
//! plainly shared listener (`--share shared`: every loop's `accept4` runs
//! on it, and after each herd wake-up all but one find EAGAIN). The `accept4`
//! errors and EINTR on every read, write and `epoll_wait`/`epoll_pwait`
//! it makes. Without strace or ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epoll"))
}

#[test]
fn epoll_level_survives_faults() {
    assert_survives_faults(bin(), Some("level"), &[]);
}

#[test]
fn epoll_edge_survives_faults() {
    assert_survives_faults(bin(), Some("edge"), &[]);
}

#[test]
fn epoll_edge_workers2_survives_faults() {
    assert_survives_faults(bin(), Some("edge"), &["--workers", "2"]);
}

#[test]
fn epoll_level_workers2_shared_survives_faults() {
    assert_survives_faults(
        bin(),
        Some("level"),
        &["--workers", "2", "--share", "shared"],
    );
}

#[test]
fn epoll_level_workers2_exclusive_survives_faults() {
    assert_survives_faults(
        bin(),
        Some("level"),
        &["--workers", "2", "--share", "exclusive"],
    );
}
