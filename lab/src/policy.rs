//! What a model does about an errno that is not about one connection's data:
//! one table for `accept4` and one for the wait calls, shared by every model
//! so that they cannot disagree. The calls themselves stay in each model's
//! file; the model matches on the class right where the call returned.
//! Each class logs through a [`RateLimit`], the one warning for an error
//! that repeats; a model keeps one of its own for an error outside these
//! tables (a `fork` or `pthread_create` refused per connection).
//!
//! ```no_run
//! # use lab::policy::AcceptError;
//! # fn demo(listener: i32) {
//! match lab::net::accept(listener, lab::net::IoMode::NonBlocking) {
//!     Ok(_fd) => {}
//!     Err(e) => match AcceptError::classify(&e).warned("demo", &e) {
//!         AcceptError::Drained => {}   // EAGAIN: nothing more queued
//!         AcceptError::Retry => {}     // EINTR
//!         AcceptError::Skip => {}      // ECONNABORTED, EPROTO, EPERM, ...
//!         AcceptError::Exhausted => {} // EMFILE, ENFILE: refuse with the spare
//!         AcceptError::BackOff => {}   // ENOBUFS, ENOMEM: leave the listener alone
//!         AcceptError::Fatal => {}     // EBADF, EINVAL, ENOTSOCK, EFAULT: a bug
//!     },
//! }
//! # }
//! ```

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sys::errno;

/// What the caller of `accept4` does about its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// `EAGAIN`: the queue is empty (a non-blocking listener). Wait again.
    Drained,
    /// `EINTR`: a signal arrived before a connection did; call again now.
    Retry,
    /// This one connection failed between its handshake and our `accept`;
    /// take the next. `ECONNABORTED` (the peer reset while queued),
    /// `EPROTO` (a protocol error on it), `EPERM` (a firewall rule refused
    /// it), and the pending network errors that accept(2) says to treat
    /// like `EAGAIN`: `ENETDOWN`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`,
    /// `EHOSTUNREACH`, `EOPNOTSUPP`, `ENETUNREACH`. So is any errno this
    /// table does not know (accept(2): "various Linux kernels can return
    /// other errors such as ENOSR, ESOCKTNOSUPPORT, EPROTONOSUPPORT,
    /// ETIMEDOUT"): one client must not stop the server.
    Skip,
    /// `EMFILE` (our descriptor table is full) or `ENFILE` (the system's):
    /// the connection stays queued and the listener stays readable, so a
    /// loop that simply retries spins. Refuse it with [`crate::net::Spare`].
    Exhausted,
    /// `ENOBUFS`, `ENOMEM`: kernel memory is short, and nothing signals when
    /// it is back. Leave the listener alone for [`crate::net::ACCEPT_PAUSE`]
    /// so the loop neither dies nor spins; connections stay queued.
    BackOff,
    /// `EBADF`, `EINVAL`, `ENOTSOCK`, `EFAULT`: the listener or the call is
    /// wrong, a bug of ours. Exit with the message.
    Fatal,
}

impl AcceptError {
    pub fn classify(err: &io::Error) -> AcceptError {
        match errno(err) {
            Some(libc::EAGAIN) => AcceptError::Drained,
            Some(libc::EINTR) => AcceptError::Retry,
            Some(libc::EMFILE | libc::ENFILE) => AcceptError::Exhausted,
            Some(libc::ENOBUFS | libc::ENOMEM) => AcceptError::BackOff,
            Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT) => AcceptError::Fatal,
            // ECONNABORTED, EPROTO, EPERM, the network errors, and the rest.
            Some(_) => AcceptError::Skip,
            // No errno: not from the kernel, so not a connection's failure.
            None => AcceptError::Fatal,
        }
    }

    /// Logs `err` on stderr, at most once per [`WARN_INTERVAL_SECS`] per
    /// class, with how many were not logged since, and returns the class
    /// for the caller's `match`. A condition that repeats per connection (a
    /// flood of refused clients, memory pressure) must not flood the log,
    /// nor slow the loop with writes to a full stderr pipe. `Drained` and
    /// `Retry` are normal, and `Fatal` is the caller's exit message: none of
    /// them is logged here.
    pub fn warned(self, model: &str, err: &io::Error) -> AcceptError {
        let (limit, what) = match self {
            AcceptError::Drained | AcceptError::Retry | AcceptError::Fatal => return self,
            AcceptError::Skip => (&ACCEPT_WARNINGS[0], "connection skipped"),
            AcceptError::Exhausted => (&ACCEPT_WARNINGS[1], "descriptors exhausted, refusing"),
            AcceptError::BackOff => (&ACCEPT_WARNINGS[2], "kernel memory short, accepting paused"),
        };
        limit.warn(model, err, what);
        self
    }
}

