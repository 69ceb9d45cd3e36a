//! The lab's conformance suite (`harness check`) against `select`. Its
//! declared limit (`harness::check::expect`) is checked, not just excused:
//! with 2000 connections the server must survive, serve every connection
//! below FD_SETSIZE, close the others at once, and name FD_SETSIZE on stderr.

use harness::check::assert_conforms;
use std::path::Path;

#[test]
fn select_conforms() {
    assert_conforms(Path::new(env!("CARGO_BIN_EXE_select")), None, &[]);
}
