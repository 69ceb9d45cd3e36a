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
