//! The one syscall wrapper: a raw call's `-1` becomes an `io::Error` that
//! names the call, e.g. `epoll_ctl(ADD, fd 7): Bad file descriptor`.
//!
//! The error keeps its `ErrorKind` (so `WouldBlock`, `Interrupted`,
//! `ConnectionReset`, `BrokenPipe` can be matched at the call site) and its
//! errno (see [`errno`], for the ones Rust has no kind for, like `EMFILE`).
//!
//! ```no_run
//! # fn demo(fd: i32) -> std::io::Result<()> {
//! let mut buf = [0u8; 4096];
//! // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
//! let n = lab::syscall!(
//!     unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) },
//!     "read(fd {fd})"
//! )?;
//! # let _ = n; Ok(()) }
//! ```

use std::fmt;
use std::io;

/// Raw return types whose `-1` means "see errno".
pub trait Ret: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_ret {
    ($($t:ty)*) => { $(impl Ret for $t { fn is_minus_one(self) -> bool { self == -1 } })* };
}
impl_ret!(i32 i64 isize);

/// Turns the value of a raw call into `io::Result`, naming the call.
///
/// The name is formatted only on failure, so the wrapper costs nothing on
/// the hot path; errno is read before anything else can overwrite it.
#[macro_export]
macro_rules! syscall {
    ($call:expr, $($name:tt)+) => {{
        let ret = $call;
        if $crate::sys::Ret::is_minus_one(ret) {
            let os = ::std::io::Error::last_os_error();
            Err($crate::sys::named(os, ::std::format!($($name)+)))
        } else {
            Ok(ret)
        }
    }};
}

/// An OS error together with the call that returned it.
#[derive(Debug)]
pub struct SysError {
    call: String,
    errno: i32,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.call,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for SysError {}

/// Names an OS error after its call. Errors that carry no errno are wrapped
/// with the name in front and their kind kept.
pub fn named(err: io::Error, call: String) -> io::Error {
    match err.raw_os_error() {
        Some(errno) => io::Error::new(err.kind(), SysError { call, errno }),
        None => io::Error::new(err.kind(), format!("{call}: {err}")),
    }
}

/// The same for an error from a `nix` call.
pub fn named_nix(err: nix::Error, call: &str) -> io::Error {
    named(io::Error::from_raw_os_error(err as i32), call.to_string())
}

/// The errno behind an error, whether or not it went through [`named`].
pub fn errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<SysError>())
            .map(|sys| sys.errno)
    })
}

/// `eprintln!` that cannot kill the server. SIGPIPE is ignored, so a write
/// to a closed stderr fails with EPIPE, and `eprintln!` panics on that: a
/// warning a client can trigger would end the process. A line that cannot
/// be written is lost instead.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_call_is_named_and_keeps_errno_and_kind() {
        // SAFETY: closing an invalid descriptor touches no memory; it fails with EBADF.
        let res = crate::syscall!(unsafe { libc::close(-1) }, "close(fd {})", -1);
        let err = res.expect_err("close(-1) must fail");
        assert_eq!(errno(&err), Some(libc::EBADF));
        assert!(
            err.to_string()
                .starts_with("close(fd -1): Bad file descriptor"),
            "{err}"
        );
    }

    #[test]
    fn would_block_kind_survives_naming() {
        let err = named(
            io::Error::from_raw_os_error(libc::EAGAIN),
            "read(fd 3)".into(),
        );
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(errno(&err), Some(libc::EAGAIN));
    }

    #[test]
    fn success_passes_the_value_through() {
        // SAFETY: getpid has no preconditions.
        let pid = crate::syscall!(unsafe { libc::getpid() }, "getpid").expect("getpid");
        assert_eq!(pid as u32, std::process::id());
    }
}
