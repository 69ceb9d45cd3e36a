//! `--mode async`: the same handler as an `async fn`, run by this file's
//! executor: a run queue of task tokens, a `Waker` that puts its task on
//! it, and a reactor that keeps, per task, the one `Waker` parked on its
//! socket and wakes it when the hub's epoll reports that socket.
//!
//! Stackless: the compiler turns the `async fn` into a state machine whose
//! state is what lives across an `.await` (here: the fd, the buffer's
//! pointer, the counters), kept in one heap allocation per task: 224 bytes
//! for `serve_conn` (a test keeps it under 1 KiB), where a stackful
//! coroutine reserves a 16 KiB stack. A
//! suspension is a return from `poll`, all the way up to the executor, so it
//! can happen only at an `.await`, in an `async fn` called with `.await`:
//! every function on the path to a wait must be `async` (Python's `yield`
//! and asyncio have the same rule). A resumption is a call to `poll` again.
//! There is no stack to overflow: a task's state has a size fixed at compile
//! time, and a panic unwinds on the hub thread's own stack.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use lab::conn::is_peer_gone;
use lab::{syscall, Stats};

use crate::hub::{Conn, Interest, Slab, Tasks};
use crate::{BUF_LEN, READS_PER_TURN};

/// Tokens of the tasks to poll. A `Waker` must be `Send + Sync` (whoever
/// holds it may call it from any thread), hence a `Mutex`, never contended:
/// only the hub's own thread wakes its tasks.
#[derive(Default)]
struct RunQueue {
    tokens: Mutex<Vec<usize>>,
}

impl RunQueue {
    fn push(&self, token: usize) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token);
    }

    /// Swaps the queued tokens into `batch` (empty), so that neither vector
    /// is reallocated from one round to the next.
    fn take_into(&self, batch: &mut Vec<usize>) {
        std::mem::swap(
            &mut *self.tokens.lock().unwrap_or_else(|e| e.into_inner()),
            batch,
        );
    }

    fn is_empty(&self) -> bool {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// The hand-written `Waker` of one task: waking it queues its token, once
/// until it is polled again (a second wake before the poll changes nothing).
/// Made a `Waker` through `std::task::Wake`, which builds the vtable from
/// these two functions: no `RawWaker` and no `unsafe` needed.
struct TaskWaker {
    token: usize,
    queued: AtomicBool,
    queue: Arc<RunQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(self.token);
        }
    }
}

struct Task<'a> {
    future: Pin<Box<dyn Future<Output = ()> + 'a>>,
    state: Arc<TaskWaker>,
    /// `state` as a `Waker`, made once.
    waker: Waker,
}

/// The tasks of one hub, by token, and the run queue.
pub struct Executor<'a> {
    tasks: Slab<Task<'a>>,
    queue: Arc<RunQueue>,
    /// The tokens being polled in this round (kept for its allocation).
    batch: Vec<usize>,
    reactor: &'a Reactor,
}

