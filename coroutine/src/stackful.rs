//! `--mode stackful`: each connection is a coroutine with a stack of its
//! own (`corosensei`: an `mmap`ed stack below a `PROT_NONE` guard page, and
//! a context switch that saves the callee-saved registers and swaps the
//! stack pointer, all in user space). The handler is `blocking`'s
//! `serve_conn` and `write_all`, line for line, on an `O_NONBLOCK` socket:
//! where the blocking model's call would sleep in the kernel, this one gets
//! `EAGAIN` and suspends its coroutine back to the hub (`Wait::Io`), which
//! resumes it when epoll reports the socket. That is gevent: greenlets, and
//! a monkey-patched socket module whose calls switch to the hub.
//!
//! A coroutine is suspended anywhere in any depth of calls, because its
//! whole stack is kept: the handler needs no rewriting, only calls that
//! know how to park. The price is a stack per connection (`--stack-kib`; the
//! kernel maps it lazily, so resident memory is the pages touched).
//!
//! A coroutine that overflows `--stack-kib` touches its guard page
//! (`PROT_NONE`): SIGSEGV. Rust's overflow handler knows only thread stacks,
//! so it restores the default action and the whole process dies of SIGSEGV,
//! every connection with it, with no "stack overflow" message (see
//! `tests/semantics.rs`). The default 16 KiB holds the handler and a caught
//! panic's report, but not a panic under `RUST_BACKTRACE=1`: the hook
//! symbolises the backtrace on the coroutine's stack and overflows it (32
//! KiB suffices; give `--stack-kib 64` to debug).

use std::io;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use lab::conn::is_peer_gone;
use lab::{syscall, Stats};

use crate::hub::{Conn, Interest, Slab, Tasks};
use crate::{BUF_LEN, READS_PER_TURN};

/// Why a coroutine gave the hub its thread back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Its `read` or `send` said `EAGAIN`: resume it when epoll reports that.
    Io(Interest),
    /// It has work but had a long turn: resume it after the others.
    Turn,
}

/// A connection's coroutine: resumed with nothing, suspends with a
/// [`Wait`], returns once the connection is closed.
type Greenlet = Coroutine<(), Wait, (), DefaultStack>;

/// Stacks of finished coroutines, kept for the next connections: a new
/// stack is an `mmap` and an `mprotect`, a dropped one a `munmap`.
const SPARE_STACKS: usize = 64;

struct Parked {
    greenlet: Greenlet,
    on: Wait,
}

/// The coroutines of one hub, by token.
pub struct Greenlets {
    parked: Slab<Parked>,
    /// Tokens to resume without an event: new ones, and those that gave up
    /// their turn.
    turns: Vec<usize>,
    stack_size: usize,
    stacks: Vec<DefaultStack>,
}

impl Greenlets {
    pub fn new(stack_size: usize) -> Greenlets {
        Greenlets {
            parked: Slab::new(),
            turns: Vec::new(),
            stack_size,
            stacks: Vec::new(),
        }
    }

    /// Switches to coroutine `token` until it suspends again or returns.
    fn resume(&mut self, token: usize) {
        let Some(parked) = self.parked.get_mut(token) else {
            return;
        };
        // A panic in a handler propagates out of `resume` (corosensei
        // carries it across the switch); it ends that connection only.
        let result = panic::catch_unwind(AssertUnwindSafe(|| parked.greenlet.resume(())));
        match result {
            Ok(CoroutineResult::Yield(wait)) => {
                parked.on = wait;
                if wait == Wait::Turn {
                    self.turns.push(token);
                }
                return;
            }
            Ok(CoroutineResult::Return(())) => {}
            // The panic message was printed by the panic hook.
            Err(_) => lab::log!("coroutine: handler panicked; connection closed"),
        }
        if let Some(done) = self.parked.remove(token) {
            if self.stacks.len() < SPARE_STACKS {
                self.stacks.push(done.greenlet.into_stack());
            }
        }
    }
}

impl Tasks for Greenlets {
    fn vacant(&self) -> usize {
        self.parked.vacant()
    }

