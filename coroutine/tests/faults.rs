//! The lab's fault suite (`harness check --faults`) against `coroutine`:
//! stackful, async, and two hubs (`--workers 2`, with the default sharing,
//! `--share shared` and `--share exclusive`). The `accept4` errors and
//! EINTR on every read, write and `epoll_wait` it makes. Without strace or
//! ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_coroutine"))
}

#[test]
fn coroutine_stackful_survives_faults() {
    assert_survives_faults(bin(), Some("stackful"), &[]);
}

#[test]
fn coroutine_async_survives_faults() {
    assert_survives_faults(bin(), Some("async"), &[]);
}

#[test]
fn coroutine_stackful_workers2_survives_faults() {
    assert_survives_faults(bin(), Some("stackful"), &["--workers", "2"]);
}

#[test]
fn coroutine_stackful_workers2_shared_survives_faults() {
    assert_survives_faults(
        bin(),
        Some("stackful"),
        &["--workers", "2", "--share", "shared"],
    );
}

#[test]
fn coroutine_stackful_workers2_exclusive_survives_faults() {
    assert_survives_faults(
        bin(),
        Some("stackful"),
        &["--workers", "2", "--share", "exclusive"],
    );
}
