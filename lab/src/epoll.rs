//! epoll(7)'s three calls, one method each, for the models that wait on
//! epoll (`epoll`, and `coroutine`'s hub). Each method is one system call
//! through [`crate::syscall!`], so a failure names the call and the
//! descriptor (`epoll_ctl(ADD, fd 7): Bad file descriptor`), and nothing
//! more: no retry, no interest bookkeeping, no policy. Every `add`,
//! `modify`, `delete` and `wait` therefore stands at the model's own call
//! site, where its errno is decided.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::syscall;

/// The flags as `epoll_event.events` holds them (`libc` defines them as `i32`).
pub const EPOLLIN: u32 = libc::EPOLLIN as u32;
pub const EPOLLOUT: u32 = libc::EPOLLOUT as u32;
pub const EPOLLRDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const EPOLLHUP: u32 = libc::EPOLLHUP as u32;
pub const EPOLLERR: u32 = libc::EPOLLERR as u32;
pub const EPOLLET: u32 = libc::EPOLLET as u32;
pub const EPOLLEXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

/// One epoll instance; closing it (drop) frees the kernel's interest set.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointer arguments; returns a new descriptor or -1.
        let raw = syscall!(
            unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
            "epoll_create1"
        )?;
        // SAFETY: epoll_create1 returned a new descriptor that nothing else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// `epoll_ctl(ADD)`: watches `fd`; its events come back with `token` in
    /// `epoll_event.u64`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, "ADD", fd, token, events)
    }

    /// `epoll_ctl(DEL)`: stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, "DEL", fd, 0, 0)
    }

    /// `epoll_ctl(MOD)`: changes what `fd` is watched for. The kernel
    /// refuses it (EINVAL) for a registration made with `EPOLLEXCLUSIVE`.
    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, "MOD", fd, token, events)
    }

    fn ctl(&self, op: i32, name: &str, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        let ep = self.fd.as_raw_fd();
        // SAFETY: `event` is a live epoll_event; the kernel copies it in.
        syscall!(
            unsafe { libc::epoll_ctl(ep, op, fd, &mut event) },
            "epoll_ctl({name}, fd {fd})"
        )?;
        Ok(())
    }

    /// `epoll_wait`: blocks until something is ready or `timeout_ms` passes
    /// (-1: no timeout); returns how many entries of `events` the kernel
    /// filled. EINTR is returned to the caller, as for any other call.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        let ep = self.fd.as_raw_fd();
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is writable for `max` entries; the kernel fills at most that many.
        let n = syscall!(
            unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), max, timeout_ms) },
            "epoll_wait(fd {ep})"
        )?;
        Ok(n as usize)
    }
}
