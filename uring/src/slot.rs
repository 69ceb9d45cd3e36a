//! One connection's state: its socket, the reply it is owed, and what the
//! kernel may be reading from or writing into on its behalf.

use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::squeue;
use io_uring::types::Fd;
use lab::{OutBuf, OUTBUF_LIMIT};

use crate::serve::RECV_CHUNK;
use crate::Mode;

/// A connection's socket: a descriptor of the process, or with
/// `--fixed-files` a direct descriptor, an index into the ring's registered
/// file table that no descriptor table of the process shows.
pub enum Sock {
    Fd(OwnedFd),
    Direct(u32),
}

impl Sock {
    /// The SQE's `fd` field and flags: a direct descriptor goes in by its
    /// index, with `IOSQE_FIXED_FILE`, and saves the kernel looking the file
    /// up (and taking a reference to it) for every operation.
    pub fn target(&self) -> (Fd, squeue::Flags) {
        match self {
            Sock::Fd(fd) => (Fd(fd.as_raw_fd()), squeue::Flags::empty()),
            Sock::Direct(i) => (Fd(*i as i32), squeue::Flags::FIXED_FILE),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Sock::Fd(fd) => format!("fd {}", fd.as_raw_fd()),
            Sock::Direct(i) => format!("direct {i}"),
        }
    }
}

/// Where a connection's SEND stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sending {
    Idle,
    /// Submitted; its CQE will say how it ended.
    Posted,
    /// `--skip-send-cqe`: submitted with `IOSQE_CQE_SKIP_SUCCESS`, not yet
    /// in the submission queue. It never waits in the kernel
    /// (`MSG_DONTWAIT`): once the kernel has consumed its SQE it has taken
    /// every byte (no CQE) or posted a CQE saying how many it took, or why
    /// none.
    Skipped,
    /// The same, in the submission queue: its position there is beside the
    /// slot's number in `Loop::skipped` (not here: a slot's every byte counts
    /// 10 kB at 10 000 connections).
    Pushed,
}

/// One connection: its socket, the reply it is owed, and what the kernel
/// may be reading or writing on its behalf. Kept small, and holding no heap
/// buffer while the connection owes nothing: at 10 000 idle connections
/// every byte here is 10 kB of the server's memory.
pub struct Slot {
    pub sock: Sock,
    /// Reply bytes waiting behind the SEND in flight (bounded: back-pressure).
    /// Allocated when a reply has to wait, freed once nothing is owed
    /// (`took`); boxed, so an idle slot holds a null pointer, not an
    /// `OutBuf`.
    pub out: Option<Box<OutBuf>>,
    /// The bytes the SEND in flight reads, allocated for that SEND and freed
    /// once the kernel has taken them all. Never touched while it is in
    /// flight: `out` may reallocate on a push, this may not.
    pub sending: Box<[u8]>,
    /// How much of `sending` the kernel has taken so far.
    pub sent: usize,
    /// Single mode: the buffer the RECV in flight writes into. Multishot:
    /// none; the RECV takes a provided buffer.
    pub recv_buf: Option<Box<[u8; RECV_CHUNK]>>,
    /// Multishot only: bytes the kernel delivered after we had cancelled the
    /// RECV for back-pressure (CQEs already on their way), kept until the
    /// reply buffer has room for them. Rarely used: boxed, it costs every
    /// slot a pointer, not a `Vec`'s three words.
    #[expect(
        clippy::box_collection,
        reason = "a thin pointer in every slot; the Vec is rarely allocated"
    )]
    pub held: Option<Box<Vec<u8>>>,
    pub send: Sending,
    pub recv_in_flight: bool,
    /// The peer shut down its write side (RECV returned 0). We still owe
    /// it the reply; once that is sent, the connection is finished.
    pub peer_closed: bool,
    /// `--skip-send-cqe`: the socket's send buffer was full at the last
    /// SEND; the next ones wait for room in the kernel, with a CQE, until
    /// one takes everything.
    pub congested: bool,
    /// A multishot RECV was cancelled (back-pressure); its last CQE is due.
    pub recv_cancelled: bool,
    /// Closed by us; freed once its last operation has completed.
    pub closing: bool,
    /// Multishot: the RECV ended with -ENOBUFS; re-armed after this round.
    pub starved: bool,
}

