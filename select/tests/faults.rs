//! The lab's fault suite (`harness check --faults`) against `select`: the
//! `accept4` errors and EINTR on its reads, writes and `pselect6`/`select`.
//! Without strace or ptrace it prints SKIP.

use harness::check::faults::assert_survives_faults;
use std::path::Path;

#[test]
fn select_survives_faults() {
    assert_survives_faults(Path::new(env!("CARGO_BIN_EXE_select")), None, &[]);
}
