//! The lab's conformance suite (`harness check`) against the peers: tokio on
//! its `current_thread` runtime and on the multi-thread runtime with two
//! workers, and the event loop on the `polling` crate. No declared limit:
//! every case must pass.

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_peers"))
}

#[test]
fn peers_tokio_conforms() {
    assert_conforms(bin(), Some("tokio"), &[]);
}

#[test]
fn peers_tokio_workers2_conforms() {
    assert_conforms(bin(), Some("tokio"), &["--workers", "2"]);
}

#[test]
fn peers_polling_conforms() {
    assert_conforms(bin(), Some("polling"), &[]);
}
