//! Listener setup, the accept call, and the answer to a full descriptor
//! table. The models call [`accept`] themselves and handle its errors at the
//! call site; this file only makes the calls read the same in every model.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::policy::AcceptError;
use crate::syscall;

/// Whether a descriptor's calls may block. Event-loop models need
/// `NonBlocking` on every socket: one that would block stalls all the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    Blocking,
    NonBlocking,
}

/// Connections waiting to be accepted. The kernel clamps it to
/// `net.core.somaxconn` (4096 on current kernels); a small backlog makes a
/// burst of connects wait for SYN retransmits, seconds each.
pub const BACKLOG: i32 = 4096;

pub struct Listener {
    fd: OwnedFd,
    addr: SocketAddr,
}

impl Listener {
    /// `socket`, `SO_REUSEADDR` (a restarted server rebinds despite
    /// TIME_WAIT), `TCP_NODELAY` (see `bind_with`), `bind`,
    /// `listen(BACKLOG)`: one listener, one owner; no other socket may bind
    /// the port.
    pub fn bind(addr: SocketAddr, io: IoMode) -> io::Result<Listener> {
        Listener::bind_with(addr, io, false)
    }

    /// The same with `SO_REUSEPORT`: several listeners on one port, and the
    /// kernel hashes each new connection to one of them (how `--share
    /// reuseport` loops share it: [`crate::workers::Share`]).
    pub fn bind_reuseport(addr: SocketAddr, io: IoMode) -> io::Result<Listener> {
        Listener::bind_with(addr, io, true)
    }

    fn bind_with(addr: SocketAddr, io: IoMode, reuse_port: bool) -> io::Result<Listener> {
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        let mut kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
        if io == IoMode::NonBlocking {
            kind |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: plain socket(2) with constant arguments.
        let raw = syscall!(unsafe { libc::socket(family, kind, 0) }, "socket")?;
        // SAFETY: socket returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_int_option(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
        if reuse_port {
            set_int_option(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
        }
        // Nagle's algorithm (RFC 896) holds a segment smaller than the MSS
        // while an earlier one is unacknowledged, and the peer may delay
        // that ACK by up to 40 ms (RFC 1122): a reply echoed in parts (a
        // 64 KiB request read 16 KiB at a time) would stall for it at every
        // part but the first. Every accepted socket inherits TCP_NODELAY
        // from its listener, so one call here covers every model, even
        // io_uring's direct descriptors, which no setsockopt can reach.
        set_int_option(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1, "TCP_NODELAY")?;
        let (storage, len) = to_sockaddr(&addr);
        // SAFETY: `storage` holds a sockaddr of `len` bytes for this family.
        syscall!(
            unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) },
            "bind({addr})"
        )?;
        // SAFETY: `raw` is a bound stream socket.
        syscall!(unsafe { libc::listen(raw, BACKLOG) }, "listen(fd {raw})")?;
        let addr = local_addr(raw)?;
        Ok(Listener { fd, addr })
    }

    /// The address really bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Prints the one stdout line of the contract, `listening on HOST:PORT`,
    /// and flushes it: whoever started us waits for it.
    pub fn announce(&self) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", self.addr)?;
        out.flush()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The listening socket itself, for a runtime that takes over a listener it
/// did not create (`peers`: `tokio::net::TcpListener::from_std`).
impl From<Listener> for OwnedFd {
    fn from(listener: Listener) -> OwnedFd {
        listener.fd
    }
}

/// `accept4` with `SOCK_CLOEXEC` (a forked child must not inherit other
/// clients' sockets across exec) and, for event loops, `SOCK_NONBLOCK`.
///
/// Errors are the caller's to handle, visibly, by their class
/// ([`crate::policy::AcceptError::classify`]).
pub fn accept(listener: RawFd, io: IoMode) -> io::Result<OwnedFd> {
    let mut flags = libc::SOCK_CLOEXEC;
    if io == IoMode::NonBlocking {
        flags |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: null address pointers are allowed: we do not ask for the peer's address.
    let raw = syscall!(
        unsafe { libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), flags) },
        "accept4(fd {listener})"
    )?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// How long a model leaves its listener alone when [`Spare::refuse_one`]
/// says [`Refusal::TableFull`] (not one descriptor is to be had) or `accept`
/// says kernel memory is short ([`crate::policy::AcceptError::BackOff`]):
/// a listener kept in the interest set would be reported ready on every
/// wait, and nothing tells us when the shortage ends (nginx waits its
/// `accept_mutex_delay`, 500 ms).
pub const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The spare-descriptor answer to `EMFILE` (libev, libuv): hold one spare
/// descriptor; when `accept` fails for lack of descriptors, free the spare,
/// accept the pending connection and close it at once, then take the spare
/// back. Without it the connection stays pending, the listener stays
/// readable, and a level-triggered loop spins at 100 % CPU.
pub struct Spare {
    fd: Option<OwnedFd>,
}

/// What [`Spare::refuse_one`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// One pending connection was accepted and closed.
    Refused,
    /// `EAGAIN` or `ECONNABORTED`: nothing (left) to refuse.
    NothingPending,
    /// Not one descriptor to be had: the spare was already lost (another
    /// thread took the slot it freed) or `accept` failed again. The
    /// connection stays queued; retrying at once would spin.
    TableFull,
}

impl Spare {
    pub fn new() -> io::Result<Spare> {
        Ok(Spare {
            fd: Some(open_dev_null()?),
        })
    }

    /// Takes the spare back if it was lost: after `refuse_one`, a sibling
    /// thread may have taken the freed slot, and until a descriptor closes
    /// the spare cannot be reopened. Without this a spare lost once is lost
    /// for good, and the next `EMFILE` finds nothing to free.
    pub fn refill(&mut self) {
        if self.fd.is_none() {
            self.fd = open_dev_null().ok();
        }
    }

