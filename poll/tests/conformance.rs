//! The lab's conformance suite (`harness check`) against `poll`, which has no
//! declared limit: every case must pass.

use harness::check::assert_conforms;
use std::path::Path;

#[test]
fn poll_conforms() {
    assert_conforms(Path::new(env!("CARGO_BIN_EXE_poll")), None, &[]);
}
