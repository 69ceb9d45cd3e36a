//! The few raw calls the load generator makes: epoll, non-blocking sockets,
//! CPU pinning and per-thread CPU time.
//!
//! Calls on the hot path return the bare `io::Error` so that its errno can
//! be classified (`errors::classify`); calls whose failure ends the run wrap
//! it with the syscall's name.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `-1` → the errno as `io::Error`, anything else → `Ok`.
macro_rules! syscall {
    ($e:expr) => {{
        let r = $e;
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }};
}

/// Prefix an error with the call that failed, keeping its kind.
pub fn named(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the descriptor it returns is owned below.
        let fd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
            .map_err(|e| named("epoll_create1", e))?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        syscall!(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
            .map_err(|e| named(&format!("epoll_ctl(ADD, fd {fd})"), e))
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
            .map_err(|e| named(&format!("epoll_ctl(MOD, fd {fd})"), e))
    }

    /// Waits at most `timeout` (nanosecond precision with `epoll_pwait2`,
    /// so that open-loop sends are not rounded to milliseconds). EINTR is
    /// an empty wake-up, not an error.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is writable for `max` entries; `ts` outlives the call.
        let r = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                max,
                &ts,
                std::ptr::null(),
            )
        };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => Ok(0),
            // Kernels before 5.11: millisecond epoll_wait, rounded up so a
            // deadline is never woken for early in a loop.
            Some(libc::ENOSYS) => {
                let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                // SAFETY: as above.
                let r =
                    unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, ms) };
                if r >= 0 {
                    Ok(r as usize)
                } else {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EINTR) {
                        Ok(0)
                    } else {
                        Err(named("epoll_wait", e))
                    }
                }
            }
            _ => Err(named("epoll_pwait2", e)),
        }
    }
}

/// A sockaddr built from a `SocketAddr`, for `connect`/`bind`.
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(addr: &SocketAddr) -> RawAddr {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    fn ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

/// A non-blocking TCP socket; `nodelay` turns Nagle off (a client-side
/// delay would be charged to the server's latency).
pub fn tcp_socket(addr: &SocketAddr, nodelay: bool) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the descriptor is owned at once.
    let fd = syscall!(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if nodelay {
        setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    Ok(fd)
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    syscall!(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Binds the socket to a source address, the port chosen later by
/// `connect` (`IP_BIND_ADDRESS_NO_PORT`), so that each (source address,
/// port) pair is only spent per destination, not globally as `bind(:0)`
/// would.
pub fn bind_source(fd: RawFd, ip: Ipv4Addr) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    let a = RawAddr::new(&SocketAddr::from((ip, 0)));
    // SAFETY: `a` holds a valid sockaddr of length `a.len`.
    syscall!(unsafe { libc::bind(fd, a.ptr(), a.len) })?;
    Ok(())
}

/// Starts a connect: `Ok(true)` connected at once, `Ok(false)` in progress
/// (EINPROGRESS: writable once done, the outcome in `SO_ERROR`).
pub fn connect(fd: RawFd, addr: &RawAddr) -> io::Result<bool> {
    // SAFETY: `addr` holds a valid sockaddr of length `addr.len`.
    match syscall!(unsafe { libc::connect(fd, addr.ptr(), addr.len) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The outcome of a non-blocking connect (`SO_ERROR`, which the read clears).
pub fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: `err` and `len` outlive the call; `len` is err's size.
    syscall!(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// `SO_LINGER {on, 0}`: the next `close` sends RST and leaves no TIME_WAIT
/// behind, so thousands of short connections cannot exhaust local ports.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` outlives the call and its size is passed.
    syscall!(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `send` that never raises SIGPIPE (a reset peer is an `EPIPE` to count).
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length.
    let n = syscall!(unsafe {
        libc::send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    })?;
    Ok(n as usize)
}

pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let n = syscall!(unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    })?;
    Ok(n as usize)
}

/// What an idle connection looks like from our side, without consuming
/// anything: `MSG_PEEK` reports EOF (0), a pending RST (ECONNRESET), unread
/// data, or nothing yet (EAGAIN).
pub enum PeerState {
    Open,
    Eof,
    Reset,
    Data,
    Error(io::Error),
}

pub fn peek_state(fd: RawFd) -> PeerState {
    let mut b = [0u8; 1];
    // SAFETY: `b` is writable for one byte.
    let r = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr() as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match r {
        0 => PeerState::Eof,
        n if n > 0 => PeerState::Data,
        _ => {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => PeerState::Open,
                Some(libc::ECONNRESET) | Some(libc::EPIPE) => PeerState::Reset,
                _ => PeerState::Error(e),
            }
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the server's wake-up trace
/// stamps its records with (`perf_event_attr.clockid`), so the two compare.
pub fn monotonic_ns() -> u64 {
    // SAFETY: all-zero is a valid timespec; the kernel fills it.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: `ts` outlives the call. CLOCK_MONOTONIC always exists, so
    // the call cannot fail (EINVAL, EFAULT are ruled out here).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user, system) of the calling thread.
pub fn thread_cpu() -> io::Result<(Duration, Duration)> {
    // SAFETY: all-zero is a valid rusage; the kernel fills it.
    let mut ru: libc::rusage = unsafe { zeroed() };
    // SAFETY: `ru` outlives the call.
    syscall!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) })
        .map_err(|e| named("getrusage(RUSAGE_THREAD)", e))?;
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((tv(ru.ru_utime), tv(ru.ru_stime)))
}

/// CPUs the calling thread may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `set` outlives the call and its size is passed.
    syscall!(unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) })
        .map_err(|e| named("sched_getaffinity", e))?;
    // SAFETY: CPU_ISSET reads the set within its bounds (i < CPU_SETSIZE).
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// Pins the calling thread (and whatever it later forks or spawns, which
/// inherit the mask) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpu {c} is beyond CPU_SETSIZE"),
            ));
        }
        // SAFETY: c < CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` outlives the call and its size is passed.
    syscall!(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) })
        .map_err(|e| named(&format!("sched_setaffinity({cpus:?})"), e))?;
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (10 000 idle
/// connections need more than the usual 1024) and returns the new limit.
/// A server started afterwards inherits it.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: all-zero is a valid rlimit; the kernel fills it.
    let mut rl: libc::rlimit = unsafe { zeroed() };
    // SAFETY: `rl` outlives the call.
    syscall!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })
        .map_err(|e| named("getrlimit(RLIMIT_NOFILE)", e))?;
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: `rl` outlives the call.
        syscall!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })
            .map_err(|e| named("setrlimit(RLIMIT_NOFILE)", e))?;
    }
    Ok(rl.rlim_cur)
}

/// The timer slack the load threads ask for, in nanoseconds: the kernel
/// may fire a thread's timers (epoll_pwait2, clock_nanosleep timeouts) up
/// to its slack late to batch wake-ups, 50 µs by default.
pub const TIMER_SLACK_NS: u64 = 1;

/// `prctl(PR_SET_TIMERSLACK, ns)` for the calling thread (a thread's slack
/// is its own; new threads inherit their creator's).
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and touches no memory.
    syscall!(unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) })
        .map_err(|e| named(&format!("prctl(PR_SET_TIMERSLACK, {ns})"), e))?;
    Ok(())
}

/// `prctl(PR_GET_TIMERSLACK)`: the calling thread's timer slack in ns.
pub fn timer_slack() -> io::Result<u64> {
    // SAFETY: PR_GET_TIMERSLACK reads nothing from user memory.
    let r = syscall!(unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) })
        .map_err(|e| named("prctl(PR_GET_TIMERSLACK)", e))?;
    Ok(r as u64)
}
