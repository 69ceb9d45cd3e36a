//! Readiness cost, after libevent's `test/bench.c`: N sockets are watched,
//! A of them are made readable (one byte each), and what is timed is one
//! round of wait + drain: the readiness call, finding the ready sockets,
//! and one `recv` on each. Making them readable is not timed.
//!
//! Mechanisms: `select` (the set rebuilt each round, then scanned with
//! `FD_ISSET`, as the select model does; N <= 1000 and every descriptor
//! below `FD_SETSIZE`), `poll` (one `pollfd` array kept across rounds,
//! `revents` scanned), epoll level-triggered and epoll edge-triggered
//! (registered once; `epoll_wait` returns the ready ones only).
//!
//! The sockets are unconnected `AF_UNIX` datagram sockets, each autobound
//! to an abstract address, and one sender socket writes to the active ones. libevent uses socketpairs, but N pairs take 2N descriptors,
//! and 10 000 pairs do not fit under a hard `RLIMIT_NOFILE` of 20 000; this
//! takes N + 1. A unix datagram is queued on the receiver within `sendto`,
//! so the A sockets are readable before the timed part begins.
//!
//! Run: `cargo bench -p epoll --bench readiness` (a few minutes on 2
//! cores); one mechanism: `... -- epoll_edge`.

use std::hint::black_box;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

const SIZES: [usize; 4] = [16, 256, 1000, 10_000];
const ACTIVE: [usize; 2] = [1, 16];
/// `select` past this many sockets is not what anyone runs (and the
/// descriptors would pass `FD_SETSIZE`).
const SELECT_MAX: usize = 1000;
/// Descriptors this process holds besides the sockets (stdio, the sender,
/// the epoll instance, criterion's files), with room to spare.
const OTHER_FDS: usize = 64;
/// A round that finds nothing ready within this long is a bug, not a
/// measurement: it fails loudly instead of hanging.
const TIMEOUT_MS: i32 = 10_000;

/// N receiving sockets and the one socket that makes them readable.
struct Sockets {
    receivers: Vec<OwnedFd>,
    addresses: Vec<(libc::sockaddr_un, libc::socklen_t)>,
    sender: OwnedFd,
}

fn dgram_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Sockets {
    fn new(n: usize) -> io::Result<Sockets> {
        let mut receivers = Vec::with_capacity(n);
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            let fd = dgram_socket()?;
            // SAFETY: all-zero is a valid sockaddr_un.
            let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            // Only the family: the kernel autobinds a unique abstract name.
            let family_only = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
            // SAFETY: `addr` holds at least `family_only` bytes.
            if unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_un).cast(),
                    family_only,
                )
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
            let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            // SAFETY: `addr` is writable for `len` bytes and `len` is in/out.
            if unsafe {
                libc::getsockname(
                    fd.as_raw_fd(),
                    (&mut addr as *mut libc::sockaddr_un).cast(),
                    &mut len,
                )
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
            receivers.push(fd);
            addresses.push((addr, len));
        }
        Ok(Sockets {
            receivers,
            addresses,
            sender: dgram_socket()?,
        })
    }

    /// One byte to each active socket (not timed).
    fn activate(&self, active: &[usize]) {
        for &i in active {
            let (addr, len) = &self.addresses[i];
            // SAFETY: one byte from a live array; `addr` is a bound address of `len` bytes.
            let sent = unsafe {
                libc::sendto(
                    self.sender.as_raw_fd(),
                    [1u8].as_ptr().cast(),
                    1,
                    0,
                    (addr as *const libc::sockaddr_un).cast(),
                    *len,
                )
            };
            assert_eq!(sent, 1, "sendto: {}", io::Error::last_os_error());
        }
    }
}

/// Takes the one byte a ready socket holds.
fn drain(fd: RawFd) {
    let mut byte = [0u8; 16];
    // SAFETY: `byte` is valid for writes of its length.
    let got = unsafe { libc::recv(fd, byte.as_mut_ptr().cast(), byte.len(), 0) };
    assert_eq!(got, 1, "recv(fd {fd}): {}", io::Error::last_os_error());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mechanism {
    Select,
    Poll,
    EpollLevel,
    EpollEdge,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Select => "select",
            Mechanism::Poll => "poll",
            Mechanism::EpollLevel => "epoll_level",
            Mechanism::EpollEdge => "epoll_edge",
        }
    }
}

/// A mechanism's interest set, built once for one set of sockets.
enum Waiter {
    Select {
        fds: Vec<RawFd>,
        nfds: i32,
    },
    Poll {
        pollfds: Vec<libc::pollfd>,
    },
    Epoll {
        ep: OwnedFd,
        events: Vec<libc::epoll_event>,
    },
}