/// What the caller of a wait (`epoll_wait`, `poll`, `select`, `sigwaitinfo`,
/// `io_uring_enter`) does about its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// `EINTR`: a signal we do not block (SIGSTOP/SIGCONT, a debugger's)
    /// cut the wait short; wait again.
    Retry,
    /// `ENOMEM` (`poll` and `select` allocate kernel copies of the sets;
    /// `EAGAIN` from `sigtimedwait` means the timeout passed, not this):
    /// wait again after [`crate::net::ACCEPT_PAUSE`] rather than die of a
    /// transient shortage.
    BackOff,
    /// `EBADF`, `EFAULT`, `EINVAL`: our arguments are wrong, a bug.
    Fatal,
}

impl WaitError {
    pub fn classify(err: &io::Error) -> WaitError {
        match errno(err) {
            Some(libc::EINTR) => WaitError::Retry,
            Some(libc::ENOMEM | libc::ENOBUFS) => WaitError::BackOff,
            _ => WaitError::Fatal,
        }
    }

    /// Logs `err` at most once per [`WARN_INTERVAL_SECS`] and returns the
    /// class (see [`AcceptError::warned`]); only `BackOff` is logged.
    pub fn warned(self, model: &str, err: &io::Error) -> WaitError {
        if self == WaitError::BackOff {
            WAIT_WARNING.warn(model, err, "backing off");
        }
        self
    }
}

/// How an event loop's accept pass (`accept_all`) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// EAGAIN: nothing more is queued.
    Drained,
    /// The fairness cap ([`MAX_ACCEPTS_PER_WAKEUP`]): more may be queued.
    Capped,
    /// Leave the listener alone for [`crate::net::ACCEPT_PAUSE`]:
    /// EMFILE/ENFILE and the spare could not refuse a connection either, or
    /// kernel memory is short (ENOBUFS/ENOMEM). Either way retrying at once
    /// would spin.
    Paused,
}

/// A connect flood must not starve the connections already open: an event
/// loop accepts at most this many per wake-up (Redis' MAX_ACCEPTS_PER_CALL),
/// then serves what is ready and comes back to the listener.
pub const MAX_ACCEPTS_PER_WAKEUP: usize = 1000;

/// A model that reads a connection until drained (edge-triggered epoll,
/// signal-driven I/O, a coroutine's handler) reads it at most this many
/// times per wake-up (libuv stops at 32), so that one fast sender cannot
/// hold the loop while the others wait; the rest is owed a later turn.
pub const MAX_READS_PER_WAKEUP: usize = 16;

/// One `recv` of an event loop reads at most this much: large enough that
/// a bulk sender costs few calls, small enough to stay in cache.
pub const READ_CHUNK: usize = 64 << 10;

/// The shortest time between two warning lines of one class.
pub const WARN_INTERVAL_SECS: u64 = 10;

