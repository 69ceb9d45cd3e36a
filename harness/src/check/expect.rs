//! The one table of limits each model has by design.
//!
//! An entry excuses one case's *specific limitation* (a stall, a CPU figure,
//! connections not all held at once) for one model:mode, with the reason a
//! reader should learn from it. It never excuses a crash, a lost or wrong
//! byte, or a leaked descriptor: those are FAIL whatever the table says. An
//! entry whose limitation does not show in a run is reported as PASS, with a
//! note, so the table cannot hide a change of behaviour.
//!
//! The same table tells `harness compare` which workloads a model cannot
//! serve by design: an entry for `Case::Conns2000` whose `expect` names a
//! capacity (`connection_capacity`) keeps compare from running a workload
//! that holds more connections than that.

use super::Case;

/// How an expected limit is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The case's limitation is excused as it shows.
    Limit,
    /// Judged as `Limit`; and the model serves at most this many
    /// connections at once, so compare runs no workload holding more.
    Serves(Capacity),
    /// A CPU figure, excused only for what io_uring's kernel threads spent
    /// (`iou-sqp`, `iou-wrk`): the rest of the server's CPU, its own loop,
    /// must still stay under the case's limit, or the case FAILs.
    KernelThreads,
    /// `select` and 2000 connections: excused only if the server survived,
    /// the connections below `FD_SETSIZE` were served, the others closed at
    /// once, and its stderr named `FD_SETSIZE`.
    FdSetSize,
}

/// How many connections a model serves at once by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// One at a time (`iterative`).
    One,
    /// As many as its `--workers` (a pool of threads or processes).
    Workers,
}

/// Descriptors a server holds besides connections (stdio, listener,
/// signalfd, the spare for EMFILE), with margin.
pub const FD_RESERVE: usize = 16;

pub struct Entry {
    pub model: &'static str,
    /// A mode name, or `*` for every mode of the model.
    pub mode: &'static str,
    /// A server flag (`sqpoll` for `--sqpoll`) the limit comes with: the
    /// entry applies only to a server started with it. `None`: with any
    /// arguments.
    pub flag: Option<&'static str>,
    pub case: Case,
    pub expect: Expect,
    pub reason: &'static str,
}

const ITERATIVE: &str = "iterative";

const SQPOLL_SPINS: &str = "--sqpoll: the kernel thread iou-sqp-PID polls the submission queue on \
     a CPU until SQPOLL_IDLE_MS (uring's constant, 1 s) have passed without a submission, then \
     sleeps; it is a thread of the server, so a window within that time counts its spin (the \
     server's other threads are still held to the limit)";

pub const TABLE: &[Entry] = &[
    Entry {
        model: "blocking",
        mode: ITERATIVE,
        flag: None,
        case: Case::Slowloris,
        expect: Expect::Limit,
        reason: "iterative blocks in read() on the slow client, so nobody else is accepted until it finishes",
    },
    Entry {
        model: "blocking",
        mode: ITERATIVE,
        flag: None,
        case: Case::NeverReader,
        expect: Expect::Limit,
        reason: "iterative blocks in write() to the client that never reads, so nobody else is served",
    },
    Entry {
        model: "blocking",
        mode: ITERATIVE,
        flag: None,
        case: Case::Conns2000,
        expect: Expect::Serves(Capacity::One),
        reason: "iterative holds one connection at a time: every other client waits, unserved, until it closes",
    },
    Entry {
        model: "blocking",
        mode: ITERATIVE,
        flag: None,
        case: Case::MaxConns,
        expect: Expect::Limit,
        reason: "iterative serves one connection at a time, so N connections cannot be open and served at once",
    },
    Entry {
        model: "blocking",
        mode: "pool",
        flag: None,
        case: Case::Conns2000,
        expect: Expect::Serves(Capacity::Workers),
        reason: "a pool of --workers threads serves --workers connections at once; the rest wait until one closes",
    },
    Entry {
        model: "blocking",
        mode: "prefork",
        flag: None,
        case: Case::Conns2000,
        expect: Expect::Serves(Capacity::Workers),
        reason: "prefork's --workers processes serve --workers connections at once; the rest wait until one closes",
    },
    Entry {
        model: "nonblocking",
        mode: "spin",
        flag: None,
        case: Case::Idle,
        expect: Expect::Limit,
        reason: "spin busy-polls every socket without ever blocking: it burns a whole core even with no client",
    },
    Entry {
        model: "nonblocking",
        mode: "spin",
        flag: None,
        case: Case::Emfile,
        expect: Expect::Limit,
        reason: "spin burns a core whatever happens, flood or not; this case can only check that it survives and serves again",
    },
    Entry {
        model: "reflector",
        mode: "*",
        flag: None,
        case: Case::Idle,
        expect: Expect::Limit,
        reason: "the reflector busy-polls epoll with timeout 0 so that it never waits for a wake-up: it burns its core by design",
    },
    Entry {
        model: "reflector",
        mode: "*",
        flag: None,
        case: Case::Emfile,
        expect: Expect::Limit,
        reason: "the reflector burns its core whatever happens; this case can only check that it survives and serves again",
    },
    Entry {
        model: "select",
        mode: "*",
        flag: None,
        case: Case::Conns2000,
        expect: Expect::FdSetSize,
        reason: "select's fd_set is a bitmap of FD_SETSIZE (1024) bits: descriptors at or above 1024 cannot be watched and are closed",
    },
    Entry {
        model: "uring",
        mode: "*",
        flag: Some("sqpoll"),
        case: Case::Idle,
        expect: Expect::KernelThreads,
        reason: SQPOLL_SPINS,
    },
    Entry {
        model: "uring",
        mode: "*",
        flag: Some("sqpoll"),
        case: Case::Emfile,
        expect: Expect::KernelThreads,
        reason: SQPOLL_SPINS,
    },
];

