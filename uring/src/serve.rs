//! The loop: one ring, its listener, its connections. `serve` waits in one
//! place, `io_uring_enter`, and dispatches each completion by the operation
//! named in its `user_data`; the handlers are in `accept.rs` and `conn.rs`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, CompletionQueue, SubmissionQueue, Submitter};
use lab::net::{Listener, Spare, ACCEPT_PAUSE};
use lab::policy::WaitError;
use lab::signals::SignalFd;
use lab::Stats;

use crate::bufring::BufRing;
use crate::ring::{Ring, CQ_ENTRIES};
use crate::slot::{Sending, Slot};
use crate::{Features, Mode};

/// One RECV reads at most this much: the size of a single-mode receive
/// buffer and of each provided buffer.
pub const RECV_CHUNK: usize = 16 << 10;

/// Provided buffers per ring in multishot mode (a power of two, as the
/// kernel requires): 4 MiB shared by every connection of the loop.
pub const PROVIDED_BUFFERS: u16 = 256;

/// `--min-wait`: how many CQEs a wait asks for before its bound passes.
const MIN_WAIT_BATCH: usize = 32;

/// `--min-wait`: how long a wait may last with no CQE at all before it
/// returns ETIME and is entered again.
const MIN_WAIT_BOUND: Duration = Duration::from_secs(60);

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
    Close = 8,
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
        8 => Some(Op::Close),
        _ => None,
    };
    (op, (user_data & u32::MAX as u64) as usize)
}

/// What every loop is told; the same for all.
#[derive(Clone, Copy)]
pub struct Config {
    pub mode: Mode,
    pub max_conns: Option<u64>,
    pub features: Features,
}

/// The loop's state besides the ring itself: SQEs not yet in the
/// submission queue, the connections, and the provided buffers.
pub struct Loop<'a> {
    /// Which of the `--workers` rings this is (its `per_loop=` count).
    pub index: usize,
    pub mode: Mode,
    pub features: Features,
    pub listener: &'a Listener,
    pub stats: &'a Stats,
    pub max_conns: Option<u64>,
    pub spare: Spare,
    /// SQEs made while handling completions; moved into the submission
    /// queue before each `io_uring_enter`, as many as fit.
    pub pending: VecDeque<squeue::Entry>,
    /// SQEs moved into the submission queue so far: an SQE's position.
    pushed: u64,
    /// `--skip-send-cqe`: connections whose SEND is `Sending::Pushed`, with
    /// that SEND's position in the submission queue. At the end of every
    /// round only entries whose slot is still `Pushed` are kept, so when
    /// the next round pushes a slot's new SEND, no older entry of that slot
    /// is left to be mistaken for it.
    skipped: Vec<(usize, u64)>,
    /// `conns[slot]`; a slot is reused only after its last CQE (see
    /// `close_conn`). Slots in place, one block: the table's spare capacity
    /// (it doubles as it grows) is address space the process never touches,
    /// and slots do not sit between the small reply buffers that come and
    /// go on the heap, whose freed chunks would keep those pages resident.
    /// An SQE points into a slot's buffers, never into the slot itself, so
    /// the table may move its slots when it grows.
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
    /// `--min-wait`: the overall bound of a wait, `MIN_WAIT_BOUND`.
    min_wait_bound: Timespec,
}

