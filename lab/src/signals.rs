//! SIGINT and SIGTERM as a descriptor every model can wait on.
//!
//! The signals are blocked and read from a `signalfd(2)`: an event loop puts
//! that descriptor in its interest set next to its sockets, a blocking model
//! parks a thread in `read` on it. Blocking must happen before any thread is
//! spawned: a signal is delivered to any thread that does not block it, and
//! threads inherit the mask of their creator.
//!
//! SIGPIPE is ignored, so a write to a peer that closed returns `EPIPE` to
//! the call site instead of killing the whole server (the models also send
//! with `MSG_NOSIGNAL`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};

/// The signals that stop a model.
pub const STOP_SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Ignores SIGPIPE, blocks SIGINT, SIGTERM and `extra` (e.g. SIGCHLD) in
    /// the calling thread, and returns a descriptor that becomes readable
    /// when one of them is pending. Call it first thing in `main`.
    pub fn install(extra: &[Signal]) -> io::Result<SignalFd> {
        ignore_sigpipe()?;
        let mut set = SigSet::empty();
        for sig in STOP_SIGNALS.iter().chain(extra) {
            set.add(*sig);
        }
        set.thread_block()
            .map_err(|e| crate::sys::named_nix(e, "pthread_sigmask(SIG_BLOCK)"))?;
        // SAFETY: `set` is a valid, initialised sigset_t for the duration of the call.
        let fd = crate::syscall!(
            unsafe { libc::signalfd(-1, set.as_ref(), libc::SFD_CLOEXEC) },
            "signalfd"
        )?;
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalFd { fd })
    }

    /// Takes one pending signal; blocks until one is pending.
    ///
    /// EINTR is returned to the caller, as for any other read.
    pub fn read(&self) -> io::Result<Signal> {
        // SAFETY: all-zero is a valid `signalfd_siginfo`.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        let fd = self.fd.as_raw_fd();
        // SAFETY: `info` is writable for `len` bytes; a signalfd read returns whole records.
        let n = crate::syscall!(
            unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), len) },
            "read(signalfd {fd})"
        )?;
        if n as usize != len {
            return Err(io::Error::other(format!(
                "read(signalfd {fd}): short read of {n} bytes"
            )));
        }
        Signal::try_from(info.ssi_signo as i32)
            .map_err(|e| crate::sys::named_nix(e, "read(signalfd): unknown signal"))
    }

    /// Blocks until SIGINT or SIGTERM arrives, retrying on EINTR and
    /// skipping the `extra` signals. For threads that do nothing else.
    pub fn wait_for_stop(&self) -> io::Result<Signal> {
        loop {
            match self.read() {
                Ok(sig) if STOP_SIGNALS.contains(&sig) => return Ok(sig),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A write to a closed peer must fail with EPIPE, not kill the server.
pub fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: SIG_IGN installs no handler code; no other thread is changing dispositions.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .map_err(|e| crate::sys::named_nix(e, "signal(SIGPIPE, SIG_IGN)"))?;
    Ok(())
}

/// In a forked child: unblock every signal again, so that SIGTERM from the
/// parent ends the child (the mask and dispositions survive `fork`).
pub fn unblock_all_in_child() -> io::Result<()> {
    SigSet::all()
        .thread_unblock()
        .map_err(|e| crate::sys::named_nix(e, "pthread_sigmask(SIG_UNBLOCK)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_becomes_readable_on_the_descriptor() {
        // SIGUSR2 only: SIGINT/SIGTERM are blocked too, but never sent here.
        // `thread_block` affects the test thread alone, so the signal is sent
        // to this thread with tgkill.
        let sfd = SignalFd::install(&[Signal::SIGUSR2]).expect("install");
        // SAFETY: raising a blocked signal at our own thread; it stays pending.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::gettid(),
                libc::SIGUSR2,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(sfd.read().expect("read signalfd"), Signal::SIGUSR2);
    }
}