    fn spawn(&mut self, conn: Conn) {
        let stack = match self.stacks.pop() {
            Some(stack) => stack,
            None => match DefaultStack::new(self.stack_size) {
                Ok(stack) => stack,
                Err(e) => {
                    // mmap or mprotect: ENOMEM (address space, vm.max_map_count).
                    // Dropping `conn` closes that one connection.
                    lab::log!("coroutine: mmap(stack of {} bytes): {e}", self.stack_size);
                    return;
                }
            },
        };
        let greenlet = Coroutine::with_stack(stack, move |hub: &Yielder<(), Wait>, ()| {
            if let Err(e) = serve_conn(conn.raw(), conn.stats(), hub) {
                lab::log!("coroutine: {e}; connection closed");
            }
        });
        let token = self.parked.insert(Parked {
            greenlet,
            on: Wait::Turn,
        });
        self.turns.push(token);
    }

    fn ready(&mut self, token: usize, flags: u32) {
        let Some(parked) = self.parked.get_mut(token) else {
            return;
        };
        match parked.on {
            Wait::Io(interest) if interest.woken_by(flags) => self.resume(token),
            // An edge it does not wait for: the call it makes next finds it.
            Wait::Io(_) | Wait::Turn => {}
        }
    }

    fn run(&mut self) {
        for token in std::mem::take(&mut self.turns) {
            self.resume(token);
        }
    }

    fn has_runnable(&self) -> bool {
        !self.turns.is_empty()
    }
}

/// `blocking`'s `serve_conn`: serves one connection until the peer's EOF or
/// a reset. Two arms are new: `EAGAIN`, where the blocking model would have
/// slept in `read`, suspends to the hub; and every `READS_PER_TURN` reads
/// the coroutine gives up its turn (the kernel preempts a thread; nobody
/// preempts a coroutine, so a client that always has data would starve the
/// others).
///
/// Back-pressure is the blocking model's: `write_all` parks the coroutine
/// while the socket is full, and the next `read` comes only after it, so at
/// most one buffer (`BUF_LEN`) is held per connection.
pub fn serve_conn(fd: RawFd, stats: &Stats, hub: &Yielder<(), Wait>) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_LEN];
    let mut reads_this_turn = 0;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
        let n = match syscall!(
            unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) },
            "read(fd {fd})"
        ) {
            // EOF: the peer shut its write side. Everything owed was written
            // before this read.
            Ok(0) => return Ok(()),
            Ok(n) => n as usize,
            // A signal handler ran before any byte arrived; nothing was read.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Would block: switch to the hub until epoll reports the socket
            // readable (or hung up), then read again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reads_this_turn = 0;
                hub.suspend(Wait::Io(Interest::Read));
                continue;
            }
            Err(e) if is_peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let reply = &mut buf[..n];
        lab::echo::transform_in_place(reply);
        // Counted before the send, as in `blocking`: on loopback the client
        // may read the reply before `send` even returns.
        stats.echoed(n);
        match write_all(fd, reply, hub) {
            Ok(()) => {}
            Err(e) if is_peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        reads_this_turn += 1;
        if reads_this_turn == READS_PER_TURN {
            reads_this_turn = 0;
            hub.suspend(Wait::Turn);
        }
    }
}

/// `blocking`'s `write_all`: sends all of `bytes`, parking the coroutine
/// while the socket's send buffer is full.
fn write_all(fd: RawFd, mut bytes: &[u8], hub: &Yielder<(), Wait>) -> io::Result<()> {
    while !bytes.is_empty() {
        // MSG_NOSIGNAL: a peer that closed gives EPIPE here, not SIGPIPE.
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes during the call.
        let sent = match syscall!(
            unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) },
            "send(fd {fd})"
        ) {
            Ok(sent) => sent as usize,
            // Interrupted before anything was sent.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The send buffer is full: switch to the hub until the peer has
            // read and epoll reports room (or a hang-up), then send again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                hub.suspend(Wait::Io(Interest::Write));
                continue;
            }
            Err(e) => return Err(e),
        };
        // A short write: the kernel took what fit; the rest goes in the next
        // call, which will likely say EAGAIN and park.
        bytes = &bytes[sent..];
    }
    Ok(())
}
