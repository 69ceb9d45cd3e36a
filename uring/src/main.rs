//! uring — completion-based I/O on io_uring(7): the fifth model; with
//! `--workers N`, N such rings, one per thread (the first on the main one),
//! each with its own `SO_REUSEPORT` listener (`--share reuseport`, the
//! default) or all on one listener (`--share shared`). A shared listener
//! should have no thundering herd here: a pending ACCEPT waits on the
//! listener through a poll that io_uring arms with `EPOLLEXCLUSIVE` itself
//! (the ACCEPT opcode's `poll_exclusive` in the kernel's opcode table), so
//! one connection wakes one ring's ACCEPT, and `--share exclusive` is the
//! same thing. (Read in the kernel source, not measured: the harness' wake-up
//! trace reads `accept4` and `epoll_wait` returns, and a ring makes neither.)
//!
//! The other models ask "which socket is ready?" and then copy the data
//! themselves. Here the program hands the kernel whole operations (ACCEPT,
//! RECV, SEND) as submission queue entries (SQEs) in memory shared with the
//! kernel, and later reads their results as completion queue entries (CQEs):
//! `res` is what the syscall would have returned, bytes or `-errno`.
//!
//! Neither phase blocks, from the process's view. Phase 1 (wait for data)
//! and phase 2 (copy data) both happen inside the kernel, which copies the
//! bytes into our buffer before it posts the completion. The process waits
//! in one place only, `io_uring_enter` (`submit_and_wait`): one call both
//! submits the queued SQEs and sleeps until at least one CQE is posted, so a
//! round of many requests costs one syscall, not one `recv` and one `send`
//! each.
//!
//! `--mode single`: one-shot ACCEPT, RECV and SEND; each completion is
//! followed by the next submission. Every connection owns a receive buffer
//! while its RECV is in flight, idle or not (16 KiB per connection).
//!
//! `--mode multishot` (default): one ACCEPT submission posts a CQE per new
//! connection, and one RECV submission per connection posts a CQE per
//! arrival of data (`IORING_CQE_F_MORE` set while it stays armed). Its
//! buffer is picked by the kernel from a provided-buffer ring shared by all
//! connections of the loop (`IORING_REGISTER_PBUF_RING`), so idle
//! connections hold no buffer. When that ring runs dry the RECV ends with
//! `-ENOBUFS` and is re-armed once buffers are back; any multishot the
//! kernel ends (no `F_MORE`) is re-armed if still wanted.
//!
//! `--sqpoll` (`IORING_SETUP_SQPOLL`): a kernel thread (`iou-sqp-PID`)
//! polls the submission queue, so submitting needs no syscall while it is
//! awake. The price: that thread spins on a CPU for as long as there is
//! work and `SQPOLL_IDLE_MS` after the last submission before it sleeps. It
//! is a thread of our process, so its CPU time is counted in the server's
//! (`getrusage`, `/proc/PID/stat` and the harness' per-process CPU clock),
//! and it may run only where the thread that set the ring up may: a server
//! pinned to one CPU shares it with its poller. The loop still waits for
//! completions in `io_uring_enter`. `harness compare` sets
//! `uring:multishot+sqpoll` beside `uring:multishot`.
//!
//! Back-pressure: at most 1 MiB of reply not yet sent per connection. A
//! one-shot RECV is then not re-submitted; a multishot RECV is cancelled
//! (`ASYNC_CANCEL`) and re-armed once the peer has read.
//!
//! Cannot: run where `io_uring_setup` fails (`ENOSYS` on kernels built
//! without it, `EPERM` with `kernel.io_uring_disabled`): it then says so and
//! exits with status 2. Move a connection to another ring once accepted.
//!
//! Run: `cargo run --release -p uring -- --mode multishot [--sqpoll]
//! [--workers 2]`, then `nc 127.0.0.1 PORT`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;

