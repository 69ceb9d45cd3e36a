//! The lab's conformance suite (`harness check`) against `sigio`, in both
//! modes. No declared limit: every case must pass.

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sigio"))
}

#[test]
fn sigio_rt_conforms() {
    assert_conforms(bin(), Some("rt"), &[]);
}

#[test]
fn sigio_plain_conforms() {
    assert_conforms(bin(), Some("plain"), &[]);
}