pub fn serve(
    index: usize,
    ring: Ring,
    listener: &Listener,
    spare: Spare,
    signals: &SignalFd,
    stats: &Stats,
    cfg: Config,
) -> io::Result<()> {
    let mut lp = Loop {
        index,
        mode: cfg.mode,
        features: cfg.features,
        listener,
        stats,
        max_conns: cfg.max_conns,
        spare,
        pending: VecDeque::new(),
        pushed: 0,
        skipped: Vec::new(),
        conns: Vec::new(),
        free_slots: Vec::new(),
        accept_in_flight: false,
        starved: Vec::new(),
        bufs: ring.bufs,
        pause: Timespec::from(ACCEPT_PAUSE),
        min_wait_bound: Timespec::from(MIN_WAIT_BOUND),
    };
    // Declared after `lp`, so dropped before it: the ring's descriptor is
    // closed, which makes the kernel cancel what is still in flight, before
    // the buffers those operations point at are freed. (The cancelling
    // finishes in a kernel worker; a socket operation parked on poll writes
    // nothing once cancelled.)
    let mut ring = ring.ring;
    let (mut submitter, mut sq, mut cq) = ring.split();
    if cfg.features.defer_taskrun {
        // io_uring_register(ENABLE_RINGS): this thread becomes the ring's
        // one issuer (SINGLE_ISSUER); any other gets EEXIST.
        submitter
            .register_enable_rings()
            .map_err(|e| lab::sys::named(e, "io_uring_register(ENABLE_RINGS)".into()))?;
    }
    if cfg.features.fixed_files {
        // io_uring_register(RING_FDS): io_uring_enter then finds the ring by
        // an index of this thread's, without looking its descriptor up.
        submitter
            .register_ring_fd()
            .map_err(|e| lab::sys::named(e, "io_uring_register(RING_FDS)".into()))?;
    }
    // SQE: POLL_ADD signalfd, POLLIN  // CQE: res = revents once SIGINT/SIGTERM is pending.
    // A poll, not a READ: it leaves the signal pending, so every ring sees it.
    let poll_signals = opcode::PollAdd::new(Fd(signals.as_raw_fd()), libc::POLLIN as u32);
    lp.pending
        .push_back(poll_signals.build().user_data(tag(Op::Signal, 0)));
    lp.arm_accept();
    let served = lp.run(&submitter, &mut sq, &mut cq);
    if cfg.features.fixed_files {
        // A registered ring holds a reference to itself until this thread
        // exits: let it go, so dropping the ring cancels what is in flight.
        submitter
            .unregister_ring_fd()
            .map_err(|e| lab::sys::named(e, "io_uring_register(RING_FDS)".into()))?;
    }
    served
}

