//! The signal queue: which signals the loop takes, how a socket is armed to
//! raise one, and how one is taken. No handler ever runs: every signal here
//! is blocked, and a blocked signal stays pending until `sigtimedwait` takes
//! it, so the asynchronous notification becomes a queue read synchronously,
//! free of a handler's async-signal-safety rules.
//!
//! Every socket, the listener included, is armed with `F_SETOWN` (signal
//! this process), in rt mode `F_SETSIG`, then `O_ASYNC`: three `fcntl` per
//! connection. The kernel raises the signal when a socket *changes* (a
//! segment or a FIN arrives, a connection is queued, send space frees after a
//! `send` found none), not while it stays ready: data left unread announces
//! nothing again, as with edge-triggered epoll.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use lab::policy::WaitError;
use lab::signals::{ignore_sigpipe, STOP_SIGNALS};
use lab::syscall;

use crate::Mode;

/// `fcntl(F_SETSIG)`, Linux-specific (`<asm-generic/fcntl.h>`); the `libc`
/// crate does not define it for glibc targets.
const F_SETSIG: libc::c_int = 10;

/// What one `sigtimedwait` brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// SIGINT or SIGTERM.
    Stop,
    /// Plain SIGIO: some socket changed, which one is not said. In rt mode
    /// it means the real-time queue overflowed.
    Somewhere,
    /// A queued real-time signal: this descriptor had these events.
    Ready { fd: RawFd, band: libc::c_short },
    /// The timeout passed, or the real-time signal was sent by a process
    /// (`kill`, `sigqueue`: `si_code` <= 0) and names no socket.
    Nothing,
}

/// The fields of `siginfo_t` that a SIGIO-class signal fills (the kernel's
/// `_sigpoll` member of its union); `libc` gives no accessor for them on
/// glibc targets. The union follows three ints, aligned to its largest
/// member (a pointer): where `repr(C)` places `band` too.
#[repr(C)]
struct SigPoll {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    band: libc::c_long,
    fd: libc::c_int,
}

const _: () = assert!(
    std::mem::size_of::<SigPoll>() <= std::mem::size_of::<libc::siginfo_t>()
        && std::mem::align_of::<SigPoll>() <= std::mem::align_of::<libc::siginfo_t>()
);

/// The signals this loop takes, all blocked and taken with `sigtimedwait`:
/// SIGINT and SIGTERM, SIGIO, and in rt mode the real-time signal that
/// every socket is told to raise.
pub struct Signals {
    mode: Mode,
    /// `SIGRTMIN` as glibc counts it (it keeps the first two for its threads).
    rt_signal: libc::c_int,
    /// Everything `sigtimedwait` waits for.
    all: libc::sigset_t,
    /// The real-time signal alone: what an overflow drains.
    queued: libc::sigset_t,
    /// Whom the sockets signal (`F_SETOWN`).
    owner: libc::pid_t,
}

impl Signals {
    /// Ignores SIGPIPE and blocks the set. Call it first thing in `main`,
    /// while this is the only thread: the process's mask is this thread's.
    pub fn block(mode: Mode) -> io::Result<Signals> {
        ignore_sigpipe()?;
        let rt_signal = libc::SIGRTMIN();
        let mut all = empty_set()?;
        for sig in STOP_SIGNALS {
            add(&mut all, sig as libc::c_int)?;
        }
        add(&mut all, libc::SIGIO)?;
        let mut queued = empty_set()?;
        match mode {
            Mode::Plain => {}
            Mode::Rt => {
                add(&mut all, rt_signal)?;
                add(&mut queued, rt_signal)?;
            }
        }
        // SAFETY: `all` is an initialised sigset_t; the old mask is not asked for.
        syscall!(
            unsafe { libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()) },
            "sigprocmask(SIG_BLOCK)"
        )?;
        Ok(Signals {
            mode,
            rt_signal,
            all,
            queued,
            // SAFETY: getpid has no preconditions and cannot fail.
            owner: unsafe { libc::getpid() },
        })
    }

    /// Makes `fd` signal this process on I/O: owner first, then the signal,
    /// then `O_ASYNC`, which takes effect at once.
    pub fn arm(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: F_SETOWN takes an int (a pid); no memory is passed.
        syscall!(
            unsafe { libc::fcntl(fd, libc::F_SETOWN, self.owner) },
            "fcntl(F_SETOWN, fd {fd})"
        )?;
        match self.mode {
            // Signal 0, the default: plain SIGIO, with no siginfo fields.
            Mode::Plain => {}
            Mode::Rt => {
                // SAFETY: F_SETSIG takes an int (a signal number).
                syscall!(
                    unsafe { libc::fcntl(fd, F_SETSIG, self.rt_signal) },
                    "fcntl(F_SETSIG, fd {fd})"
                )?;
            }
        }
        // SAFETY: F_SETFL takes an int of flags; O_NONBLOCK is kept.
        syscall!(
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC) },
            "fcntl(F_SETFL, O_ASYNC, fd {fd})"
        )?;
        Ok(())
    }

    /// Takes one pending signal of the set, waiting at most `timeout`
    /// (`None`: until one comes). `EAGAIN` (the timeout passed) and `EINTR`
    /// are returned to the caller, as for any other call.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Wake> {
        // SAFETY: all-zero is a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let limit = timeout.map(timespec);
        let limit_ptr = limit
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `all` is initialised, `info` writable, `limit_ptr` null or a live timespec.
        let signo = syscall!(
            unsafe { libc::sigtimedwait(&self.all, &mut info, limit_ptr) },
            "sigtimedwait"
        )?;
        // SAFETY: `info` is a siginfo_t the kernel filled; SigPoll is a
        // prefix of its layout (checked above) of plain integers.
        let info = unsafe { &*(&info as *const libc::siginfo_t).cast::<SigPoll>() };
        Ok(match signo {
            libc::SIGINT | libc::SIGTERM => Wake::Stop,
            libc::SIGIO => Wake::Somewhere,
            // si_code is the event (POLL_IN, POLL_OUT, ... all > 0) when the
            // kernel raised it for a socket.
            _ if signo == self.rt_signal && info.code > 0 => Wake::Ready {
                fd: info.fd,
                // POLL* bits, all below 0x8000.
                band: info.band as libc::c_short,
            },
            _ => Wake::Nothing,
        })
    }

    /// Discards every queued real-time signal, without waiting.
    pub fn drain_queue(&self) -> io::Result<()> {
        let now = timespec(Duration::ZERO);
        // SAFETY: all-zero is a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: `queued` is initialised, `info` writable, `now` a live timespec.
            let taken = syscall!(
                unsafe { libc::sigtimedwait(&self.queued, &mut info, &now) },
                "sigtimedwait(drain)"
            );
            match taken {
                Ok(_) => continue,
                // EAGAIN: the queue is empty.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => match WaitError::classify(&e).warned("sigio", &e) {
                    WaitError::Retry => continue,
                    // What stays queued is only stale: the sweep serves
                    // every socket anyway, and a stale signal finds nothing.
                    WaitError::BackOff => return Ok(()),
                    WaitError::Fatal => return Err(e),
                },
            }
        }
    }
}

fn empty_set() -> io::Result<libc::sigset_t> {
    // SAFETY: all-zero is a valid sigset_t, and sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable sigset_t.
    syscall!(unsafe { libc::sigemptyset(&mut set) }, "sigemptyset")?;
    Ok(set)
}

fn add(set: &mut libc::sigset_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `set` is an initialised sigset_t.
    syscall!(unsafe { libc::sigaddset(set, sig) }, "sigaddset({sig})")?;
    Ok(())
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}
