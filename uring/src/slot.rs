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
    /// `--skip-send-cqe`: submitted with `IOSQE_CQE_SKIP_SUCCESS`, at this
    /// position of the submission queue once pushed there (`u64::MAX`
    /// before). It never waits in the kernel (`MSG_DONTWAIT`): once the
    /// kernel has consumed its SQE it has taken every byte (no CQE) or
    /// posted a CQE saying how many it took, or why none.
    Skipped {
        seq: u64,
    },
}

/// One connection: its socket, the reply it is owed, and what the kernel
/// may be reading or writing on its behalf.
pub struct Slot {
    pub sock: Sock,
    /// Reply bytes waiting behind the SEND in flight (bounded: back-pressure).
    pub out: OutBuf,
    /// The peer shut down its write side (RECV returned 0). We still owe
    /// it the reply; once that is sent, the connection is finished.
    pub peer_closed: bool,
    /// The bytes the SEND in flight reads. Never touched while it is in
    /// flight: `out` may reallocate on a push, this may not.
    pub sending: Vec<u8>,
    /// How much of `sending` the kernel has taken so far.
    pub sent: usize,
    /// Single mode: the buffer the RECV in flight writes into.
    pub recv_buf: Vec<u8>,
    /// Multishot only: bytes the kernel delivered after we had cancelled the
    /// RECV for back-pressure (CQEs already on their way), kept until the
    /// reply buffer has room for them.
    pub held: Vec<u8>,
    pub recv_in_flight: bool,
    pub send: Sending,
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
            out: OutBuf::new(),
            peer_closed: false,
            sending: Vec::new(),
            sent: 0,
            recv_buf: match mode {
                Mode::Single => vec![0; RECV_CHUNK],
                Mode::Multishot => Vec::new(),
            },
            held: Vec::new(),
            recv_in_flight: false,
            send: Sending::Idle,
            congested: false,
            recv_cancelled: false,
            closing: false,
            starved: false,
        }
    }

    /// Reply bytes not yet taken by the peer's socket: the SEND in flight's
    /// remainder and what waits behind it. At most `OUTBUF_LIMIT`.
    pub fn unsent(&self) -> usize {
        self.sending.len() - self.sent + self.out.len()
    }

    /// How much more may be received before back-pressure.
    pub fn room(&self) -> usize {
        OUTBUF_LIMIT - self.unsent()
    }

    /// A RECV should be armed: the peer may send, nothing is held back, and
    /// a full chunk fits (so a multishot CQE never finds less room than it
    /// brings, before the cancel it triggers takes effect).
    pub fn wants_recv(&self) -> bool {
        !self.closing && !self.peer_closed && self.held.is_empty() && self.room() >= RECV_CHUNK
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
            && self.out.is_empty()
            && self.held.is_empty()
            && self.recv_in_flight
    }

    /// The bytes a SEND in flight has yet to take.
    pub fn unsent_in_flight(&self) -> usize {
        self.sending.len() - self.sent
    }

    /// The peer closed its side and everything owed has been sent.
    pub fn is_finished(&self) -> bool {
        self.peer_closed && self.unsent() == 0 && self.held.is_empty()
    }

    /// Queues `bytes` of reply: what fits in the 1 MiB bound goes to the
    /// reply buffer; the rest (only a multishot CQE that was on its way when
    /// we cancelled) is held until there is room.
    pub fn queue_reply(&mut self, bytes: &[u8]) {
        if !self.held.is_empty() {
            // Bytes already held go first, or the stream reorders.
            self.held.extend_from_slice(bytes);
            return;
        }
        let take = self.room().min(bytes.len());
        self.out.push(&bytes[..take]);
        self.held.extend_from_slice(&bytes[take..]);
    }
}