use clap::{Parser, ValueEnum};
use io_uring::types::{BufRingEntry, CancelBuilder, Fd, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use lab::conn::{drop_on, Conn, Next};
use lab::net::{IoMode, Listener, Refusal, Spare, ACCEPT_PAUSE};
use lab::policy::{AcceptError, WaitError};
use lab::signals::SignalFd;
use lab::workers::{self, Share, StopAllOnExit};
use lab::{Stats, OUTBUF_LIMIT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One-shot ACCEPT, RECV and SEND, each re-submitted after its completion.
    Single,
    /// Multishot ACCEPT and RECV, buffers from a provided-buffer ring.
    Multishot,
}

#[derive(Parser)]
#[command(
    name = "uring",
    version,
    about = "Echo server: completion-based I/O on io_uring(7)"
)]
struct Cli {
    #[command(flatten)]
    common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Mode::Multishot)]
    mode: Mode,
    /// How `--workers N` rings share the port.
    #[arg(long, value_enum, default_value_t = Share::ReusePort)]
    share: Share,
    /// A kernel thread polls the submission queue (IORING_SETUP_SQPOLL); it
    /// spins for SQPOLL_IDLE_MS after the last submission.
    #[arg(long)]
    sqpoll: bool,
}

/// Submission queue entries per ring; the completion queue is larger
/// (`CQ_ENTRIES`): one submission may post many completions. Should the CQ
/// still overflow, the kernel keeps the extra CQEs (`IORING_FEAT_NODROP`)
/// and `io_uring_enter` says `EBUSY` until we reap.
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;

/// How long the SQPOLL thread keeps spinning after the last submission.
const SQPOLL_IDLE_MS: u32 = 1000;

/// One RECV reads at most this much: the size of a single-mode receive
/// buffer and of each provided buffer.
const RECV_CHUNK: usize = 16 << 10;

/// Provided buffers per ring in multishot mode (a power of two, as the
/// kernel requires): 4 MiB shared by every connection of the loop.
const PROVIDED_BUFFERS: u16 = 256;

/// The provided-buffer group our multishot RECVs select from.
const BUF_GROUP: u16 = 0;

/// What a completion is about: the operation in the top byte of
/// `user_data`, the connection's slot in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Accept = 1,
    Signal = 2,
    AcceptPause = 3,
    Recv = 4,
    Send = 5,
    Cancel = 6,
    ListenerReady = 7,
}

fn tag(op: Op, slot: usize) -> u64 {
    (op as u64) << 56 | slot as u64
}

fn untag(user_data: u64) -> (Option<Op>, usize) {
    let op = match user_data >> 56 {
        1 => Some(Op::Accept),
        2 => Some(Op::Signal),
        3 => Some(Op::AcceptPause),
        4 => Some(Op::Recv),
        5 => Some(Op::Send),
        6 => Some(Op::Cancel),
        7 => Some(Op::ListenerReady),
        _ => None,
    };
    (op, (user_data & u32::MAX as u64) as usize)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            lab::log!("uring: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> io::Result<ExitCode> {
    // First, before any thread exists: threads inherit the signal mask, so
    // SIGINT/SIGTERM stay blocked in every loop and pending for the signalfd.
    let signals = SignalFd::install(&[])?;
    let workers = cli.common.workers_or(1);
    // Every ring, before the first client can connect: a flood that fills
    // the descriptor table must not find a loop still without its ring.
    let mut rings = Vec::with_capacity(workers);
    for _ in 0..workers {
        match new_ring(cli.sqpoll) {
            Ok(ring) => rings.push(ring),
            Err(e) if matches!(lab::sys::errno(&e), Some(libc::ENOSYS | libc::EPERM)) => {
                lab::log!(
                    "uring: {e}: io_uring is not available on this kernel \
                     (built without it, or disabled by kernel.io_uring_disabled)"
                );
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e),
        }
    }
    let listeners = workers::bind_listeners(cli.common.addr, workers, cli.share)?;
    let loops = rings
        .into_iter()
        .map(|ring| Ok((ring, Spare::new()?)))
        .collect::<io::Result<Vec<_>>>()?;
    let stats = Stats::with_loops(workers)?;
    listeners[0].announce()?;
    let cfg = Config {
        mode: cli.mode,
        max_conns: cli.common.max_conns,
    };
    run_loops(loops, &listeners, |index, ring, listener, spare| {
        serve(index, ring, listener, spare, &signals, &stats, cfg)
    })?;
    let model = match cli.mode {
        Mode::Single => "uring:single",
        Mode::Multishot => "uring:multishot",
    };
    stats.print_summary(model)?;
    Ok(ExitCode::SUCCESS)
}

/// `io_uring_setup`: the call that fails with `ENOSYS` or `EPERM` where
/// io_uring is missing or disabled.
fn new_ring(sqpoll: bool) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(CQ_ENTRIES);
    if sqpoll {
        builder.setup_sqpoll(SQPOLL_IDLE_MS);
    } else {
        // The kernel runs our sockets' completion work at our next entry
        // instead of interrupting the thread for each (Linux 5.19). Not
        // with SQPOLL: io_uring_setup refuses the pair with EINVAL.
        builder.setup_coop_taskrun();
    }
    builder
        .build(SQ_ENTRIES)
        .map_err(|e| lab::sys::named(e, "io_uring_setup".into()))
}