/// One class's rate limit: when it last logged, and how many it swallowed.
/// Atomics, so that the threads of `--workers` and `blocking:thread` share
/// it without a lock; a forked child has its own copy, which is right.
/// A `static`, one per class of error.
pub struct RateLimit {
    last_logged: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            last_logged: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs `{model}: {err}: {what}` on stderr, at most once per
    /// [`WARN_INTERVAL_SECS`], with how many were not logged since: a
    /// condition that repeats per connection must not flood the log, nor
    /// slow the server with writes to a full stderr pipe. `err` should name
    /// its call (`lab::syscall!`, [`crate::sys::named`]).
    pub fn warn(&self, model: &str, err: &io::Error, what: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .max(1);
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + WARN_INTERVAL_SECS;
        if !due
            || self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.suppressed.swap(0, Ordering::Relaxed) {
            0 => crate::log!("{model}: {err}: {what}"),
            n => crate::log!("{model}: {err}: {what} ({n} more like it not shown)"),
        }
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::new()
    }
}

static ACCEPT_WARNINGS: [RateLimit; 3] = [RateLimit::new(), RateLimit::new(), RateLimit::new()];
static WAIT_WARNING: RateLimit = RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        crate::sys::named(io::Error::from_raw_os_error(errno), "accept4(fd 3)".into())
    }

    #[test]
    fn accept_errors_fall_in_the_documented_classes() {
        let table = [
            (libc::EAGAIN, AcceptError::Drained),
            (libc::EINTR, AcceptError::Retry),
            (libc::ECONNABORTED, AcceptError::Skip),
            (libc::EPROTO, AcceptError::Skip),
            (libc::EPERM, AcceptError::Skip),
            (libc::ENETDOWN, AcceptError::Skip),
            (libc::ENOPROTOOPT, AcceptError::Skip),
            (libc::EHOSTDOWN, AcceptError::Skip),
            (libc::ENONET, AcceptError::Skip),
            (libc::EHOSTUNREACH, AcceptError::Skip),
            (libc::EOPNOTSUPP, AcceptError::Skip),
            (libc::ENETUNREACH, AcceptError::Skip),
            (libc::ETIMEDOUT, AcceptError::Skip),
            (libc::EMFILE, AcceptError::Exhausted),
            (libc::ENFILE, AcceptError::Exhausted),
            (libc::ENOBUFS, AcceptError::BackOff),
            (libc::ENOMEM, AcceptError::BackOff),
            (libc::EBADF, AcceptError::Fatal),
            (libc::EINVAL, AcceptError::Fatal),
            (libc::ENOTSOCK, AcceptError::Fatal),
            (libc::EFAULT, AcceptError::Fatal),
        ];
        for (errno, class) in table {
            assert_eq!(AcceptError::classify(&os(errno)), class, "errno {errno}");
        }
        assert_eq!(
            AcceptError::classify(&io::Error::other("not from the kernel")),
            AcceptError::Fatal
        );
    }

    #[test]
    fn wait_errors_fall_in_the_documented_classes() {
        assert_eq!(WaitError::classify(&os(libc::EINTR)), WaitError::Retry);
        assert_eq!(WaitError::classify(&os(libc::ENOMEM)), WaitError::BackOff);
        for errno in [libc::EBADF, libc::EFAULT, libc::EINVAL] {
            assert_eq!(WaitError::classify(&os(errno)), WaitError::Fatal);
        }
    }

    #[test]
    fn a_repeated_warning_is_swallowed_and_counted_until_the_interval_passes() {
        let limit = RateLimit::new();
        let err = os(libc::ENOBUFS);
        limit.warn("test", &err, "first");
        let first = limit.last_logged.load(Ordering::Relaxed);
        assert_ne!(first, 0, "the first warning is logged");
        for _ in 0..5 {
            limit.warn("test", &err, "again");
        }
        assert_eq!(limit.suppressed.load(Ordering::Relaxed), 5);
        limit
            .last_logged
            .store(first - WARN_INTERVAL_SECS, Ordering::Relaxed);
        limit.warn("test", &err, "due again");
        assert_eq!(
            limit.suppressed.load(Ordering::Relaxed),
            0,
            "the next line reports the swallowed count and resets it"
        );
    }
}
