//! The lab's conformance suite (`harness check`) against both modes of
//! `nonblocking`. `spin` burning a core while idle is its declared limit
//! (`harness::check::expect`); anything else that goes wrong fails the test,
//! with the suite's table printed.

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nonblocking"))
}

#[test]
fn nonblocking_spin_conforms() {
    assert_conforms(bin(), Some("spin"), &[]);
}

#[test]
fn nonblocking_sleep_conforms() {
    assert_conforms(bin(), Some("sleep"), &[]);
}
