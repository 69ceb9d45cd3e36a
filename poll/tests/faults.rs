//! The lab's fault suite (`harness check --faults`) against `poll`: the
//! `accept4` errors and EINTR on its reads, writes and `poll`. Without
//! strace or ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

#[test]
fn poll_survives_faults() {
    assert_survives_faults(Path::new(env!("CARGO_BIN_EXE_poll")), None, &[]);
}