/// What every loop is told; the same for all.
#[derive(Clone, Copy)]
struct Config {
    mode: Mode,
    max_conns: Option<u64>,
}

/// One connection: lab's `Conn` (descriptor, queued reply, half-close) and
/// what the kernel may be reading or writing on its behalf.
struct Slot {
    conn: Conn,
    /// The bytes the SEND in flight reads. Never touched while it is in
    /// flight: `conn.out` may reallocate on a push, this may not.
    sending: Vec<u8>,
    /// How much of `sending` the kernel has taken so far.
    sent: usize,
    /// Single mode: the buffer the RECV in flight writes into.
    recv_buf: Vec<u8>,
    /// Multishot only: bytes the kernel delivered after we had cancelled the
    /// RECV for back-pressure (CQEs already on their way), kept until the
    /// reply buffer has room for them.
    held: Vec<u8>,
    recv_in_flight: bool,
    send_in_flight: bool,
    /// A multishot RECV was cancelled (back-pressure); its last CQE is due.
    recv_cancelled: bool,
    /// Closed by us; freed once its last operation has completed.
    closing: bool,
    /// Multishot: the RECV ended with -ENOBUFS; re-armed after this round.
    starved: bool,
}

impl Slot {
    fn new(fd: OwnedFd, mode: Mode) -> Slot {
        Slot {
            conn: Conn::new(fd),
            sending: Vec::new(),
            sent: 0,
            recv_buf: match mode {
                Mode::Single => vec![0; RECV_CHUNK],
                Mode::Multishot => Vec::new(),
            },
            held: Vec::new(),
            recv_in_flight: false,
            send_in_flight: false,
            recv_cancelled: false,
            closing: false,
            starved: false,
        }
    }

    /// Reply bytes not yet taken by the peer's socket: the SEND in flight's
    /// remainder and what waits behind it. At most `OUTBUF_LIMIT`.
    fn unsent(&self) -> usize {
        self.sending.len() - self.sent + self.conn.out.len()
    }

    /// How much more may be received before back-pressure.
    fn room(&self) -> usize {
        OUTBUF_LIMIT - self.unsent()
    }

    /// A RECV should be armed: the peer may send, nothing is held back, and
    /// a full chunk fits (so a multishot CQE never finds less room than it
    /// brings, before the cancel it triggers takes effect).
    fn wants_recv(&self) -> bool {
        !self.closing && !self.conn.peer_closed && self.held.is_empty() && self.room() >= RECV_CHUNK
    }

    fn in_flight(&self) -> bool {
        self.recv_in_flight || self.send_in_flight
    }

    /// The peer closed its side and everything owed has been sent.
    fn is_finished(&self) -> bool {
        self.conn.peer_closed && self.unsent() == 0 && self.held.is_empty()
    }
}

/// The loop's state besides the ring itself: SQEs not yet in the
/// submission queue, the connections, and the provided buffers.
struct Loop<'a> {
    /// Which of the `--workers` rings this is (its `per_loop=` count).
    index: usize,
    mode: Mode,
    listener: &'a Listener,
    stats: &'a Stats,
    max_conns: Option<u64>,
    spare: Spare,
    /// SQEs made while handling completions; moved into the submission
    /// queue before each `io_uring_enter`, as many as fit.
    pending: VecDeque<squeue::Entry>,
    /// `conns[slot]`; a slot is reused only after its last CQE (see
    /// `close_conn`).
    conns: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    /// The multishot ACCEPT is armed (or the one-shot one in flight).
    accept_in_flight: bool,
    /// Multishot RECVs that ended with `-ENOBUFS`: re-armed after this
    /// round's completions have given their buffers back.
    starved: Vec<usize>,
    bufs: Option<BufRing>,
    /// What the TIMEOUT that pauses accepting points at; lives as long as
    /// the loop.
    pause: Timespec,
}

