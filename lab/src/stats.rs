//! Counters for the exit summary, and the `--max-conns` admission count.
//!
//! They live in a `MAP_SHARED` anonymous mapping, so that after `fork` the
//! children of the `fork`/`prefork` models update the very same counters as
//! their parent: the summary and the connection limit then hold across
//! processes, not just threads.
//!
//! A model that runs several loops (threads or processes) also counts the
//! connections each loop accepted, right after the three totals in the same
//! mapping, so the summary can show how evenly the kernel spread them.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(C)]
struct Counters {
    /// Connections admitted since start.
    connections: AtomicU64,
    /// Reply bytes written to peers.
    bytes: AtomicU64,
    /// Connections open right now.
    active: AtomicU64,
}

pub struct Stats {
    counters: NonNull<Counters>,
    /// Per-loop counters, after `Counters` in the mapping (0 for one loop).
    loops: usize,
}

// SAFETY: the mapping is only accessed through atomics and lives until drop.
unsafe impl Send for Stats {}
// SAFETY: as above; every access is an atomic operation.
unsafe impl Sync for Stats {}

impl Stats {
    /// The counters of a model that runs one loop.
    pub fn new() -> io::Result<Stats> {
        Stats::with_loops(1)
    }

    /// The counters of a model that runs `loops` loops, each counting what
    /// it accepted with `served_by`.
    pub fn with_loops(loops: usize) -> io::Result<Stats> {
        let loops = if loops > 1 { loops } else { 0 };
        let len = mapping_len(loops);
        // SAFETY: an anonymous mapping with no address hint; the kernel
        // returns zeroed, page-aligned memory, a valid all-zero `Counters`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(crate::sys::named(
                io::Error::last_os_error(),
                "mmap(MAP_SHARED|MAP_ANONYMOUS)".into(),
            ));
        }
        let counters = NonNull::new(ptr.cast::<Counters>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Stats { counters, loops })
    }

    fn counters(&self) -> &Counters {
        // SAFETY: the mapping is valid, aligned and initialised for the life of `self`.
        unsafe { self.counters.as_ref() }
    }

    fn per_loop(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `loops` zero-initialised, 8-aligned
        // AtomicU64 right after `Counters` (whose size is a multiple of 8),
        // valid for the life of `self`.
        unsafe {
            std::slice::from_raw_parts(
                self.counters.as_ptr().add(1).cast::<AtomicU64>(),
                self.loops,
            )
        }
    }

    /// Loop `index` (0-based) admitted a connection. A model with one loop
    /// keeps no per-loop count; an index beyond `with_loops` is a bug.
    pub fn served_by(&self, index: usize) {
        if let Some(count) = self.per_loop().get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            debug_assert!(self.loops == 0, "loop {index} of {}", self.loops);
        }
    }

    /// Connections each loop admitted; empty for a model with one loop.
    pub fn per_loop_connections(&self) -> Vec<u64> {
        self.per_loop()
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Admits a new connection unless `max_conns` are already open. A
    /// connection refused here is to be closed at once by the caller.
    pub fn admit(&self, max_conns: Option<u64>) -> bool {
        let active = &self.counters().active;
        let admitted = match max_conns {
            None => {
                active.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(max) => active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (open < max).then_some(open + 1)
                })
                .is_ok(),
        };
        if admitted {
            self.counters().connections.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// An admitted connection was closed.
    ///
    /// Saturates at zero: a release counted twice (a forked child killed
    /// between its own release and `_exit`, then released again by the
    /// parent that reaped it) must not wrap the count and refuse every
    /// later connection.
    pub fn release(&self) {
        let _ = self
            .counters()
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                open.checked_sub(1)
            });
    }

    /// `n` reply bytes were written to a peer.
    pub fn echoed(&self, n: usize) {
        self.counters().bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn connections(&self) -> u64 {
        self.counters().connections.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.counters().bytes.load(Ordering::Relaxed)
    }

    /// The one-line exit summary, to stderr:
    /// `summary: model=epoll:edge connections=12 bytes=3456 user=0.120s sys=0.340s`,
    /// and with several loops the connections each one admitted, last:
    /// `... sys=0.340s per_loop=5,7`.
    ///
    /// CPU is `getrusage(RUSAGE_SELF)` (every thread) plus
    /// `getrusage(RUSAGE_CHILDREN)` (children already reaped: call it after
    /// the last `waitpid`).
    pub fn print_summary(&self, model: &str) -> io::Result<()> {
        let own = rusage(libc::RUSAGE_SELF)?;
        let children = rusage(libc::RUSAGE_CHILDREN)?;
        // Not `?`: a closed stderr must not turn a clean stop into a failure.
        let per_loop = self.per_loop_connections();
        let per_loop = if per_loop.is_empty() {
            String::new()
        } else {
            let counts: Vec<String> = per_loop.iter().map(u64::to_string).collect();
            format!(" per_loop={}", counts.join(","))
        };
        crate::log!(
            "summary: model={model} connections={} bytes={} user={:.3}s sys={:.3}s{per_loop}",
            self.connections(),
            self.bytes(),
            seconds(own.ru_utime) + seconds(children.ru_utime),
            seconds(own.ru_stime) + seconds(children.ru_stime),
        );
        Ok(())
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those of our own mapping, unmapped once.
        unsafe { libc::munmap(self.counters.as_ptr().cast(), mapping_len(self.loops)) };
    }
}

fn mapping_len(loops: usize) -> usize {
    std::mem::size_of::<Counters>() + loops * std::mem::size_of::<AtomicU64>()
}

fn rusage(who: libc::c_int) -> io::Result<libc::rusage> {
    // SAFETY: all-zero is a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    crate::syscall!(
        unsafe { libc::getrusage(who, &mut usage) },
        "getrusage({who})"
    )?;
    Ok(usage)
}

fn seconds(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_stops_at_max_and_reopens_on_release() {
        let stats = Stats::new().expect("mmap");
        assert!(stats.admit(Some(2)));
        assert!(stats.admit(Some(2)));
        assert!(!stats.admit(Some(2)));
        stats.release();
        assert!(stats.admit(Some(2)));
        assert_eq!(stats.connections(), 3);
        assert!(!stats.admit(Some(2)));
    }

    #[test]
    fn a_release_too_many_does_not_wrap_the_count() {
        let stats = Stats::new().expect("mmap");
        assert!(stats.admit(Some(1)));
        stats.release();
        stats.release();
        assert!(stats.admit(Some(1)), "the count wrapped below zero");
        assert!(!stats.admit(Some(1)));
    }

    #[test]
    fn each_loop_counts_its_own_connections() {
        let stats = Stats::with_loops(3).expect("mmap");
        stats.served_by(0);
        stats.served_by(2);
        stats.served_by(2);
        assert_eq!(stats.per_loop_connections(), [1, 0, 2]);
        assert!(Stats::new()
            .expect("mmap")
            .per_loop_connections()
            .is_empty());
    }

    #[test]
    fn forked_child_updates_the_parents_counters() {
        let stats = Stats::new().expect("mmap");
        // SAFETY: the child only performs atomic adds on the shared mapping
        // and `_exit`s; it touches no lock another thread may hold.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            stats.admit(None);
            stats.echoed(42);
            // SAFETY: _exit skips destructors and atexit handlers, as a forked child must.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; pid is our own child.
        let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(reaped, pid);
        assert_eq!(stats.connections(), 1);
        assert_eq!(stats.bytes(), 42);
    }
}
