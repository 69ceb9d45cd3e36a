//! Setting a ring up: `io_uring_setup`, the call that fails with `ENOSYS` or
//! `EPERM` where io_uring is missing or disabled.

use std::io;

use io_uring::IoUring;

/// Submission queue entries per ring; the completion queue is larger
/// (`CQ_ENTRIES`): one submission may post many completions. Should the CQ
/// still overflow, the kernel keeps the extra CQEs (`IORING_FEAT_NODROP`)
/// and `io_uring_enter` says `EBUSY` until we reap.
const SQ_ENTRIES: u32 = 1024;
pub const CQ_ENTRIES: u32 = 8192;

/// How long the SQPOLL thread keeps spinning after the last submission.
const SQPOLL_IDLE_MS: u32 = 1000;

pub fn new_ring(sqpoll: bool) -> io::Result<IoUring> {
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