impl Slot {
    pub fn new(sock: Sock, mode: Mode) -> Slot {
        Slot {
            sock,
            out: None,
            sending: Box::default(),
            sent: 0,
            recv_buf: match mode {
                Mode::Single => Some(Box::new([0; RECV_CHUNK])),
                Mode::Multishot => None,
            },
            held: None,
            send: Sending::Idle,
            recv_in_flight: false,
            peer_closed: false,
            congested: false,
            recv_cancelled: false,
            closing: false,
            starved: false,
        }
    }

    /// Reply bytes not yet taken by the peer's socket: the SEND in flight's
    /// remainder and what waits behind it. At most `OUTBUF_LIMIT`.
    pub fn unsent(&self) -> usize {
        self.sending.len() - self.sent + self.queued()
    }

    /// Reply bytes waiting behind the SEND in flight.
    pub fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, |out| out.len())
    }

    /// How much more may be received before back-pressure.
    pub fn room(&self) -> usize {
        OUTBUF_LIMIT - self.unsent()
    }

    /// A RECV should be armed: the peer may send, nothing is held back, and
    /// a full chunk fits (so a multishot CQE never finds less room than it
    /// brings, before the cancel it triggers takes effect). A `--bundle` CQE
    /// may bring more, as many buffers as were queued: what does not fit is
    /// held, as are the bytes of CQEs already on their way at the cancel.
    pub fn wants_recv(&self) -> bool {
        !self.closing && !self.peer_closed && self.held.is_none() && self.room() >= RECV_CHUNK
    }

    pub fn in_flight(&self) -> bool {
        self.recv_in_flight || self.send != Sending::Idle
    }

    /// `--skip-send-cqe`: once its SEND has taken everything, nothing is
    /// left for this connection to do until another CQE comes (its armed
    /// RECV's), so the loop may sleep in the same `io_uring_enter` that
    /// submits the SEND. Otherwise that SEND's silent success must be
    /// followed up first (the next reply, a close after EOF, a RECV to
    /// re-arm), and the enter must not sleep.
    pub fn quiet_after_send(&self) -> bool {
        !self.closing
            && !self.peer_closed
            && self.queued() == 0
            && self.held.is_none()
            && self.recv_in_flight
    }

    /// The bytes a SEND in flight has yet to take.
    pub fn unsent_in_flight(&self) -> usize {
        self.sending.len() - self.sent
    }

    /// The peer closed its side and everything owed has been sent.
    pub fn is_finished(&self) -> bool {
        self.peer_closed && self.unsent() == 0 && self.held.is_none()
    }

    /// Queues `bytes` of reply: what fits in the 1 MiB bound goes to the
    /// reply buffer; the rest (only a multishot CQE that was on its way when
    /// we cancelled) is held until there is room. With nothing owed, the
    /// bytes become the next SEND's at once, and `out` stays unallocated.
    pub fn queue_reply(&mut self, bytes: &[u8]) {
        if let Some(held) = self.held.as_mut() {
            // Bytes already held go first, or the stream reorders.
            held.extend_from_slice(bytes);
            return;
        }
        let take = self.room().min(bytes.len());
        if self.sending.is_empty() && self.queued() == 0 {
            // No SEND in flight (one always has bytes to take).
            self.sending = bytes[..take].into();
        } else {
            self.out.get_or_insert_default().push(&bytes[..take]);
        }
        if take < bytes.len() {
            self.held = Some(Box::new(bytes[take..].to_vec()));
        }
    }

    /// No SEND in flight: what queued up behind the last one becomes the
    /// next, and held bytes move into the room that leaves. True if there
    /// is something to send.
    pub fn next_send(&mut self) -> bool {
        if let (true, Some(out)) = (self.sending.is_empty(), self.out.as_mut()) {
            self.sending = out.pending().into();
            out.consume(self.sending.len());
        }
        if let Some(mut held) = self.held.take() {
            let take = self.room().min(held.len());
            self.out.get_or_insert_default().push(&held[..take]);
            held.drain(..take);
            if !held.is_empty() {
                self.held = Some(held);
            }
        }
        !self.sending.is_empty()
    }

    /// A SEND took `n` bytes of `sending`. Once it has taken them all, the
    /// buffer is freed, and so is `out`'s memory if nothing waits there: a
    /// connection that owes nothing holds no buffer. True if all were taken.
    pub fn took(&mut self, n: usize) -> bool {
        self.sent += n;
        if self.sent < self.sending.len() {
            return false;
        }
        self.sending = Box::default();
        self.sent = 0;
        if self.queued() == 0 {
            self.out = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::*;

    /// The system allocator, counting the bytes each thread holds, so a
    /// test can see what a slot keeps allocated (tests run on threads of
    /// their own).
    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    fn count(delta: isize) {
        LIVE.with(|live| live.set(live.get() + delta));
    }

    // SAFETY: every call is passed on to `System` unchanged; only the
    // counting is added, and it allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as isize);
            // SAFETY: the caller's contract for `alloc`, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-(layout.size() as isize));
            // SAFETY: the caller's contract for `dealloc`, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size as isize - layout.size() as isize);
            // SAFETY: the caller's contract for `realloc`, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn live() -> isize {
        LIVE.with(Cell::get)
    }

    #[test]
    fn a_connection_that_owes_nothing_holds_no_buffer() {
        let mut slot = Slot::new(Sock::Direct(0), Mode::Multishot);
        let idle = live();
        // One request answered, as the idle workload's connections are.
        slot.queue_reply(b"ping");
        assert_eq!(
            &*slot.sending, b"ping",
            "nothing owed: straight to the SEND"
        );
        assert!(slot.next_send());
        assert!(slot.took(4));
        assert_eq!(live(), idle, "the SEND's buffer is freed once taken");
        // Pipelined: bytes wait in `out` behind the SEND in flight.
        slot.queue_reply(b"ping");
        slot.queue_reply(b"pong");
        assert_eq!(
            slot.out.as_ref().map(|out| out.pending()),
            Some(&b"pong"[..])
        );
        assert!(!slot.took(2), "short: the rest is still in flight");
        assert!(slot.took(2));
        assert!(slot.next_send());
        assert_eq!(&*slot.sending, b"pong");
        assert!(slot.took(4));
        assert!(!slot.next_send());
        assert_eq!(live(), idle, "`out`'s memory is given back too");
    }

    #[test]
    fn bytes_past_the_bound_are_held_in_order_and_released_when_moved() {
        let mut slot = Slot::new(Sock::Direct(0), Mode::Multishot);
        let idle = live();
        let big = vec![1u8; OUTBUF_LIMIT - 3];
        slot.queue_reply(&big);
        drop(big);
        slot.queue_reply(b"abcdef");
        assert_eq!(slot.unsent(), OUTBUF_LIMIT);
        assert_eq!(slot.held.as_deref().map(Vec::as_slice), Some(&b"def"[..]));
        slot.queue_reply(b"gh");
        assert_eq!(slot.held.as_deref().map(Vec::as_slice), Some(&b"defgh"[..]));
        assert!(!slot.wants_recv());
        assert!(slot.took(OUTBUF_LIMIT - 3));
        assert!(slot.next_send());
        assert_eq!(&*slot.sending, b"abc");
        assert_eq!(
            slot.out.as_ref().map(|out| out.pending()),
            Some(&b"defgh"[..])
        );
        assert!(slot.held.is_none(), "all moved");
        assert!(slot.took(3));
        assert!(slot.next_send());
        assert!(slot.took(5));
        assert_eq!(live(), idle);
    }
}