/// Runs `serve` once per ring: the first on the calling thread, each other
/// on a thread of its own; returns once every loop has ended: the first
/// error, if any loop failed. One ring needs no thread (and glibc then
/// keeps a single heap: no per-thread arena to trim while serving).
fn run_loops<F>(loops: Vec<(IoUring, Spare)>, listeners: &[Listener], serve: F) -> io::Result<()>
where
    F: Fn(usize, IoUring, &Listener, Spare) -> io::Result<()> + Sync,
{
    let serve = &serve;
    let listener_of = |i: usize| &listeners[i % listeners.len()];
    let mut loops = loops.into_iter();
    let Some((ring, spare)) = loops.next() else {
        return Ok(());
    };
    let results: Vec<io::Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = loops
            .enumerate()
            .map(|(i, (ring, spare))| {
                let index = i + 1;
                let listener = listener_of(index);
                thread::Builder::new()
                    .name(format!("uring-loop-{index}"))
                    .spawn_scoped(scope, move || {
                        let _stop_the_others = StopAllOnExit;
                        serve(index, ring, listener, spare)
                    })
                    .inspect_err(|_| workers::stop_all_loops())
            })
            .collect();
        let first = {
            let _stop_the_others = StopAllOnExit;
            serve(0, ring, listener_of(0), spare)
        };
        std::iter::once(first)
            .chain(handles.into_iter().map(|spawned| {
                match spawned {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("a ring's loop panicked"))),
                    Err(e) => Err(lab::sys::named(e, "pthread_create".into())),
                }
            }))
            .collect()
    });
    results.into_iter().collect()
}

fn serve(
    index: usize,
    ring: IoUring,
    listener: &Listener,
    spare: Spare,
    signals: &SignalFd,
    stats: &Stats,
    cfg: Config,
) -> io::Result<()> {
    let bufs = match cfg.mode {
        Mode::Single => None,
        Mode::Multishot => Some(BufRing::register(&ring, PROVIDED_BUFFERS, BUF_GROUP)?),
    };
    let mut lp = Loop {
        index,
        mode: cfg.mode,
        listener,
        stats,
        max_conns: cfg.max_conns,
        spare,
        pending: VecDeque::new(),
        conns: Vec::new(),
        free_slots: Vec::new(),
        accept_in_flight: false,
        starved: Vec::new(),
        bufs,
        pause: Timespec::from(ACCEPT_PAUSE),
    };
    // Declared after `lp`, so dropped before it: the ring's descriptor is
    // closed, which makes the kernel cancel what is still in flight, before
    // the buffers those operations point at are freed. (The cancelling
    // finishes in a kernel worker; a socket operation parked on poll writes
    // nothing once cancelled.)
    let mut ring = ring;
    // SQE: POLL_ADD signalfd, POLLIN  // CQE: res = revents once SIGINT/SIGTERM is pending.
    // A poll, not a READ: it leaves the signal pending, so every ring sees it.
    let poll_signals = opcode::PollAdd::new(Fd(signals.as_raw_fd()), libc::POLLIN as u32);
    lp.pending
        .push_back(poll_signals.build().user_data(tag(Op::Signal, 0)));
    lp.arm_accept();
    let mut completions: Vec<cqueue::Entry> = Vec::with_capacity(CQ_ENTRIES as usize);
    loop {
        {
            let mut sq = ring.submission();
            while let Some(sqe) = lp.pending.front() {
                // SAFETY: every buffer an SQE points at (a slot's `recv_buf`
                // or `sending`, the provided buffers, `lp.pause`) is neither
                // moved nor freed until that SQE's last CQE has been reaped:
                // a slot is freed only with nothing in flight (`close_conn`).
                if unsafe { sq.push(sqe) }.is_err() {
                    // Full: the rest waits for the next round.
                    break;
                }
                lp.pending.pop_front();
            }
        }
        // io_uring_enter(to_submit, min_complete = 1, GETEVENTS): submits
        // and sleeps until at least one CQE is posted.
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) => {
                let e = lab::sys::named(e, "io_uring_enter".into());
                match lab::sys::errno(&e) {
                    // The completion queue overflowed and the kernel holds
                    // CQEs it could not post: reap what is posted, then
                    // enter again (the unsubmitted SQEs stay queued).
                    Some(libc::EBUSY) => {}
                    // No kernel memory for new requests just now: reap what
                    // is posted, and do not retry at once.
                    Some(libc::EAGAIN) => std::thread::sleep(ACCEPT_PAUSE),
                    _ => match WaitError::classify(&e).warned("uring", &e) {
                        // EINTR: a signal we do not block (SIGSTOP/SIGCONT)
                        // cut the wait short; the SQEs were submitted or stay queued.
                        WaitError::Retry => continue,
                        WaitError::BackOff => {
                            std::thread::sleep(ACCEPT_PAUSE);
                            continue;
                        }
                        // EBADF, EFAULT, EINVAL: our ring or arguments are wrong.
                        WaitError::Fatal => return Err(e),
                    },
                }
            }
        }
        completions.clear();
        completions.extend(ring.completion());
        for cqe in &completions {
            let (res, flags) = (cqe.result(), cqe.flags());
            match untag(cqe.user_data()) {
                // SIGINT or SIGTERM is pending: stop serving; `run` summarises.
                (Some(Op::Signal), _) => return Ok(()),
                (Some(Op::Accept), _) => lp.on_accept(res, flags)?,
                // A connection is queued (or the poll failed: then the
                // ACCEPT says why).
                (Some(Op::ListenerReady), _) => lp.arm_accept(),
                (Some(Op::AcceptPause), _) => {
                    // CQE: res = -ETIME when the pause is over. Descriptors
                    // may have been freed meanwhile: take the spare back.
                    lp.spare.refill();
                    lp.arm_accept();
                }
                (Some(Op::Recv), slot) => lp.on_recv(slot, res, flags),
                (Some(Op::Send), slot) => lp.on_send(slot, res),
                // CQE: res = how many were cancelled, or -ENOENT / -EALREADY
                // when they had completed meanwhile. Their own CQEs say the rest.
                (Some(Op::Cancel), _) => {}
                (None, _) => {
                    return Err(io::Error::other(format!(
                        "uring: a completion with unknown user_data {:#x}",
                        cqe.user_data()
                    )))
                }
            }
        }
        for i in std::mem::take(&mut lp.starved) {
            if let Some(slot) = lp.conns[i].as_mut() {
                slot.starved = false;
            }
            lp.after_io(i);
        }
    }
}

