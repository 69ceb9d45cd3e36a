//! The loop: one ring, its listener, its connections. `serve` waits in one
//! place, `io_uring_enter`, and dispatches each completion by the operation
//! named in its `user_data`; the handlers are in `accept.rs` and `conn.rs`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::types::{Fd, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use lab::net::{Listener, Spare, ACCEPT_PAUSE};
use lab::policy::WaitError;
use lab::signals::SignalFd;
use lab::Stats;

use crate::bufring::BufRing;
use crate::conn::Slot;
use crate::ring::CQ_ENTRIES;
use crate::Mode;

/// One RECV reads at most this much: the size of a single-mode receive
/// buffer and of each provided buffer.
pub const RECV_CHUNK: usize = 16 << 10;

/// Provided buffers per ring in multishot mode (a power of two, as the
/// kernel requires): 4 MiB shared by every connection of the loop.
const PROVIDED_BUFFERS: u16 = 256;

/// The provided-buffer group our multishot RECVs select from.
pub const BUF_GROUP: u16 = 0;

/// What a completion is about: the operation in the top byte of
/// `user_data`, the connection's slot in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Accept = 1,
    Signal = 2,
    AcceptPause = 3,
    Recv = 4,
    Send = 5,
    Cancel = 6,
    ListenerReady = 7,
}

pub fn tag(op: Op, slot: usize) -> u64 {
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

/// What every loop is told; the same for all.
#[derive(Clone, Copy)]
pub struct Config {
    pub mode: Mode,
    pub max_conns: Option<u64>,
}

/// The loop's state besides the ring itself: SQEs not yet in the
/// submission queue, the connections, and the provided buffers.
pub struct Loop<'a> {
    /// Which of the `--workers` rings this is (its `per_loop=` count).
    pub index: usize,
    pub mode: Mode,
    pub listener: &'a Listener,
    pub stats: &'a Stats,
    pub max_conns: Option<u64>,
    pub spare: Spare,
    /// SQEs made while handling completions; moved into the submission
    /// queue before each `io_uring_enter`, as many as fit.
    pub pending: VecDeque<squeue::Entry>,
    /// `conns[slot]`; a slot is reused only after its last CQE (see
    /// `close_conn`).
    pub conns: Vec<Option<Slot>>,
    pub free_slots: Vec<usize>,
    /// The multishot ACCEPT is armed (or the one-shot one in flight).
    pub accept_in_flight: bool,
    /// Multishot RECVs that ended with `-ENOBUFS`: re-armed after this
    /// round's completions have given their buffers back.
    pub starved: Vec<usize>,
    pub bufs: Option<BufRing>,
    /// What the TIMEOUT that pauses accepting points at; lives as long as
    /// the loop.
    pub pause: Timespec,
}

pub fn serve(
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
        Mode::Multishot => Some(BufRing::register(
            &ring,
            PROVIDED_BUFFERS,
            RECV_CHUNK,
            BUF_GROUP,
        )?),
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
        lp.push_pending(&mut ring);
        // io_uring_enter(to_submit, min_complete = 1, GETEVENTS): submits
        // and sleeps until at least one CQE is posted.
        if let Err(e) = ring.submit_and_wait(1) {
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
                (Some(Op::AcceptPause), _) => lp.on_pause_over(),
                (Some(Op::Recv), slot) => lp.on_readable(slot, res, flags),
                (Some(Op::Send), slot) => lp.on_writable(slot, res),
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
    /// Moves the SQEs made since the last round into the submission queue,
    /// as many as fit; the rest wait for the next round.
    fn push_pending(&mut self, ring: &mut IoUring) {
        let mut sq = ring.submission();
        while let Some(sqe) = self.pending.front() {
            // SAFETY: every buffer an SQE points at (a slot's `recv_buf`
            // or `sending`, the provided buffers, `self.pause`) is neither
            // moved nor freed until that SQE's last CQE has been reaped:
            // a slot is freed only with nothing in flight (`close_conn`).
            if unsafe { sq.push(sqe) }.is_err() {
                break;
            }
            self.pending.pop_front();
        }
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
