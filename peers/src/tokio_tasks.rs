//! peers --mode tokio — a task per connection, written as a tokio user
//! writes it: `listener.accept().await`, `tokio::spawn`, then `read` and
//! `write_all` on a 16 KiB buffer until EOF.
//!
//! A reference, not a model: the connection's code is the blocking model's
//! straight-line loop, and the readiness mechanism is hidden in tokio's
//! runtime (mio on epoll, edge-triggered, every socket registered once at
//! accept and never modified). Phase 1 (wait for data) is an `.await` that
//! parks the task; the runtime's one `epoll_wait` blocks for all of them.
//! Phase 2 (copy data) is `recv`/`send` on the non-blocking socket, called
//! by the future when the task is polled.
//!
//! Runtime: `current_thread` (the default) runs every task on the thread
//! that accepts, one core like `epoll:level`; `--workers N` is the
//! multi-thread runtime, N workers stealing each other's tasks.
//!
//! Cost, per request in ping-pong: `recv`, `send`, and a share of
//! `epoll_wait`, the same calls as `epoll:level`. Nothing per request for
//! interest: mio registers every socket once, edge-triggered
//! (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`). No `recv` that only says
//! `EAGAIN` either: on epoll a `read` that fills less than the buffer
//! clears tokio's readiness, so the next `read` parks the task at once
//! (tokio issue 5866). With `--workers N`, add the `futex` calls that
//! wake a parked worker. Per connection: `accept4` (and, once the queue is
//! empty, one that says `EAGAIN`), `epoll_ctl(ADD)`, and `epoll_ctl(DEL)`
//! before the `close`: tokio deregisters a socket when it drops it. Measure it:
//! `harness run peers:tokio --syscalls`.
//! Memory is where it pays: each task owns its 16 KiB buffer for the life
//! of the connection, idle or not, where the event loops share one scratch
//! buffer and allocate a reply buffer only when a write falls short (2 000
//! idle + 50 active connections: 35.5 MiB peak RSS against 2.7 MiB for
//! `epoll:level`; `harness run peers:tokio --workload idle --idle 2000`).
//!
//! What the contract asks, the tokio way:
//! - back-pressure: `read` is not called again until `write_all` is done,
//!   so a connection holds at most one 16 KiB buffer of unsent reply (the
//!   contract allows 1 MiB); a peer that does not read parks its own task
//!   only.
//! - half-close: `read` returning 0 comes after every earlier reply was
//!   written, so the task ends and dropping the stream closes it.
//! - EMFILE/ENFILE on accept: log and sleep, as axum's `serve` does (1 s
//!   there, after hyper 0.14's `sleep_on_errors`; the lab's `ACCEPT_PAUSE`,
//!   100 ms, here); the connections wait in the backlog. No spin: the
//!   runtime's epoll is edge-triggered, and a sleeping accept loop is not
//!   polled.
//! - SIGINT/SIGTERM: `tokio::signal`; the runtime is then dropped, which
//!   drops every connection's task at its `.await`, and the summary is
//!   `lab::Stats`'s like every model's.
//!
//! Cannot: show its system calls in this file (they are in mio and in
//! tokio's I/O driver); give an idle connection's buffer back; survive an
//! error where tokio's runtime treats one as a bug and panics (tokio 1.54):
//! - an `epoll_wait` error other than EINTR ("unexpected error when polling
//!   the I/O driver", `runtime/io/driver.rs`);
//! - any error, EINTR included, from the eventfd `write` that wakes the
//!   driver ("failed to wake I/O driver", same file). With EINTR injected
//!   there (`harness check --faults`), the multi-thread runtime panics
//!   outside any task and the server ends (`peers/tests/faults.rs`);
//!   `current_thread` panics inside the task that made the write, tokio
//!   catches the panic, and that one connection is dropped;
//! - any error but EAGAIN from the `recvfrom` that drains its signal
//!   self-pipe, a socketpair, when SIGINT/SIGTERM arrives ("Bad read on
//!   self-pipe", `runtime/signal/mod.rs`).
//!
//! The kernel gives neither of the last two EINTR (on those non-blocking
//! descriptors neither call sleeps): they bite under fault injection only.
//!
//! Run: `cargo run --release -p peers -- --mode tokio [--workers 2]`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use lab::cli::Common;
use lab::net::{IoMode, Listener, ACCEPT_PAUSE};
use lab::policy::AcceptError;
use lab::Stats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