impl Loop<'_> {
    fn arm_accept(&mut self) {
        if self.accept_in_flight {
            return;
        }
        let listener = Fd(self.listener.as_raw_fd());
        // SOCK_CLOEXEC as accept4's flags; no SOCK_NONBLOCK: io_uring
        // waits for readiness itself, and socket calls never block us here.
        let sqe = match self.mode {
            // SQE: ACCEPT listener  // CQE: res = new fd or -errno, once.
            Mode::Single => {
                opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            }
            // SQE: ACCEPT listener, multishot  // CQE: res = new fd or
            // -errno, one per connection, F_MORE while still armed.
            Mode::Multishot => opcode::AcceptMulti::new(listener)
                .flags(libc::SOCK_CLOEXEC)
                .build(),
        };
        self.pending.push_back(sqe.user_data(tag(Op::Accept, 0)));
        self.accept_in_flight = true;
    }

    /// Leaves the listener alone for `ACCEPT_PAUSE`: a TIMEOUT, whose CQE
    /// re-arms the ACCEPT. Re-arming at once would spin.
    fn pause_accepting(&mut self) {
        // SQE: TIMEOUT 100 ms  // CQE: res = -ETIME when it expires.
        let sqe = opcode::Timeout::new(&self.pause).build();
        self.pending
            .push_back(sqe.user_data(tag(Op::AcceptPause, 0)));
    }

    /// SQE: POLL_ADD listener, POLLIN  // CQE: res = revents once a
    /// connection is queued; then the ACCEPT is armed again.
    fn await_listener(&mut self) {
        let sqe = opcode::PollAdd::new(Fd(self.listener.as_raw_fd()), libc::POLLIN as u32).build();
        self.pending
            .push_back(sqe.user_data(tag(Op::ListenerReady, 0)));
    }

    /// CQE of an ACCEPT: `res` is the new descriptor or `-errno`, decided
    /// here as accept4's errno would be.
    fn on_accept(&mut self, res: i32, flags: u32) -> io::Result<()> {
        // A one-shot ACCEPT completes once; a multishot one stays armed
        // while F_MORE is set. Any error ends it (no F_MORE).
        let armed = self.mode == Mode::Multishot && cqueue::more(flags);
        if !armed {
            self.accept_in_flight = false;
        }
        if res >= 0 {
            // SAFETY: the kernel installed a new descriptor for us that
            // nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            self.admit(fd);
            if !armed {
                self.arm_accept();
            }
            return Ok(());
        }
        let e = lab::sys::named(
            io::Error::from_raw_os_error(-res),
            format!("ACCEPT(fd {})", self.listener.as_raw_fd()),
        );
        match AcceptError::classify(&e).warned("uring", &e) {
            // EAGAIN: the kernel found nothing queued after all; EINTR.
            AcceptError::Drained | AcceptError::Retry => self.arm_accept(),
            // That one connection failed while queued: take the next.
            AcceptError::Skip => self.arm_accept(),
            // An accept takes a descriptor slot before it looks at the
            // queue: with our table full it fails whether or not a
            // connection is queued. A readiness loop accepts only once the
            // listener is readable; an ACCEPT is tried as soon as it is
            // submitted, so re-arming it at once would spin. Refuse a queued
            // connection with the spare; if none is queued, wait until one
            // is (a POLL_ADD on the listener), as a readiness loop would.
            AcceptError::Exhausted => {
                self.spare.refill();
                match self
                    .spare
                    .refuse_one(self.listener.as_raw_fd(), IoMode::NonBlocking)
                {
                    Refusal::Refused => self.arm_accept(),
                    Refusal::NothingPending => self.await_listener(),
                    Refusal::TableFull => self.pause_accepting(),
                }
            }
            // ENOBUFS, ENOMEM: nothing says when memory is back.
            AcceptError::BackOff => self.pause_accepting(),
            AcceptError::Fatal => return Err(e),
        }
        Ok(())
    }

    fn admit(&mut self, fd: OwnedFd) {
        if !self.stats.admit(self.max_conns) {
            // --max-conns reached: connection N+1 is closed at once.
            return;
        }
        self.stats.served_by(self.index);
        let slot = Slot::new(fd, self.mode);
        let i = match self.free_slots.pop() {
            Some(i) => {
                self.conns[i] = Some(slot);
                i
            }
            None => {
                self.conns.push(Some(slot));
                self.conns.len() - 1
            }
        };
        self.arm_recv(i);
    }

    fn arm_recv(&mut self, i: usize) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.recv_in_flight || slot.starved || !slot.wants_recv() {
            return;
        }
        let fd = Fd(slot.conn.raw());
        let sqe = match self.mode {
            // SQE: RECV fd, into the slot's buffer  // CQE: res = bytes, 0
            // at EOF, or -errno; once.
            Mode::Single => {
                let len = slot.room().min(slot.recv_buf.len()) as u32;
                opcode::Recv::new(fd, slot.recv_buf.as_mut_ptr(), len).build()
            }
            // SQE: RECV fd, multishot, buffer from group BUF_GROUP  // CQE:
            // res = bytes (buffer id in flags), 0 at EOF, or -errno; one per
            // arrival, F_MORE while still armed.
            Mode::Multishot => opcode::RecvMulti::new(fd, BUF_GROUP).build(),
        };
        self.pending.push_back(sqe.user_data(tag(Op::Recv, i)));
        slot.recv_in_flight = true;
        slot.recv_cancelled = false;
    }

    /// CQE of a RECV on `conns[i]`, decided here as recv's return would be.
    fn on_recv(&mut self, i: usize, res: i32, flags: u32) {
        let mode = self.mode;
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if mode == Mode::Single || !cqueue::more(flags) {
            slot.recv_in_flight = false;
        }
        let picked = cqueue::buffer_select(flags);
        let mut next = Next::Keep;
        if res > 0 && !slot.closing {
            let n = res as usize;
            match (mode, picked, self.bufs.as_mut()) {
                (Mode::Single, _, _) => {
                    // The RECV that wrote it has completed, so the buffer
                    // may be borrowed out of the slot meanwhile.
                    let mut buf = std::mem::take(&mut slot.recv_buf);
                    lab::echo::transform_in_place(&mut buf[..n]);
                    queue_reply(slot, &buf[..n]);
                    slot.recv_buf = buf;
                }
                (Mode::Multishot, Some(bid), Some(bufs)) => {
                    let bytes = &mut bufs.buffer(bid)[..n];
                    lab::echo::transform_in_place(bytes);
                    queue_reply(slot, bytes);
                }
                // The kernel always names the buffer it picked; data without
                // one cannot be echoed, so this connection ends.
                (Mode::Multishot, _, _) => {
                    let e = io::Error::other(format!(
                        "RECV(fd {}): {n} bytes but no provided buffer named",
                        slot.conn.raw()
                    ));
                    next = drop_on("uring", e);
                }
            }
        } else if res == 0 {
            // EOF: the peer shut down its write side. Send what is still
            // owed, then close (half-close). A multishot RECV ends here.
            slot.conn.peer_closed = true;
        } else if res < 0 {
            let e = lab::sys::named(
                io::Error::from_raw_os_error(-res),
                format!("RECV(fd {})", slot.conn.raw()),
            );
            match -res {
                // Multishot: the provided-buffer ring ran dry and the kernel
                // ended this RECV. Re-armed after this round, once the
                // buffers its CQEs hold have been given back.
                libc::ENOBUFS if mode == Mode::Multishot => {
                    slot.starved = true;
                    self.starved.push(i);
                }
                // Our own ASYNC_CANCEL (back-pressure or close).
                libc::ECANCELED => {}
                // Nothing lost: submit again.
                libc::EINTR | libc::EAGAIN => {}
                _ if !slot.closing => next = drop_on("uring", e),
                _ => {}
            }
        }
        if let (Some(bid), Some(bufs)) = (picked, self.bufs.as_mut()) {
            // Its bytes were copied into the reply: the kernel may fill it again.
            bufs.give_back(bid);
        }
        if next == Next::Close {
            self.close_conn(i);
        }
        self.after_io(i);
    }

    /// SQE: SEND fd, `sending[sent..]`, MSG_NOSIGNAL  // CQE: res = bytes
    /// taken (a short send is possible) or -errno.
    fn submit_send(&mut self, i: usize) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        let rest = &slot.sending[slot.sent..];
        // MSG_NOSIGNAL: a peer that closed gives -EPIPE, not a SIGPIPE.
        let sqe = opcode::Send::new(Fd(slot.conn.raw()), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.pending.push_back(sqe.user_data(tag(Op::Send, i)));
        slot.send_in_flight = true;
    }

    /// CQE of a SEND on `conns[i]`, decided here as send's return would be.
    fn on_send(&mut self, i: usize, res: i32) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        slot.send_in_flight = false;
        if res >= 0 {
            self.stats.echoed(res as usize);
            slot.sent += res as usize;
            if slot.sent == slot.sending.len() {
                slot.sending.clear();
                slot.sent = 0;
            }
        } else {
            match -res {
                // Nothing was sent: the rest is submitted again below.
                libc::EINTR | libc::EAGAIN => {}
                // Our own ASYNC_CANCEL at close.
                libc::ECANCELED => {}
                errno if !slot.closing => {
                    let e = lab::sys::named(
                        io::Error::from_raw_os_error(errno),
                        format!("SEND(fd {})", slot.conn.raw()),
                    );
                    drop_on("uring", e);
                    self.close_conn(i);
                }
                _ => {}
            }
        }
        self.after_io(i);
    }

    /// After any completion on `conns[i]`: free it if it is closing and done;
    /// otherwise send what is owed, apply or lift back-pressure, and close
    /// it once the peer has everything after its EOF.
    fn after_io(&mut self, i: usize) {
        let mode = self.mode;
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.closing {
            if !slot.in_flight() {
                self.free_slot(i);
            }
            return;
        }
        if !slot.send_in_flight {
            if slot.sending.is_empty() && !slot.conn.out.is_empty() {
                // What queued up behind the last SEND becomes the next one.
                slot.sending.extend_from_slice(slot.conn.out.pending());
                slot.conn.out.consume(slot.sending.len());
            }
            if !slot.held.is_empty() {
                let take = slot.room().min(slot.held.len());
                slot.conn.out.push(&slot.held[..take]);
                slot.held.drain(..take);
            }
            if !slot.sending.is_empty() {
                self.submit_send(i);
            }
        }
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.is_finished() {
            self.close_conn(i);
            return;
        }
        if slot.recv_in_flight {
            // Multishot: back-pressure. The armed RECV would keep posting
            // data we have no room for; cancel it, and re-arm once the
            // peer has read (its last CQE, -ECANCELED, clears the flag).
            if mode == Mode::Multishot && !slot.recv_cancelled && !slot.wants_recv() {
                slot.recv_cancelled = true;
                // SQE: ASYNC_CANCEL user_data of this RECV  // CQE: res = 0 or -ENOENT.
                let cancel = opcode::AsyncCancel2::new(CancelBuilder::user_data(tag(Op::Recv, i)));
                self.pending
                    .push_back(cancel.build().user_data(tag(Op::Cancel, i)));
            }
        } else {
            // Single: re-submitted after each completion, unless
            // back-pressure holds it. Multishot: re-armed after the kernel
            // ended it (no F_MORE: -ENOBUFS, a cancel, an error).
            self.arm_recv(i);
        }
    }

    /// Closes `conns[i]`, in two steps. The kernel may still be reading into
    /// or sending from this slot's buffers, and closing a descriptor does
    /// not end the operations in flight on it (they hold their own
    /// reference to the socket: a pending RECV would wait on forever). So
    /// first ASYNC_CANCEL every operation on the descriptor; the slot, its
    /// buffers and its descriptor stay until each has posted its last CQE
    /// (`free_slot`). Only then can the slot number, the descriptor number
    /// and the memory be reused, so a late CQE never lands on a newer
    /// connection: no generation counter is needed in `user_data`.
    fn close_conn(&mut self, i: usize) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.closing {
            return;
        }
        slot.closing = true;
        if slot.in_flight() {
            // SQE: ASYNC_CANCEL every request on fd  // CQE: res = how many
            // were found, or -ENOENT. Each cancelled one then posts -ECANCELED.
            let cancel = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(slot.conn.raw())).all());
            self.pending
                .push_back(cancel.build().user_data(tag(Op::Cancel, i)));
        } else {
            self.free_slot(i);
        }
    }

    fn free_slot(&mut self, i: usize) {
        // Dropping the slot closes its descriptor.
        self.conns[i] = None;
        self.free_slots.push(i);
        self.stats.release();
    }
}