impl Loop<'_> {
    fn run(
        &mut self,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
        cq: &mut CompletionQueue<'_>,
    ) -> io::Result<()> {
        let mut completions: Vec<cqueue::Entry> = Vec::with_capacity(CQ_ENTRIES as usize);
        loop {
            self.push_pending(sq);
            // io_uring_enter(to_submit, min_complete, GETEVENTS): submits and
            // sleeps until `min_complete` CQEs are posted (with --min-wait:
            // until then, or the bound has passed and one is).
            let min_complete = self.min_complete();
            let entered = match self.features.min_wait {
                Some(usec) if min_complete > 0 => {
                    // Without an overall timeout the kernel ends the whole
                    // wait when the minimum one passes, CQE or not (ETIME).
                    let args = SubmitArgs::new()
                        .min_wait_usec(usec)
                        .timespec(&self.min_wait_bound);
                    submitter.submit_with_args(MIN_WAIT_BATCH, &args)
                }
                _ => submitter.submit_and_wait(min_complete),
            };
            if let Err(e) = entered {
                let e = lab::sys::named(e, "io_uring_enter".into());
                match lab::sys::errno(&e) {
                    // The completion queue overflowed and the kernel holds
                    // CQEs it could not post: reap what is posted, then
                    // enter again (the unsubmitted SQEs stay queued).
                    Some(libc::EBUSY) => {}
                    // No kernel memory for new requests just now: reap what
                    // is posted, and do not retry at once.
                    Some(libc::EAGAIN) => std::thread::sleep(ACCEPT_PAUSE),
                    // --min-wait: the overall bound passed with no CQE.
                    Some(libc::ETIME) => {}
                    _ => match WaitError::classify(&e).warned("uring", &e) {
                        // EINTR: a signal we do not block (SIGSTOP/SIGCONT)
                        // cut the wait short; the SQEs were submitted or stay queued.
                        WaitError::Retry => {}
                        WaitError::BackOff => std::thread::sleep(ACCEPT_PAUSE),
                        // EBADF, EFAULT, EINVAL: our ring or arguments are wrong.
                        WaitError::Fatal => return Err(e),
                    },
                }
            }
            // The kernel's SQ head: every SQE before it has been issued.
            sq.sync();
            let issued = self.pushed - sq.len() as u64;
            // A CQE the CQ had no room for waits in the kernel's overflow
            // list, where a failed skipped SEND's could be: no silence is
            // read as success until it has been flushed.
            let overflowed = sq.cq_overflow();
            cq.sync();
            completions.clear();
            completions.extend(&mut *cq);
            // Publish our new head: the kernel counts `min_complete` from
            // the head it last saw, so a stale one ends the next wait at once.
            cq.sync();
            let mut stop = false;
            for cqe in &completions {
                let (res, flags) = (cqe.result(), cqe.flags());
                match untag(cqe.user_data()) {
                    // SIGINT or SIGTERM is pending: stop serving once this
                    // round is accounted for; `run` summarises.
                    (Some(Op::Signal), _) => stop = true,
                    (Some(Op::Accept), _) => self.on_accept(res, flags)?,
                    // A connection is queued (or the poll failed: then the
                    // ACCEPT says why).
                    (Some(Op::ListenerReady), _) => self.arm_accept(),
                    (Some(Op::AcceptPause), _) => self.on_pause_over(),
                    (Some(Op::Recv), slot) => self.on_readable(slot, res, flags),
                    (Some(Op::Send), slot) => self.on_writable(slot, res),
                    // CQE: res = how many were cancelled, or -ENOENT / -EALREADY
                    // when they had completed meanwhile. Their own CQEs say the rest.
                    (Some(Op::Cancel), _) => {}
                    // A failed CLOSE of a direct descriptor (EBADF: a bug).
                    (Some(Op::Close), slot) => lab::log!(
                        "uring: CLOSE(slot {slot}): {}",
                        io::Error::from_raw_os_error(-res)
                    ),
                    (None, _) => {
                        return Err(io::Error::other(format!(
                            "uring: a completion with unknown user_data {:#x}",
                            cqe.user_data()
                        )))
                    }
                }
            }
            if !overflowed {
                // Skipped SENDs that took everything count in the summary.
                self.settle_skipped(issued);
            } else {
                // Forget the SENDs whose CQE has come (the others' may be
                // in the overflow list).
                let conns = &self.conns;
                self.skipped.retain(|&(i, _)| {
                    conns[i]
                        .as_ref()
                        .is_some_and(|slot| slot.send == Sending::Pushed)
                });
            }
            if stop {
                return Ok(());
            }
            if let (false, Some(bufs)) = (self.starved.is_empty(), self.bufs.as_mut()) {
                // Once a round, however many RECVs found none.
                bufs.grow();
            }
            for i in std::mem::take(&mut self.starved) {
                if let Some(slot) = self.conns[i].as_mut() {
                    slot.starved = false;
                }
                self.after_io(i);
            }
        }
    }

    /// Moves the SQEs made since the last round into the submission queue,
    /// as many as fit; the rest wait for the next round.
    fn push_pending(&mut self, sq: &mut SubmissionQueue<'_>) {
        while let Some(sqe) = self.pending.front() {
            // SAFETY: every buffer an SQE points at (a slot's `recv_buf`
            // or `sending`, the provided buffers, `self.pause`) is neither
            // moved nor freed until that SQE's last CQE has been reaped:
            // a slot is freed only with nothing in flight (`close_conn`).
            if unsafe { sq.push(sqe) }.is_err() {
                break;
            }
            if let (Some(Op::Send), i) = untag(sqe.get_user_data()) {
                if let Some(slot) = self.conns[i].as_mut() {
                    if slot.send == Sending::Skipped {
                        slot.send = Sending::Pushed;
                        self.skipped.push((i, self.pushed));
                    }
                }
            }
            self.pushed += 1;
            self.pending.pop_front();
        }
        sq.sync();
    }

    /// How many CQEs the next enter waits for: one; none while SQEs wait
    /// for room in the submission queue (their CQEs may be all that would
    /// wake us, and a skipped SEND posts none), or while a skipped SEND
    /// (submitted now, or whose silence is not yet read) leaves work behind
    /// its success that no CQE would wake us for.
    fn min_complete(&self) -> usize {
        let quiet = |&(i, _): &(usize, u64)| {
            self.conns[i]
                .as_ref()
                .is_some_and(|slot| slot.quiet_after_send())
        };
        if !self.pending.is_empty() || !self.skipped.iter().all(quiet) {
            0
        } else {
            1
        }
    }

    /// `--skip-send-cqe`: a skipped SEND the kernel has issued, and that
    /// posted no CQE (`on_writable` would have made it `Idle`), took every
    /// byte; it completes here, as its CQE would have.
    fn settle_skipped(&mut self, issued: u64) {
        for (i, seq) in std::mem::take(&mut self.skipped) {
            let Some(slot) = self.conns[i].as_ref() else {
                continue;
            };
            // Not `Pushed`: its CQE came (a short or failed SEND), and a
            // newer SEND, if any, is not in the submission queue yet.
            if slot.send != Sending::Pushed {
                continue;
            }
            if seq < issued {
                let all = slot.unsent_in_flight() as i32;
                self.on_writable(i, all);
            } else {
                self.skipped.push((i, seq));
            }
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
            Op::Close,
        ] {
            assert_eq!(untag(tag(op, 12345)), (Some(op), 12345));
        }
        assert_eq!(untag(0).0, None);
    }
}