/// The summary's and the warnings' name.
const MODEL: &str = "peers:tokio";

/// What one `read` takes at most. The echo server in tokio's crate docs
/// reads 1 KiB at a time and `tokio::io::copy` 8 KiB; 16 KiB keeps a large
/// transfer from paying a task wake-up per 1 KiB.
const BUF_SIZE: usize = 16 << 10;

pub fn run(common: &Common) -> io::Result<()> {
    let runtime = match common.workers {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers as usize);
            builder
        }
    }
    .enable_all()
    .build()
    .map_err(|e| io::Error::new(e.kind(), format!("building the tokio runtime: {e}")))?;
    // The lab's listener: the same socket options and backlog as every
    // model's (`TcpListener::bind` would listen with a backlog of 1024).
    let listener = Listener::bind(common.addr, IoMode::NonBlocking)?;
    let stats = Arc::new(Stats::new()?);
    runtime.block_on(serve(listener, Arc::clone(&stats), common.max_conns))?;
    // Drops every task still parked on a connection, and closes its socket.
    drop(runtime);
    stats.print_summary(MODEL)
}

async fn serve(listener: Listener, stats: Arc<Stats>, max_conns: Option<u64>) -> io::Result<()> {
    // Before the announcement: from then on a SIGTERM must find the handler
    // installed, not the default action that kills without a summary.
    let named = |e: io::Error| io::Error::new(e.kind(), format!("tokio::signal: {e}"));
    let mut interrupt = signal(SignalKind::interrupt()).map_err(named)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(named)?;
    listener.announce()?;
    // The socket is already O_NONBLOCK, as `from_std` requires.
    let listener = TcpListener::from_std(OwnedFd::from(listener).into())?;
    tokio::select! {
        stopped = accept_all(&listener, &stats, max_conns) => stopped,
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}

/// Accepts forever, one task per connection; returns only on a fatal error.
async fn accept_all(
    listener: &TcpListener,
    stats: &Arc<Stats>,
    max_conns: Option<u64>,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                let e = lab::sys::named(e, format!("accept4(fd {})", listener.as_raw_fd()));
                match AcceptError::classify(&e).warned(MODEL, &e) {
                    // EAGAIN never reaches us (tokio waits for readiness on
                    // it); EINTR: call again.
                    AcceptError::Drained | AcceptError::Retry => continue,
                    // That one connection failed while queued: take the next.
                    AcceptError::Skip => continue,
                    // The connection stays queued. The tokio answer: wait,
                    // and let closing connections free descriptors or memory.
                    AcceptError::Exhausted | AcceptError::BackOff => {
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                    AcceptError::Fatal => return Err(e),
                }
            }
        };
        if !stats.admit(max_conns) {
            // --max-conns reached: connection N+1 is dropped, so closed at once.
            continue;
        }
        let admitted = Admitted(Arc::clone(stats));
        tokio::spawn(async move {
            if let Err(e) = echo(stream, &admitted.0).await {
                lab::conn::drop_on(MODEL, e);
            }
        });
    }
}

/// One admitted connection: dropped with its task however the task ends
/// (EOF, an error, or the runtime dropping it at the stop), it gives the
/// `--max-conns` slot back.
struct Admitted(Arc<Stats>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The connection, as straight-line code: read, transform, write it all,
/// until the peer shuts down its side.
async fn echo(mut stream: TcpStream, stats: &Stats) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    // On the heap: a 16 KiB array would make every task's future 16 KiB,
    // moved by value into `spawn`.
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            // EOF: every reply was written before this read (half-close).
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // tokio returns EINTR to the caller of `read`; nothing was read.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(lab::sys::named(e, format!("read(fd {fd})"))),
        };
        let reply = &mut buf[..n];
        lab::echo::transform_in_place(reply);
        // Retries EINTR and short writes itself; until it is done, this task
        // reads nothing more: that is the back-pressure.
        stream
            .write_all(reply)
            .await
            .map_err(|e| lab::sys::named(e, format!("write_all(fd {fd})")))?;
        stats.echoed(n);
    }
}