/// A required fault (`harness check --faults`) that a model:mode cannot meet
/// by design, e.g. the `accept4` faults for a model that accepts without
/// that system call (io_uring accepts by opcode): reported N/A with the
/// reason. Faults on calls the discovery run shows a model never makes
/// (no `epoll_wait` in `blocking`) need no entry; they are N/A by the trace.
pub struct FaultEntry {
    pub model: &'static str,
    /// A mode name, or `*` for every mode of the model.
    pub mode: &'static str,
    /// The system call whose faults cannot be injected.
    pub syscall: &'static str,
    pub reason: &'static str,
}

pub const FAULT_TABLE: &[FaultEntry] = &[FaultEntry {
    model: "uring",
    mode: "*",
    syscall: "accept4",
    reason: "uring accepts with the ACCEPT opcode inside io_uring_enter, not with accept4: \
             the errno comes back in a CQE (decided in on_accept); accept4 runs only when the \
             spare refuses a connection under EMFILE",
}];

/// The entry excusing `syscall`'s faults for `model:mode`, if any.
pub fn fault_lookup(model: &str, mode: Option<&str>, syscall: &str) -> Option<&'static FaultEntry> {
    FAULT_TABLE.iter().find(|e| {
        e.model == model && e.syscall == syscall && (e.mode == "*" || Some(e.mode) == mode)
    })
}

/// The entry for `model:mode` run with `args` and `case`, if its limit is
/// expected.
pub fn lookup(
    model: &str,
    mode: Option<&str>,
    args: &[String],
    case: Case,
) -> Option<&'static Entry> {
    TABLE.iter().find(|e| {
        e.model == model
            && e.case == case
            && (e.mode == "*" || Some(e.mode) == mode)
            && e.flag.is_none_or(|flag| has_flag(args, flag))
    })
}

/// Whether `args` hold `--FLAG`.
fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a.strip_prefix("--") == Some(flag))
}

/// How many connections `model:mode` serves at once by design, run with
/// `workers` workers, and the table's reason; `None`: as many as the OS
/// gives it.
pub fn connection_capacity(
    model: &str,
    mode: Option<&str>,
    workers: usize,
) -> Option<(usize, &'static str)> {
    let e = lookup(model, mode, &[], Case::Conns2000)?;
    let held = match e.expect {
        Expect::Serves(Capacity::One) => 1,
        Expect::Serves(Capacity::Workers) => workers,
        Expect::FdSetSize => libc::FD_SETSIZE - FD_RESERVE,
        Expect::Limit | Expect::KernelThreads => return None,
    };
    Some((held, e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_come_from_the_conns2000_entries() {
        assert_eq!(
            connection_capacity("blocking", Some("iterative"), 128).map(|c| c.0),
            Some(1)
        );
        assert_eq!(
            connection_capacity("blocking", Some("pool"), 128).map(|c| c.0),
            Some(128)
        );
        assert_eq!(
            connection_capacity("select", None, 128).map(|c| c.0),
            Some(1024 - FD_RESERVE)
        );
        assert_eq!(connection_capacity("blocking", Some("thread"), 128), None);
        assert_eq!(connection_capacity("epoll", Some("edge"), 128), None);
    }

    #[test]
    fn wildcard_and_exact_modes_match_and_others_do_not() {
        assert!(lookup("select", None, &[], Case::Conns2000).is_some());
        assert!(lookup("blocking", Some("iterative"), &[], Case::Slowloris).is_some());
        assert!(lookup("blocking", Some("thread"), &[], Case::Slowloris).is_none());
        assert!(lookup("blocking", None, &[], Case::Slowloris).is_none());
        assert!(lookup("epoll", Some("edge"), &[], Case::Idle).is_none());
    }

    #[test]
    fn a_flagged_limit_applies_only_with_its_flag() {
        let with = ["--mode".to_string(), "single".into(), "--sqpoll".into()];
        assert!(lookup("uring", Some("single"), &with, Case::Idle).is_some());
        assert!(lookup("uring", Some("single"), &[], Case::Idle).is_none());
        let prefix_only = ["--sqpoll-idle".to_string()];
        assert!(lookup("uring", Some("single"), &prefix_only, Case::Idle).is_none());
    }

    #[test]
    fn at_most_one_entry_per_model_mode_case() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert!(
                    !(a.model == b.model
                        && a.case == b.case
                        && (a.mode == b.mode || a.mode == "*" || b.mode == "*")),
                    "{}:{} {:?} twice",
                    a.model,
                    a.mode,
                    a.case
                );
            }
        }
    }
}