impl Waiter {
    /// Err: this mechanism cannot watch these sockets (select's limits).
    fn new(mechanism: Mechanism, sockets: &Sockets) -> Result<Waiter, String> {
        let fds: Vec<RawFd> = sockets.receivers.iter().map(|fd| fd.as_raw_fd()).collect();
        let trigger = match mechanism {
            Mechanism::Select => {
                let n = fds.len();
                if n > SELECT_MAX {
                    return Err(format!("N={n} > {SELECT_MAX}"));
                }
                let highest = fds.iter().copied().max().unwrap_or(0);
                // FD_SET on a descriptor >= FD_SETSIZE writes past the bitmap.
                if highest as usize >= libc::FD_SETSIZE {
                    return Err(format!("fd {highest} >= FD_SETSIZE ({})", libc::FD_SETSIZE));
                }
                return Ok(Waiter::Select {
                    fds,
                    nfds: highest + 1,
                });
            }
            Mechanism::Poll => {
                let pollfds = fds
                    .iter()
                    .map(|&fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                return Ok(Waiter::Poll { pollfds });
            }
            Mechanism::EpollLevel => 0,
            Mechanism::EpollEdge => libc::EPOLLET as u32,
        };
        // SAFETY: no pointer arguments.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(format!("epoll_create1: {}", io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor nothing else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        for &fd in &fds {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32 | trigger,
                u64: fd as u64,
            };
            // SAFETY: `ev` is a live epoll_event; the kernel copies it.
            if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(format!(
                    "epoll_ctl(ADD, fd {fd}): {}",
                    io::Error::last_os_error()
                ));
            }
        }
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        Ok(Waiter::Epoll { ep, events })
    }

    /// The timed part: wait, find the ready sockets, drain each. Checks
    /// that exactly `expected` were found.
    fn round(&mut self, expected: usize) {
        let mut drained = 0;
        match self {
            Waiter::Select { fds, nfds } => {
                // SAFETY: all-zero is a valid, empty fd_set.
                let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
                for &fd in fds.iter() {
                    // SAFETY: fd < FD_SETSIZE was checked in `new`.
                    unsafe { libc::FD_SET(fd, &mut set) };
                }
                let mut timeout = libc::timeval {
                    tv_sec: (TIMEOUT_MS / 1000).into(),
                    tv_usec: 0,
                };
                // SAFETY: `set` and `timeout` are live; null sets are allowed.
                let ready = unsafe {
                    libc::select(
                        *nfds,
                        &mut set,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        &mut timeout,
                    )
                };
                assert_eq!(
                    ready,
                    expected as i32,
                    "select: {}",
                    io::Error::last_os_error()
                );
                for &fd in fds.iter() {
                    // SAFETY: fd < FD_SETSIZE; `set` is live.
                    if unsafe { libc::FD_ISSET(fd, &set) } {
                        drain(fd);
                        drained += 1;
                    }
                }
            }
            Waiter::Poll { pollfds } => {
                // SAFETY: `pollfds` is a live array of its length.
                let ready = unsafe {
                    libc::poll(
                        pollfds.as_mut_ptr(),
                        pollfds.len() as libc::nfds_t,
                        TIMEOUT_MS,
                    )
                };
                assert_eq!(
                    ready,
                    expected as i32,
                    "poll: {}",
                    io::Error::last_os_error()
                );
                for p in pollfds.iter() {
                    if p.revents & libc::POLLIN != 0 {
                        drain(p.fd);
                        drained += 1;
                    }
                }
            }
            Waiter::Epoll { ep, events } => {
                // SAFETY: `events` is writable for its length.
                let ready = unsafe {
                    libc::epoll_wait(
                        ep.as_raw_fd(),
                        events.as_mut_ptr(),
                        events.len() as i32,
                        TIMEOUT_MS,
                    )
                };
                assert_eq!(
                    ready,
                    expected as i32,
                    "epoll_wait: {}",
                    io::Error::last_os_error()
                );
                for ev in &events[..ready as usize] {
                    drain(ev.u64 as RawFd);
                    drained += 1;
                }
            }
        }
        assert_eq!(drained, expected);
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns the new soft limit.
fn raise_descriptor_limit() -> usize {
    // SAFETY: all-zero is a valid rlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        panic!("getrlimit(RLIMIT_NOFILE): {}", io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a live rlimit; raising soft up to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur.try_into().unwrap_or(usize::MAX)
}

fn readiness(c: &mut Criterion) {
    let limit = raise_descriptor_limit();
    let mut group = c.benchmark_group("readiness");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        if n + OTHER_FDS > limit {
            println!(
                "skipped N={n}: needs about {} descriptors, RLIMIT_NOFILE is {limit}",
                n + OTHER_FDS
            );
            continue;
        }
        let sockets = Sockets::new(n).unwrap_or_else(|e| panic!("{n} sockets: {e}"));
        for a in ACTIVE {
            // Spread over the whole set, as libevent's bench does.
            let active: Vec<usize> = (0..a).map(|k| k * n / a).collect();
            for mechanism in [
                Mechanism::Select,
                Mechanism::Poll,
                Mechanism::EpollLevel,
                Mechanism::EpollEdge,
            ] {
                let id = format!("{}/N={n}/A={a}", mechanism.name());
                let mut waiter = match Waiter::new(mechanism, &sockets) {
                    Ok(waiter) => waiter,
                    Err(why) => {
                        println!("skipped {id}: {why}");
                        continue;
                    }
                };
                group.bench_function(&id, |b| {
                    b.iter_custom(|rounds| {
                        let mut timed = Duration::ZERO;
                        for _ in 0..rounds {
                            sockets.activate(&active);
                            let start = Instant::now();
                            waiter.round(black_box(a));
                            timed += start.elapsed();
                        }
                        timed
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, readiness);
criterion_main!(benches);