/// Queues `bytes` of reply on `slot`: what fits in the 1 MiB bound goes to
/// the reply buffer; the rest (only a multishot CQE that was on its way when
/// we cancelled) is held until there is room.
fn queue_reply(slot: &mut Slot, bytes: &[u8]) {
    if !slot.held.is_empty() {
        // Bytes already held go first, or the stream reorders.
        slot.held.extend_from_slice(bytes);
        return;
    }
    let take = slot.room().min(bytes.len());
    slot.conn.out.push(&bytes[..take]);
    slot.held.extend_from_slice(&bytes[take..]);
}

/// The provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): an
/// array of `{addr, len, bid}` entries in memory we share with the kernel,
/// whose tail we advance to hand buffers over. A multishot RECV takes the
/// next one for each CQE and names it in the CQE's flags; we give it back
/// once its bytes are copied.
struct BufRing {
    entries: *mut BufRingEntry,
    count: u16,
    /// Our copy of the tail; the kernel reads the shared one.
    tail: u16,
    storage: Vec<u8>,
}

impl BufRing {
    fn register(ring: &IoUring, count: u16, group: u16) -> io::Result<BufRing> {
        let len = count as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping with no address hint; the
        // kernel wants the ring page-aligned, which mmap gives.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(lab::sys::named(
                io::Error::last_os_error(),
                "mmap(provided-buffer ring)".into(),
            ));
        }
        let mut bufs = BufRing {
            entries: ptr.cast(),
            count,
            tail: 0,
            storage: vec![0; count as usize * RECV_CHUNK],
        };
        // SAFETY: the mapping holds `count` entries and lives until `bufs`
        // is dropped, which `serve` arranges after the ring is closed.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, count, group, 0)
        }
        .map_err(|e| lab::sys::named(e, "io_uring_register(PBUF_RING)".into()))?;
        for bid in 0..count {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    fn buffer(&mut self, bid: u16) -> &mut [u8] {
        let at = bid as usize * RECV_CHUNK;
        &mut self.storage[at..at + RECV_CHUNK]
    }

    /// Hands buffer `bid` to the kernel again.
    fn give_back(&mut self, bid: u16) {
        let addr = self.buffer(bid).as_mut_ptr() as u64;
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`, inside the mapping; the kernel reads
        // entries only up to the tail, which does not cover this one yet.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(RECV_CHUNK as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 the kernel reads in the first entry;
        // the Release store publishes the entry written above before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let len = self.count as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: our own mapping, unmapped once, after the ring is closed.
        unsafe { libc::munmap(self.entries.cast(), len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_keeps_operation_and_slot_apart() {
        for op in [
            Op::Accept,
            Op::Signal,
            Op::AcceptPause,
            Op::Recv,
            Op::Send,
            Op::Cancel,
            Op::ListenerReady,
        ] {
            assert_eq!(untag(tag(op, 12345)), (Some(op), 12345));
        }
        assert_eq!(untag(0).0, None);
    }
}
