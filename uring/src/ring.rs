//! Setting a ring up with the features the flags ask for. `io_uring_setup`
//! fails with `ENOSYS` or `EPERM` where io_uring is missing or disabled; a
//! kernel that has io_uring but not a flag's feature refuses it with
//! `EINVAL` (or does not list it in the ring's features), and the flag is
//! then named with the kernel version that has it.

use std::io;

use io_uring::IoUring;

use crate::bufring::{BufRing, Consume};
use crate::serve::{BUF_GROUP, PROVIDED_BUFFERS, RECV_CHUNK};
use crate::{Features, Mode};

/// Submission queue entries per ring; the completion queue is larger
/// (`CQ_ENTRIES`): one submission may post many completions. Should the CQ
/// still overflow, the kernel keeps the extra CQEs (`IORING_FEAT_NODROP`)
/// and `io_uring_enter` says `EBUSY` until we reap.
const SQ_ENTRIES: u32 = 1024;
pub const CQ_ENTRIES: u32 = 8192;

/// How long the SQPOLL thread keeps spinning after the last submission.
const SQPOLL_IDLE_MS: u32 = 1000;

/// Direct descriptors per ring with `--fixed-files`; the kernel allows no
/// more than `RLIMIT_NOFILE` (`EMFILE` otherwise), and below it each ring's
/// table is what the process may hold.
const MAX_DIRECT: u64 = 1 << 20;

/// Why a ring could not be set up.
pub enum SetupError {
    /// No io_uring at all: `ENOSYS` or `EPERM` from `io_uring_setup`.
    Unavailable(io::Error),
    /// io_uring, but not the feature a flag needs.
    Unsupported {
        flag: &'static str,
        feature: &'static str,
        since: &'static str,
        err: io::Error,
    },
    Other(io::Error),
}

/// A ring, its provided buffers (multishot) and its direct-descriptor table
/// (`--fixed-files`), all made before the first client can connect.
pub struct Ring {
    pub ring: IoUring,
    pub bufs: Option<BufRing>,
}

pub fn new_ring(mode: Mode, f: &Features) -> Result<Ring, SetupError> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(CQ_ENTRIES);
    if f.sqpoll {
        builder.setup_sqpoll(SQPOLL_IDLE_MS);
        if let Some(cpu) = f.sqpoll_cpu {
            builder.setup_sqpoll_cpu(cpu);
        }
    } else {
        // The kernel runs our sockets' completion work at our next entry
        // instead of interrupting the thread for each (Linux 5.19). Not
        // with SQPOLL: io_uring_setup refuses the pair with EINVAL.
        builder.setup_coop_taskrun();
    }
    if f.defer_taskrun {
        // SINGLE_ISSUER makes the ring the task's that first uses it, and
        // the loop runs on a thread of its own: the ring starts disabled
        // (R_DISABLED, 5.10) and the loop's thread enables it, becoming its
        // issuer (`serve`).
        builder
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled();
    }
    let ring = match builder.build(SQ_ENTRIES) {
        Ok(ring) => ring,
        Err(e) => {
            let e = lab::sys::named(e, "io_uring_setup".into());
            return Err(match lab::sys::errno(&e) {
                Some(libc::ENOSYS | libc::EPERM) => SetupError::Unavailable(e),
                Some(libc::EINVAL) if f.defer_taskrun => SetupError::Unsupported {
                    flag: "--defer-taskrun",
                    feature: "IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN",
                    since: "6.1",
                    err: e,
                },
                Some(libc::EINVAL) if f.sqpoll_cpu.is_some() => SetupError::Unsupported {
                    flag: "--sqpoll-cpu",
                    feature: "IORING_SETUP_SQ_AFF on a CPU this process may use",
                    since: "5.11 unprivileged",
                    err: e,
                },
                _ => SetupError::Other(e),
            });
        }
    };
    let p = ring.params();
    let missing = |flag, feature, since| {
        let err = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        Err(SetupError::Unsupported {
            flag,
            feature,
            since,
            err,
        })
    };
    if f.skip_send_cqe && !p.is_feature_skip_cqe_on_success() {
        return missing(
            "--skip-send-cqe",
            "IOSQE_CQE_SKIP_SUCCESS (IORING_FEAT_CQE_SKIP)",
            "5.17",
        );
    }
    if f.bundle && !p.is_feature_recvsend_bundle() {
        return missing(
            "--bundle",
            "IORING_RECVSEND_BUNDLE (IORING_FEAT_RECVSEND_BUNDLE)",
            "6.10",
        );
    }
    if f.min_wait.is_some() && !p.is_feature_min_timeout() {
        return missing("--min-wait", "IORING_FEAT_MIN_TIMEOUT", "6.12");
    }
    if f.fixed_files {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(|e| SetupError::Other(lab::sys::named_nix(e, "getrlimit(RLIMIT_NOFILE)")))?;
        let table = soft;
        // SQE: none; io_uring_register(FILES2, sparse): a table of empty
        // slots that multishot ACCEPT fills (IORING_FILE_INDEX_ALLOC).
        if let Err(e) = ring
            .submitter()
            .register_files_sparse(table.min(MAX_DIRECT) as u32)
        {
            let e = lab::sys::named(e, "io_uring_register(FILES2, sparse)".into());
            return Err(match lab::sys::errno(&e) {
                Some(libc::EINVAL) => SetupError::Unsupported {
                    flag: "--fixed-files",
                    feature: "a sparse registered file table (IORING_RSRC_REGISTER_SPARSE)",
                    since: "5.19",
                    err: e,
                },
                _ => SetupError::Other(e),
            });
        }
    }
    let consume = if f.incremental {
        Consume::Incremental
    } else if f.bundle {
        Consume::Bundle
    } else {
        Consume::Whole
    };
    let bufs = match mode {
        Mode::Single => None,
        Mode::Multishot => Some(
            match BufRing::register(&ring, PROVIDED_BUFFERS, RECV_CHUNK, BUF_GROUP, consume) {
                Ok(bufs) => bufs,
                Err(e) if f.incremental && lab::sys::errno(&e) == Some(libc::EINVAL) => {
                    return Err(SetupError::Unsupported {
                        flag: "--incremental-buffers",
                        feature: "IOU_PBUF_RING_INC",
                        since: "6.12",
                        err: e,
                    })
                }
                Err(e) => return Err(SetupError::Other(e)),
            },
        ),
    };
    Ok(Ring { ring, bufs })
}
