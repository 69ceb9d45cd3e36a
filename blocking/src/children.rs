//! The child processes of `fork` and `prefork`: starting one, reaping every
//! one that ended, and ending them all at stop, so that no zombie piles up
//! during the run and none is left behind (zombie or orphan) after it.
//!
//! SIGCHLD is blocked in every thread (`SignalFd::install` in `main`), so a
//! child's end is read from the signalfd, or waited for with `sigtimedwait`.

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use lab::syscall;

/// How long children get to die of SIGTERM before they get SIGKILL. The
/// contract allows 2 s from the signal to our exit.
pub const GRACE: Duration = Duration::from_secs(1);

/// Live (or ended but not yet reaped) children. A pid stays here until it
/// is reaped, so the kernel cannot have given it to another process: a
/// `kill` on it never hits a stranger.
#[derive(Default)]
pub struct Children {
    pids: HashSet<libc::pid_t>,
}

impl Children {
    pub fn insert(&mut self, pid: libc::pid_t) {
        self.pids.insert(pid);
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Reaps every child that has ended, calling `ended(pid, status)` for
    /// each. One SIGCHLD may stand for many ends (a standard signal does
    /// not queue), hence `waitpid(-1, WNOHANG)` until none is left.
    pub fn reap(&mut self, mut ended: impl FnMut(libc::pid_t, i32)) -> io::Result<()> {
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer for the call.
            match syscall!(
                unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) },
                "waitpid(-1, WNOHANG)"
            ) {
                // Children remain; none has ended.
                Ok(0) => return Ok(()),
                Ok(pid) => {
                    self.pids.remove(&pid);
                    ended(pid, status);
                }
                Err(e) if lab::sys::errno(&e) == Some(libc::ECHILD) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGTERM to every child, a wait of at most `grace` for their ends,
    /// then SIGKILL to any still alive and a wait for them. Afterwards
    /// every child is reaped, so `RUSAGE_CHILDREN` counts all of them.
    /// The calling thread must have SIGCHLD blocked.
    pub fn terminate(
        &mut self,
        grace: Duration,
        mut ended: impl FnMut(libc::pid_t, i32),
    ) -> io::Result<()> {
        for &pid in &self.pids {
            signal(pid, libc::SIGTERM)?;
        }
        let deadline = Instant::now() + grace;
        loop {
            self.reap(&mut ended)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if self.pids.is_empty() || left.is_zero() {
                break;
            }
            wait_for_sigchld(left)?;
        }
        for pid in std::mem::take(&mut self.pids) {
            lab::log!("blocking: child {pid} ignored SIGTERM for {grace:?}; sending SIGKILL");
            signal(pid, libc::SIGKILL)?;
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer for the call.
            while let Err(e) = syscall!(
                unsafe { libc::waitpid(pid, &mut status, 0) },
                "waitpid({pid})"
            ) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            ended(pid, status);
        }
        Ok(())
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes no pointers; `pid` is an unreaped child of ours.
    syscall!(unsafe { libc::kill(pid, sig) }, "kill({pid}, {sig})")?;
    Ok(())
}

/// Blocks until SIGCHLD is pending or `timeout` passed (then `Ok` too).
fn wait_for_sigchld(timeout: Duration) -> io::Result<()> {
    // SAFETY: all-zero is a valid sigset_t, and sigemptyset/sigaddset
    // initialise it; `set` lives for the calls.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; no siginfo is asked for.
    match syscall!(
        unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) },
        "sigtimedwait(SIGCHLD)"
    ) {
        Ok(_) => Ok(()),
        // EAGAIN: the timeout passed; EINTR: another signal's handler ran.
        Err(e) if matches!(lab::sys::errno(&e), Some(libc::EAGAIN | libc::EINTR)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `fork(2)`: the child gets 0.
pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the child holds only the calling thread and must never
    // return into the caller's code; each caller keeps that, and leaves the
    // child with `exit_child` (`_exit`), never unwinding out of it.
    // - `fork` mode: the parent is multi-threaded (its reaper thread), so
    //   a lock another thread held at fork stays locked in the child. The
    //   child takes no std lock (no `eprintln!`: `child_log`), and relies on
    //   glibc's fork resetting its malloc locks for the one buffer it
    //   allocates (`serve_conn`, `child_log`); it catches a panic.
    // - `prefork`: the parent is single-threaded at fork time, so the child
    //   inherits no held lock and may use std freely; its body runs under
    //   `catch_unwind`, then `_exit`.
    syscall!(unsafe { libc::fork() }, "fork")
}

/// First thing in a new child: die with the parent, then take signals
/// again. `parent` is the parent's pid, read before `fork`.
pub fn enter_child(parent: libc::pid_t) -> io::Result<()> {
    // If the parent dies, even of SIGKILL, the kernel sends us SIGTERM:
    // no orphan outlives it. (It is sent when the forking *thread* ends;
    // both modes fork from the main thread.)
    // SAFETY: PR_SET_PDEATHSIG takes a signal number, no pointers.
    syscall!(
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) },
        "prctl(PR_SET_PDEATHSIG)"
    )?;
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::other(
            "parent ended before prctl(PR_SET_PDEATHSIG)",
        ));
    }
    // The mask survives fork: without this SIGTERM from the parent would
    // only be queued. A SIGTERM already pending is delivered here.
    lab::signals::unblock_all_in_child()
}

/// Blocks every signal that can be blocked (SIGKILL and SIGSTOP cannot)
/// in the calling thread. Cannot fail with a valid `how` and set, and a
/// child that could not block them would only keep today's small window.
pub fn block_signals() {
    // SAFETY: sigfillset initialises `set`, which lives for both calls;
    // no old mask is asked for.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Leaves a child without running destructors or atexit handlers: they
/// belong to the parent's state (its listener, its threads' buffers).
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing is used afterwards.
    unsafe { libc::_exit(code) }
}

/// A line to stderr from a child. Not `eprintln!`: std's stderr lock may
/// have been held by a parent thread that does not exist in the child.
pub fn child_log(message: &str) {
    let line = format!("blocking: child {}: {message}\n", std::process::id());
    // SAFETY: `line` is valid for reads of its length. A failed or short
    // write of a log line has nowhere better to be reported.
    unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), line.len()) };
}

/// Closes a descriptor the child inherited but must not keep (the
/// listener in `fork`, the signalfd). The parent's `OwnedFd` for it lives
/// on in the child's copy of memory, but a child never runs destructors.
pub fn close_inherited(fd: libc::c_int) {
    // SAFETY: close takes no pointers; the child owns its copy of `fd`.
    unsafe { libc::close(fd) };
}

/// `exited 0`, `exited 3`, `killed by SIGTERM`.
pub fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        match nix::sys::signal::Signal::try_from(sig) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {sig}"),
        }
    } else {
        format!("ended with status {status:#x}")
    }
}