    /// Refuses one pending connection; call it when `accept` said
    /// `EMFILE`/`ENFILE`.
    ///
    /// On a BLOCKING listener this blocks until a connection arrives if
    /// none is pending: check for one first (`poll` with timeout 0).
    pub fn refuse_one(&mut self, listener: RawFd, io: IoMode) -> Refusal {
        let Some(spare) = self.fd.take() else {
            self.refill();
            return Refusal::TableFull;
        };
        drop(spare);
        let outcome = loop {
            match accept(listener, io) {
                // Dropped at once: the client sees EOF.
                Ok(_) => break Refusal::Refused,
                Err(e) => match AcceptError::classify(&e) {
                    AcceptError::Retry => continue,
                    // The pending one failed by itself: nothing to refuse.
                    AcceptError::Drained | AcceptError::Skip => break Refusal::NothingPending,
                    // EMFILE again (another thread took the slot), ENFILE,
                    // or memory short: the caller leaves the listener alone.
                    AcceptError::Exhausted | AcceptError::BackOff | AcceptError::Fatal => {
                        break Refusal::TableFull
                    }
                },
            }
        };
        self.refill();
        outcome
    }
}

fn open_dev_null() -> io::Result<OwnedFd> {
    // SAFETY: a constant NUL-terminated path.
    let raw = syscall!(
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        "open(/dev/null)"
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `fcntl(F_SETFL, O_NONBLOCK)` on a descriptor we already have.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument.
    let flags = syscall!(
        unsafe { libc::fcntl(fd, libc::F_GETFL) },
        "fcntl(F_GETFL, fd {fd})"
    )?;
    // SAFETY: F_SETFL takes an int of flags.
    syscall!(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
        "fcntl(F_SETFL, fd {fd})"
    )?;
    Ok(())
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its exact size is passed.
    syscall!(
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        },
        "setsockopt({what}, fd {fd})"
    )?;
    Ok(())
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes and `len` is in/out.
    syscall!(
        unsafe {
            libc::getsockname(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        },
        "getsockname(fd {fd})"
    )?;
    from_sockaddr(&storage)
}

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        family => Err(io::Error::other(format!(
            "getsockname: unexpected family {family}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    #[test]
    fn port_zero_binds_a_real_port_and_accept_returns_the_connection() {
        let listener =
            Listener::bind("127.0.0.1:0".parse().expect("addr"), IoMode::Blocking).expect("bind");
        assert_ne!(listener.local_addr().port(), 0);
        let mut client = TcpStream::connect(listener.local_addr()).expect("connect");
        let conn = accept(listener.as_raw_fd(), IoMode::Blocking).expect("accept4");
        drop(conn);
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).expect("read EOF"), 0);
    }

    #[test]
    fn an_accepted_socket_inherits_tcp_nodelay_from_the_listener() {
        let listener =
            Listener::bind("127.0.0.1:0".parse().expect("addr"), IoMode::Blocking).expect("bind");
        let _client = TcpStream::connect(listener.local_addr()).expect("connect");
        let conn = accept(listener.as_raw_fd(), IoMode::Blocking).expect("accept4");
        let mut value: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: `value` and `len` are live and sized for an int option.
        let rc = unsafe {
            libc::getsockopt(
                conn.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        assert_eq!(value, 1, "the accepted socket would run Nagle's algorithm");
    }

    #[test]
    fn ipv6_loopback_is_reported_in_brackets() {
        let listener = match Listener::bind("[::1]:0".parse().expect("addr"), IoMode::NonBlocking) {
            Ok(l) => l,
            // A machine without IPv6 cannot run this check; it says so.
            Err(e) if crate::sys::errno(&e) == Some(libc::EADDRNOTAVAIL) => {
                eprintln!("skipped: no ::1 on this machine ({e})");
                return;
            }
            Err(e) => panic!("bind [::1]:0: {e}"),
        };
        assert!(listener.local_addr().to_string().starts_with("[::1]:"));
    }

    #[test]
    fn nonblocking_accept_with_nothing_pending_would_block() {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("addr"), IoMode::NonBlocking)
            .expect("bind");
        let err = accept(listener.as_raw_fd(), IoMode::NonBlocking).expect_err("nothing pending");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().starts_with("accept4(fd "), "{err}");
    }

    #[test]
    fn spare_refuses_a_pending_connection() {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("addr"), IoMode::NonBlocking)
            .expect("bind");
        let mut client = TcpStream::connect(listener.local_addr()).expect("connect");
        let mut spare = Spare::new().expect("spare");
        // connect() returns once the handshake is done; the connection is
        // then in the accept queue.
        assert_eq!(
            spare.refuse_one(listener.as_raw_fd(), IoMode::NonBlocking),
            Refusal::Refused
        );
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).expect("EOF"), 0);
        assert!(spare.fd.is_some(), "spare must be taken back");
        assert_eq!(
            spare.refuse_one(listener.as_raw_fd(), IoMode::NonBlocking),
            Refusal::NothingPending
        );
        assert!(spare.fd.is_some(), "spare must be taken back");
    }

    #[test]
    fn a_lost_spare_reports_table_full_and_refill_takes_it_back() {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("addr"), IoMode::NonBlocking)
            .expect("bind");
        let mut spare = Spare::new().expect("spare");
        spare.fd = None;
        assert_eq!(
            spare.refuse_one(listener.as_raw_fd(), IoMode::NonBlocking),
            Refusal::TableFull
        );
        spare.fd = None;
        spare.refill();
        assert!(spare.fd.is_some(), "refill must reopen the spare");
    }
}
