//! What a switch costs, with no I/O in the way.
//!
//! `switch/`: one hand-over of the thread of control and back.
//! - `stackful_resume_suspend`: a `resume` of a corosensei coroutine on the
//!   model's 16 KiB stack and its `suspend` back (two user-space stack
//!   switches).
//! - `async_poll_via_executor`: one round of this crate's executor with one
//!   task that is always ready: the run queue taken, the task polled, its
//!   `yield_now` waking itself (the queue pushed) and returning `Pending`.
//! - `thread_pipe_round_trip`: one byte to another thread through a pipe,
//!   and one byte back: two hand-offs through the kernel, each a `write`
//!   that wakes a thread sleeping in `read` (a futex-like wake-up, plus a
//!   context switch when both run on one core).
//!
//! `no_io/`: transforming 16 KiB in 64-byte pieces, straight-line and as a
//! coroutine that suspends after each piece: the same work plus 256
//! switches ("pure switching only slows a program down").
//!
//! Run: `cargo bench -p coroutine --bench switch` (about a minute).

use std::hint::black_box;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::thread;
use std::time::Duration;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, Yielder};
use coroutine::hub::Tasks;
use coroutine::stackless::{yield_now, Executor, Reactor};
use criterion::{criterion_group, criterion_main, Criterion};

const STACK: usize = 16 << 10;
const PIECE: usize = 64;
const BUFFER: usize = 16 << 10;

fn stackful_resume_suspend(c: &mut Criterion) {
    let stack = DefaultStack::new(STACK).expect("mmap a stack");
    let mut co = Coroutine::with_stack(stack, |yielder: &Yielder<(), ()>, ()| loop {
        yielder.suspend(());
    });
    c.bench_function("switch/stackful_resume_suspend", |b| {
        b.iter(|| black_box(co.resume(())))
    });
}

fn async_poll_via_executor(c: &mut Criterion) {
    let reactor = Reactor::default();
    let mut executor = Executor::new(&reactor);
    executor.spawn_with(|_, _| async {
        loop {
            yield_now().await;
        }
    });
    c.bench_function("switch/async_poll_via_executor", |b| {
        b.iter(|| executor.run())
    });
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One byte through a blocking pipe; `false` once the other end closed.
fn hand_over(from: RawFd, to: RawFd) -> bool {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: `byte` is valid for writes of one byte.
        match unsafe { libc::read(from, byte.as_mut_ptr().cast(), 1) } {
            1 => break,
            0 => return false,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => panic!("read(pipe): {}", io::Error::last_os_error()),
        }
    }
    // SAFETY: `byte` is valid for reads of one byte.
    unsafe { libc::write(to, byte.as_ptr().cast(), 1) == 1 }
}

fn thread_pipe_round_trip(c: &mut Criterion) {
    let (ping_rx, ping_tx) = pipe().expect("pipe");
    let (pong_rx, pong_tx) = pipe().expect("pipe");
    let echo = thread::spawn(move || while hand_over(ping_rx.as_raw_fd(), pong_tx.as_raw_fd()) {});
    c.bench_function("switch/thread_pipe_round_trip", |b| {
        b.iter(|| {
            // SAFETY: a one-byte constant buffer.
            assert_eq!(
                unsafe { libc::write(ping_tx.as_raw_fd(), b"x".as_ptr().cast(), 1) },
                1
            );
            let mut byte = [0u8; 1];
            // SAFETY: `byte` is valid for writes of one byte.
            assert_eq!(
                unsafe { libc::read(pong_rx.as_raw_fd(), byte.as_mut_ptr().cast(), 1) },
                1
            );
        })
    });
    // EOF on `ping_rx` ends the echo thread.
    drop(ping_tx);
    echo.join().expect("echo thread");
}

fn no_io(c: &mut Criterion) {
    let mut buf = vec![b'a'; BUFFER];
    c.bench_function("no_io/straight_line_16KiB", |b| {
        b.iter(|| {
            for piece in buf.chunks_mut(PIECE) {
                lab::echo::transform_in_place(black_box(piece));
            }
        })
    });
    let stack = DefaultStack::new(STACK).expect("mmap a stack");
    // The coroutine owns its buffer and suspends after every piece; the
    // caller resumes it until it has done all 256.
    let mut co = Coroutine::with_stack(stack, |yielder: &Yielder<(), ()>, ()| {
        let mut buf = vec![b'a'; BUFFER];
        loop {
            for piece in buf.chunks_mut(PIECE) {
                lab::echo::transform_in_place(black_box(piece));
                yielder.suspend(());
            }
        }
    });
    c.bench_function("no_io/stackful_switch_per_64B_16KiB", |b| {
        b.iter(|| {
            for _ in 0..BUFFER / PIECE {
                black_box(co.resume(()));
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stackful_resume_suspend, async_poll_via_executor, thread_pipe_round_trip, no_io
}
criterion_main!(benches);
