//! Whether this kernel gives us an io_uring at all: where `io_uring_setup`
//! fails with `ENOSYS` (built without it) or `EPERM`
//! (`kernel.io_uring_disabled`), the tests say SKIP with that reason.

/// `Some(reason)` when io_uring cannot be used here.
pub fn io_uring_unavailable() -> Option<String> {
    match io_uring::IoUring::new(2) {
        Ok(_) => None,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => Some(format!(
            "io_uring_setup: {e} (io_uring missing or disabled by kernel.io_uring_disabled)"
        )),
        Err(e) => panic!("io_uring_setup: {e}"),
    }
}

/// Returns early from a test, saying why, where io_uring is unavailable.
#[macro_export]
macro_rules! skip_without_io_uring {
    () => {
        if let Some(reason) = support::io_uring_unavailable() {
            eprintln!("SKIP: {reason}");
            return;
        }
    };
}

// Not every test file that includes this module reaps a ring itself.
#[allow(dead_code)]
/// Waits up to 200 ms for one CQE; `None` if none came (ETIME is the wait
/// running out, not an error).
pub fn next_cqe(ring: &mut io_uring::IoUring) -> Option<io_uring::cqueue::Entry> {
    if let Some(cqe) = ring.completion().next() {
        return Some(cqe);
    }
    let ts = io_uring::types::Timespec::new().nsec(200_000_000);
    let args = io_uring::types::SubmitArgs::new().timespec(&ts);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => panic!("io_uring_enter: {e}"),
    }
    ring.completion().next()
}

// Not every test file that includes this module asks about flags.
#[allow(dead_code)]
/// `Some(reason)` when the model refuses `args` on this kernel: it exits with
/// status 2 and names the feature a flag needs (or io_uring is missing).
pub fn flags_unsupported(args: &[&str]) -> Option<String> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    if let Some(reason) = io_uring_unavailable() {
        return Some(reason);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_uring"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uring");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the announcement");
    if line.starts_with("listening on ") {
        // SAFETY: kill has no memory arguments; the pid is our own child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().expect("wait");
        return None;
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(
        status.code(),
        Some(2),
        "{args:?} failed otherwise: {stderr}"
    );
    Some(stderr.trim().to_owned())
}

/// Returns early from a test, saying why, where the kernel lacks a feature
/// the flags need.
#[macro_export]
macro_rules! skip_without_flags {
    ($args:expr) => {
        if let Some(reason) = support::flags_unsupported($args) {
            eprintln!("SKIP: {reason}");
            return;
        }
    };
}
