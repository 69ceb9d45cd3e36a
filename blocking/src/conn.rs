//! What every blocking mode shares: the copy loop of one connection
//! (`serve_conn`), the accept call with its errors handled, and the registry
//! of open connections that lets the stop thread wake every blocked call.
//!
//! Phase 1 (waiting for data) blocks in `read`, one connection per thread or
//! process; phase 2 (copying) blocks in `send` while the peer's receive
//! window and our send buffer are full. Writing the whole reply before the
//! next `read` is this model's back-pressure: a peer that does not read stops
//! us reading from it, so at most one buffer (`BUF_LEN`) is held per
//! connection.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use lab::conn::is_peer_gone;
use lab::net::{self, IoMode, Spare, ACCEPT_PAUSE};
use lab::policy::AcceptError;
use lab::{syscall, Stats};

/// One read's worth of request, transformed in place and written back.
/// On the heap, so that a thread's stack can stay small (see `thread.rs`).
const BUF_LEN: usize = 16 << 10;

/// Serves one connection until the peer's EOF, a reset, or the stop thread's
/// `shutdown`. Each reply is counted in `stats` just before it is sent.
///
/// A peer that went away (`ECONNRESET`, `EPIPE`, `ETIMEDOUT`) ends this
/// connection with `Ok`: it is the peer's business, not an error of ours.
pub fn serve_conn(fd: RawFd, stats: &Stats) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
        let n = match syscall!(
            unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) },
            "read(fd {fd})"
        ) {
            // EOF: the peer shut its write side (or the stop thread shut
            // ours). Everything owed was written before this read.
            Ok(0) => return Ok(()),
            Ok(n) => n as usize,
            // A signal handler ran before any byte arrived; nothing was read.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let reply = &mut buf[..n];
        lab::echo::transform_in_place(reply);
        // Counted before the send: on loopback the client may read the
        // reply before `send` even returns, and a `fork`/`prefork` child
        // may be killed by its parent's SIGTERM right then. The summary
        // must not show fewer bytes than the clients got; a connection that
        // fails mid-reply over-counts the unsent rest of that one reply.
        stats.echoed(n);
        match write_all(fd, reply) {
            Ok(()) => {}
            Err(e) if is_peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Sends all of `bytes`, blocking while the socket's send buffer is full.
fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // MSG_NOSIGNAL: a peer that closed gives EPIPE here, not SIGPIPE.
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes during the call.
        let sent = match syscall!(
            unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) },
            "send(fd {fd})"
        ) {
            Ok(sent) => sent as usize,
            // Interrupted before anything was sent; a blocking send that was
            // interrupted after sending part returns that part instead.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // A short write: the kernel took what fit (a signal, or SO_SNDTIMEO);
        // the rest goes in the next call.
        bytes = &bytes[sent..];
    }
    Ok(())
}

/// Accepts the next connection, blocking in `accept4` until one is pending.
/// `Ok(None)`: the stop thread shut the listener down.
///
/// Every error the kernel may return for reasons other than a bug of ours is
/// retried here, visibly; none of them makes the loop spin.
pub fn accept_conn(
    listener: RawFd,
    spare: &mut Spare,
    registry: &Registry,
) -> io::Result<Option<OwnedFd>> {
    loop {
        let err = match net::accept(listener, IoMode::Blocking) {
            Ok(fd) => return Ok(Some(fd)),
            Err(err) => err,
        };
        // `shutdown(listener)` makes a blocked accept return EINVAL on
        // Linux, and every later one too: that is how we are stopped.
        if registry.is_stopping() {
            return Ok(None);
        }
        match AcceptError::classify(&err).warned("blocking", &err) {
            // EAGAIN cannot come from a blocking listener but means the same.
            AcceptError::Drained | AcceptError::Retry => continue,
            // The peer gave up between its handshake and our accept, a
            // firewall refused it (EPERM), or (man accept(2)) a pending
            // network error of that connection: take the next.
            AcceptError::Skip => continue,
            // EMFILE/ENFILE. Linux reserves the descriptor before it waits
            // for a connection, so this fails at once, pending connection
            // or not, and no call blocks until a descriptor frees. A client
            // that is waiting is refused with the spare (closed at once,
            // not left hanging in the backlog); with none waiting, back off
            // and try again, since threads ending free descriptors.
            AcceptError::Exhausted => {
                if !(connection_pending(listener)
                    && spare.refuse_one(listener, IoMode::Blocking) == net::Refusal::Refused)
                {
                    std::thread::sleep(ACCEPT_PAUSE);
                }
            }
            // Kernel memory is short: nothing will wake us when it is back.
            AcceptError::BackOff => std::thread::sleep(ACCEPT_PAUSE),
            AcceptError::Fatal => return Err(err),
        }
    }
}