impl<'a> Executor<'a> {
    pub fn new(reactor: &'a Reactor) -> Executor<'a> {
        Executor {
            tasks: Slab::new(),
            queue: Arc::default(),
            batch: Vec::new(),
            reactor,
        }
    }

    /// Makes a task of the future `make(token)` returns, runnable.
    pub fn spawn_with<F>(&mut self, make: impl FnOnce(usize, &'a Reactor) -> F)
    where
        F: Future<Output = ()> + 'a,
    {
        let token = self.tasks.vacant();
        let state = Arc::new(TaskWaker {
            token,
            queued: AtomicBool::new(false),
            queue: self.queue.clone(),
        });
        let waker = Waker::from(state.clone());
        let future = Box::pin(make(token, self.reactor));
        waker.wake_by_ref();
        self.tasks.insert(Task {
            future,
            state,
            waker,
        });
    }

    /// Polls task `token` once: it runs until its next `.await` that is not
    /// ready (`Pending`) or to its end (`Ready`).
    fn poll(&mut self, token: usize) {
        // None: the task ended after this token was queued.
        let Some(task) = self.tasks.get_mut(token) else {
            return;
        };
        // Before the poll: a wake during the poll queues it again.
        task.state.queued.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&task.waker);
        match panic::catch_unwind(AssertUnwindSafe(|| task.future.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => return,
            Ok(Poll::Ready(())) => {}
            // The panic message was printed by the panic hook.
            Err(_) => lab::log!("coroutine: handler panicked; connection closed"),
        }
        self.tasks.remove(token);
    }
}

impl Tasks for Executor<'_> {
    fn vacant(&self) -> usize {
        self.tasks.vacant()
    }

    fn spawn(&mut self, conn: Conn) {
        self.spawn_with(move |token, reactor| async move {
            if let Err(e) = serve_conn(conn.raw(), conn.stats(), reactor, token).await {
                lab::log!("coroutine: {e}; connection closed");
            }
        });
    }

    fn ready(&mut self, token: usize, flags: u32) {
        self.reactor.ready(token, flags);
    }

    fn run(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        self.queue.take_into(&mut batch);
        for &token in &batch {
            self.poll(token);
        }
        batch.clear();
        self.batch = batch;
    }

    fn has_runnable(&self) -> bool {
        !self.queue.is_empty()
    }
}

/// The reactor's half of the hub: which task waits for what, with the
/// `Waker` to call when the hub's epoll reports it.
#[derive(Default)]
pub struct Reactor {
    parked: RefCell<Vec<Option<Parked>>>,
}

struct Parked {
    interest: Interest,
    waker: Waker,
}

impl Reactor {
    /// The kernel reported `flags` for task `token`'s socket: wake the task
    /// if that is what it waits for. An edge it does not wait for is not
    /// needed: the call it makes next finds the data or the room.
    pub fn ready(&self, token: usize, flags: u32) {
        let woken = {
            let mut parked = self.parked.borrow_mut();
            match parked.get_mut(token) {
                Some(slot) if slot.as_ref().is_some_and(|p| p.interest.woken_by(flags)) => {
                    slot.take()
                }
                _ => None,
            }
        };
        if let Some(p) = woken {
            p.waker.wake();
        }
    }

    /// A future that is ready once the hub's epoll has reported task
    /// `token`'s socket for `interest`.
    pub fn readiness(&self, token: usize, interest: Interest) -> Readiness<'_> {
        Readiness {
            reactor: self,
            token,
            interest,
            parked: false,
        }
    }
}

/// See [`Reactor::readiness`].
pub struct Readiness<'a> {
    reactor: &'a Reactor,
    token: usize,
    interest: Interest,
    parked: bool,
}

impl Future for Readiness<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        let mut parked = me.reactor.parked.borrow_mut();
        if parked.len() <= me.token {
            parked.resize_with(me.token + 1, || None);
        }
        let slot = &mut parked[me.token];
        if me.parked && slot.is_none() {
            // The reactor took our waker: epoll reported the socket.
            return Poll::Ready(());
        }
        *slot = Some(Parked {
            interest: me.interest,
            waker: cx.waker().clone(),
        });
        me.parked = true;
        Poll::Pending
    }
}

impl Drop for Readiness<'_> {
    /// A task dropped while parked (at the stop, or a panic) leaves no
    /// waker behind for the next task in its slot.
    fn drop(&mut self) {
        if self.parked {
            if let Some(slot) = self.reactor.parked.borrow_mut().get_mut(self.token) {
                *slot = None;
            }
        }
    }
}

/// Gives the other tasks a turn: `Pending` once, after queueing itself.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// `blocking`'s `serve_conn` as an `async fn`: the same text, and where a
/// would-block parks, `.await` (see `stackful.rs` for the two new arms).
pub async fn serve_conn(fd: RawFd, stats: &Stats, hub: &Reactor, token: usize) -> io::Result<()> {
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
            // Would block: return `Pending` up to the executor until epoll
            // reports the socket readable (or hung up), then read again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reads_this_turn = 0;
                hub.readiness(token, Interest::Read).await;
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
        match write_all(fd, reply, hub, token).await {
            Ok(()) => {}
            Err(e) if is_peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        reads_this_turn += 1;
        if reads_this_turn == READS_PER_TURN {
            reads_this_turn = 0;
            yield_now().await;
        }
    }
}

/// `blocking`'s `write_all` as an `async fn`: sends all of `bytes`, parking
/// the task while the socket's send buffer is full.
async fn write_all(fd: RawFd, mut bytes: &[u8], hub: &Reactor, token: usize) -> io::Result<()> {
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
            // The send buffer is full: park until the peer has read and
            // epoll reports room (or a hang-up), then send again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                hub.readiness(token, Interest::Write).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_state_is_a_few_hundred_bytes_not_a_stack() {
        let stats = Stats::new().expect("stats");
        let reactor = Reactor::default();
        let state = std::mem::size_of_val(&serve_conn(-1, &stats, &reactor, 0));
        // What lives across its `.await`s, fixed by the compiler; the 16 KiB
        // buffer is behind a pointer.
        assert!(state < 1024, "serve_conn's future is {state} bytes");
    }
}
