//! The lab's conformance suite (`harness check`) against every mode of
//! `blocking`. A mode's limits by design (iterative stalls other clients,
//! pool and prefork hold only `--workers` connections at once) are declared
//! in `harness::check::expect` and reported EXPECTED-LIMIT; anything else
//! that goes wrong fails the test, with the suite's table printed.

use harness::check::assert_conforms;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_blocking"))
}

#[test]
fn blocking_iterative_conforms() {
    assert_conforms(bin(), Some("iterative"), &[]);
}

#[test]
fn blocking_thread_conforms() {
    assert_conforms(bin(), Some("thread"), &[]);
}

#[test]
fn blocking_pool_conforms() {
    assert_conforms(bin(), Some("pool"), &[]);
}

#[test]
fn blocking_fork_conforms() {
    assert_conforms(bin(), Some("fork"), &[]);
}

#[test]
fn blocking_prefork_conforms() {
    assert_conforms(bin(), Some("prefork"), &[]);
}