/// Whether a connection waits in the listener's accept queue: a check, not
/// a wait (timeout 0). Without it, `Spare::refuse_one` would block in
/// `accept` until the next client and refuse it even if descriptors had
/// freed up meanwhile. (With several acceptors another may take the
/// connection first; then the refusal waits for the next one.)
fn connection_pending(listener: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let ready = syscall!(
        unsafe { libc::poll(&mut pfd, 1, 0) },
        "poll(fd {listener}, POLLIN, timeout 0)"
    );
    // A failed check (EINTR, ENOMEM) counts as "none waiting": the caller
    // then backs off and asks again.
    matches!(ready, Ok(1)) && pfd.revents & libc::POLLIN != 0
}

/// The open connections of this process and whether it is stopping. The
/// stop thread's [`Registry::stop`] shuts every one of them down, which is
/// the only way to wake a thread blocked in `read` or `send` on it.
pub struct Registry {
    listener: RawFd,
    stopping: AtomicBool,
    open: Mutex<HashSet<RawFd>>,
}

impl Registry {
    pub fn new(listener: RawFd) -> Registry {
        Registry {
            listener,
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashSet::new()),
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Registers an admitted connection, or closes it and gives its
    /// `--max-conns` slot back if we are already stopping (the stop thread
    /// has swept the registry and would never wake it). `held` is a
    /// `prefork` worker's flag "this process holds a slot" (see
    /// `prefork.rs`), cleared just before the slot is given back.
    pub fn register<'a>(
        &'a self,
        fd: OwnedFd,
        stats: &'a Stats,
        held: Option<&'a AtomicU8>,
    ) -> Option<Conn<'a>> {
        let mut open = self.lock();
        if self.is_stopping() {
            drop(open);
            give_back(stats, held);
            return None;
        }
        open.insert(fd.as_raw_fd());
        Some(Conn {
            fd,
            registry: self,
            stats,
            held,
        })
    }

    /// Wakes every call blocked on our sockets: `accept` returns EINVAL,
    /// `read` returns 0 (EOF), `send` returns EPIPE. Idempotent.
    pub fn stop(&self) {
        let open = self.lock();
        self.stopping.store(true, Ordering::Release);
        shutdown(self.listener);
        // Under the lock: a descriptor in the set is still open and still
        // ours, never a number the kernel already gave to something else.
        for &fd in open.iter() {
            shutdown(fd);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<RawFd>> {
        // The set stays consistent even if a holder panicked: insert and
        // remove are single steps.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `shutdown(SHUT_RDWR)`; `ENOTCONN` (the peer already reset) is fine, the
/// call's purpose was only to wake a waiter.
fn shutdown(fd: RawFd) {
    // SAFETY: shutdown on a descriptor we own; no memory is passed.
    if let Err(e) = syscall!(
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) },
        "shutdown(fd {fd}, SHUT_RDWR)"
    ) {
        if lab::sys::errno(&e) != Some(libc::ENOTCONN) {
            lab::log!("blocking: {e}");
        }
    }
}

/// One admitted, registered connection. Dropping it (served, failed or
/// unwound from a panic) removes it from the registry, gives its
/// `--max-conns` slot back and closes it, in that order: once the peer sees
/// our FIN, its slot is free again.
pub struct Conn<'a> {
    fd: OwnedFd,
    registry: &'a Registry,
    stats: &'a Stats,
    held: Option<&'a AtomicU8>,
}

impl Conn<'_> {
    /// Serves the connection; an error or a panic ends this connection only.
    pub fn serve(self) {
        let fd = self.fd.as_raw_fd();
        match panic::catch_unwind(AssertUnwindSafe(|| serve_conn(fd, self.stats))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => lab::log!("blocking: {e}; connection closed"),
            // The panic message was printed by the panic hook.
            Err(_) => lab::log!("blocking: fd {fd}: handler panicked; connection closed"),
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.fd.as_raw_fd());
        give_back(self.stats, self.held);
    }
}

/// Gives a `--max-conns` slot back. The `held` flag is cleared first: a
/// worker killed between the two leaves the slot taken (a leak of one),
/// whereas the other order could have its parent release it twice.
fn give_back(stats: &Stats, held: Option<&AtomicU8>) {
    if let Some(held) = held {
        held.store(0, Ordering::Release);
    }
    stats.release();
}
