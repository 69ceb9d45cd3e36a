//! The lab's conformance suite (`harness check`) against `coroutine`:
//! stackful and async on one hub, and stackful on two hubs (`--workers 2`,
//! `SO_REUSEPORT`; `--share shared`, one listener in both hubs' epoll; and
//! `--share exclusive`, the same with `EPOLLEXCLUSIVE`).
//! No declared limit: every case must pass.

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_coroutine"))
}

#[test]
fn coroutine_stackful_conforms() {
    assert_conforms(bin(), Some("stackful"), &[]);
}

#[test]
fn coroutine_async_conforms() {
    assert_conforms(bin(), Some("async"), &[]);
}

#[test]
fn coroutine_stackful_workers2_conforms() {
    assert_conforms(bin(), Some("stackful"), &["--workers", "2"]);
}

#[test]
fn coroutine_stackful_workers2_shared_conforms() {
    assert_conforms(
        bin(),
        Some("stackful"),
        &["--workers", "2", "--share", "shared"],
    );
}

#[test]
fn coroutine_stackful_workers2_exclusive_conforms() {
    assert_conforms(
        bin(),
        Some("stackful"),
        &["--workers", "2", "--share", "exclusive"],
    );
}
