//! The lab's conformance suite (`harness check`) against `epoll`: level and
//! edge, one loop and two loops under each way of sharing the port
//! (`SO_REUSEPORT` listeners, one listener with `EPOLLEXCLUSIVE`, or one
//! plainly shared listener: the herd). No declared limit: every case must
//! pass.

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epoll"))
}

#[test]
fn epoll_level_conforms() {
    assert_conforms(bin(), Some("level"), &[]);
}

#[test]
fn epoll_edge_conforms() {
    assert_conforms(bin(), Some("edge"), &[]);
}

#[test]
fn epoll_level_workers2_reuseport_conforms() {
    assert_conforms(
        bin(),
        Some("level"),
        &["--workers", "2", "--share", "reuseport"],
    );
}

#[test]
fn epoll_level_workers2_exclusive_conforms() {
    assert_conforms(
        bin(),
        Some("level"),
        &["--workers", "2", "--share", "exclusive"],
    );
}

#[test]
fn epoll_edge_workers2_reuseport_conforms() {
    assert_conforms(
        bin(),
        Some("edge"),
        &["--workers", "2", "--share", "reuseport"],
    );
}

#[test]
fn epoll_edge_workers2_exclusive_conforms() {
    assert_conforms(
        bin(),
        Some("edge"),
        &["--workers", "2", "--share", "exclusive"],
    );
}

#[test]
fn epoll_level_workers2_shared_conforms() {
    assert_conforms(
        bin(),
        Some("level"),
        &["--workers", "2", "--share", "shared"],
    );
}

#[test]
fn epoll_edge_workers2_shared_conforms() {
    assert_conforms(
        bin(),
        Some("edge"),
        &["--workers", "2", "--share", "shared"],
    );
}
